//! Running an execution: create or claim it, record checkpoints, finish it. A `Runner`
//! holds the lease for as long as it lives and renews it in the background.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::ids::{self, now_us};
use crate::journal::record::{self, ByteBuf, Digest, Record};
use crate::journal::types::*;
use crate::journal::{Journal, Scope};
use crate::lease;
use crate::store::layout;
use crate::store::Store;
use crate::suspend::{self, Facts, State};

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

/// Stores a value inline when small, else as a blob.
pub async fn store_value(store: &Store, raw: RawValue) -> Result<Value> {
    let body = if raw.bytes.len() <= layout::INLINE_LIMIT {
        Body::Inline(ByteBuf(raw.bytes.to_vec()))
    } else {
        let size = raw.bytes.len() as u64;
        Body::Blob {
            hash: Digest(store.put_blob(raw.bytes).await?),
            size,
        }
    };
    Ok(Value {
        serializer: raw.serializer,
        body,
    })
}

/// Reads a stored value back (verifying blobs against their hash).
pub async fn load_value(
    store: &Store,
    value: &Value,
    exec_id: &str,
    checkpoint: Option<&str>,
) -> Result<RawValue> {
    let bytes = match &value.body {
        Body::Inline(b) => Bytes::from(b.0.clone()),
        Body::Blob { hash, .. } => store.get_blob(&hash.0, Some(exec_id), checkpoint).await?,
        // Only checkpoint outputs are deltas, and they are read through `delta::resolve`.
        Body::Delta { .. } => {
            return Err(Error::Corrupt {
                key: layout::exec_prefix(exec_id),
                exec_id: Some(exec_id.to_string()),
                checkpoint: checkpoint.map(str::to_string),
                reason: "a delta where only a whole value may be".into(),
            })
        }
    };
    Ok(RawValue {
        serializer: value.serializer.clone(),
        bytes,
    })
}

fn encode<R: Record>(exec_id: &str, what: &str, rec: &R) -> Result<Bytes> {
    record::encode(rec)
        .map(Bytes::from)
        .map_err(|e| Error::Encode {
            exec_id: exec_id.to_string(),
            call_id: what.to_string(),
            reason: e.to_string(),
        })
}

/// The state after `event` given the journal, or the error a user should see.
fn check(journal: &Journal, event: &Event) -> Result<State> {
    let state = journal.state()?;
    let facts = Facts {
        lease_lapsed: journal.lease_lapsed(now_us()),
    };
    suspend::transition(&state, journal.next_seq(), event, facts).map_err(|e| match e {
        suspend::TransitionError::LeaseLive { .. } => Error::LeaseHeld {
            exec_id: journal.exec_id.clone(),
            holder: journal
                .current_claim()
                .map(|(_, _, c)| c.holder.to_string())
                .unwrap_or_else(|| "another process".into()),
        },
        other => Error::Transition {
            exec_id: journal.exec_id.clone(),
            source: other,
        },
    })
}

/// Appends `make(journal)` as the next state event, re-reading and re-checking after every
/// lost race, until it is written or refused.
async fn append_event(
    store: &Store,
    exec_id: &str,
    make: impl FnMut(&Journal) -> Result<Event>,
) -> Result<(u64, Journal)> {
    append_event_in(store, exec_id, Scope::States, make).await
}

/// [`append_event`] reading `scope` of the journal; the returned journal includes the
/// event that was written.
async fn append_event_in(
    store: &Store,
    exec_id: &str,
    scope: Scope,
    mut make: impl FnMut(&Journal) -> Result<Event>,
) -> Result<(u64, Journal)> {
    for _ in 0..MAX_RACES {
        let mut journal = Journal::load(store, exec_id, scope).await?;
        let event = make(&journal)?;
        check(&journal, &event)?;
        let seq = journal.next_seq();
        let rec = StateRecord {
            seq,
            at_us: now_us(),
            event,
        };
        if store
            .put_create(
                &layout::state_key(exec_id, seq),
                encode(exec_id, "state", &rec)?,
            )
            .await?
        {
            journal.states.push(rec);
            return Ok((seq, journal));
        }
    }
    Err(Error::Contention {
        exec_id: exec_id.to_string(),
        attempts: MAX_RACES,
    })
}

