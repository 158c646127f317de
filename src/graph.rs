//! LangGraph checkpoints (`kitaru.adapters.langgraph.KitaruSaver`): the records of a
//! thread's checkpoints and of the writes pending on them, by thread and namespace.
//!
//! Keys (each segment escaped as in memory: `!s` for `/`, `!d` for `.`, `!e` for an empty
//! namespace, `!!` for `!`):
//!
//! ```text
//! graph/<thread>/<ns>/c/<checkpoint id>                       one checkpoint
//! graph/<thread>/<ns>/w/<checkpoint id>/<task id>.<idx>[.<n>] one pending write
//! ```
//!
//! Every record is create-only. A write with a negative index (LangGraph's special
//! channels: errors, interrupts) replaces an earlier one by a further revision `.<n>`;
//! readers take the highest. What a record holds is the saver's (LangGraph's serialized
//! checkpoint, metadata and channel references, packed by the Python side); large channel
//! values go to content-addressed blobs (stored once, however many checkpoints refer to
//! them), so the records stay small. Checkpoint ids are LangGraph's, which sort in time
//! order, so a listing gives a thread's checkpoints oldest first.

use crate::error::{Error, Result};
use crate::journal::record::{self, ByteBuf, Kind, Record};
use crate::store::Store;
use serde::{Deserialize, Serialize};

pub const GRAPH: &str = "graph";

/// One checkpoint or one write: the saver's bytes, and where they belong (checked on read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphRecord {
    pub thread: String,
    pub ns: String,
    pub checkpoint_id: String,
    /// For a write: (task id, index); None for a checkpoint.
    pub write: Option<(String, i64)>,
    pub data: ByteBuf,
}

impl Record for GraphRecord {
    const KIND: Kind = Kind::Graph;
}

/// A write as the saver gets it back: (task id, index, bytes).
pub type Write = (String, i64, Vec<u8>);

fn encode(s: &str) -> String {
    if s.is_empty() {
        return "!e".into();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '!' => out.push_str("!!"),
            '/' => out.push_str("!s"),
            '.' => out.push_str("!d"),
            c => out.push(c),
        }
    }
    out
}

fn decode(s: &str) -> String {
    if s == "!e" {
        return String::new();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '!' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push('/'),
            Some('d') => out.push('.'),
            Some('!') => out.push('!'),
            Some(other) => {
                out.push('!');
                out.push(other);
            }
            None => out.push('!'),
        }
    }
    out
}

fn check(what: &'static str, value: &str) -> Result<()> {
    if value.len() > 512 || value.chars().any(|c| c.is_control()) {
        return Err(Error::InvalidName {
            what,
            value: value.chars().take(80).collect(),
            rule: "at most 512 characters, no control characters",
        });
    }
    Ok(())
}

fn thread_prefix(thread: &str) -> String {
    format!("{GRAPH}/{}/", encode(thread))
}

fn ns_prefix(thread: &str, ns: &str) -> String {
    format!("{GRAPH}/{}/{}/", encode(thread), encode(ns))
}

fn checkpoint_key(thread: &str, ns: &str, id: &str) -> String {
    format!("{}c/{}", ns_prefix(thread, ns), encode(id))
}

fn writes_prefix(thread: &str, ns: &str, id: &str) -> String {
    format!("{}w/{}/", ns_prefix(thread, ns), encode(id))
}

/// The last segment of a write's key: task id, index, revision.
fn parse_write_name(name: &str) -> Option<(String, i64, u32)> {
    let mut parts = name.split('.');
    let task = decode(parts.next()?);
    let idx = parts.next()?.parse().ok()?;
    let rev = match parts.next() {
        Some(n) => n.parse().ok()?,
        None => 0,
    };
    parts.next().is_none().then_some((task, idx, rev))
}

fn decode_record(key: &str, bytes: &[u8], thread: &str, ns: &str) -> Result<GraphRecord> {
    let rec: GraphRecord =
        record::decode(bytes).map_err(|e| Error::corrupt_record(key, None, e))?;
    if rec.thread != thread || rec.ns != ns {
        return Err(Error::Corrupt {
            key: key.to_string(),
            exec_id: None,
            checkpoint: None,
            reason: "a LangGraph record stored under another thread or namespace".into(),
        });
    }
    Ok(rec)
}

