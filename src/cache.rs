//! The cross-execution cache: a finished checkpoint call of one execution answers the same
//! call of a later execution of the same flow (Kitaru 0.4's `cache=True`).
//!
//! The key is the blake3 hash of the flow's name, the checkpoint's name, its code identity
//! (a digest the caller makes of the function's source and the checkpoint's configuration)
//! and the digest of the call's inputs. Each finished call of an execution whose cache is on
//! leaves one create-only record `cache/<key hex>` naming the execution and call that
//! produced it, with the output itself when it is a whole value (inline or a blob) — a
//! delta output is read back through its execution's journal. The first execution to
//! finish a key keeps it: a record is never overwritten.
//!
//! A record is a hint, checked before it is believed: its key material must equal the
//! call's (so a record copied under another key, or a hash collision, is a miss), and its
//! output is read back like any stored value (checksummed record, hash-named blob). A
//! record that is damaged or whose source is gone is a miss with a reason, never an error
//! of the flow and never another call's output.

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::execution::RawValue;
use crate::journal::record::{self, Digest, Kind, Record};
use crate::journal::types::{Body, Value};
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

/// One cache entry: which call of which execution answers the key, and (when it is a whole
/// value) its output. It names its key, so an entry copied under another key is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    pub key: Digest,
    pub flow_name: String,
    pub name: String,
    pub input_digest: Digest,
    pub exec_id: String,
    pub call_id: String,
    pub checkpoint_type: Option<String>,
    /// The output, unless it was stored as a delta (then read through the journal).
    pub output: Option<Value>,
    /// The call's metadata (with a whole output; a delta's is read with it).
    pub metadata_json: Option<String>,
    pub created_us: u64,
}