/// Cancels an execution: a running one stops at its next checkpoint boundary.
pub async fn cancel(store: &Store, exec_id: &str, reason: &str) -> Result<()> {
    append_event(store, exec_id, |_| {
        Ok(Event::Cancelled {
            reason: reason.to_string(),
        })
    })
    .await
    .map(|_| ())
}

/// Answers (or aborts) a pending wait. An abort also cancels the execution. The answer is
/// create-only: of two racing answers exactly one is kept, the other gets `WaitAnswered`.
pub async fn answer(
    store: &Store,
    exec_id: &str,
    name: &str,
    value_json: Option<String>,
    aborted: bool,
) -> Result<()> {
    let journal = Journal::load(store, exec_id, Scope::States).await?;
    let pending: Vec<String> = journal
        .pending_waits()
        .iter()
        .map(|w| w.name.clone())
        .collect();
    if journal.answers.contains_key(name) {
        return Err(Error::WaitAnswered {
            exec_id: exec_id.to_string(),
            name: name.to_string(),
        });
    }
    if !journal.waits.contains_key(name) {
        return Err(Error::WaitNotFound {
            exec_id: exec_id.to_string(),
            name: name.to_string(),
            pending,
        });
    }
    let state = journal.state()?;
    if !matches!(state, State::Running { .. } | State::Waiting) {
        return Err(Error::Transition {
            exec_id: exec_id.to_string(),
            source: suspend::TransitionError::Illegal {
                state: state.name(),
                event: "given input",
            },
        });
    }
    let rec = AnswerRecord {
        name: name.to_string(),
        value_json: if aborted { None } else { value_json },
        aborted,
        at_us: now_us(),
        by: lease::this_holder(),
    };
    let key = layout::answer_key(exec_id, name);
    if !store.put_create(&key, encode(exec_id, name, &rec)?).await? {
        return Err(Error::WaitAnswered {
            exec_id: exec_id.to_string(),
            name: name.to_string(),
        });
    }
    if aborted {
        cancel(store, exec_id, &format!("wait {name} was aborted")).await?;
    }
    Ok(())
}

/// What an execution was started with (entry point, arguments): one read of its first
/// state event, which never changes.
pub async fn start_info(store: &Store, exec_id: &str) -> Result<StartInfo> {
    ids::validate_exec_id(exec_id)?;
    let key = layout::state_key(exec_id, 0);
    let bytes = store
        .get(&key)
        .await?
        .ok_or_else(|| Error::ExecutionNotFound {
            exec_id: exec_id.to_string(),
            store: store.url().to_string(),
        })?;
    let rec: StateRecord = crate::journal::decode_at(&key, exec_id, &bytes)?;
    match rec.event {
        Event::Started { start, .. } => Ok(*start),
        _ => Err(Error::Corrupt {
            key,
            exec_id: Some(exec_id.to_string()),
            checkpoint: None,
            reason: "the first state event is not the start of the execution".into(),
        }),
    }
}

/// The flow's return value of a completed execution. The whole journal is read and checked
/// (as `executions get` does): no result is handed out of an execution whose records are
/// damaged.
pub async fn result(store: &Store, exec_id: &str) -> Result<Option<RawValue>> {
    let journal = Journal::load(store, exec_id, Scope::Full).await?;
    let value = journal.states.iter().rev().find_map(|s| match &s.event {
        Event::Completed { result, .. } => Some(result.clone()),
        _ => None,
    });
    match value {
        Some(v) => Ok(Some(load_value(store, &v, exec_id, None).await?)),
        None => Ok(None),
    }
}

/// Why a runner may not go on.
#[derive(Debug, Clone)]
enum Lost {
    Cancelled(String),
    TakenOver(String),
}

impl Lost {
    fn from_event(event: &Event) -> Lost {
        match event {
            Event::Cancelled { reason } => Lost::Cancelled(reason.clone()),
            other => Lost::TakenOver(
                other
                    .claim()
                    .map(|c| c.holder.to_string())
                    .unwrap_or_else(|| "another process".into()),
            ),
        }
    }