fn encode_record(rec: &GraphRecord) -> Result<Vec<u8>> {
    record::encode(rec).map_err(|e| Error::Encode {
        exec_id: format!("graph {}", rec.thread),
        call_id: rec.checkpoint_id.clone(),
        reason: e.to_string(),
    })
}

async fn create(store: &Store, key: &str, bytes: Vec<u8>) -> Result<bool> {
    match store.put_create_local_now(key, &bytes) {
        Some(done) => done,
        None => store.put_create(key, bytes).await,
    }
}

/// Stores a checkpoint; false when one with this id is stored already (it is kept).
pub async fn put_checkpoint(
    store: &Store,
    thread: &str,
    ns: &str,
    id: &str,
    data: Vec<u8>,
) -> Result<bool> {
    check("thread id", thread)?;
    check("checkpoint namespace", ns)?;
    check("checkpoint id", id)?;
    let rec = GraphRecord {
        thread: thread.into(),
        ns: ns.into(),
        checkpoint_id: id.into(),
        write: None,
        data: ByteBuf(data),
    };
    create(store, &checkpoint_key(thread, ns, id), encode_record(&rec)?).await
}

/// The checkpoint ids of a thread's namespace, oldest first.
pub async fn checkpoint_ids(store: &Store, thread: &str, ns: &str) -> Result<Vec<String>> {
    let prefix = format!("{}c/", ns_prefix(thread, ns));
    let mut ids: Vec<String> = store
        .list(prefix.trim_end_matches('/'))
        .await?
        .iter()
        .filter_map(|k| k.strip_prefix(&prefix).map(decode))
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// The stored bytes of each checkpoint (None: not stored), read concurrently.
pub async fn get_checkpoints(
    store: &Store,
    thread: &str,
    ns: &str,
    ids: &[String],
) -> Result<Vec<Option<Vec<u8>>>> {
    let keys: Vec<String> = ids
        .iter()
        .map(|id| checkpoint_key(thread, ns, id))
        .collect();
    let found = store.get_many(&keys).await?;
    keys.iter()
        .zip(found)
        .map(|(key, bytes)| match bytes {
            None => Ok(None),
            Some(b) => Ok(Some(decode_record(key, &b, thread, ns)?.data.0)),
        })
        .collect()
}

/// Stores writes pending on a checkpoint. A write whose (task, index) is stored already is
/// kept as it is when its index is >= 0 (a task's writes are replayed, not repeated), and
/// replaced by a new revision when it is negative (LangGraph's special channels).
pub async fn put_writes(
    store: &Store,
    thread: &str,
    ns: &str,
    id: &str,
    writes: Vec<Write>,
) -> Result<()> {
    check("checkpoint id", id)?;
    let prefix = writes_prefix(thread, ns, id);
    for (task, idx, data) in writes {
        check("task id", &task)?;
        let rec = GraphRecord {
            thread: thread.into(),
            ns: ns.into(),
            checkpoint_id: id.into(),
            write: Some((task.clone(), idx)),
            data: ByteBuf(data),
        };
        let bytes = encode_record(&rec)?;
        let base = format!("{prefix}{}.{idx}", encode(&task));
        let mut rev = 0u32;
        loop {
            let key = if rev == 0 {
                base.clone()
            } else {
                format!("{base}.{rev}")
            };
            if create(store, &key, bytes.clone()).await? || idx >= 0 {
                break;
            }
            rev += 1;
            if rev > 10_000 {
                return Err(Error::Contention {
                    exec_id: format!("graph {thread}"),
                    attempts: rev,
                });
            }
        }
    }
    Ok(())
}

/// The writes pending on each of `ids` (all of the namespace's when `ids` is None), in key
/// order; one listing of the namespace's writes, then concurrent reads.
pub async fn writes(
    store: &Store,
    thread: &str,
    ns: &str,
    ids: Option<&[String]>,
) -> Result<Vec<(String, Vec<Write>)>> {
    let base = format!("{}w/", ns_prefix(thread, ns));
    let listing = match ids {
        Some([one]) => {
            let p = writes_prefix(thread, ns, one);
            store.list(p.trim_end_matches('/')).await?
        }
        _ => store.list(base.trim_end_matches('/')).await?,
    };
    // The newest revision of each (checkpoint, task, index).
    let mut newest: std::collections::BTreeMap<(String, String, i64), (u32, String)> =
        std::collections::BTreeMap::new();
    for key in listing {
        let Some(rest) = key.strip_prefix(&base) else {
            continue;
        };
        let Some((cid, name)) = rest.split_once('/') else {
            continue;
        };
        let cid = decode(cid);
        if let Some(wanted) = ids {
            if !wanted.contains(&cid) {
                continue;
            }
        }
        let Some((task, idx, rev)) = parse_write_name(name) else {
            continue;
        };
        let slot = newest.entry((cid, task, idx)).or_insert((rev, key.clone()));
        if rev >= slot.0 {
            *slot = (rev, key);
        }
    }
    let keys: Vec<String> = newest.values().map(|(_, k)| k.clone()).collect();
    let found = store.get_many(&keys).await?;
    let mut out: Vec<(String, Vec<Write>)> = Vec::new();
    for (((cid, task, idx), (_, key)), bytes) in newest.into_iter().zip(found) {
        let Some(bytes) = bytes else { continue }; // deleted meanwhile
        let rec = decode_record(&key, &bytes, thread, ns)?;
        if rec.checkpoint_id != cid || rec.write != Some((task.clone(), idx)) {
            return Err(Error::Corrupt {
                key,
                exec_id: None,
                checkpoint: None,
                reason: "a LangGraph write stored under another checkpoint or task".into(),
            });
        }
        match out.last_mut() {
            Some((last, list)) if *last == cid => list.push((task, idx, rec.data.0)),
            _ => out.push((cid, vec![(task, idx, rec.data.0)])),
        }
    }
    Ok(out)
}

/// The threads that have checkpoints, sorted.
pub async fn threads(store: &Store) -> Result<Vec<String>> {
    Ok(store
        .list_dirs(GRAPH)
        .await?
        .iter()
        .map(|d| decode(d))
        .collect())
}

/// A thread's namespaces, sorted.
pub async fn namespaces(store: &Store, thread: &str) -> Result<Vec<String>> {
    let prefix = thread_prefix(thread);
    Ok(store
        .list_dirs(prefix.trim_end_matches('/'))
        .await?
        .iter()
        .map(|d| decode(d))
        .collect())
}

/// Deletes checkpoints and their writes: all of a thread (`ns` None), all of a namespace
/// (`ids` None), or the checkpoints `ids`. Blobs stay (other checkpoints may share them).
pub async fn delete(
    store: &Store,
    thread: &str,
    ns: Option<&str>,
    ids: Option<&[String]>,
) -> Result<u64> {
    let keys: Vec<String> = match (ns, ids) {
        (None, _) => {
            let p = thread_prefix(thread);
            store.list(p.trim_end_matches('/')).await?
        }
        (Some(ns), None) => {
            let p = ns_prefix(thread, ns);
            store.list(p.trim_end_matches('/')).await?
        }
        (Some(ns), Some(ids)) => {
            let mut keys = Vec::new();
            for id in ids {
                keys.push(checkpoint_key(thread, ns, id));
                let p = writes_prefix(thread, ns, id);
                keys.extend(store.list(p.trim_end_matches('/')).await?);
            }
            keys
        }
    };
    let n = keys.len() as u64;
    for key in keys {
        store.delete(&key).await?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip_and_never_nest() {
        for s in ["", "a", "a/b", "a.b", "!", "!e", "x!sy", "..", "ns|child:1"] {
            let e = encode(s);
            assert!(
                !e.contains('/') && !e.contains('.') && !e.is_empty(),
                "{s:?} -> {e:?}"
            );
            assert_eq!(decode(&e), s);
        }
        assert_ne!(encode(""), encode("!e"));
    }

    #[test]
    fn write_names_parse() {
        assert_eq!(parse_write_name("t1.0"), Some(("t1".into(), 0, 0)));
        assert_eq!(parse_write_name("t!d1.-3.2"), Some(("t.1".into(), -3, 2)));
        assert_eq!(parse_write_name("t1"), None);
    }
}
