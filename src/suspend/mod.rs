//! The execution state machine: pure (no I/O), the single authority on transitions.
//!
//! An execution's state is the fold of its state events. Writers check the transition
//! here before they claim the next sequence number with a create-only put, so the events
//! on disk are always a legal sequence; readers fold them back with [`replay`].
//!
//! ```text
//!   Started ──► Running ──Completed──► Completed
//!                 │  ├────Failed─────► Failed ──Retried──► Running
//!                 │  ├────Suspended──► Waiting ──Resumed──► Running
//!                 │  ├────Cancelled──► Cancelled   (also from Waiting and Failed)
//!                 │  └─FlowAttemptFailed─► Running (same claim)
//!                 └─(lease lapsed)─Retried / Resumed──► Running (new claim)
//! ```

use crate::journal::types::Event;

/// The internal state of an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// No event yet (the execution does not exist).
    New,
    /// A runner holds the claim made by event `claim_seq`.
    Running {
        claim_seq: u64,
        token: u64,
    },
    /// Suspended; no process holds it.
    Waiting,
    Completed,
    Failed,
    Cancelled,
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::New => "new",
            State::Running { .. } => "running",
            State::Waiting => "waiting",
            State::Completed => "completed",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, State::Completed | State::Cancelled)
    }
}

/// Why a transition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("it is {state}, so it cannot be {event}{}", hint(.state, .event))]
    Illegal {
        state: &'static str,
        event: &'static str,
    },
    #[error("its runner still holds the lease, so it cannot be {event}")]
    LeaseLive { event: &'static str },
    #[error("the lease was taken over by another runner, so this runner cannot record `{event}`")]
    NotHolder { event: &'static str },
}

fn hint(state: &str, event: &str) -> &'static str {
    match (state, event) {
        ("completed", "retried") | ("waiting", "retried") | ("cancelled", "retried") => {
            "; only failed executions can be retried"
        }
        (_, "resumed") => "; only waiting executions can be resumed",
        ("completed", "cancelled") | ("cancelled", "cancelled") => "; it has already finished",
        _ => "",
    }
}

/// What a caller knows besides the event: whether the current claim's lease has lapsed
/// (its holder died or stopped renewing). Only the I/O layer can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub lease_lapsed: bool,
}

/// The state after `event`, or why `event` is not allowed in `state`.
pub fn transition(
    state: &State,
    seq: u64,
    event: &Event,
    facts: Facts,
) -> Result<State, TransitionError> {
    use State::*;
    let illegal = || TransitionError::Illegal {
        state: state.name(),
        event: event.name(),
    };
    let holder_only = |token: u64, next: State| match state {
        Running { token: held, .. } if *held == token => Ok(next),
        Running { .. } => Err(TransitionError::NotHolder {
            event: event.name(),
        }),
        _ => Err(illegal()),
    };
    match event {
        Event::Started { lease, .. } => match state {
            New => Ok(Running {
                claim_seq: seq,
                token: lease.token,
            }),
            _ => Err(illegal()),
        },
        Event::Completed { token, .. } => holder_only(*token, Completed),
        Event::Failed { token, .. } => holder_only(*token, Failed),
        Event::Suspended { token, .. } => holder_only(*token, Waiting),
        Event::FlowAttemptFailed { token, .. } => holder_only(*token, state.clone()),
        Event::Resumed { lease }
        | Event::Claimed {
            resume: true,
            lease,
            ..
        } => match state {
            Waiting => Ok(Running {
                claim_seq: seq,
                token: lease.token,
            }),
            // The runner died while it polled for an answer: nothing is lost, resume it.
            Running { .. } if facts.lease_lapsed => Ok(Running {
                claim_seq: seq,
                token: lease.token,
            }),
            Running { .. } => Err(TransitionError::LeaseLive {
                event: event.name(),
            }),
            _ => Err(illegal()),
        },
        Event::Retried { lease }
        | Event::Claimed {
            resume: false,
            lease,
            ..
        } => match state {
            Failed => Ok(Running {
                claim_seq: seq,
                token: lease.token,
            }),
            Running { .. } if facts.lease_lapsed => Ok(Running {
                claim_seq: seq,
                token: lease.token,
            }),
            Running { .. } => Err(TransitionError::LeaseLive {
                event: event.name(),
            }),
            _ => Err(illegal()),
        },
        Event::Cancelled { .. } => match state {
            Running { .. } | Waiting | Failed => Ok(Cancelled),
            _ => Err(illegal()),
        },
    }
}

/// Folds recorded events (in sequence order) into the current state. Recorded events were
/// checked when written, so a lapse they relied on is taken as given.
pub fn replay<'a>(
    events: impl IntoIterator<Item = (u64, &'a Event)>,
) -> Result<State, (u64, TransitionError)> {
    let mut state = State::New;
    for (seq, event) in events {
        state =
            transition(&state, seq, event, Facts { lease_lapsed: true }).map_err(|e| (seq, e))?;
    }
    Ok(state)
}