    fn error(&self, exec_id: &str) -> Error {
        match self {
            Lost::Cancelled(reason) => Error::Cancelled {
                exec_id: exec_id.to_string(),
                reason: reason.clone(),
            },
            Lost::TakenOver(by) => Error::LeaseLost {
                exec_id: exec_id.to_string(),
                by: by.clone(),
            },
        }
    }
}

struct Shared {
    store: Arc<Store>,
    exec_id: String,
    claim_seq: u64,
    token: u64,
    ttl_ms: u64,
    /// Set when another process appended a state event (cancel, takeover).
    lost: Mutex<Option<Lost>>,
    /// When the heartbeat last saw no foreign state event (µs since the epoch).
    confirmed_us: std::sync::atomic::AtomicU64,
    stopped: AtomicBool,
    stop: Notify,
}

/// The holder of an execution's lease, for as long as it runs the flow.
pub struct Runner {
    shared: Arc<Shared>,
    journal: Journal,
    next_seq: Mutex<u64>,
    meta_n: AtomicU32,
    log_n: AtomicU32,
    /// The last output of each checkpoint name: the base of the next one's delta.
    bases: Mutex<HashMap<String, crate::delta::Base>>,
    /// Rebuilt delta values by digest.
    resolved: tokio::sync::Mutex<HashMap<[u8; 32], Bytes>>,
    /// Calls recorded by this run: a second record of one call is a bug, refused.
    recorded: Mutex<std::collections::HashSet<String>>,
    /// Local stores: the append-only file of this run's checkpoint records.
    segment: Mutex<Option<std::fs::File>>,
    /// Failed attempts per call, from the journal and from this run.
    failures: Mutex<HashMap<String, Vec<Attempt>>>,
    /// What this run committed (segment bytes, record keys): sealed when it ends.
    committed: Mutex<Fence>,
}

impl Runner {
    /// Creates a new execution and holds its lease.
    pub async fn start(store: Arc<Store>, start: StartInfo, ttl_ms: u64) -> Result<Runner> {
        let exec_id = ids::new_exec_id();
        let lease = lease::new_claim(ttl_ms);
        let token = lease.token;
        let rec = StateRecord {
            seq: 0,
            at_us: now_us(),
            event: Event::Started {
                start: Box::new(start),
                lease,
            },
        };
        let created = store
            .put_create(
                &layout::state_key(&exec_id, 0),
                encode(&exec_id, "state", &rec)?,
            )
            .await;
        // A start that failed (a full disk) leaves no half-made execution behind.
        let created =
            created.inspect_err(|_| store.discard_local(&layout::exec_prefix(&exec_id)))?;
        if !created {
            return Err(Error::Contention {
                exec_id,
                attempts: 1,
            });
        }
        let journal = Journal {
            exec_id: exec_id.clone(),
            states: vec![rec],
            ..Default::default()
        };
        Ok(Self::new(store, journal, 0, token, ttl_ms))
    }

    /// Takes over an existing execution to run it again from the top.
    pub async fn claim(
        store: Arc<Store>,
        exec_id: &str,
        intent: Intent,
        ttl_ms: u64,
    ) -> Result<Runner> {
        let lease = lease::new_claim(ttl_ms);
        let token = lease.token;
        // One listing and one batch of reads: the journal read to check the claim is the
        // one the run resumes from.
        let (seq, journal) = append_event_in(&store, exec_id, Scope::Full, |journal| {
            let pending: Vec<String> = journal
                .pending_waits()
                .iter()
                .map(|w| w.name.clone())
                .collect();
            // A waiting execution (suspended, or whose runner died while it polled) moves on
            // by input + resume, never by retry.
            let waiting = matches!(journal.state()?, State::Waiting | State::Running { .. });
            if !pending.is_empty() && waiting {
                return Err(Error::WaitsPending {
                    exec_id: exec_id.to_string(),
                    names: pending,
                    resume_hint: true,
                });
            }
            // The claim fences the runs before it: what they wrote after this point
            // never counts, so a stalled runner that wakes up cannot add to the execution.
            Ok(Event::Claimed {
                resume: intent == Intent::Resume,
                lease: lease.clone(),
                fence: journal.fence_for_next_claim(),
            })
        })
        .await?;
        Ok(Self::new(store, journal, seq, token, ttl_ms))
    }

