//! The lease a `Runner` holds: renewed in the background, and checked at every checkpoint
//! boundary for a state event another process appended (a cancel, a takeover).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::encode;
use crate::error::{Error, Result};
use crate::ids::now_us;
use crate::journal::types::*;
use crate::store::layout;
use crate::store::Store;

/// Why a runner may not go on.
#[derive(Debug, Clone)]
pub(super) enum Lost {
    Cancelled(String),
    TakenOver(String),
}

impl Lost {
    pub(super) fn from_event(event: &Event) -> Lost {
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

    pub(super) fn error(&self, exec_id: &str) -> Error {
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

/// Whether `event` is one the holder of claim token `token` appended itself.
pub(super) fn is_own(event: &Event, token: u64) -> bool {
    match event {
        Event::Completed { token: t, .. }
        | Event::Failed { token: t, .. }
        | Event::Suspended { token: t, .. }
        | Event::FlowAttemptFailed { token: t, .. } => *t == token,
        _ => false,
    }
}

/// The lease of one run, shared by its `Runner` and the heartbeat task.
pub(super) struct HeldLease {
    pub(super) store: Arc<Store>,
    pub(super) exec_id: String,
    pub(super) claim_seq: u64,
    pub(super) token: u64,
    ttl_ms: u64,
    /// The seq after this run's own state events: where another process's event would be.
    pub(super) next_seq: Mutex<u64>,
    /// Set when another process appended a state event (cancel, takeover).
    lost: Mutex<Option<Lost>>,
    /// When the heartbeat last saw no foreign state event (µs since the epoch).
    confirmed_us: AtomicU64,
    stopped: AtomicBool,
    stop: Notify,
}

impl HeldLease {
    pub(super) fn new(
        store: Arc<Store>,
        exec_id: String,
        claim_seq: u64,
        token: u64,
        ttl_ms: u64,
        next_seq: u64,
    ) -> HeldLease {
        HeldLease {
            store,
            exec_id,
            claim_seq,
            token,
            ttl_ms,
            next_seq: Mutex::new(next_seq),
            lost: Mutex::new(None),
            confirmed_us: AtomicU64::new(now_us()),
            stopped: AtomicBool::new(false),
            stop: Notify::new(),
        }
    }

    /// Starts renewing the lease in the background; stops when told to or dropped.
    pub(super) fn spawn(self: &Arc<Self>, rt: &tokio::runtime::Runtime) {
        let shared = self.clone();
        let period = self.period();
        rt.spawn(async move {
            loop {
                tokio::select! {
                    _ = shared.stop.notified() => return,
                    _ = tokio::time::sleep(period) => {}
                }
                if shared.stopped.load(Ordering::Acquire) {
                    return;
                }
                // Someone else appended a state event: this runner was cancelled or
                // replaced (the same look a checkpoint boundary takes; an unreadable
                // record is left to the readers that report it).
                let key = layout::state_key(&shared.exec_id, *shared.next_seq.lock());
                if let Ok(found) = shared.store.get(&key).await {
                    let _ = shared.note_next_state(&key, found);
                }
                if shared.check().is_err() {
                    return;
                }
                shared.renew().await;
            }
        });
    }

    /// Writes the heartbeat: the lease is good for another `ttl`.
    async fn renew(&self) {
        let now = now_us();
        self.confirmed_us.fetch_max(now, Ordering::AcqRel);
        let hb = Heartbeat {
            claim_seq: self.claim_seq,
            token: self.token,
            renewed_at_us: now,
            expires_at_us: now.saturating_add(self.ttl_ms.saturating_mul(1000)),
        };
        if let Ok(bytes) = encode(&self.store, &self.exec_id, "lease", &hb) {
            let key = layout::lease_key(&self.exec_id, self.claim_seq);
            if let Err(e) = self.store.put_overwrite(&key, bytes).await {
                tracing::warn!(exec_id = %self.exec_id, error = %e, "lease renewal failed");
            }
        }
    }

    fn period(&self) -> Duration {
        Duration::from_millis((self.ttl_ms / 3).max(50))
    }

    /// See `Runner::check_lease`.
    pub(super) fn check(&self) -> Result<()> {
        match self.lost.lock().as_ref() {
            None => Ok(()),
            Some(lost) => Err(lost.error(&self.exec_id)),
        }
    }

    /// See `Runner::check_lease_now`.
    pub(super) async fn check_now(&self) -> Result<()> {
        if let Some(done) = self.check_quick() {
            return done;
        }
        let key = layout::state_key(&self.exec_id, *self.next_seq.lock());
        let found = self.store.get(&key).await?;
        self.note_next_state(&key, found)
    }

    /// See `Runner::check_lease_quick`.
    pub(super) fn check_quick(&self) -> Option<Result<()>> {
        if let Err(e) = self.check() {
            return Some(Err(e));
        }
        let key = layout::state_key(&self.exec_id, *self.next_seq.lock());
        if let Some(read) = self.store.read_local_now(&key) {
            return Some(read.and_then(|found| self.note_next_state(&key, found)));
        }
        let period_us = self.period().as_micros() as u64;
        let confirmed = self.confirmed_us.load(Ordering::Acquire);
        (now_us().saturating_sub(confirmed) <= period_us + period_us / 2).then_some(Ok(()))
    }

    /// What the state event after this runner's own ones says: another process's event
    /// (a cancel, a takeover) ends this run.
    fn note_next_state(&self, key: &str, found: Option<Bytes>) -> Result<()> {
        match found {
            Some(bytes) => {
                let rec: StateRecord = crate::journal::decode_at(key, &self.exec_id, &bytes)?;
                if !is_own(&rec.event, self.token) {
                    *self.lost.lock() = Some(Lost::from_event(&rec.event));
                }
            }
            None => {
                self.confirmed_us.fetch_max(now_us(), Ordering::AcqRel);
            }
        }
        self.check()
    }

    /// The error for a record this run was about to write that already exists: the loss
    /// the heartbeat saw, if it saw one.
    pub(super) fn lost_race(&self) -> Error {
        match self.lost.lock().as_ref() {
            Some(lost) => lost.error(&self.exec_id),
            None => Error::LeaseLost {
                exec_id: self.exec_id.clone(),
                by: "another process (a record this run was about to write already exists)".into(),
            },
        }
    }

    /// Stops the renewal loop and removes the heartbeat key (the state event that ended
    /// the run is what others read).
    pub(super) async fn stop(&self) {
        if !self.stopped.swap(true, Ordering::AcqRel) {
            self.stop.notify_one();
            let _ = self
                .store
                .delete(&layout::lease_key(&self.exec_id, self.claim_seq))
                .await;
        }
    }

    /// Stops the renewal loop without any I/O (the runner was dropped).
    pub(super) fn abandon(&self) {
        self.stopped.store(true, Ordering::Release);
        self.stop.notify_one();
    }
}
