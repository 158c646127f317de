//! Packs: every record of an execution in one object, written when a run ends on an
//! object store, so the next full read (a retry, a resume, a replay, `executions get`) is
//! one LIST and one GET instead of a GET per record (300 checkpoints: 300 requests).
//!
//! A pack is a cache of immutable records, never a source of truth: it is used only for
//! keys the listing still shows (a record written after it, say a later answer or claim,
//! is read from its own key), it holds no lease heartbeat (those are overwritten) and no
//! logs, and a pack that is missing, damaged or unreadable is ignored (with a warning)
//! and the records are read one by one as before. Layout: `executions/<id>/pack/<seq>`,
//! `seq` the last state event the pack covers; create-only, so a pack is never rewritten.
//!
//! Format: `KITPACK1`, then per record `u32 key length, key, u32 value length, value`
//! (little endian), then the blake3 hash of all that. Lengths and counts are bounded
//! before anything is allocated.

use std::collections::HashMap;

use bytes::Bytes;

use crate::error::Result;
use crate::journal::record::{self, RecordError};
use crate::store::layout::{self, ExecKey};
use crate::store::Store;

pub const MAGIC: &[u8; 8] = b"KITPACK1";
const MAX_KEY: usize = 4096;
/// A pack is not written past this size (a huge journal is read record by record).
pub const MAX_PACK: usize = 256 << 20;

/// Whether records of this kind go into a pack: immutable ones a full read needs.
pub fn packable(kind: &ExecKey<'_>) -> bool {
    !matches!(
        kind,
        ExecKey::Lease(_) | ExecKey::Log | ExecKey::Other | ExecKey::Pack(_)
    )
}

pub fn encode(entries: &[(&str, &Bytes)]) -> Vec<u8> {
    let size: usize = entries.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(MAGIC.len() + size + 32);
    out.extend_from_slice(MAGIC);
    for (key, value) in entries {
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    let hash = blake3::hash(&out);
    out.extend_from_slice(hash.as_bytes());
    out
}

/// The records of a pack by key, or why it cannot be used.
pub fn decode(bytes: &Bytes) -> std::result::Result<HashMap<String, Bytes>, &'static str> {
    if bytes.len() < MAGIC.len() + 32 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a pack");
    }
    let (body, hash) = bytes.split_at(bytes.len() - 32);
    if blake3::hash(body).as_bytes() != hash {
        return Err("its content does not match its hash");
    }
    let mut out = HashMap::new();
    let mut at = MAGIC.len();
    // the next `n` bytes of the body, or an error when the body ends first
    let take = |at: &mut usize, n: usize| -> std::result::Result<&[u8], &'static str> {
        let end = at
            .checked_add(n)
            .filter(|&e| e <= body.len())
            .ok_or("a record runs past its end")?;
        let part = &body[*at..end];
        *at = end;
        Ok(part)
    };
    let length = |at: &mut usize| -> std::result::Result<usize, &'static str> {
        let b = take(at, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    while at < body.len() {
        let klen = length(&mut at)?;
        if klen > MAX_KEY {
            return Err("a key is longer than any kitaru writes");
        }
        let key = std::str::from_utf8(take(&mut at, klen)?)
            .map_err(|_| "a key is not UTF-8")?
            .to_string();
        let vlen = length(&mut at)?;
        let start = at;
        take(&mut at, vlen)?;
        out.insert(key, bytes.slice(start..at));
    }
    Ok(out)
}

/// A pack as JSON for `kitaru store dump`: each record it holds (by key, in key order),
/// as `record::to_json` shows it (segments as their records).
pub fn to_json(bytes: &Bytes) -> std::result::Result<serde_json::Value, RecordError> {
    let records = decode(bytes).map_err(|why| RecordError::Payload(format!("pack: {why}")))?;
    let mut keys: Vec<&String> = records.keys().collect();
    keys.sort();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let value = &records[key];
        let mut shown = if layout::is_segment_key(key) {
            record::segment_to_json(value)?
        } else {
            record::to_json(value)?
        };
        if let Some(fields) = shown.as_object_mut() {
            fields.insert("key".into(), key.clone().into());
        }
        out.push(shown);
    }
    Ok(serde_json::json!({"kind": "pack", "records": out}))
}

/// The newest pack among `keys` (an execution's listing), if any.
pub fn newest<'a>(exec_id: &str, keys: &'a [String]) -> Option<&'a String> {
    keys.iter()
        .filter_map(|k| match layout::classify(exec_id, k) {
            Some(ExecKey::Pack(seq)) => Some((seq, k)),
            _ => None,
        })
        .max_by_key(|(seq, _)| *seq)
        .map(|(_, k)| k)
}

/// Packs the execution's records as they are now (one listing, the reads, one
/// create-only put), then drops the packs it supersedes. Returns the pack's key, or None
/// when there is nothing new to pack.
pub async fn write(store: &Store, exec_id: &str) -> Result<Option<String>> {
    let keys = store.list(&layout::exec_prefix(exec_id)).await?;
    let mut last_state = None;
    let wanted: Vec<String> = keys
        .iter()
        .filter(|k| match layout::classify(exec_id, k) {
            Some(ExecKey::State(seq)) => {
                last_state = last_state.max(Some(seq));
                true
            }
            Some(kind) => packable(&kind),
            None => false,
        })
        .cloned()
        .collect();
    let Some(seq) = last_state else {
        return Ok(None);
    };
    let key = layout::pack_key(exec_id, seq);
    if keys.contains(&key) {
        return Ok(None);
    }
    let values = store.get_many(&wanted).await?;
    let entries: Vec<(&str, &Bytes)> = wanted
        .iter()
        .zip(values.iter())
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.as_str(), v)))
        .collect();
    let bytes = encode(&entries);
    if bytes.len() > MAX_PACK {
        return Ok(None);
    }
    store.put_create(&key, bytes).await?;
    for old in keys
        .iter()
        .filter(|k| matches!(layout::classify(exec_id, k), Some(ExecKey::Pack(_))))
    {
        // superseded: readers that listed it and find it gone read record by record
        let _ = store.delete(old).await;
    }
    Ok(Some(key))
}