    fn new(store: Arc<Store>, journal: Journal, claim_seq: u64, token: u64, ttl_ms: u64) -> Runner {
        let failures = journal
            .failed_attempts
            .iter()
            .map(|(call, recs)| {
                (
                    call.clone(),
                    recs.iter().map(|r| r.attempt.clone()).collect(),
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            store,
            exec_id: journal.exec_id.clone(),
            claim_seq,
            token,
            ttl_ms,
            lost: Mutex::new(None),
            confirmed_us: std::sync::atomic::AtomicU64::new(now_us()),
            stopped: AtomicBool::new(false),
            stop: Notify::new(),
        });
        Runner {
            next_seq: Mutex::new(journal.next_seq()),
            shared,
            journal,
            meta_n: AtomicU32::new(0),
            log_n: AtomicU32::new(0),
            segment: Mutex::new(None),
            recorded: Mutex::new(Default::default()),
            bases: Mutex::new(HashMap::new()),
            resolved: tokio::sync::Mutex::new(HashMap::new()),
            failures: Mutex::new(failures),
            committed: Mutex::new(Fence::default()),
        }
    }

    /// Starts renewing the lease in the background; stops when the runner finishes or drops.
    pub fn spawn_heartbeat(&self, rt: &tokio::runtime::Runtime) {
        let shared = self.shared.clone();
        let period = self.heartbeat_period();
        let first_unknown_seq = *self.next_seq.lock();
        rt.spawn(async move {
            let mut next_seq = first_unknown_seq;
            loop {
                tokio::select! {
                    _ = shared.stop.notified() => return,
                    _ = tokio::time::sleep(period) => {}
                }
                if shared.stopped.load(Ordering::Acquire) {
                    return;
                }
                // Someone else appended a state event: this runner was cancelled or replaced.
                let key = layout::state_key(&shared.exec_id, next_seq);
                if let Ok(Some(bytes)) = shared.store.get(&key).await {
                    match record::decode::<StateRecord>(&bytes) {
                        Ok(rec) if is_own(&rec.event, shared.token) => {
                            next_seq += 1;
                            continue;
                        }
                        Ok(rec) => {
                            *shared.lost.lock() = Some(Lost::from_event(&rec.event));
                            return;
                        }
                        Err(_) => {}
                    }
                }
                let now = now_us();
                shared.confirmed_us.fetch_max(now, Ordering::AcqRel);
                let hb = Heartbeat {
                    claim_seq: shared.claim_seq,
                    token: shared.token,
                    renewed_at_us: now,
                    expires_at_us: now.saturating_add(shared.ttl_ms.saturating_mul(1000)),
                };
                if let Ok(bytes) = encode(&shared.exec_id, "lease", &hb) {
                    if let Err(e) = shared.store.put_overwrite(&layout::lease_key(&shared.exec_id, shared.claim_seq), bytes).await {
                        tracing::warn!(exec_id = %shared.exec_id, error = %e, "lease renewal failed");
                    }
                }
            }
        });
    }

    pub fn exec_id(&self) -> &str {
        &self.shared.exec_id
    }

    pub fn claim_seq(&self) -> u64 {
        self.shared.claim_seq
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.shared.store
    }

    /// The journal as it was when this runner took the lease.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Fails if another process cancelled or took over the execution, as far as the
    /// heartbeat knows (no I/O).
    pub fn check_lease(&self) -> Result<()> {
        match self.shared.lost.lock().as_ref() {
            None => Ok(()),
            Some(lost) => Err(lost.error(&self.shared.exec_id)),
        }
    }

    /// [`Runner::check_lease`] at a checkpoint boundary, made current: on a local store
    /// the next state event is looked for every time (one failed open), so a cancel or a
    /// takeover stops the flow before its next checkpoint body; on an object store it is
    /// read when the heartbeat has not confirmed the lease for longer than half a period
    /// beyond its own (the process was stalled or its requests hang), else the heartbeat's
    /// word stands (a cancel is seen within one heartbeat period, `ttl / 3`).
    pub async fn check_lease_now(&self) -> Result<()> {
        if let Some(done) = self.check_lease_quick() {
            return done;
        }
        let key = layout::state_key(&self.shared.exec_id, *self.next_seq.lock());
        let found = self.shared.store.get(&key).await?;
        self.note_next_state(&key, found)
    }

    /// [`Runner::check_lease_now`] when it needs no request (a local store, or a lease the
    /// heartbeat confirmed recently); `None` when the store must be asked.
    pub fn check_lease_quick(&self) -> Option<Result<()>> {
        if let Err(e) = self.check_lease() {
            return Some(Err(e));
        }
        let key = layout::state_key(&self.shared.exec_id, *self.next_seq.lock());
        if let Some(read) = self.shared.store.read_local_now(&key) {
            return Some(read.and_then(|found| self.note_next_state(&key, found)));
        }
        let period_us = self.heartbeat_period().as_micros() as u64;
        let confirmed = self.shared.confirmed_us.load(Ordering::Acquire);
        (now_us().saturating_sub(confirmed) <= period_us + period_us / 2).then_some(Ok(()))
    }

    /// What the state event after this runner's own ones says: another process's event
    /// (a cancel, a takeover) ends this run.
    fn note_next_state(&self, key: &str, found: Option<Bytes>) -> Result<()> {
        match found {
            Some(bytes) => {
                let rec: StateRecord =
                    crate::journal::decode_at(key, &self.shared.exec_id, &bytes)?;
                if !is_own(&rec.event, self.shared.token) {
                    *self.shared.lost.lock() = Some(Lost::from_event(&rec.event));
                }
            }
            None => {
                self.shared
                    .confirmed_us
                    .fetch_max(now_us(), Ordering::AcqRel);
            }
        }
        self.check_lease()
    }

    fn heartbeat_period(&self) -> Duration {
        Duration::from_millis((self.shared.ttl_ms / 3).max(50))
    }

    /// How many attempts of `call_id` failed before (in this or earlier runs).
    pub fn failed_attempts(&self, call_id: &str) -> u32 {
        self.failures
            .lock()
            .get(call_id)
            .map(|v| v.len() as u32)
            .unwrap_or(0)
    }

    /// Records a failed attempt of a checkpoint call; returns its attempt number (1-based).
    #[allow(clippy::too_many_arguments)]
    pub async fn record_failed_attempt(
        &self,
        call_id: &str,
        name: &str,
        checkpoint_type: Option<String>,
        input_digest: Option<[u8; 32]>,
        started_us: u64,
        ended_us: u64,
        failure: Failure,
    ) -> Result<u32> {
        ids::validate_call_id(call_id)?;
        self.check_lease()?;
        let number = self.failed_attempts(call_id) + 1;
        let attempt = Attempt {
            number,
            claim_seq: self.shared.claim_seq,
            started_us,
            ended_us,
            failure: Some(failure),
        };
        let rec = FailedAttemptRecord {
            call_id: call_id.to_string(),
            name: name.to_string(),
            checkpoint_type,
            input_digest: input_digest.map(Digest),
            attempt: attempt.clone(),
        };
        let key = layout::failed_attempt_key(&self.shared.exec_id, call_id, number);
        let bytes = encode(&self.shared.exec_id, call_id, &rec)?;
        if !self.shared.store.put_create(&key, bytes).await? {
            return Err(self.lost_race());
        }
        self.failures
            .lock()
            .entry(call_id.to_string())
            .or_default()
            .push(attempt);
        Ok(number)
    }

    /// Records a finished checkpoint call. One create-only put for outputs up to
    /// `layout::INLINE_LIMIT` bytes; a blob put first for larger ones.
    pub async fn record_checkpoint(&self, done: FinishedCall) -> Result<()> {
        ids::validate_call_id(&done.call_id)?;
        // A local store was just looked at before the body ran (and a late append is
        // fenced anyway); an object store is asked only if the heartbeat fell behind.
        if self.shared.store.local_dir().is_some() {
            self.check_lease()?;
        } else {
            self.check_lease_now().await?;
        }
        let (delta, base) = {
            let bases = self.bases.lock();
            crate::delta::encode(bases.get(&done.name), &done.call_id, &done.output.bytes)
        };
        let output = match delta {
            Some(body) => Value {
                serializer: done.output.serializer.clone(),
                body,
            },
            None => store_value(&self.shared.store, done.output).await?,
        };
        let mut attempts = self
            .failures
            .lock()
            .get(&done.call_id)
            .cloned()
            .unwrap_or_default();
        attempts.push(Attempt {
            number: attempts.len() as u32 + 1,
            claim_seq: self.shared.claim_seq,
            started_us: done.started_us,
            ended_us: done.ended_us,
            failure: None,
        });
        let revision = self
            .journal
            .checkpoints
            .get(&done.call_id)
            .map(|(r, _)| r + 1)
            .unwrap_or(0);
        let rec = CheckpointRecord {
            call_id: done.call_id,
            name: done.name,
            explicit_id: done.explicit_id,
            checkpoint_type: done.checkpoint_type,
            input_digest: done.input_digest.map(Digest),
            output,
            attempts,
            metadata_json: done.metadata_json,
        };
        let bytes = encode(&self.shared.exec_id, &rec.call_id, &rec)?;
        if !self.recorded.lock().insert(rec.call_id.clone()) {
            return Err(Error::RecordedTwice {
                exec_id: self.shared.exec_id.clone(),
                call_id: rec.call_id.clone(),
            });
        }
        let name = rec.name;
        if let Some(dir) = self.shared.store.local_dir() {
            self.append_segment(dir, &bytes)?;
        } else {
            self.put_checkpoint(&rec.call_id, revision, bytes).await?;
        }
        // Only a stored value may be the base of the next delta.
        self.bases.lock().insert(name, base);
        Ok(())
    }

    /// Object stores: the record of a call under the first free revision from `revision`.
    /// A taken key this run's journal does not count was written by a runner that a claim
    /// fenced (it woke up after being replaced): it is skipped, never overwritten.
    async fn put_checkpoint(&self, call_id: &str, revision: u32, bytes: Bytes) -> Result<()> {
        for rev in revision..revision.saturating_add(MAX_RACES) {
            let key = layout::checkpoint_key(&self.shared.exec_id, call_id, rev);
            if self.shared.store.put_create(&key, bytes.clone()).await? {
                let rel = layout::exec_relative(&self.shared.exec_id, &key).to_string();
                self.committed.lock().records.push(rel);
                return Ok(());
            }
            self.check_lease_now().await?;
        }
        Err(self.lost_race())
    }

    /// The stored output of `call_id` (rebuilt if it is a delta) and its input digest, from
    /// the journal loaded when this runner took the lease. The value becomes the base of
    /// the next delta of its checkpoint.
    pub async fn lookup_output(
        &self,
        call_id: &str,
    ) -> Result<Option<(RawValue, Option<[u8; 32]>)>> {
        let Some((_, rec)) = self.journal.checkpoints.get(call_id) else {
            return Ok(None);
        };
        let bytes = {
            let mut cache = self.resolved.lock().await;
            crate::delta::resolve(
                &self.shared.store,
                &self.journal,
                call_id,
                &rec.output,
                &mut cache,
            )
            .await?
        };
        let depth = match &rec.output.body {
            Body::Delta { depth, .. } => *depth,
            _ => 0,
        };
        if bytes.len() > layout::INLINE_LIMIT {
            let base = crate::delta::Base::full(call_id, bytes.clone(), depth);
            self.bases.lock().insert(rec.name.clone(), base);
        }
        Ok(Some((
            RawValue {
                serializer: rec.output.serializer.clone(),
                bytes,
            },
            rec.input_digest.map(|d| d.0),
        )))
    }

    /// Local stores: appends a checkpoint record to this run's segment, one `write` on an
    /// open file instead of a file per record. Only this run (the lease holder) writes the
    /// segment; a crash mid-append leaves a short last frame, which readers drop.
    fn append_segment(&self, dir: &std::path::Path, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        let key = layout::segment_key(&self.shared.exec_id, self.shared.claim_seq);
        let io = |e: std::io::Error| -> Error {
            crate::store::StoreError::LocalIo {
                op: "append",
                key: key.clone(),
                source: e,
            }
            .into()
        };
        let mut slot = self.segment.lock();
        if slot.is_none() {
            let path = dir.join(&key);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io)?;
            if self.shared.store.fsync() {
                if let Some(parent) = path.parent() {
                    std::fs::File::open(parent)
                        .and_then(|d| d.sync_all())
                        .map_err(io)?;
                }
            }
            *slot = Some(file);
        }
        if let Some(file) = slot.as_mut() {
            self.shared.store.count_append();
            file.write_all(bytes).map_err(io)?;
            if self.shared.store.fsync() {
                file.sync_data().map_err(io)?;
            }
            let mut committed = self.committed.lock();
            let run = self.shared.claim_seq;
            match committed.segments.first_mut() {
                Some((_, len)) => *len += bytes.len() as u64,
                None => committed.segments.push((run, bytes.len() as u64)),
            }
        }
        Ok(())
    }

