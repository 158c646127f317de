//! `Runner`: the holder of an execution's lease while a process runs its flow. It starts or
//! claims the execution, and ends the run: the seal of what it committed, then the state
//! event (completed, failed, suspended).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use super::calls::CallBook;
use super::heartbeat::{is_own, HeldLease, Lost};
use super::ops::{append_event_in, store_value};
use super::{encode, Intent, RawValue, StartRequest};
use crate::error::{Error, Result};
use crate::ids::{self, now_us};
use crate::journal::types::*;
use crate::journal::{Journal, Scope};
use crate::lease;
use crate::store::{layout, Segment, Store};
use crate::suspend::State;

/// The holder of an execution's lease, for as long as it runs the flow.
pub struct Runner {
    pub(super) lease: Arc<HeldLease>,
    pub(super) journal: Journal,
    pub(super) meta_n: AtomicU32,
    pub(super) log_n: AtomicU32,
    /// The last output of each checkpoint name: the base of the next one's delta.
    pub(super) bases: Mutex<HashMap<String, crate::delta::Base>>,
    /// Rebuilt delta values by digest.
    pub(super) resolved: tokio::sync::Mutex<HashMap<[u8; 32], Bytes>>,
    /// Calls recorded by this run: a second record of one call is a bug, refused.
    pub(super) recorded: Mutex<HashSet<String>>,
    /// Which stored result answers each call of the flow body (`calls.rs`).
    pub(super) calls: Mutex<CallBook>,
    /// Local stores: the append-only file of this run's checkpoint records.
    pub(super) segment: Option<Mutex<Segment>>,
    /// Failed attempts per call, from the journal and from this run.
    pub(super) failures: Mutex<HashMap<String, Vec<Attempt>>>,
    /// What this run committed (segment bytes, record keys): sealed when it ends.
    pub(super) committed: Mutex<Fence>,
    /// The flow's name and whether the execution's cache is on (its start options).
    pub(super) cache_flow: (String, bool),
    /// Calls the cache had no entry for: their key, to leave an entry once they finish.
    pub(super) cache_misses: Mutex<HashMap<String, crate::cache::KeyParts>>,
    /// Local stores: the flow's cache entries as read so far, and this run's appends.
    pub(super) cache_log: Mutex<Option<crate::cache::LocalLog>>,
    /// The executions this run's cached results came from (journals loaded once).
    pub(super) cache_sources: tokio::sync::Mutex<crate::cache::Sources>,
    /// Object stores: cache entries being written in the background (awaited at the end).
    pub(super) cache_writes: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Runner {
    /// Stores the arguments of a new execution, then creates it ([`Runner::start`]).
    pub async fn start_new(store: Arc<Store>, req: StartRequest, ttl_ms: u64) -> Result<Runner> {
        let args = store_value(&store, req.args).await?;
        let start = StartInfo {
            flow_name: req.flow_name,
            entry: req.entry,
            args,
            kitaru_version: req.kitaru_version,
            options_json: req.options_json,
        };
        Runner::start(store, start, ttl_ms).await
    }

    /// Creates a new execution and holds its lease.
    pub async fn start(store: Arc<Store>, start: StartInfo, ttl_ms: u64) -> Result<Runner> {
        let exec_id = ids::new_exec_id();
        let lease = lease::new_claim(ttl_ms);
        let token = lease.token;
        // Index entries first: an entry with no execution behind it is skipped by
        // listings, an execution no listing finds would be lost to them.
        crate::index::note_start(&store, &exec_id, &start.flow_name).await?;
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
                encode(&store, &exec_id, "state", &rec)?,
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
        let exec_id = journal.exec_id.clone();
        let segment = store
            .segment(layout::segment_key(&exec_id, claim_seq))
            .map(Mutex::new);
        let next_seq = journal.next_seq();
        let lease = HeldLease::new(store, exec_id, claim_seq, token, ttl_ms, next_seq);
        let calls = Mutex::new(CallBook::new(&journal));
        let cache_flow = match journal.start() {
            Some(start) => (start.flow_name.clone(), cache_option(&start.options_json)),
            None => (String::new(), false),
        };
        Runner {
            lease: Arc::new(lease),
            journal,
            meta_n: AtomicU32::new(0),
            log_n: AtomicU32::new(0),
            segment,
            recorded: Mutex::new(Default::default()),
            calls,
            bases: Mutex::new(HashMap::new()),
            resolved: tokio::sync::Mutex::new(HashMap::new()),
            failures: Mutex::new(failures),
            committed: Mutex::new(Fence::default()),
            cache_flow,
            cache_misses: Mutex::new(HashMap::new()),
            cache_log: Mutex::new(None),
            cache_sources: Default::default(),
            cache_writes: Mutex::new(Vec::new()),
        }
    }

    /// Starts renewing the lease in the background; stops when the runner finishes or drops.
    pub fn spawn_heartbeat(&self, rt: &tokio::runtime::Runtime) {
        self.lease.spawn(rt);
    }

    pub fn exec_id(&self) -> &str {
        &self.lease.exec_id
    }

    pub fn claim_seq(&self) -> u64 {
        self.lease.claim_seq
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.lease.store
    }

    /// The journal as it was when this runner took the lease.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The options recorded in the execution's start event (JSON).
    pub fn start_options(&self) -> Option<&str> {
        self.journal.start().map(|s| s.options_json.as_str())
    }

    /// The metadata recorded with `call_id`'s stored result (JSON), as loaded when the
    /// lease was taken (or seeded by a replay).
    pub fn call_metadata(&self, call_id: &str) -> Option<String> {
        match self.journal.checkpoints.get(call_id) {
            Some((_, rec)) => rec.metadata_json.clone(),
            None => self.calls.lock().seed_metadata(call_id).map(str::to_string),
        }
    }

    /// The execution metadata (`kitaru.log()` on the flow body) of earlier runs, oldest
    /// first, as loaded when the lease was taken: one JSON object per record.
    pub fn execution_metadata(&self) -> impl Iterator<Item = &str> {
        self.journal.meta.iter().map(|m| m.json.as_str())
    }

    /// Fails if another process cancelled or took over the execution, as far as the
    /// heartbeat knows (no I/O).
    pub fn check_lease(&self) -> Result<()> {
        self.lease.check()
    }

    /// [`Runner::check_lease`] at a checkpoint boundary, made current: on a local store
    /// the next state event is looked for every time (one failed open), so a cancel or a
    /// takeover stops the flow before its next checkpoint body; on an object store it is
    /// read when the heartbeat has not confirmed the lease for longer than half a period
    /// beyond its own (the process was stalled or its requests hang), else the heartbeat's
    /// word stands (a cancel is seen within one heartbeat period, `ttl / 3`).
    pub async fn check_lease_now(&self) -> Result<()> {
        self.lease.check_now().await
    }

    /// [`Runner::check_lease_now`] when it needs no request (a local store, or a lease the
    /// heartbeat confirmed recently); `None` when the store must be asked.
    pub fn check_lease_quick(&self) -> Option<Result<()>> {
        self.lease.check_quick()
    }

    /// Records what this run committed, just before the event that ends it: readers then
    /// find a cut or deleted segment (or record) of the last run, not just of fenced ones.
    async fn seal(&self) -> Result<()> {
        let fence = self.committed.lock().clone();
        if fence.segments.is_empty() && fence.records.is_empty() {
            return Ok(());
        }
        let rec = SealRecord {
            claim_seq: self.lease.claim_seq,
            token: self.lease.token,
            fence,
        };
        let key = layout::seal_key(&self.lease.exec_id, self.lease.claim_seq);
        // A run ends once; a second seal of it (a failed end event retried) keeps the first.
        self.lease
            .store
            .put_create(&key, encode(&self.lease.store, &self.lease.exec_id, "seal", &rec)?)
            .await?;
        Ok(())
    }

    /// Waits for the cache entries still being written, so the next run finds them.
    async fn flush_cache_entries(&self) {
        let writes = std::mem::take(&mut *self.cache_writes.lock());
        for w in writes {
            let _ = w.await;
        }
    }

    /// A seal that cannot be written (a full disk) must not keep the run from ending.
    async fn seal_or_warn(&self) {
        if let Err(e) = self.seal().await {
            tracing::warn!(exec_id = %self.lease.exec_id, error = %e, "could not seal the run");
        }
    }

    /// Appends a holder-only event (completion, failure, suspension).
    async fn append_own(&self, event: Event) -> Result<()> {
        let seq = *self.lease.next_seq.lock();
        let rec = StateRecord {
            seq,
            at_us: now_us(),
            event,
        };
        let key = layout::state_key(&self.lease.exec_id, seq);
        let to = match &rec.event {
            Event::Completed { .. } => Some("completed"),
            Event::Failed { .. } => Some("failed"),
            Event::Suspended { .. } => Some("waiting"),
            _ => None,
        };
        if self
            .lease
            .store
            .put_create(&key, encode(&self.lease.store, &self.lease.exec_id, "state", &rec)?)
            .await?
        {
            *self.lease.next_seq.lock() = seq + 1;
            if let Some(to) = to {
                let store = &self.lease.store;
                crate::index::note_state(store, &self.lease.exec_id, Some("running"), to).await;
            }
            return Ok(());
        }
        // Someone appended first (a cancel or a takeover): say which.
        let journal = Journal::load(&self.lease.store, &self.lease.exec_id, Scope::States).await?;
        let theirs = journal
            .states
            .iter()
            .skip(seq as usize)
            .find(|s| !is_own(&s.event, self.lease.token));
        Err(match theirs {
            Some(s) => Lost::from_event(&s.event).error(&self.lease.exec_id),
            None => self.lease.lost_race(),
        })
    }

    /// Ends the run with `event`: the seal of what it committed, the event, and the end
    /// of the heartbeat (even if the event could not be written).
    async fn end(&self, event: Event) -> Result<()> {
        self.flush_cache_entries().await;
        self.seal_or_warn().await;
        let r = self.append_own(event).await;
        self.stop_heartbeat().await;
        if r.is_ok() && !self.lease.store.is_local() {
            // the next full read of the execution is then one GET (journal/pack.rs)
            let exec_id = self.exec_id();
            if let Err(e) = crate::journal::pack::write(&self.lease.store, exec_id).await {
                tracing::warn!(exec_id, error = %e, "the journal was not packed (read record by record)");
            }
        }
        r
    }

    pub async fn complete(&self, result: RawValue) -> Result<()> {
        let result = store_value(&self.lease.store, result).await?;
        let token = self.lease.token;
        self.end(Event::Completed { token, result }).await
    }

    pub async fn fail(&self, failure: Failure) -> Result<()> {
        let token = self.lease.token;
        self.end(Event::Failed { token, failure }).await
    }

    pub async fn suspend(&self, reason: String) -> Result<()> {
        let token = self.lease.token;
        self.end(Event::Suspended { token, reason }).await
    }

    pub async fn flow_attempt_failed(&self, attempt: u32, failure: Failure) -> Result<()> {
        self.append_own(Event::FlowAttemptFailed {
            token: self.lease.token,
            attempt,
            failure,
        })
        .await
    }

    /// Stops renewing the lease and removes the heartbeat key (the state event that ended
    /// the run is what others read).
    pub async fn stop_heartbeat(&self) {
        self.lease.stop().await;
    }
}

/// The `cache` start option: off unless recorded as true (executions started before the
/// cache existed never had one).
fn cache_option(options_json: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(options_json)
        .ok()
        .and_then(|v| v.get("cache")?.as_bool())
        .unwrap_or(false)
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.lease.abandon();
    }
}
