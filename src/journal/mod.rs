//! The journal of an execution: its state events, checkpoint records and the rest, loaded
//! with one listing and concurrent reads (the cost of a resume does not grow in round
//! trips with the number of checkpoints).

pub mod pack;
pub mod record;
pub mod types;

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::ids;
use crate::lease;
use crate::store::layout::{self, ExecKey};
use crate::store::Store;
use crate::suspend::{self, State};
use record::Record;
use types::*;

/// Which parts of an execution to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// State events, heartbeats, waits and answers: enough for status and pending waits.
    States,
    /// Everything: what a resume or `executions get` needs.
    Full,
}

/// Everything stored about one execution.
#[derive(Debug, Clone, Default)]
pub struct Journal {
    pub exec_id: String,
    pub states: Vec<StateRecord>,
    /// call id → (revision, record); the highest revision wins.
    pub checkpoints: BTreeMap<String, (u32, CheckpointRecord)>,
    /// call id → failed attempts, in attempt order.
    pub failed_attempts: BTreeMap<String, Vec<FailedAttemptRecord>>,
    pub meta: Vec<MetaRecord>,
    pub divergences: Vec<DivergenceRecord>,
    /// claim seq → heartbeat.
    pub heartbeats: BTreeMap<u64, Heartbeat>,
    /// Older results of calls that were recorded again (kept to rebuild deltas on them).
    pub superseded: Vec<CheckpointRecord>,
    /// wait name → the wait the flow reached.
    pub waits: BTreeMap<String, WaitRecord>,
    /// wait name → its answer.
    pub answers: BTreeMap<String, AnswerRecord>,
    /// Local stores: claim seq → bytes of whole, counted records at the start of that
    /// run's segment (what the next claim fences).
    pub segments: BTreeMap<u64, u64>,
    /// Object stores: counted checkpoint record keys (`cp/...`, relative to the execution)
    /// and the claim seq of the run that wrote each.
    pub record_keys: Vec<(String, u64)>,
    /// Checkpoint records a run wrote after a later claim fenced it: never counted.
    pub fenced: Vec<String>,
    /// Segments whose last append a crash cut short (the cut record never counted).
    pub torn_tails: usize,
    /// claim seq → what that run sealed when it ended.
    pub seals: BTreeMap<u64, SealRecord>,
}

/// What a fence or seal counted of one run, for lookups while a journal is loaded.
struct Counted {
    records: HashSet<String>,
}

type Fences = HashMap<u64, Option<Counted>>;

/// A checkpoint record read but not yet counted: it counts once the fences are known.
enum Pending {
    /// `cp/<call>[@rev]`: key, revision, record.
    Record(String, u32, Box<CheckpointRecord>),
    /// `seg/<claim seq>`: key, claim seq, the segment's bytes.
    Segment(String, u64, Bytes),
}

pub(crate) fn decode_at<R: Record>(key: &str, exec_id: &str, bytes: &[u8]) -> Result<R> {
    record::decode(bytes).map_err(|e| Error::corrupt_record(key, Some(exec_id), e))
}

