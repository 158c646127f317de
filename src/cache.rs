//! The cross-execution cache: a finished checkpoint call of one execution answers the same
//! call of a later execution of the same flow (Kitaru 0.4's `cache=True`).
//!
//! The key is the blake3 hash of the flow's name, the checkpoint's name, its code identity
//! (a digest the caller makes of the function's source and the checkpoint's configuration)
//! and the digest of the call's inputs. Each finished call of an execution whose cache is on
//! leaves one small entry naming the execution and call that produced it; a hit reads the
//! output from that execution's journal (loaded once per run and source, [`Sources`]), so
//! no output is stored twice. Where entries live depends on the store, like checkpoint
//! records:
//!
//! - object stores: one create-only object `cache/<key hex>` per key (a lookup is one GET;
//!   the first execution to finish a key keeps it);
//! - local disks: one append-only file per flow, `cache/<flow hash>.log`, read by a run as
//!   it grows ([`LocalLog`]): an entry costs one append, a lookup a map probe (and a read of
//!   what was appended since, on a miss), where a file per key cost as much as a checkpoint
//!   used to (create, link, unlink). The first entry of a key in the file counts.
//!
//! An entry is a hint, checked before it is believed: it names its key (so an entry copied
//! under another key is refused), and the call it names must, in its execution's journal,
//! be a call of the same flow and checkpoint with the same input digest; its output is
//! read back like any stored value (checksummed records, hash-named blobs, deltas checked
//! against their digest). An entry that is damaged or whose source is gone is a miss with
//! a reason, never an error of the flow and never another call's output.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::execution::RawValue;
use crate::journal::record::{self, Digest, Kind, Record};
use crate::journal::{Journal, Scope};
use crate::store::{layout, Store};

/// What a cache key is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyParts {
    pub flow_name: String,
    pub name: String,
    /// The checkpoint's code identity (source and configuration), made by the caller.
    pub code: Digest,
    pub input_digest: Digest,
}

impl KeyParts {
    /// The key: blake3 over the parts, each length-prefixed (no two part lists collide).
    pub fn key(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"kitaru-cache-key-v1");
        for part in [self.flow_name.as_bytes(), self.name.as_bytes()] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.update(&self.code.0);
        h.update(&self.input_digest.0);
        *h.finalize().as_bytes()
    }
}

/// One cache entry: which call of which execution answers the key. It names its key, so an
/// entry copied under another key is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    pub key: Digest,
    pub flow_name: String,
    pub name: String,
    pub exec_id: String,
    pub call_id: String,
    pub created_us: u64,
}

impl CacheRecord {
    /// The entry for call `call_id` of `exec_id`, finished at `created_us`.
    pub fn new(parts: &KeyParts, exec_id: &str, call_id: &str, created_us: u64) -> CacheRecord {
        CacheRecord {
            key: Digest(parts.key()),
            flow_name: parts.flow_name.clone(),
            name: parts.name.clone(),
            exec_id: exec_id.to_string(),
            call_id: call_id.to_string(),
            created_us,
        }
    }
}

impl Record for CacheRecord {
    const KIND: Kind = Kind::Cache;
}

/// A cached result that answers a call.
#[derive(Debug, Clone)]
pub struct Hit {
    pub exec_id: String,
    pub call_id: String,
    pub checkpoint_type: Option<String>,
    pub output: RawValue,
    pub metadata_json: Option<String>,
}

/// What a lookup found.
#[derive(Debug, Clone)]
pub enum Lookup {
    Hit(Hit),
    Miss,
    /// An entry exists but cannot be believed (the reason): the call runs live.
    Unusable(String),
}

/// Decodes and checks the entry read at the key of `parts`.
fn check(parts: &KeyParts, bytes: &[u8]) -> std::result::Result<CacheRecord, String> {
    let rec: CacheRecord = record::decode(bytes).map_err(|e| e.to_string())?;
    if rec.key.0 != parts.key() || rec.flow_name != parts.flow_name || rec.name != parts.name {
        return Err("it was made for another call (its key differs)".into());
    }
    crate::ids::validate_exec_id(&rec.exec_id).map_err(|e| e.to_string())?;
    crate::ids::validate_call_id(&rec.call_id).map_err(|e| e.to_string())?;
    Ok(rec)
}