impl CacheRecord {
    /// The entry for call `call_id` of `exec_id` that finished with `output`.
    pub fn new(
        parts: &KeyParts,
        exec_id: &str,
        call_id: &str,
        checkpoint_type: Option<String>,
        output: &Value,
        metadata_json: Option<String>,
        created_us: u64,
    ) -> CacheRecord {
        let whole = !matches!(output.body, Body::Delta { .. });
        CacheRecord {
            key: Digest(parts.key()),
            flow_name: parts.flow_name.clone(),
            name: parts.name.clone(),
            input_digest: parts.input_digest,
            exec_id: exec_id.to_string(),
            call_id: call_id.to_string(),
            checkpoint_type,
            output: whole.then(|| output.clone()),
            metadata_json: if whole { metadata_json } else { None },
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
    if rec.key.0 != parts.key()
        || rec.flow_name != parts.flow_name
        || rec.name != parts.name
        || rec.input_digest != parts.input_digest
    {
        return Err("it was made for another call (its key differs)".into());
    }
    crate::ids::validate_exec_id(&rec.exec_id).map_err(|e| e.to_string())?;
    crate::ids::validate_call_id(&rec.call_id).map_err(|e| e.to_string())?;
    Ok(rec)
}

/// Reads the entry at the key of `parts` from a local store right here (no task hop): the
/// usual miss costs one failed open. `None` on object stores (use [`lookup`]).
pub fn peek_local(store: &Store, parts: &KeyParts) -> Option<Result<Option<Bytes>>> {
    store.read_local_now(&layout::cache_key(&parts.key()))
}

/// Looks the call up: `found` is what `peek_local` read, or None to read the entry here.
pub async fn lookup(store: &Store, parts: &KeyParts, found: Option<Bytes>) -> Result<Lookup> {
    let key = layout::cache_key(&parts.key());
    let bytes = match found {
        Some(b) => b,
        None => match store.get(&key).await? {
            Some(b) => b,
            None => return Ok(Lookup::Miss),
        },
    };
    let rec = match check(parts, &bytes) {
        Ok(rec) => rec,
        Err(why) => return Ok(Lookup::Unusable(format!("cache entry {key}: {why}"))),
    };
    match output_of(store, &rec).await {
        Ok((output, metadata_json)) => Ok(Lookup::Hit(Hit {
            exec_id: rec.exec_id,
            call_id: rec.call_id,
            checkpoint_type: rec.checkpoint_type,
            output,
            metadata_json,
        })),
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

/// The output an entry answers with, and the call's metadata: its own, or its call's in
/// its execution's journal (which must still be the same call: same checkpoint and inputs).
async fn output_of(store: &Store, rec: &CacheRecord) -> Result<(RawValue, Option<String>)> {
    if let Some(v) = &rec.output {
        if matches!(v.body, Body::Delta { .. }) {
            return Err(corrupt(rec, "a delta where only a whole value may be"));
        }
        let value = crate::execution::load_value(store, v, &rec.exec_id, Some(&rec.call_id));
        return Ok((value.await?, rec.metadata_json.clone()));
    }
    let journal = Journal::load(store, &rec.exec_id, Scope::Full).await?;
    let Some((_, cp)) = journal.checkpoints.get(&rec.call_id) else {
        return Err(corrupt(rec, "its execution has no such finished call"));
    };
    if cp.name != rec.name || cp.input_digest != Some(rec.input_digest) {
        return Err(corrupt(rec, "its execution's call has other inputs"));
    }
    let bytes = crate::delta::resolve(
        store,
        &journal,
        &rec.call_id,
        &cp.output,
        &mut HashMap::new(),
    )
    .await?;
    let value = RawValue {
        serializer: cp.output.serializer.clone(),
        bytes,
    };
    Ok((value, cp.metadata_json.clone()))
}

fn corrupt(rec: &CacheRecord, reason: &str) -> Error {
    Error::Corrupt {
        key: layout::cache_key(&rec.key.0),
        exec_id: Some(rec.exec_id.clone()),
        checkpoint: Some(rec.call_id.clone()),
        reason: reason.to_string(),
    }
}

/// Leaves the entry for a finished call; a key already taken keeps its first entry.
pub async fn remember(store: &Store, rec: &CacheRecord) -> Result<()> {
    let bytes = record::encode(rec).map_err(|e| Error::Encode {
        exec_id: rec.exec_id.clone(),
        call_id: rec.call_id.clone(),
        reason: e.to_string(),
    })?;
    store
        .put_create(&layout::cache_key(&rec.key.0), bytes)
        .await?;
    Ok(())
}

/// A cache entry as people see it (`kitaru cache list`).
#[derive(Debug, Clone, Serialize)]
pub struct EntryView {
    pub key: String,
    pub flow_name: Option<String>,
    pub name: Option<String>,
    pub exec_id: Option<String>,
    pub call_id: Option<String>,
    pub created_us: Option<u64>,
    /// Why the entry cannot be read, if it cannot (it is never used then).
    pub damaged: Option<String>,
}

/// The entries (of flow `flow`, or all), oldest first; damaged ones only when listing all.
pub async fn list(store: &Store, flow: Option<&str>) -> Result<Vec<EntryView>> {
    let keys = store.list(&format!("{}/", layout::CACHE)).await?;
    let values = store.get_many(&keys).await?;
    let mut out = Vec::new();
    for (key, bytes) in keys.into_iter().zip(values) {
        let Some(bytes) = bytes else { continue };
        let view = match record::decode::<CacheRecord>(&bytes) {
            Ok(r) => EntryView {
                key,
                flow_name: Some(r.flow_name),
                name: Some(r.name),
                exec_id: Some(r.exec_id),
                call_id: Some(r.call_id),
                created_us: Some(r.created_us),
                damaged: None,
            },
            Err(e) => EntryView {
                key,
                flow_name: None,
                name: None,
                exec_id: None,
                call_id: None,
                created_us: None,
                damaged: Some(e.to_string()),
            },
        };
        if flow.is_none() || view.flow_name.as_deref() == flow {
            out.push(view);
        }
    }
    out.sort_by_key(|v| v.created_us);
    Ok(out)
}

/// Deletes the entries of flow `flow` (or every entry, damaged ones too); how many. The
/// executions they point to are untouched: only later executions stop finding them.
pub async fn clear(store: &Store, flow: Option<&str>) -> Result<usize> {
    let entries = list(store, flow).await?;
    for e in &entries {
        store.delete(&e.key).await?;
    }
    Ok(entries.len())
}