impl Journal {
    /// Reads an execution. An execution with no state events does not exist.
    pub async fn load(store: &Store, exec_id: &str, scope: Scope) -> Result<Journal> {
        ids::validate_exec_id(exec_id)?;
        // One listing of the whole execution (one request per 1,000 keys on object stores);
        // a summary then reads only the keys it needs.
        let keys_all = store.list(&layout::exec_prefix(exec_id)).await?;
        let wanted: Vec<String> = keys_all
            .iter()
            .filter(|k| match layout::classify(exec_id, k) {
                // Logs are read by `load_logs`, not by the journal.
                None | Some(ExecKey::Other | ExecKey::Log | ExecKey::Pack(_)) => false,
                Some(ExecKey::State(_) | ExecKey::Lease(_) | ExecKey::Wait | ExecKey::Answer) => {
                    true
                }
                Some(_) => scope == Scope::Full,
            })
            .cloned()
            .collect();
        let values = if scope == Scope::Full {
            read_with_pack(store, exec_id, &keys_all, &wanted).await?
        } else {
            store.get_many(&wanted).await?
        };
        let mut journal = Journal {
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let mut pending = Vec::new();
        for (key, bytes) in wanted.iter().zip(values) {
            // A key listed but gone by the time it is read was deleted; nothing to add.
            if let Some(bytes) = bytes {
                journal.add(key, bytes, &mut pending)?;
            }
        }
        if journal.states.is_empty() {
            return Err(Error::ExecutionNotFound {
                exec_id: exec_id.to_string(),
                store: store.url().to_string(),
            });
        }
        journal.states.sort_by_key(|s| s.seq);
        for attempts in journal.failed_attempts.values_mut() {
            attempts.sort_by_key(|a| a.attempt.number);
        }
        journal.meta.sort_by_key(|m| (m.claim_seq, m.n));
        journal.divergences.sort_by_key(|d| d.at_us);
        journal.check_sequence()?;
        // What fences each run, worked out once per run (not once per record).
        let mut fences = HashMap::new();
        for p in pending {
            journal.count(p, &mut fences)?;
        }
        if scope == Scope::Full {
            journal.check_fences()?;
        }
        Ok(journal)
    }

    fn add(&mut self, key: &str, bytes: Bytes, pending: &mut Vec<Pending>) -> Result<()> {
        let exec_id = self.exec_id.clone();
        match layout::classify(&exec_id, key) {
            Some(ExecKey::State(seq)) => {
                let rec: StateRecord = decode_at(key, &exec_id, &bytes)?;
                if rec.seq != seq {
                    return Err(Error::Corrupt {
                        key: key.to_string(),
                        exec_id: Some(exec_id),
                        checkpoint: None,
                        reason: format!("state record says seq {} but is stored as {seq}", rec.seq),
                    });
                }
                self.states.push(rec);
            }
            Some(ExecKey::Lease(seq)) => {
                let hb: Heartbeat = decode_at(key, &exec_id, &bytes)?;
                self.heartbeats.insert(seq, hb);
            }
            Some(ExecKey::Checkpoint(call_id, rev)) => {
                let rec: CheckpointRecord = decode_at(key, &exec_id, &bytes)?;
                if rec.call_id != call_id {
                    return Err(Error::corrupt_record(
                        key,
                        Some(&exec_id),
                        record::RecordError::Payload(format!("record is for call {}", rec.call_id)),
                    ));
                }
                pending.push(Pending::Record(key.to_string(), rev, Box::new(rec)));
            }
            Some(ExecKey::Segment(seq)) => {
                pending.push(Pending::Segment(key.to_string(), seq, bytes));
            }
            Some(ExecKey::FailedAttempt(call_id, _)) => {
                let rec: FailedAttemptRecord = decode_at(key, &exec_id, &bytes)?;
                self.failed_attempts
                    .entry(call_id.to_string())
                    .or_default()
                    .push(rec);
            }
            Some(ExecKey::Meta) => self.meta.push(decode_at(key, &exec_id, &bytes)?),
            Some(ExecKey::Divergence) => self.divergences.push(decode_at(key, &exec_id, &bytes)?),
            Some(ExecKey::Wait) => {
                let w: WaitRecord = decode_at(key, &exec_id, &bytes)?;
                self.waits.insert(w.name.clone(), w);
            }
            Some(ExecKey::Answer) => {
                let a: AnswerRecord = decode_at(key, &exec_id, &bytes)?;
                self.answers.insert(a.name.clone(), a);
            }
            Some(ExecKey::Seal(seq)) => {
                let seal: SealRecord = decode_at(key, &exec_id, &bytes)?;
                self.seals.insert(seq, seal);
            }
            Some(ExecKey::Log | ExecKey::Other | ExecKey::Pack(_)) | None => {}
        }
        Ok(())
    }

    /// The first claim after run `claim_seq`: (its seq, its fence if it set one).
    fn next_claim(&self, claim_seq: u64) -> Option<(u64, Option<&Fence>)> {
        self.states
            .iter()
            .find(|s| s.seq > claim_seq && s.event.claim().is_some())
            .map(|s| (s.seq, s.event.fence()))
    }

    fn counted_by(&self, run: u64) -> Option<Counted> {
        self.fence_over(run).map(|(_, fence)| Counted {
            records: fence.records.into_iter().collect(),
        })
    }

    /// What says exactly which records run `run` committed: the fence of the claim after
    /// it, else the seal the run wrote when it ended. (who, fence), or None when nothing
    /// does (the latest run, still running or dead; or a run from before fences).
    fn fence_over(&self, run: u64) -> Option<(String, Fence)> {
        match self.next_claim(run) {
            Some((n, Some(fence))) => {
                Some((format!("the claim of state event {n}"), fence.clone()))
            }
            Some((_, None)) => None,
            None => self
                .own_seal(run)
                .map(|seal| ("the run's own seal".to_string(), seal.fence.clone())),
        }
    }

    /// The seal run `run` wrote as it ended, when no later claim fenced it (a claim's
    /// fence wins over a seal).
    fn own_seal(&self, run: u64) -> Option<&SealRecord> {
        if self.next_claim(run).is_some() {
            return None;
        }
        let token = self.claim_token(run)?;
        self.seals.get(&run).filter(|s| s.token == token)
    }

    /// The token of the claim made by state event `claim_seq`.
    fn claim_token(&self, claim_seq: u64) -> Option<u64> {
        self.states
            .iter()
            .find(|s| s.seq == claim_seq)
            .and_then(|s| s.event.claim())
            .map(|c| c.token)
    }

    /// Whether run `claim_seq` ended by itself (completed, failed or suspended): it was
    /// not appending when it stopped, so its segment cannot end in a torn append.
    fn ended_cleanly(&self, claim_seq: u64) -> bool {
        let Some(token) = self.claim_token(claim_seq) else {
            return false;
        };
        self.states.iter().any(|s| {
            matches!(&s.event,
                Event::Completed { token: t, .. }
                | Event::Failed { token: t, .. }
                | Event::Suspended { token: t, .. } if *t == token)
        })
    }

    /// Counts a checkpoint record or a segment's records, unless a later claim fenced them.
    fn count(&mut self, p: Pending, fences: &mut Fences) -> Result<()> {
        match p {
            Pending::Record(key, rev, rec) => {
                let rel = layout::exec_relative(&self.exec_id, &key).to_string();
                let run = rec.attempts.last().map(|a| a.claim_seq).unwrap_or(0);
                let counted = match fences.entry(run).or_insert_with(|| self.counted_by(run)) {
                    Some(c) => c.records.contains(&rel),
                    None => true,
                };
                if counted {
                    self.record_keys.push((rel, run));
                    self.add_checkpoint(rev, *rec);
                } else {
                    self.fenced.push(key);
                }
            }
            Pending::Segment(key, run, bytes) => self.count_segment(&key, run, &bytes)?,
        }
        Ok(())
    }

    fn count_segment(&mut self, key: &str, run: u64, bytes: &[u8]) -> Result<()> {
        let exec_id = self.exec_id.clone();
        let corrupt = |reason: String| Error::Corrupt {
            key: key.to_string(),
            exec_id: Some(exec_id.clone()),
            checkpoint: None,
            reason,
        };
        let (counted_len, scan) = match self.fence_over(run) {
            // A later claim (or the run's own seal) counted exactly the first `len` bytes:
            // they must be whole records, and whatever follows was written after it.
            Some((who, fence)) => {
                let len = fence
                    .segments
                    .iter()
                    .find(|(c, _)| *c == run)
                    .map(|(_, l)| *l)
                    .unwrap_or(0);
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if bytes.len() < len {
                    return Err(corrupt(format!(
                        "the segment has {} bytes but {who} counted {len}: it was truncated or \
                         replaced",
                        bytes.len()
                    )));
                }
                let scan = record::scan_segment(&bytes[..len]);
                if let Some((at, e)) = scan.tail {
                    return Err(corrupt(format!("damaged at byte {at}: {e}")));
                }
                if bytes.len() > len {
                    self.fenced.push(format!("{key}@{len}"));
                }
                (len, scan)
            }
            // The latest run (or one before fences existed): only a crash mid-append may
            // leave a partial record, and only at the very end.
            _ => {
                let scan = record::scan_segment(bytes);
                let mut len = bytes.len();
                if let Some((at, e)) = &scan.tail {
                    if self.ended_cleanly(run) || !record::is_torn_tail(&bytes[*at..]) {
                        return Err(corrupt(format!("damaged at byte {at}: {e}")));
                    }
                    self.torn_tails += 1;
                    len = *at;
                }
                (len, scan)
            }
        };
        for (frame, _) in scan.frames {
            let rec: CheckpointRecord = decode_at(key, &self.exec_id, frame)?;
            self.add_checkpoint(0, rec);
        }
        self.segments.insert(run, counted_len as u64);
        Ok(())
    }

    /// Everything a fence counted must still be there: a missing segment or record is
    /// damage (a deleted file), not an execution with less work done.
    fn check_fences(&self) -> Result<()> {
        let claims = self.states.iter().filter_map(|s| {
            s.event
                .fence()
                .map(|f| (format!("the claim of state event {}", s.seq), f))
        });
        let seals = self.seals.keys().filter_map(|run| {
            self.own_seal(*run)
                .map(|seal| ("the run's own seal".to_string(), &seal.fence))
        });
        let counted: HashSet<&str> = self.record_keys.iter().map(|(k, _)| k.as_str()).collect();
        for (who, fence) in claims.chain(seals) {
            for (run, len) in &fence.segments {
                if *len > 0 && !self.segments.contains_key(run) {
                    return Err(Error::Corrupt {
                        key: layout::segment_key(&self.exec_id, *run),
                        exec_id: Some(self.exec_id.clone()),
                        checkpoint: None,
                        reason: format!(
                            "the segment is missing, but {who} counted {len} bytes in it"
                        ),
                    });
                }
            }
            for key in &fence.records {
                if !counted.contains(key.as_str()) {
                    return Err(Error::Corrupt {
                        key: format!("{}/{key}", layout::exec_prefix(&self.exec_id)),
                        exec_id: Some(self.exec_id.clone()),
                        checkpoint: None,
                        reason: format!("the checkpoint record is missing, but {who} counted it"),
                    });
                }
            }
        }
        Ok(())
    }

    /// What a claim made now fences: the records the runs since the current claim wrote
    /// that this journal counted.
    pub fn fence_for_next_claim(&self) -> Fence {
        let since = self.current_claim().map(|(seq, _, _)| seq).unwrap_or(0);
        Fence {
            segments: self
                .segments
                .iter()
                .filter(|(run, _)| **run >= since)
                .map(|(run, len)| (*run, *len))
                .collect(),
            records: self
                .record_keys
                .iter()
                .filter(|(_, run)| *run >= since)
                .map(|(k, _)| k.clone())
                .collect(),
        }
    }

    /// Keeps the newest result of a call: the one from the latest run, then the highest
    /// revision (a re-run after a divergence).
    fn add_checkpoint(&mut self, rev: u32, rec: CheckpointRecord) {
        let order = |rev: u32, r: &CheckpointRecord| {
            (r.attempts.last().map(|a| a.claim_seq).unwrap_or(0), rev)
        };
        let newer = self
            .checkpoints
            .get(&rec.call_id)
            .is_none_or(|(r0, old)| order(*r0, old) < order(rev, &rec));
        if newer {
            if let Some((_, old)) = self.checkpoints.insert(rec.call_id.clone(), (rev, rec)) {
                self.superseded.push(old);
            }
        } else {
            self.superseded.push(rec);
        }
    }

    /// State events must be numbered 0, 1, 2, ... with no gap (create-only puts never skip).
    fn check_sequence(&self) -> Result<()> {
        for (i, s) in self.states.iter().enumerate() {
            if s.seq != i as u64 {
                return Err(Error::Corrupt {
                    key: layout::state_key(&self.exec_id, i as u64),
                    exec_id: Some(self.exec_id.clone()),
                    checkpoint: None,
                    reason: "a state event is missing from the sequence".into(),
                });
            }
        }
        Ok(())
    }

    /// The state the recorded events lead to.
    pub fn state(&self) -> Result<State> {
        suspend::replay(self.states.iter().map(|s| (s.seq, &s.event))).map_err(|(seq, e)| {
            Error::Corrupt {
                key: layout::state_key(&self.exec_id, seq),
                exec_id: Some(self.exec_id.clone()),
                checkpoint: None,
                reason: format!("recorded events are not a legal sequence: {e}"),
            }
        })
    }

    pub fn next_seq(&self) -> u64 {
        self.states.len() as u64
    }

    pub fn start(&self) -> Option<&StartInfo> {
        self.states.first().and_then(|s| match &s.event {
            Event::Started { start, .. } => Some(start.as_ref()),
            _ => None,
        })
    }

    /// The latest claim: (seq, time, claim).
    pub fn current_claim(&self) -> Option<(u64, u64, &LeaseClaim)> {
        self.states
            .iter()
            .rev()
            .find_map(|s| s.event.claim().map(|c| (s.seq, s.at_us, c)))
    }

    /// 1-based number of the run (claim) made by state event `claim_seq`.
    pub fn run_number(&self, claim_seq: u64) -> u32 {
        self.states
            .iter()
            .filter(|s| s.seq <= claim_seq && s.event.claim().is_some())
            .count() as u32
    }

    /// When the current claim expires, by its latest heartbeat.
    pub fn lease_expiry_us(&self) -> Option<u64> {
        let (seq, at, claim) = self.current_claim()?;
        Some(
            self.heartbeats
                .get(&seq)
                .filter(|h| h.token == claim.token)
                .map(|h| h.expires_at_us)
                .unwrap_or(at.saturating_add(claim.ttl_ms.saturating_mul(1000))),
        )
    }

    /// Whether the runner of a `Running` execution is gone (dead or silent past expiry).
    pub fn lease_lapsed(&self, now_us: u64) -> bool {
        match self.current_claim() {
            Some((seq, at, claim)) => lease::lapsed(claim, at, self.heartbeats.get(&seq), now_us),
            None => true,
        }
    }

    /// Waits the flow reached that have no answer yet, oldest first.
    pub fn pending_waits(&self) -> Vec<&WaitRecord> {
        let mut pending: Vec<&WaitRecord> = self
            .waits
            .values()
            .filter(|w| !self.answers.contains_key(&w.name))
            .collect();
        pending.sort_by_key(|w| w.created_us);
        pending
    }

    pub fn ended_at_us(&self) -> Option<u64> {
        let last = self.states.last()?;
        match last.event {
            Event::Completed { .. }
            | Event::Failed { .. }
            | Event::Cancelled { .. }
            | Event::Suspended { .. } => Some(last.at_us),
            _ => None,
        }
    }
}

/// The captured output of an execution, in the order it was written.
/// The values of `wanted` (keys of `listed`), taken from the execution's newest pack
/// where it has them and read one by one otherwise.
async fn read_with_pack(
    store: &Store,
    exec_id: &str,
    listed: &[String],
    wanted: &[String],
) -> Result<Vec<Option<Bytes>>> {
    let Some(pack_key) = pack::newest(exec_id, listed) else {
        return store.get_many(wanted).await;
    };
    let packed = match store.get(pack_key).await {
        Ok(Some(bytes)) => match pack::decode(&bytes) {
            Ok(records) => records,
            Err(why) => {
                tracing::warn!(key = %pack_key, why, "a pack cannot be used; reading its records");
                HashMap::new()
            }
        },
        // superseded and dropped since the listing, or unreadable: the records are there
        Ok(None) | Err(_) => HashMap::new(),
    };
    let missing: Vec<String> = wanted
        .iter()
        .filter(|k| !packed.contains_key(*k))
        .cloned()
        .collect();
    let mut read = store.get_many(&missing).await?.into_iter();
    Ok(wanted
        .iter()
        .map(|k| match packed.get(k) {
            Some(v) => Some(v.clone()),
            None => read.next().flatten(),
        })
        .collect())
}

pub async fn load_logs(store: &Store, exec_id: &str) -> Result<Vec<LogRecord>> {
    ids::validate_exec_id(exec_id)?;
    let keys = store.list(&layout::log_prefix(exec_id)).await?;
    let values = store.get_many(&keys).await?;
    let mut out = Vec::with_capacity(keys.len());
    for (key, bytes) in keys.iter().zip(values) {
        if let Some(bytes) = bytes {
            out.push(decode_at::<LogRecord>(key, exec_id, &bytes)?);
        }
    }
    out.sort_by_key(|r| (r.claim_seq, r.n));
    Ok(out)
}

/// The captured output of an execution as one string of JSON lines, oldest first.
pub async fn load_logs_jsonl(store: &Store, exec_id: &str) -> Result<String> {
    let records = load_logs(store, exec_id).await?;
    Ok(records.into_iter().map(|r| r.entries_jsonl).collect())
}

/// The record stored at `key` as plain data (`kitaru store dump`), or None when the key
/// does not exist.
pub async fn dump_key(store: &Store, key: &str) -> Result<Option<serde_json::Value>> {
    let Some(bytes) = store.get(key).await? else {
        return Ok(None);
    };
    let value = if layout::is_segment_key(key) {
        record::segment_to_json(&bytes)
    } else if bytes.starts_with(pack::MAGIC) {
        pack::to_json(&bytes)
    } else {
        record::to_json(&bytes)
    };
    value
        .map(Some)
        .map_err(|e| crate::Error::corrupt_record(key, None, e))
}
