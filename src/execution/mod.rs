//! Running an execution: create or claim it, record checkpoints, finish it.
//!
//! - `ops.rs`: what any process may do to an execution without holding it (store and load
//!   values, cancel, answer a wait, read how it started and its result), and the
//!   re-read-and-retry append of a state event that claims use too.
//! - `runner.rs`: `Runner`, the lease holder while a process runs the flow: start or claim,
//!   seal what the run committed, and the event that ends it.
//! - `calls.rs`: which stored result answers a call (ids, matching by inputs, divergence
//!   under the flow's policy, passes of the flow body); pure bookkeeping, no I/O.
//! - `recording.rs`: what a running flow records through its `Runner` (checkpoint calls,
//!   failed attempts, divergences, waits, logs, metadata) and the lookup of stored outputs.
//! - `heartbeat.rs`: the lease a `Runner` holds: its renewal loop and the checks that
//!   notice, at each checkpoint boundary, that another process cancelled or took over.
//!
//! Arrows point down the list: `runner` and `recording` use `ops` and `heartbeat`;
//! `heartbeat` and `ops` use only the store, the journal and the state machine.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::journal::record::{self, Record};
use crate::store::Store;

mod calls;
mod heartbeat;
mod ops;
mod recording;
mod runner;

pub use calls::{CacheProbe, Cached, CallRequest, Decision, Divergence, Notice, Policy};
pub use ops::{
    answer, cancel, checkpoint_output, checkpoint_outputs, load_value, result, start_args,
    start_info, store_value,
};
pub use runner::Runner;

/// How many times a writer re-reads and retries after losing a race for a sequence number.
const MAX_RACES: u32 = 16;

/// Why a process takes over an existing execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// A failed execution, or one whose runner died.
    Retry,
    /// A waiting execution whose waits were answered.
    Resume,
}

impl std::str::FromStr for Intent {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "retry" => Ok(Intent::Retry),
            "resume" => Ok(Intent::Resume),
            other => Err(Error::InvalidName {
                what: "claim intent",
                value: other.to_string(),
                rule: "'retry' or 'resume'",
            }),
        }
    }
}

/// What a caller hands over to store a value: the serializer tag and the bytes.
#[derive(Debug, Clone)]
pub struct RawValue {
    pub serializer: String,
    pub bytes: Bytes,
}

/// A checkpoint call that finished: what `Runner::record_checkpoint` stores.
#[derive(Debug, Clone)]
pub struct FinishedCall {
    pub call_id: String,
    pub name: String,
    pub explicit_id: bool,
    pub checkpoint_type: Option<String>,
    pub input_digest: Option<[u8; 32]>,
    pub output: RawValue,
    pub started_us: u64,
    pub ended_us: u64,
    /// `kitaru.log()` calls made inside the checkpoint, merged, as JSON.
    pub metadata_json: Option<String>,
}

/// A failed attempt of a checkpoint call: what `Runner::record_failed_attempt` stores.
#[derive(Debug, Clone)]
pub struct FailedCall {
    pub call_id: String,
    pub name: String,
    pub checkpoint_type: Option<String>,
    pub input_digest: Option<[u8; 32]>,
    pub started_us: u64,
    pub ended_us: u64,
    pub failure: crate::journal::types::Failure,
}

/// What a new execution starts with: `Runner::start_new` stores the arguments.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub flow_name: String,
    pub entry: crate::journal::types::EntryPoint,
    pub args: RawValue,
    pub kitaru_version: String,
    pub options_json: String,
}

/// A wait the flow reached: what `Runner::open_wait` records (the core adds when, and by
/// which run).
#[derive(Debug, Clone)]
pub struct WaitRequest {
    pub name: String,
    pub question: Option<String>,
    pub schema_json: Option<String>,
    pub schema_type: Option<String>,
    pub metadata_json: String,
}

/// `rec` as stored in `store` (compressed where the store's layout allows it).
fn encode<R: Record>(store: &Store, exec_id: &str, what: &str, rec: &R) -> Result<Bytes> {
    record::encode_with(rec, store.compresses())
        .map(Bytes::from)
        .map_err(|e| Error::Encode {
            exec_id: exec_id.to_string(),
            call_id: what.to_string(),
            reason: e.to_string(),
        })
}
