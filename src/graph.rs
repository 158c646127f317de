//! LangGraph checkpoints (`kitaru.adapters.langgraph.KitaruSaver`): the records of a
//! thread's checkpoints and of the writes pending on them, by thread and namespace.
//!
//! Keys (each segment escaped as in memory: `!s` for `/`, `!d` for `.`, `!e` for an empty
//! namespace, `!!` for `!`):
//!
//! ```text
//! graph/<thread>/<ns>/c/<checkpoint id>             one checkpoint
//! graph/<thread>/<ns>/w/<checkpoint id>/<task id>.<n> the writes of one `put_writes` call
//! ```
//!
//! Every record is create-only. A task's writes are one record (`.0`); a later call for the
//! same task adds the next revision (`.1`, ...) when it brings a write with a negative
//! index (LangGraph's special channels: errors, interrupts, which replace an earlier one of
//! the same index); writes with an index >= 0 are never replaced (a replayed task writes
//! the same again, and the first stays). What a record holds is the saver's (LangGraph's serialized
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
    /// The task of a write record; None for a checkpoint.
    pub task: Option<String>,
    /// A checkpoint's bytes (empty for a write record).
    pub data: ByteBuf,
    /// A write record's writes: (index, bytes).
    pub writes: Vec<(i64, ByteBuf)>,
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

/// The last segment of a write record's key: task id, revision.
fn parse_write_name(name: &str) -> Option<(String, u32)> {
    let (task, rev) = name.rsplit_once('.')?;
    Some((decode(task), rev.parse().ok()?))
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

fn encode_record(store: &Store, rec: &GraphRecord) -> Result<Vec<u8>> {
    record::encode_with(rec, store.compresses()).map_err(|e| Error::Encode {
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
        task: None,
        data: ByteBuf(data),
        writes: Vec::new(),
    };
    create(store, &checkpoint_key(thread, ns, id), encode_record(store, &rec)?).await
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

/// Stores the writes (index, bytes) of one task pending on a checkpoint: one record. When
/// the task has a record already, writes with an index >= 0 are not stored again (a task
/// replayed writes the same), and negative ones go to the next revision, where they
/// replace the earlier ones.
pub async fn put_writes(
    store: &Store,
    thread: &str,
    ns: &str,
    id: &str,
    task: &str,
    writes: Vec<(i64, Vec<u8>)>,
) -> Result<()> {
    check("checkpoint id", id)?;
    check("task id", task)?;
    let base = format!("{}{}", writes_prefix(thread, ns, id), encode(task));
    let mut rec = GraphRecord {
        thread: thread.into(),
        ns: ns.into(),
        checkpoint_id: id.into(),
        task: Some(task.into()),
        data: ByteBuf(Vec::new()),
        writes: writes.into_iter().map(|(i, b)| (i, ByteBuf(b))).collect(),
    };
    for rev in 0..10_000u32 {
        if rev == 1 {
            rec.writes.retain(|(i, _)| *i < 0);
            if rec.writes.is_empty() {
                return Ok(());
            }
        }
        if create(store, &format!("{base}.{rev}"), encode_record(store, &rec)?).await? {
            return Ok(());
        }
    }
    Err(Error::Contention {
        exec_id: format!("graph {thread}"),
        attempts: 10_000,
    })
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
    // Each (checkpoint, task)'s records in revision order.
    let mut records: std::collections::BTreeMap<(String, String), Vec<(u32, String)>> =
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
        let Some((task, rev)) = parse_write_name(name) else {
            continue;
        };
        records
            .entry((cid, task))
            .or_default()
            .push((rev, key.clone()));
    }
    let keys: Vec<String> = records
        .values_mut()
        .flat_map(|revs| {
            revs.sort_unstable();
            revs.iter().map(|(_, k)| k.clone())
        })
        .collect();
    let mut found = store.get_many(&keys).await?.into_iter().zip(keys);
    let mut out: Vec<(String, Vec<Write>)> = Vec::new();
    for ((cid, task), revs) in records {
        // index -> bytes: the first for an index >= 0, the last for a negative one
        let mut merged: std::collections::BTreeMap<i64, Vec<u8>> =
            std::collections::BTreeMap::new();
        for _ in 0..revs.len() {
            let Some((bytes, key)) = found.next() else {
                break;
            };
            let Some(bytes) = bytes else { continue }; // deleted meanwhile
            let rec = decode_record(&key, &bytes, thread, ns)?;
            if rec.checkpoint_id != cid || rec.task.as_deref() != Some(task.as_str()) {
                return Err(Error::Corrupt {
                    key,
                    exec_id: None,
                    checkpoint: None,
                    reason: "LangGraph writes stored under another checkpoint or task".into(),
                });
            }
            for (idx, data) in rec.writes {
                if idx < 0 || !merged.contains_key(&idx) {
                    merged.insert(idx, data.0);
                }
            }
        }
        let writes = merged.into_iter().map(|(i, d)| (task.clone(), i, d));
        match out.last_mut() {
            Some((last, list)) if *last == cid => list.extend(writes),
            _ => out.push((cid, writes.collect())),
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
        assert_eq!(parse_write_name("t1.0"), Some(("t1".into(), 0)));
        assert_eq!(parse_write_name("t!d1.2"), Some(("t.1".into(), 2)));
        assert_eq!(parse_write_name("t1"), None);
    }
}
