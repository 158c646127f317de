//! The core's error type. Each variant says what went wrong and, where a user can act,
//! how to fix it; `src/py/errors.rs` maps every variant to a Python exception class.

use crate::journal::record::RecordError;
use crate::store::{layout, StoreError};
use crate::suspend::TransitionError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {what} {value:?}: it must be {rule}")]
    InvalidName {
        what: &'static str,
        value: String,
        rule: &'static str,
    },

    #[error(transparent)]
    Store(#[from] StoreError),

    #[error("corrupt data at {key}{}: {reason}. The store was changed outside kitaru or damaged; \
             the value was not used", describe_context(.exec_id, .checkpoint))]
    Corrupt {
        key: String,
        exec_id: Option<String>,
        checkpoint: Option<String>,
        reason: String,
    },

    #[error("no execution {exec_id} in the store at {store}; `kitaru executions list` shows the executions there")]
    ExecutionNotFound { exec_id: String, store: String },

    #[error("execution {exec_id}: {source}")]
    Transition {
        exec_id: String,
        #[source]
        source: TransitionError,
    },

    #[error(
        "execution {exec_id} is already being run by {holder}; only one process may run an \
             execution at a time. Wait for it to finish, or stop that process and retry"
    )]
    LeaseHeld { exec_id: String, holder: String },

    #[error(
        "execution {exec_id} was taken over by another process ({by}) while this one ran it; \
             this process stopped so that two runners never run one execution"
    )]
    LeaseLost { exec_id: String, by: String },

    #[error(
        "checkpoint {call_id} of execution {exec_id} was recorded twice in one run; a call \
         is recorded once (this is a bug in kitaru or in an adapter, please report it)"
    )]
    RecordedTwice { exec_id: String, call_id: String },

    #[error(
        "Checkpoint id '{call_id}' is used twice in one execution of flow '{flow}'; explicit \
         ids must be unique (and differ from the ids kitaru gives other calls: name, name_2, ...)."
    )]
    IdTaken { flow: String, call_id: String },

    #[error(
        "Checkpoint '{call_id}' of execution {exec_id} finished earlier with different inputs \
         than this call. The flow's divergence policy is 'error'; use \
         @flow(divergence='rerun') to run it again with the new inputs, or \
         divergence='reuse' to keep the stored output."
    )]
    Diverged { exec_id: String, call_id: String },

    #[error("execution {exec_id} was cancelled while it ran{}", if .reason.is_empty() { String::new() } else { format!(" ({})", .reason) })]
    Cancelled { exec_id: String, reason: String },

    #[error(
        "execution {exec_id} was changed by another process {attempts} times while this one \
             tried to update it; try again"
    )]
    Contention { exec_id: String, attempts: u32 },

    #[error("execution {exec_id} has no pending wait named {name:?}; {}", describe_waits(.pending))]
    WaitNotFound {
        exec_id: String,
        name: String,
        pending: Vec<String>,
    },

    #[error("execution {exec_id} has {}; name one with wait=... (or --wait)", describe_pending(.names, .status))]
    WaitAmbiguous {
        exec_id: String,
        /// The pending waits (none or several).
        names: Vec<String>,
        status: &'static str,
    },

    #[error(
        "wait {name:?} of execution {exec_id} was already answered; an answer cannot be changed"
    )]
    WaitAnswered { exec_id: String, name: String },

    #[error("execution {exec_id} is waiting for input on {}; give it with `kitaru executions input {exec_id} --value <json>`{}", .names.join(", "), if *.resume_hint { format!(", then run `kitaru executions resume {exec_id}`") } else { String::new() })]
    WaitsPending {
        exec_id: String,
        names: Vec<String>,
        resume_hint: bool,
    },

    #[error("execution {exec_id} is still running; replay it once it has ended or is waiting")]
    StillRunning { exec_id: String },

    #[error("execution {exec_id} has no finished checkpoint to replay from")]
    NothingToReplay { exec_id: String },

    #[error("execution {exec_id} has no checkpoint '{selector}'; available checkpoints: {}", .available.join(", "))]
    UnknownCheckpoint {
        exec_id: String,
        selector: String,
        available: Vec<String>,
    },

    #[error("checkpoint selector '{selector}' of execution {exec_id} is ambiguous ({}); use a checkpoint call id instead", .candidates.join(", "))]
    AmbiguousCheckpoint {
        exec_id: String,
        selector: String,
        candidates: Vec<String>,
    },

    #[error("kitaru's I/O runtime could not start: {0}")]
    RuntimeStart(#[source] std::io::Error),

    #[error(
        "record for checkpoint {call_id} of execution {exec_id} is too large to encode: {reason}"
    )]
    Encode {
        exec_id: String,
        call_id: String,
        reason: String,
    },
}

fn describe_waits(pending: &[String]) -> String {
    if pending.is_empty() {
        "it has no pending waits".to_string()
    } else {
        format!("available waits: {}", pending.join(", "))
    }
}

fn describe_pending(names: &[String], status: &str) -> String {
    match names.len() {
        0 => format!("no pending wait (status: {status})"),
        n => format!("{n} pending waits ({})", names.join(", ")),
    }
}

fn describe_context(exec_id: &Option<String>, checkpoint: &Option<String>) -> String {
    match (exec_id, checkpoint) {
        (Some(e), Some(c)) => format!(" (execution {e}, checkpoint {c})"),
        (Some(e), None) => format!(" (execution {e})"),
        (None, Some(c)) => format!(" (checkpoint {c})"),
        (None, None) => String::new(),
    }
}

impl Error {
    pub(crate) fn corrupt_record(key: &str, exec_id: Option<&str>, err: RecordError) -> Self {
        Error::Corrupt {
            key: key.to_string(),
            exec_id: exec_id.map(str::to_string),
            checkpoint: layout::call_of_key(key).map(str::to_string),
            reason: err.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