    /// Records that a finished call was made again with different inputs.
    pub async fn record_divergence(
        &self,
        call_id: &str,
        stored: Option<[u8; 32]>,
        new: Option<[u8; 32]>,
        policy: &str,
    ) -> Result<()> {
        ids::validate_call_id(call_id)?;
        let rec = DivergenceRecord {
            call_id: call_id.to_string(),
            claim_seq: self.shared.claim_seq,
            at_us: now_us(),
            stored_digest: stored.map(Digest),
            new_digest: new.map(Digest),
            policy: policy.to_string(),
        };
        let key = layout::divergence_key(&self.shared.exec_id, self.shared.claim_seq, call_id);
        // A second divergence of the same call in the same run (a flow retry) is already recorded.
        self.shared
            .store
            .put_create(&key, encode(&self.shared.exec_id, call_id, &rec)?)
            .await?;
        Ok(())
    }

    /// Records that the flow reached wait `name` (again, on a resume: then nothing is
    /// written) and returns its answer if it has one.
    pub async fn open_wait(&self, wait: WaitRecord) -> Result<Option<AnswerRecord>> {
        ids::validate_call_id(&wait.name)?;
        self.check_lease()?;
        if let Some(answer) = self.journal.answers.get(&wait.name) {
            return Ok(Some(answer.clone()));
        }
        if !self.journal.waits.contains_key(&wait.name) {
            let key = layout::wait_key(&self.shared.exec_id, &wait.name);
            self.shared
                .store
                .put_create(&key, encode(&self.shared.exec_id, &wait.name, &wait)?)
                .await?;
        }
        self.poll_answer(&wait.name).await
    }

