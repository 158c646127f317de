//! Deltas: a checkpoint output that extends an earlier output of the same checkpoint
//! (an agent's growing message history) stores only what it added.
//!
//! The runner remembers the last output of each checkpoint name. A large new output that
//! shares a long prefix with it is stored as `Body::Delta` (base call, prefix length,
//! suffix, digest of the whole). Chains are bounded: at most `MAX_DEPTH` deltas, and the
//! suffixes of a chain may add up to at most twice its full base, so storage stays within
//! a small factor of the newest value whatever the number of turns. Rebuilding happens in
//! memory from the journal (the bases are records of the same execution) and is checked
//! against the digest.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::journal::record::{ByteBuf, Digest};
use crate::journal::types::{Body, CheckpointRecord, Value};
use crate::journal::Journal;
use crate::store::{layout, Store};

pub const MAX_DEPTH: u32 = 256;
/// Below this shared prefix a delta is not worth its bookkeeping.
pub const MIN_PREFIX: usize = 4096;

/// The last output of one checkpoint name, as a base for the next.
#[derive(Debug, Clone)]
pub struct Base {
    pub call_id: String,
    pub bytes: Bytes,
    /// blake3 of `bytes`, computed when first needed (a value that never becomes a base is
    /// not hashed twice: its blob put hashes it already).
    pub digest: Option<[u8; 32]>,
    pub depth: u32,
    /// Suffix bytes stored since the last full value, and that value's size.
    pub chain_bytes: u64,
    pub full_size: u64,
}

impl Base {
    pub fn full(call_id: &str, bytes: Bytes, depth: u32) -> Base {
        let full_size = bytes.len() as u64;
        Base {
            call_id: call_id.to_string(),
            bytes,
            digest: None,
            depth,
            chain_bytes: 0,
            full_size,
        }
    }

    fn digest(&self) -> [u8; 32] {
        self.digest
            .unwrap_or_else(|| *blake3::hash(&self.bytes).as_bytes())
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    // compare 8 bytes at a time, then finish byte by byte
    while i + 8 <= n && a[i..i + 8] == b[i..i + 8] {
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// The delta body for `new` over `base`, with the base for the call after it, or None
/// when `new` is better stored whole.
pub fn encode(base: Option<&Base>, call_id: &str, new: &Bytes) -> (Option<Body>, Base) {
    let whole = || Base::full(call_id, new.clone(), 0);
    if new.len() <= MIN_PREFIX {
        return (None, whole());
    }
    let Some(base) = base else {
        return (None, whole());
    };
    let keep = common_prefix(&base.bytes, new);
    let suffix = &new[keep..];
    let chain_bytes = base.chain_bytes + suffix.len() as u64;
    if keep < MIN_PREFIX
        || suffix.len() > layout::INLINE_LIMIT
        || base.depth >= MAX_DEPTH
        || chain_bytes > 2 * base.full_size
    {
        return (None, whole());
    }
    let digest = *blake3::hash(new).as_bytes();
    let body = Body::Delta {
        base_call: base.call_id.clone(),
        base_digest: Digest(base.digest()),
        keep: keep as u64,
        suffix: ByteBuf(suffix.to_vec()),
        digest: Digest(digest),
        depth: base.depth + 1,
    };
    let next = Base {
        call_id: call_id.to_string(),
        bytes: new.clone(),
        digest: Some(digest),
        depth: base.depth + 1,
        chain_bytes,
        full_size: base.full_size,
    };
    (Some(body), next)
}

fn corrupt(exec_id: &str, call: &str, reason: String) -> Error {
    Error::Corrupt {
        key: layout::exec_prefix(exec_id),
        exec_id: Some(exec_id.to_string()),
        checkpoint: Some(call.to_string()),
        reason,
    }
}

/// Every stored version of `call_id`'s output, newest first.
fn versions<'a>(journal: &'a Journal, call_id: &str) -> Vec<&'a CheckpointRecord> {
    let mut out: Vec<&CheckpointRecord> = journal
        .checkpoints
        .get(call_id)
        .map(|(_, r)| r)
        .into_iter()
        .collect();
    out.extend(journal.superseded.iter().filter(|r| r.call_id == call_id));
    out
}

/// The bytes of a stored output, rebuilding deltas from the journal. `cache` (by digest)
/// makes rebuilding a chain of N outputs cost O(N) instead of O(N²).
pub async fn resolve(
    store: &Store,
    journal: &Journal,
    call_id: &str,
    value: &Value,
    cache: &mut HashMap<[u8; 32], Bytes>,
) -> Result<Bytes> {
    let exec_id = journal.exec_id.as_str();
    // Walk down to a full value (or a cached one), remembering the deltas on the way.
    let mut chain: Vec<(String, u64, Vec<u8>, [u8; 32])> = Vec::new();
    let mut cur_call = call_id.to_string();
    let mut cur = value.body.clone();
    let mut bytes = loop {
        match cur {
            Body::Inline(b) => break Bytes::from(b.0),
            Body::Blob { hash, .. } => {
                break store
                    .get_blob(&hash.0, Some(exec_id), Some(&cur_call))
                    .await?
            }
            Body::Delta {
                base_call,
                base_digest,
                keep,
                suffix,
                digest,
                depth,
            } => {
                if let Some(hit) = cache.get(&digest.0) {
                    break hit.clone();
                }
                if chain.len() as u32 > MAX_DEPTH || depth > MAX_DEPTH {
                    return Err(corrupt(
                        exec_id,
                        &cur_call,
                        "a delta chain is longer than allowed".into(),
                    ));
                }
                chain.push((cur_call.clone(), keep, suffix.0, digest.0));
                if let Some(hit) = cache.get(&base_digest.0) {
                    break hit.clone();
                }
                // The base version is the one whose value has `base_digest`.
                let mut found = None;
                for v in versions(journal, &base_call) {
                    match &v.output.body {
                        Body::Delta { digest, .. } if *digest == base_digest => {
                            found = Some(v.output.body.clone())
                        }
                        Body::Inline(b) if blake3::hash(&b.0).as_bytes() == &base_digest.0 => {
                            found = Some(v.output.body.clone())
                        }
                        Body::Blob { hash, .. } if *hash == base_digest => {
                            found = Some(v.output.body.clone())
                        }
                        _ => {}
                    }
                    if found.is_some() {
                        break;
                    }
                }
                cur = found.ok_or_else(|| {
                    corrupt(
                        exec_id,
                        &cur_call,
                        format!("its delta base (an output of {base_call}) is missing"),
                    )
                })?;
                cur_call = base_call;
            }
        }
    };
    while let Some((call, keep, suffix, digest)) = chain.pop() {
        let keep = keep as usize;
        if keep > bytes.len() {
            return Err(corrupt(
                exec_id,
                &call,
                "a delta keeps more than its base has".into(),
            ));
        }
        let mut buf = BytesMut::with_capacity(keep.saturating_add(suffix.len()));
        buf.extend_from_slice(&bytes[..keep]);
        buf.extend_from_slice(&suffix);
        let rebuilt = buf.freeze();
        if blake3::hash(&rebuilt).as_bytes() != &digest {
            return Err(corrupt(
                exec_id,
                &call,
                "the rebuilt value does not match its digest".into(),
            ));
        }
        cache.insert(digest, rebuilt.clone());
        bytes = rebuilt;
    }
    Ok(bytes)
}
