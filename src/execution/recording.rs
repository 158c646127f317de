//! What a running flow records through its `Runner`: checkpoint calls (a segment append on
//! local stores, a create-only record on object stores), failed attempts, divergences,
//! waits, logs and metadata; and the lookup of outputs stored by earlier runs.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use parking_lot::Mutex;

use super::calls::{CacheProbe, Cached, CallRequest, Decision, Divergence, Notice, Policy};
use super::ops::store_value;
use super::runner::Runner;
use super::{encode, FailedCall, FinishedCall, RawValue, WaitRequest, MAX_RACES};
use crate::error::{Error, Result};
use crate::ids::{self, now_us};
use crate::journal::record::Digest;
use crate::journal::types::*;
use crate::store::{layout, Segment};

impl Runner {
    /// Starts a pass over the flow body (the first, or a flow-level retry); its number.
    pub fn new_pass(&self) -> u32 {
        self.calls.lock().new_pass()
    }

    /// The id of the next call of checkpoint `name` in this pass (`name`, `name_2`, ...),
    /// or `explicit`, which must not be taken in this pass.
    pub fn allocate_call(&self, name: &str, explicit: Option<&str>) -> Result<String> {
        self.calls.lock().allocate(name, explicit)
    }

    /// Whether a stored result answers the call (see `calls.rs`); no I/O. A decision that
    /// is [`Decision::pending`] is made final by [`Runner::settle_call`].
    pub fn begin_call(&self, req: &CallRequest) -> Decision {
        let mut d = self.calls.lock().decide(req, &self.journal);
        if d.reuse
            || d.divergence
                .as_ref()
                .is_some_and(|v| v.policy == Policy::Error)
        {
            return d;
        }
        let (flow, on) = &self.cache_flow;
        let (Some(code), Some(digest)) = (req.code, req.digest) else {
            return d;
        };
        if !req.cache.unwrap_or(*on) {
            return d;
        }
        let parts = crate::cache::KeyParts {
            flow_name: flow.clone(),
            name: req.name.clone(),
            code: Digest(code),
            input_digest: Digest(digest),
        };
        let peeked = self
            .cache_log
            .lock()
            .get_or_insert_with(|| crate::cache::LocalLog::new(flow))
            .find(&self.lease.store, &parts.key());
        let found = match peeked {
            // The usual case on a local store: no entry, decided without a task hop.
            Some(Ok(None)) => {
                self.cache_misses.lock().insert(d.call_id.clone(), parts);
                return d;
            }
            Some(Ok(Some(bytes))) => Some(bytes),
            Some(Err(e)) => {
                d.notice = Some(Notice::CacheUnusable(e.to_string()));
                return d;
            }
            None => None,
        };
        d.cache = Some(CacheProbe {
            parts,
            found,
            explicit: req.explicit,
        });
        d
    }

