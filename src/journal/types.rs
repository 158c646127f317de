//! The records of an execution's journal. Field and variant order is part of the record
//! format (bincode is positional): add new variants at the end, never reorder.

use serde::{Deserialize, Serialize};

use super::record::{ByteBuf, Digest, Kind, Record};

/// The process that holds (or held) an execution's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    /// Linux boot id: a reboot makes every pid of the previous boot dead.
    pub boot_id: String,
    pub pid: u32,
    /// Start time of the process (clock ticks since boot) so a reused pid is not mistaken
    /// for the holder.
    pub pid_start: u64,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on host {}", self.pid, self.host)
    }
}

/// A claim of the right to run an execution, made by a state event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseClaim {
    pub holder: Holder,
    /// Random per claim: holder-only events carry it, so a runner that lost its lease
    /// cannot finish an execution someone else now runs.
    pub token: u64,
    pub ttl_ms: u64,
}

/// Where a flow lives, so another process can import it and run it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryPoint {
    pub module: String,
    pub qualname: String,
    /// Absolute path of the script when the flow was defined in `__main__`.
    pub script: Option<String>,
    pub cwd: String,
}

/// A stored Python value: the serializer tag that reads it back and its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Value {
    pub serializer: String,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// Small values live inside the record.
    Inline(ByteBuf),
    /// Larger values are blobs named by their blake3 hash.
    Blob { hash: Digest, size: u64 },
    /// A value that extends an earlier output of the same checkpoint in this execution (a
    /// growing conversation): the first `keep` bytes of the output of call `base_call`
    /// whose value hashes to `base_digest`, then `suffix`. `digest` is the blake3 hash of
    /// the whole value, checked when it is rebuilt; `depth` counts the deltas below it.
    Delta {
        base_call: String,
        base_digest: Digest,
        keep: u64,
        suffix: ByteBuf,
        digest: Digest,
        depth: u32,
    },
}

impl Body {
    pub fn size(&self) -> u64 {
        match self {
            Body::Inline(b) => b.0.len() as u64,
            Body::Blob { size, .. } => *size,
            Body::Delta { keep, suffix, .. } => keep.saturating_add(suffix.0.len() as u64),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// `user_code`, `runtime`, `backend`, `divergence`, `runner_died`, `unknown`, ...
    pub origin: String,
    pub message: String,
    pub exception_type: Option<String>,
    pub traceback: Option<String>,
}

/// What the first state event of an execution records about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartInfo {
    pub flow_name: String,
    pub entry: EntryPoint,
    pub args: Value,
    pub kitaru_version: String,
    /// The flow's options as JSON (retries, divergence, stack, ...), for display.
    pub options_json: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// Seq 0: the execution exists and its creator holds the lease.
    Started {
        start: Box<StartInfo>,
        lease: LeaseClaim,
    },
    Completed {
        token: u64,
        result: Value,
    },
    Failed {
        token: u64,
        failure: Failure,
    },
    /// The runner suspended the flow (a wait with no answer yet) and released its lease.
    Suspended {
        token: u64,
        reason: String,
    },
    /// A waiting execution is run again (its waits were answered).
    Resumed {
        lease: LeaseClaim,
    },
    /// A failed execution, or one whose runner died, is run again.
    Retried {
        lease: LeaseClaim,
    },
    Cancelled {
        reason: String,
    },
    /// A flow-level retry: the body failed and runs again from the top in the same claim.
    FlowAttemptFailed {
        token: u64,
        attempt: u32,
        failure: Failure,
    },
    /// A retry (`resume: false`) or resume that fences the runs before it: of what they
    /// wrote since the previous claim, only what `fence` lists is part of the execution,
    /// so a stalled runner that wakes up after this claim can add nothing. Written since
    /// store layout 2; `Retried`/`Resumed` (no fence) are still read.
    Claimed {
        resume: bool,
        lease: LeaseClaim,
        fence: Fence,
    },
}

/// What a claim accepted from the runs since the previous claim.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Fence {
    /// (claim seq, bytes): the whole records at the start of each run's segment (local
    /// stores) that count; anything after them was written after the claim (or torn).
    pub segments: Vec<(u64, u64)>,
    /// Checkpoint record keys (`cp/<call id>[@<rev>]`, relative to the execution) that
    /// those runs wrote on object stores.
    pub records: Vec<String>,
}