    /// The answer to wait `name`, if someone gave it.
    pub async fn poll_answer(&self, name: &str) -> Result<Option<AnswerRecord>> {
        ids::validate_call_id(name)?;
        let key = layout::answer_key(&self.shared.exec_id, name);
        match self.shared.store.get(&key).await? {
            None => Ok(None),
            Some(bytes) => crate::journal::decode_at(&key, &self.shared.exec_id, &bytes).map(Some),
        }
    }

    /// Stores a batch of captured output (JSON lines).
    pub async fn write_logs(&self, entries_jsonl: String) -> Result<()> {
        let n = self.log_n.fetch_add(1, Ordering::Relaxed);
        let rec = LogRecord {
            claim_seq: self.shared.claim_seq,
            n,
            entries_jsonl,
        };
        let key = layout::log_key(&self.shared.exec_id, self.shared.claim_seq, n);
        self.shared
            .store
            .put_create(&key, encode(&self.shared.exec_id, "log", &rec)?)
            .await?;
        Ok(())
    }

    /// `kitaru.log()` on the flow body: one record per call.
    pub async fn log_metadata(&self, json: String) -> Result<()> {
        self.check_lease()?;
        let n = self.meta_n.fetch_add(1, Ordering::Relaxed);
        let rec = MetaRecord {
            claim_seq: self.shared.claim_seq,
            n,
            at_us: now_us(),
            json,
        };
        let key = layout::meta_key(&self.shared.exec_id, self.shared.claim_seq, n);
        self.shared
            .store
            .put_create(&key, encode(&self.shared.exec_id, "meta", &rec)?)
            .await?;
        Ok(())
    }