    /// Does what a pending decision needs: records its divergence (failing under policy
    /// `error`), and reads the stored output it reuses. An output that cannot be read
    /// back (damaged) makes the call run again, with a notice saying why.
    pub async fn settle_call(&self, mut d: Decision) -> Result<Decision> {
        if let Some(div) = d.divergence.take() {
            self.record_divergence(&div).await?;
            if div.policy == Policy::Error {
                return Err(Error::Diverged {
                    exec_id: self.lease.exec_id.clone(),
                    call_id: div.call_id,
                });
            }
        }
        if let Some(probe) = d.cache.take() {
            self.settle_cached(&mut d, probe).await?;
        }
        if d.reuse && d.value.is_none() {
            match self.lookup_output(&d.call_id).await {
                Ok(Some((value, _))) => d.value = Some(value),
                Ok(None) => d.reuse = false, // not in the journal after all: run it
                Err(e @ Error::Corrupt { .. }) => {
                    // Run again: the new output replaces the damaged bytes, rather than
                    // the execution failing on every retry.
                    d.reuse = false;
                    d.earlier_run = false;
                    d.notice = Some(Notice::Damaged(e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(d)
    }

    /// Asks the cache for a call that runs otherwise. A hit is recorded in this execution
    /// at once (a later run of it finds the call in its own journal), its metadata naming
    /// where it came from (`kitaru_cached`); a miss is remembered, to leave an entry once
    /// the call finishes; an entry that cannot be believed leaves a notice and the call runs.
    async fn settle_cached(&self, d: &mut Decision, probe: CacheProbe) -> Result<()> {
        use crate::cache::Lookup;
        let CacheProbe {
            parts,
            found,
            explicit,
        } = probe;
        let lookup = crate::cache::lookup(&self.lease.store, &parts, found, &self.cache_sources);
        let hit = match lookup.await? {
            Lookup::Hit(hit) => hit,
            Lookup::Miss => {
                self.cache_misses.lock().insert(d.call_id.clone(), parts);
                return Ok(());
            }
            Lookup::Unusable(why) => {
                d.notice = Some(Notice::CacheUnusable(why));
                return Ok(());
            }
        };
        let now = now_us();
        self.record_checkpoint(FinishedCall {
            call_id: d.call_id.clone(),
            name: parts.name,
            explicit_id: explicit,
            checkpoint_type: hit.checkpoint_type,
            input_digest: Some(parts.input_digest.0),
            output: hit.output.clone(),
            started_us: now,
            ended_us: now,
            metadata_json: Some(cached_metadata(
                hit.metadata_json.as_deref(),
                &hit.exec_id,
                &hit.call_id,
            )),
        })
        .await?;
        d.reuse = true;
        d.value = Some(hit.output);
        d.divergence = None;
        d.cached_from = Some(Cached {
            exec_id: hit.exec_id,
            call_id: hit.call_id,
            metadata_json: hit.metadata_json,
        });
        Ok(())
    }

    /// How many attempts of `call_id` failed before (in this or earlier runs).
    fn failed_attempts(&self, call_id: &str) -> u32 {
        self.failures
            .lock()
            .get(call_id)
            .map(|v| v.len() as u32)
            .unwrap_or(0)
    }

    /// Records a failed attempt of a checkpoint call; returns its attempt number (1-based).
    pub async fn record_failed_attempt(&self, failed: FailedCall) -> Result<u32> {
        let FailedCall {
            call_id,
            name,
            checkpoint_type,
            input_digest,
            started_us,
            ended_us,
            failure,
        } = failed;
        let call_id = call_id.as_str();
        ids::validate_call_id(call_id)?;
        self.check_lease()?;
        let number = self.failed_attempts(call_id) + 1;
        let attempt = Attempt {
            number,
            claim_seq: self.lease.claim_seq,
            started_us,
            ended_us,
            failure: Some(failure),
        };
        let rec = FailedAttemptRecord {
            call_id: call_id.to_string(),
            name,
            checkpoint_type,
            input_digest: input_digest.map(Digest),
            attempt: attempt.clone(),
        };
        let key = layout::failed_attempt_key(&self.lease.exec_id, call_id, number);
        let bytes = encode(&self.lease.store, &self.lease.exec_id, call_id, &rec)?;
        if !self.lease.store.put_create(&key, bytes).await? {
            return Err(self.lease.lost_race());
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
        let (call_id, name, explicit, digest, kept) = (
            done.call_id.clone(),
            done.name.clone(),
            done.explicit_id,
            done.input_digest,
            done.output.clone(),
        );
        let ended = done.ended_us.max(done.started_us);
        self.write_checkpoint(done).await?;
        self.calls
            .lock()
            .recorded(&call_id, &name, explicit, digest, kept);
        let missed = self.cache_misses.lock().remove(&call_id);
        if let Some(parts) = missed {
            self.leave_cache_entry(&parts, &call_id, ended);
        }
        Ok(())
    }

    /// Leaves the cache entry of a finished call: one append on a local disk; on an object
    /// store a put sent in the background (awaited when the run ends). A hint for later
    /// executions: losing one costs a cache miss, never the call.
    fn leave_cache_entry(&self, parts: &crate::cache::KeyParts, call_id: &str, ended_us: u64) {
        let exec_id = &self.lease.exec_id;
        let rec = crate::cache::CacheRecord::new(parts, exec_id, call_id, ended_us);
        let store = &self.lease.store;
        if store.is_local() {
            let appended = crate::cache::encode(&rec).and_then(|bytes| {
                self.cache_log
                    .lock()
                    .get_or_insert_with(|| crate::cache::LocalLog::new(&rec.flow_name))
                    .append(store, &bytes)
            });
            if let Err(e) = appended {
                cache_entry_lost(&rec, &e);
            }
            return;
        }
        // Runners always run on kitaru's runtime; without one the entry is left out.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = store.clone();
        let write = async move {
            if let Err(e) = crate::cache::put(&store, &rec).await {
                cache_entry_lost(&rec, &e);
            }
        };
        self.cache_writes.lock().push(rt.spawn(write));
    }

    /// Records a result a replay takes over from its source execution, before the flow
    /// body runs: the flow's call of it is then answered like an earlier run's (matched by
    /// its inputs; `input_digest` None: matched by position only, as an override is).
    pub async fn seed_checkpoint(&self, seed: FinishedCall) -> Result<()> {
        self.write_checkpoint(seed.clone()).await?;
        self.calls.lock().seeded(&seed);
        Ok(())
    }

    /// Takes over the results of `calls` (call ids, in call order) from the execution
    /// `source` in the same store, before the flow body runs (a replay): each is recorded
    /// here as it was there (name, type, input digest, metadata, times), its output read
    /// once and rebuilt if it was a delta. Each of `overrides` (call id, output) is
    /// recorded as its call was there but with that output and no input digest, so it
    /// answers the replay's call at that position whatever its inputs. Returns how many
    /// calls were seeded.
    pub async fn seed_from(
        &self,
        source: &str,
        calls: &[String],
        overrides: Vec<(String, RawValue)>,
    ) -> Result<usize> {
        let journal =
            crate::journal::Journal::load(&self.lease.store, source, crate::journal::Scope::Full)
                .await?;
        let mut cache = std::collections::HashMap::new();
        for call_id in calls {
            let Some((_, rec)) = journal.checkpoints.get(call_id) else {
                return Err(Error::UnknownCheckpoint {
                    exec_id: source.to_string(),
                    selector: call_id.clone(),
                    available: journal.checkpoints.keys().cloned().collect(),
                });
            };
            let bytes = crate::delta::resolve(
                &self.lease.store,
                &journal,
                call_id,
                &rec.output,
                &mut cache,
            )
            .await?;
            let last = rec.attempts.last();
            self.seed_checkpoint(FinishedCall {
                call_id: call_id.clone(),
                name: rec.name.clone(),
                explicit_id: rec.explicit_id,
                checkpoint_type: rec.checkpoint_type.clone(),
                input_digest: rec.input_digest.map(|d| d.0),
                output: RawValue {
                    serializer: rec.output.serializer.clone(),
                    bytes,
                },
                started_us: last.map(|a| a.started_us).unwrap_or(0),
                ended_us: last.map(|a| a.ended_us).unwrap_or(0),
                metadata_json: rec.metadata_json.clone(),
            })
            .await?;
        }
        let count = calls.len() + overrides.len();
        for (call_id, output) in overrides {
            // As the call was there: its record, else (a call that only failed there) its
            // failed attempts; at its place in time, so call order stays as it was there.
            let found = match journal.checkpoints.get(&call_id) {
                Some((_, rec)) => Some((
                    rec.name.clone(),
                    rec.explicit_id,
                    rec.checkpoint_type.clone(),
                    rec.attempts.last().map(|a| a.started_us),
                )),
                None => journal
                    .failed_attempts
                    .get(&call_id)
                    .and_then(|f| f.first())
                    .map(|f| {
                        (
                            f.name.clone(),
                            false,
                            f.checkpoint_type.clone(),
                            Some(f.attempt.started_us),
                        )
                    }),
            };
            let Some((name, explicit_id, checkpoint_type, started)) = found else {
                return Err(Error::UnknownCheckpoint {
                    exec_id: source.to_string(),
                    selector: call_id,
                    available: journal.checkpoints.keys().cloned().collect(),
                });
            };
            let started = started.unwrap_or(0);
            self.seed_checkpoint(FinishedCall {
                call_id: call_id.clone(),
                name,
                explicit_id,
                checkpoint_type,
                input_digest: None,
                output,
                started_us: started,
                ended_us: started,
                metadata_json: None,
            })
            .await?;
        }
        Ok(count)
    }

    async fn write_checkpoint(&self, done: FinishedCall) -> Result<()> {
        ids::validate_call_id(&done.call_id)?;
        // A local store was just looked at before the body ran (and a late append is
        // fenced anyway); an object store is asked only if the heartbeat fell behind.
        if self.lease.store.is_local() {
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
            None => store_value(&self.lease.store, done.output).await?,
        };
        let mut attempts = self
            .failures
            .lock()
            .get(&done.call_id)
            .cloned()
            .unwrap_or_default();
        attempts.push(Attempt {
            number: attempts.len() as u32 + 1,
            claim_seq: self.lease.claim_seq,
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
        let bytes = encode(&self.lease.store, &self.lease.exec_id, &rec.call_id, &rec)?;
        if !self.recorded.lock().insert(rec.call_id.clone()) {
            return Err(Error::RecordedTwice {
                exec_id: self.lease.exec_id.clone(),
                call_id: rec.call_id.clone(),
            });
        }
        if let Some(segment) = &self.segment {
            self.append_segment(segment, &bytes)?;
        } else {
            self.put_checkpoint(&rec.call_id, revision, bytes).await?;
        }
        // Only a stored value may be the base of the next delta.
        self.bases.lock().insert(rec.name, base);
        Ok(())
    }

    /// Object stores: the record of a call under the first free revision from `revision`.
    /// A taken key this run's journal does not count was written by a runner that a claim
    /// fenced (it woke up after being replaced): it is skipped, never overwritten.
    async fn put_checkpoint(&self, call_id: &str, revision: u32, bytes: Bytes) -> Result<()> {
        for rev in revision..revision.saturating_add(MAX_RACES) {
            let key = layout::checkpoint_key(&self.lease.exec_id, call_id, rev);
            if self.lease.store.put_create(&key, bytes.clone()).await? {
                let rel = layout::exec_relative(&self.lease.exec_id, &key).to_string();
                self.committed.lock().records.push(rel);
                return Ok(());
            }
            self.check_lease_now().await?;
        }
        Err(self.lease.lost_race())
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
                &self.lease.store,
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

    /// Local stores: appends a checkpoint record to this run's segment and counts its bytes
    /// as committed.
    fn append_segment(&self, segment: &Mutex<Segment>, bytes: &[u8]) -> Result<()> {
        // Held until the bytes are counted, so the count follows the file's order.
        let mut segment = segment.lock();
        self.lease.store.append_segment(&mut segment, bytes)?;
        let mut committed = self.committed.lock();
        let run = self.lease.claim_seq;
        match committed.segments.first_mut() {
            Some((_, len)) => *len += bytes.len() as u64,
            None => committed.segments.push((run, bytes.len() as u64)),
        }
        Ok(())
    }

    /// Records that a finished call was made again with different inputs (once per run).
    async fn record_divergence(&self, div: &Divergence) -> Result<()> {
        ids::validate_call_id(&div.call_id)?;
        let rec = DivergenceRecord {
            call_id: div.call_id.clone(),
            claim_seq: self.lease.claim_seq,
            at_us: now_us(),
            stored_digest: div.stored.map(Digest),
            new_digest: div.new.map(Digest),
            policy: div.policy.as_str().to_string(),
        };
        let key = layout::divergence_key(&self.lease.exec_id, self.lease.claim_seq, &div.call_id);
        // A second divergence of the same call in the same run (a flow retry) is already recorded.
        self.lease
            .store
            .put_create(&key, encode(&self.lease.store, &self.lease.exec_id, &div.call_id, &rec)?)
            .await?;
        Ok(())
    }

    /// Records that the flow reached wait `name` (again, on a resume: then nothing is
    /// written) and returns its answer if it has one.
    pub async fn open_wait(&self, wait: WaitRequest) -> Result<Option<AnswerRecord>> {
        ids::validate_call_id(&wait.name)?;
        let wait = WaitRecord {
            name: wait.name,
            question: wait.question,
            schema_json: wait.schema_json,
            schema_type: wait.schema_type,
            metadata_json: wait.metadata_json,
            created_us: now_us(),
            claim_seq: self.lease.claim_seq,
        };
        self.check_lease()?;
        if let Some(answer) = self.journal.answers.get(&wait.name) {
            return Ok(Some(answer.clone()));
        }
        if !self.journal.waits.contains_key(&wait.name) {
            let key = layout::wait_key(&self.lease.exec_id, &wait.name);
            self.lease
                .store
                .put_create(&key, encode(&self.lease.store, &self.lease.exec_id, &wait.name, &wait)?)
                .await?;
        }
        self.poll_answer(&wait.name).await
    }

    /// The answer to wait `name`, if someone gave it.
    pub async fn poll_answer(&self, name: &str) -> Result<Option<AnswerRecord>> {
        ids::validate_call_id(name)?;
        let key = layout::answer_key(&self.lease.exec_id, name);
        match self.lease.store.get(&key).await? {
            None => Ok(None),
            Some(bytes) => crate::journal::decode_at(&key, &self.lease.exec_id, &bytes).map(Some),
        }
    }

    /// Stores a batch of captured output (JSON lines).
    pub async fn write_logs(&self, entries_jsonl: String) -> Result<()> {
        let n = self.log_n.fetch_add(1, Ordering::Relaxed);
        let rec = LogRecord {
            claim_seq: self.lease.claim_seq,
            n,
            entries_jsonl,
        };
        let key = layout::log_key(&self.lease.exec_id, self.lease.claim_seq, n);
        self.lease
            .store
            .put_create(&key, encode(&self.lease.store, &self.lease.exec_id, "log", &rec)?)
            .await?;
        Ok(())
    }

    /// `kitaru.log()` on the flow body: one record per call.
    pub async fn log_metadata(&self, json: String) -> Result<()> {
        self.check_lease()?;
        let n = self.meta_n.fetch_add(1, Ordering::Relaxed);
        let rec = MetaRecord {
            claim_seq: self.lease.claim_seq,
            n,
            at_us: now_us(),
            json,
        };
        let key = layout::meta_key(&self.lease.exec_id, self.lease.claim_seq, n);
        let bytes = encode(&self.lease.store, &self.lease.exec_id, "meta", &rec)?;
        // A local disk: written right here, so an awaited call needs no task hop (a ledger
        // entry per model request of an agent).
        if let Some(done) = self.lease.store.put_create_local_now(&key, &bytes) {
            done?;
            return Ok(());
        }
        self.lease.store.put_create(&key, bytes).await?;
        Ok(())
    }
}

/// A cached call's metadata: its source's, plus where it came from (`kitaru_cached`); its
/// parents (`kitaru_parents`, call ids of the source execution) named with that execution.
fn cached_metadata(source: Option<&str>, exec_id: &str, call_id: &str) -> String {
    let mut map = source
        .and_then(|m| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(m).ok())
        .unwrap_or_default();
    if let Some(serde_json::Value::Array(parents)) = map.get_mut("kitaru_parents") {
        for p in parents.iter_mut() {
            if let serde_json::Value::String(id) = p {
                if !id.contains('/') {
                    *id = format!("{exec_id}/{id}");
                }
            }
        }
    }
    map.insert(
        "kitaru_cached".into(),
        serde_json::json!({"exec_id": exec_id, "call_id": call_id}),
    );
    serde_json::Value::Object(map).to_string()
}

fn cache_entry_lost(rec: &crate::cache::CacheRecord, e: &Error) {
    tracing::warn!(exec_id = %rec.exec_id, call_id = %rec.call_id, error = %e,
        "could not leave a cache entry");
}