impl Event {
    /// The fence this event sets on the runs before it, if it is a fenced claim.
    pub fn fence(&self) -> Option<&Fence> {
        match self {
            Event::Claimed { fence, .. } => Some(fence),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Event::Started { .. } => "started",
            Event::Completed { .. } => "completed",
            Event::Failed { .. } => "failed",
            Event::Suspended { .. } => "suspended",
            Event::Resumed { .. } => "resumed",
            Event::Retried { .. } => "retried",
            Event::Cancelled { .. } => "cancelled",
            Event::FlowAttemptFailed { .. } => "flow_attempt_failed",
            Event::Claimed { resume: true, .. } => "resumed",
            Event::Claimed { resume: false, .. } => "retried",
        }
    }

    /// The lease this event claims, if it claims one.
    pub fn claim(&self) -> Option<&LeaseClaim> {
        match self {
            Event::Started { lease, .. }
            | Event::Resumed { lease }
            | Event::Retried { lease }
            | Event::Claimed { lease, .. } => Some(lease),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRecord {
    pub seq: u64,
    pub at_us: u64,
    pub event: Event,
}

impl Record for StateRecord {
    const KIND: Kind = Kind::State;
}

/// Renewal of the claim made by state event `claim_seq`; overwritten by its holder only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub claim_seq: u64,
    pub token: u64,
    pub renewed_at_us: u64,
    pub expires_at_us: u64,
}

impl Record for Heartbeat {
    const KIND: Kind = Kind::Heartbeat;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    pub claim_seq: u64,
    pub started_us: u64,
    pub ended_us: u64,
    pub failure: Option<Failure>,
}

/// A finished checkpoint call: its identity, input digest, output and attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub call_id: String,
    pub name: String,
    pub explicit_id: bool,
    pub checkpoint_type: Option<String>,
    pub input_digest: Option<Digest>,
    pub output: Value,
    pub attempts: Vec<Attempt>,
    /// `kitaru.log()` calls made inside the checkpoint, merged, as JSON.
    pub metadata_json: Option<String>,
}

impl Record for CheckpointRecord {
    const KIND: Kind = Kind::Checkpoint;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedAttemptRecord {
    pub call_id: String,
    pub name: String,
    pub checkpoint_type: Option<String>,
    pub input_digest: Option<Digest>,
    pub attempt: Attempt,
}

impl Record for FailedAttemptRecord {
    const KIND: Kind = Kind::FailedAttempt;
}

/// `kitaru.log()` on the flow body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaRecord {
    pub claim_seq: u64,
    pub n: u32,
    pub at_us: u64,
    pub json: String,
}

impl Record for MetaRecord {
    const KIND: Kind = Kind::Meta;
}

/// A finished checkpoint called again with different inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DivergenceRecord {
    pub call_id: String,
    pub claim_seq: u64,
    pub at_us: u64,
    pub stored_digest: Option<Digest>,
    pub new_digest: Option<Digest>,
    /// What the runtime did: `reuse`, `rerun` or `error`.
    pub policy: String,
}

impl Record for DivergenceRecord {
    const KIND: Kind = Kind::Divergence;
}

/// A `kitaru.wait()` the flow reached: what it asks and what answer it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitRecord {
    pub name: String,
    pub question: Option<String>,
    /// JSON Schema of the expected answer (None: a continue/abort gate).
    pub schema_json: Option<String>,
    /// `module:qualname` of the schema type when it can be imported, for exact validation.
    pub schema_type: Option<String>,
    pub metadata_json: String,
    pub created_us: u64,
    pub claim_seq: u64,
}

impl Record for WaitRecord {
    const KIND: Kind = Kind::Wait;
}

/// The answer to a wait (create-only: the first answer wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerRecord {
    pub name: String,
    /// The validated value as JSON; None when the wait was aborted.
    pub value_json: Option<String>,
    pub aborted: bool,
    pub at_us: u64,
    pub by: Holder,
}

impl Record for AnswerRecord {
    const KIND: Kind = Kind::Answer;
}

/// A batch of captured output (stdout, stderr, logging) of a run, as JSON lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    pub claim_seq: u64,
    pub n: u32,
    pub entries_jsonl: String,
}

impl Record for LogRecord {
    const KIND: Kind = Kind::Log;
}

/// What a run committed, written by the run itself just before its end event (completed,
/// failed, suspended): its segment's length and its record keys, so damage to the last
/// run's records (a cut or deleted segment) is found like damage to fenced runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealRecord {
    pub claim_seq: u64,
    pub token: u64,
    pub fence: Fence,
}

impl Record for SealRecord {
    const KIND: Kind = Kind::Seal;
}