/// The local file of flow `flow_name`'s entries.
pub fn log_key(flow_name: &str) -> String {
    let h = blake3::hash(flow_name.as_bytes());
    format!("{}/{}.log", layout::CACHE, layout::hex(&h.as_bytes()[..16]))
}

/// A flow's entries on a local disk, as one run has read them so far, and its appends.
pub struct LocalLog {
    key: String,
    /// Where the whole entries read so far end.
    offset: u64,
    entries: HashMap<[u8; 32], Bytes>,
    writer: Option<crate::store::Segment>,
}

impl LocalLog {
    pub fn new(flow_name: &str) -> LocalLog {
        LocalLog {
            key: log_key(flow_name),
            offset: 0,
            entries: HashMap::new(),
            writer: None,
        }
    }

    /// The entry (record bytes) for `key`: from what was read, else from what was appended
    /// since. `None` on object stores.
    pub fn find(&mut self, store: &Store, key: &[u8; 32]) -> Option<Result<Option<Bytes>>> {
        if let Some(b) = self.entries.get(key) {
            return Some(Ok(Some(b.clone())));
        }
        let read = match store.read_local_from(&self.key, self.offset)? {
            Ok(read) => read,
            Err(e) => return Some(Err(e)),
        };
        match read {
            // Never written, or cleared: what was read before is gone too.
            None => self.forget(),
            Some((size, _)) if size < self.offset => {
                // Cleared and written again: read it from the start.
                self.forget();
                return self.find(store, key);
            }
            Some((_, bytes)) => self.offset += index(&bytes, &mut self.entries) as u64,
        }
        Some(Ok(self.entries.get(key).cloned()))
    }

    fn forget(&mut self) {
        self.entries.clear();
        self.offset = 0;
    }

    /// Appends an entry (one write to the open file).
    pub fn append(&mut self, store: &Store, bytes: &[u8]) -> Result<()> {
        if self.writer.is_none() {
            self.writer = store.segment(self.key.clone());
        }
        match &mut self.writer {
            Some(writer) => store.append_hint(writer, bytes),
            None => Ok(()), // not a local store: entries are objects (`put`)
        }
    }
}

/// Adds the entries framed in `bytes` (a log read from some offset) to `entries`, the first
/// of a key counting; returns how many bytes were whole entries or damage skipped over. A
/// frame that does not check out is skipped to the next one that does (an append a crash
/// cut, then other processes' appends); bytes after the last whole frame are left to read
/// again (an append still being written).
fn index(bytes: &[u8], entries: &mut HashMap<[u8; 32], Bytes>) -> usize {
    let mut at = 0;
    loop {
        let scan = record::scan_segment(&bytes[at..]);
        for (frame, _) in &scan.frames {
            if let Ok(rec) = record::decode::<CacheRecord>(frame) {
                entries
                    .entry(rec.key.0)
                    .or_insert_with(|| Bytes::copy_from_slice(frame));
            }
        }
        let Some((bad, _)) = scan.tail else {
            return bytes.len();
        };
        let bad = at + bad;
        match next_frame(&bytes[bad + 1..]) {
            Some(i) => at = bad + 1 + i,
            None => return bad,
        }
    }
}

/// Where the next whole frame in `bytes` starts, if one does.
fn next_frame(bytes: &[u8]) -> Option<usize> {
    let magic = &record::MAGIC;
    (0..bytes.len().saturating_sub(magic.len() - 1)).find(|&i| {
        &bytes[i..i + magic.len()] == magic && !record::scan_segment(&bytes[i..]).frames.is_empty()
    })
}