    fn lost_race(&self) -> Error {
        match self.shared.lost.lock().as_ref() {
            Some(lost) => lost.error(&self.shared.exec_id),
            None => Error::LeaseLost {
                exec_id: self.shared.exec_id.clone(),
                by: "another process (a record this run was about to write already exists)".into(),
            },
        }
    }

    /// Records what this run committed, just before the event that ends it: readers then
    /// find a cut or deleted segment (or record) of the last run, not just of fenced ones.
    async fn seal(&self) -> Result<()> {
        let fence = self.committed.lock().clone();
        if fence.segments.is_empty() && fence.records.is_empty() {
            return Ok(());
        }
        let rec = SealRecord {
            claim_seq: self.shared.claim_seq,
            token: self.shared.token,
            fence,
        };
        let key = layout::seal_key(&self.shared.exec_id, self.shared.claim_seq);
        // A run ends once; a second seal of it (a failed end event retried) keeps the first.
        self.shared
            .store
            .put_create(&key, encode(&self.shared.exec_id, "seal", &rec)?)
            .await?;
        Ok(())
    }

    /// A seal that cannot be written (a full disk) must not keep the run from ending.
    async fn seal_or_warn(&self) {
        if let Err(e) = self.seal().await {
            tracing::warn!(exec_id = %self.shared.exec_id, error = %e, "could not seal the run");
        }
    }