/// The entries in a local log's `bytes`: each record, or why a stretch of it is damaged.
pub fn log_entries(bytes: &[u8]) -> Vec<std::result::Result<CacheRecord, String>> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let scan = record::scan_segment(&bytes[at..]);
        for (frame, _) in &scan.frames {
            out.push(record::decode::<CacheRecord>(frame).map_err(|e| e.to_string()));
        }
        let Some((bad, why)) = scan.tail else {
            return out;
        };
        let bad = at + bad;
        match next_frame(&bytes[bad + 1..]) {
            Some(i) => {
                out.push(Err(format!("damaged bytes at offset {bad}: {why}")));
                at = bad + 1 + i;
            }
            None => {
                if !record::is_torn_tail(&bytes[bad..]) {
                    out.push(Err(format!("damaged bytes at offset {bad}: {why}")));
                }
                return out;
            }
        }
    }
}

/// The executions cached results came from in one run: each journal loaded once (again
/// only if it lacks a call, for a source still running), deltas rebuilt once.
#[derive(Default)]
pub struct Sources {
    journals: HashMap<String, Arc<Journal>>,
    resolved: HashMap<[u8; 32], Bytes>,
}

/// Looks the call up: `found` is the entry a local log gave, or None to read it here.
pub async fn lookup(
    store: &Store,
    parts: &KeyParts,
    found: Option<Bytes>,
    sources: &tokio::sync::Mutex<Sources>,
) -> Result<Lookup> {
    let key = layout::cache_key(&parts.key());
    let bytes = match found {
        Some(b) => b,
        None if store.is_local() => return Ok(Lookup::Miss),
        None => match store.get(&key).await? {
            Some(b) => b,
            None => return Ok(Lookup::Miss),
        },
    };
    let rec = match check(parts, &bytes) {
        Ok(rec) => rec,
        Err(why) => return Ok(Lookup::Unusable(format!("cache entry {key}: {why}"))),
    };
    match output_of(store, &rec, parts, sources).await {
        Ok(hit) => Ok(Lookup::Hit(hit)),
        Err(e @ Error::Corrupt { .. }) => Ok(Lookup::Unusable(format!(
            "cache entry {key} names an output that cannot be read back: {e}"
        ))),
        Err(Error::ExecutionNotFound { .. }) => Ok(Lookup::Unusable(format!(
            "cache entry {key} names execution {} which is gone",
            rec.exec_id
        ))),
        Err(e) => Err(e),
    }
}

/// The result the entry names, from its execution's journal, which must hold it as a call
/// of the same flow and checkpoint with the same input digest.
async fn output_of(
    store: &Store,
    rec: &CacheRecord,
    parts: &KeyParts,
    sources: &tokio::sync::Mutex<Sources>,
) -> Result<Hit> {
    let mut src = sources.lock().await;
    let journal = match src.journals.get(&rec.exec_id) {
        Some(j) if j.checkpoints.contains_key(&rec.call_id) => j.clone(),
        _ => {
            let j = Arc::new(Journal::load(store, &rec.exec_id, Scope::Full).await?);
            src.journals.insert(rec.exec_id.clone(), j.clone());
            j
        }
    };
    if journal.start().map(|s| s.flow_name.as_str()) != Some(parts.flow_name.as_str()) {
        return Err(corrupt(rec, "it names an execution of another flow"));
    }
    // The call's record, or an earlier one of the same call id (recorded again after its
    // inputs changed, policy `rerun`) that has these inputs.
    let same = |r: &&crate::journal::types::CheckpointRecord| {
        r.name == parts.name && r.input_digest == Some(parts.input_digest)
    };
    let latest = journal.checkpoints.get(&rec.call_id).map(|(_, r)| r);
    let Some(cp) = latest
        .into_iter()
        .chain(journal.superseded.iter())
        .filter(|r| r.call_id == rec.call_id)
        .find(same)
    else {
        return Err(corrupt(
            rec,
            "its execution has no finished call of that id with these inputs",
        ));
    };
    let bytes =
        crate::delta::resolve(store, &journal, &rec.call_id, &cp.output, &mut src.resolved).await?;
    Ok(Hit {
        exec_id: rec.exec_id.clone(),
        call_id: rec.call_id.clone(),
        checkpoint_type: cp.checkpoint_type.clone(),
        output: RawValue {
            serializer: cp.output.serializer.clone(),
            bytes,
        },
        metadata_json: cp.metadata_json.clone(),
    })
}

fn corrupt(rec: &CacheRecord, reason: &str) -> Error {
    Error::Corrupt {
        key: layout::cache_key(&rec.key.0),
        exec_id: Some(rec.exec_id.clone()),
        checkpoint: Some(rec.call_id.clone()),
        reason: reason.to_string(),
    }
}

/// The bytes of an entry.
pub fn encode(rec: &CacheRecord) -> Result<Bytes> {
    record::encode(rec)
        .map(Bytes::from)
        .map_err(|e| Error::Encode {
            exec_id: rec.exec_id.clone(),
            call_id: rec.call_id.clone(),
            reason: e.to_string(),
        })
}

/// Leaves an entry as a create-only object (a key already taken keeps its first entry);
/// local disks append to their flow's [`LocalLog`] instead.
pub async fn put(store: &Store, rec: &CacheRecord) -> Result<()> {
    store
        .put_create(&layout::cache_key(&rec.key.0), encode(rec)?)
        .await?;
    Ok(())
}

/// A cache entry as people see it (`kitaru cache list`).
#[derive(Debug, Clone, Serialize)]
pub struct EntryView {
    /// Where it is stored: its object, or its flow's log on a local disk.
    pub key: String,
    /// The cache key (hex), when the entry reads.
    pub cache_key: Option<String>,
    pub flow_name: Option<String>,
    pub name: Option<String>,
    pub exec_id: Option<String>,
    pub call_id: Option<String>,
    pub created_us: Option<u64>,
    /// Why the entry cannot be read, if it cannot (it is never used then).
    pub damaged: Option<String>,
}

impl EntryView {
    fn of(key: &str, rec: std::result::Result<CacheRecord, String>) -> EntryView {
        match rec {
            Ok(r) => EntryView {
                key: key.to_string(),
                cache_key: Some(layout::hex(&r.key.0)),
                flow_name: Some(r.flow_name),
                name: Some(r.name),
                exec_id: Some(r.exec_id),
                call_id: Some(r.call_id),
                created_us: Some(r.created_us),
                damaged: None,
            },
            Err(why) => EntryView {
                key: key.to_string(),
                cache_key: None,
                flow_name: None,
                name: None,
                exec_id: None,
                call_id: None,
                created_us: None,
                damaged: Some(why),
            },
        }
    }
}

/// The entries of flow `flow` (or all), oldest first; damaged ones only when listing all
/// (a local log's damage is listed with its flow's entries).
pub async fn list(store: &Store, flow: Option<&str>) -> Result<Vec<EntryView>> {
    let keys = store.list(&format!("{}/", layout::CACHE)).await?;
    let wanted_log = flow.map(log_key);
    let keys: Vec<String> = keys
        .into_iter()
        .filter(|k| !k.ends_with(".log") || wanted_log.is_none() || wanted_log.as_ref() == Some(k))
        .collect();
    let values = store.get_many(&keys).await?;
    let mut out = Vec::new();
    for (key, bytes) in keys.into_iter().zip(values) {
        let Some(bytes) = bytes else { continue };
        if key.ends_with(".log") {
            out.extend(
                log_entries(&bytes)
                    .into_iter()
                    .map(|r| EntryView::of(&key, r)),
            );
            continue;
        }
        let rec = record::decode::<CacheRecord>(&bytes).map_err(|e| e.to_string());
        let view = EntryView::of(&key, rec);
        if flow.is_none() || view.flow_name.as_deref() == flow {
            out.push(view);
        }
    }
    if let Some(flow) = flow {
        out.retain(|v| v.flow_name.is_none() || v.flow_name.as_deref() == Some(flow));
    }
    out.sort_by_key(|v| v.created_us);
    Ok(out)
}

/// Deletes the entries of flow `flow` (or every entry, damaged ones too); how many. The
/// executions they point to are untouched: only later runs stop finding them (a run
/// under way on a local disk keeps what it read).
pub async fn clear(store: &Store, flow: Option<&str>) -> Result<usize> {
    let entries = list(store, flow).await?;
    let keys: std::collections::BTreeSet<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    for key in keys {
        store.delete(key).await?;
    }
    Ok(entries.len())
}