    /// Appends a holder-only event (completion, failure, suspension).
    async fn append_own(&self, event: Event) -> Result<()> {
        let seq = *self.next_seq.lock();
        let rec = StateRecord {
            seq,
            at_us: now_us(),
            event,
        };
        let key = layout::state_key(&self.shared.exec_id, seq);
        if self
            .shared
            .store
            .put_create(&key, encode(&self.shared.exec_id, "state", &rec)?)
            .await?
        {
            *self.next_seq.lock() = seq + 1;
            return Ok(());
        }
        // Someone appended first (a cancel or a takeover): say which.
        let journal =
            Journal::load(&self.shared.store, &self.shared.exec_id, Scope::States).await?;
        let theirs = journal
            .states
            .iter()
            .skip(seq as usize)
            .find(|s| !is_own(&s.event, self.shared.token));
        Err(match theirs {
            Some(s) => Lost::from_event(&s.event).error(&self.shared.exec_id),
            None => self.lost_race(),
        })
    }

    pub async fn complete(&self, result: RawValue) -> Result<()> {
        let result = store_value(&self.shared.store, result).await?;
        self.seal_or_warn().await;
        let r = self
            .append_own(Event::Completed {
                token: self.shared.token,
                result,
            })
            .await;
        self.stop_heartbeat().await;
        r
    }

    pub async fn fail(&self, failure: Failure) -> Result<()> {
        self.seal_or_warn().await;
        let r = self
            .append_own(Event::Failed {
                token: self.shared.token,
                failure,
            })
            .await;
        self.stop_heartbeat().await;
        r
    }

    pub async fn suspend(&self, reason: String) -> Result<()> {
        self.seal_or_warn().await;
        let r = self
            .append_own(Event::Suspended {
                token: self.shared.token,
                reason,
            })
            .await;
        self.stop_heartbeat().await;
        r
    }

    pub async fn flow_attempt_failed(&self, attempt: u32, failure: Failure) -> Result<()> {
        self.append_own(Event::FlowAttemptFailed {
            token: self.shared.token,
            attempt,
            failure,
        })
        .await
    }

    /// Stops renewing the lease and removes the heartbeat key (the state event that ended
    /// the run is what others read).
    pub async fn stop_heartbeat(&self) {
        if !self.shared.stopped.swap(true, Ordering::AcqRel) {
            self.shared.stop.notify_one();
            let _ = self
                .shared
                .store
                .delete(&layout::lease_key(
                    &self.shared.exec_id,
                    self.shared.claim_seq,
                ))
                .await;
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        self.shared.stop.notify_one();
    }
}

fn is_own(event: &Event, token: u64) -> bool {
    match event {
        Event::Completed { token: t, .. }
        | Event::Failed { token: t, .. }
        | Event::Suspended { token: t, .. }
        | Event::FlowAttemptFailed { token: t, .. } => *t == token,
        _ => false,
    }
}
