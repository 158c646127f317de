//! The execution index: which executions exist, newest first, by flow and by status,
//! without reading every execution (docs/store-layout.md, "The execution index").
//!
//! ```text
//! index/t/<a>/<b>/<inverted id>               every execution
//! index/f/<flow hash>/<a>/<b>/<inverted id>   the executions of one flow
//! index/s/<state>/<a>/<b>/<inverted id>       the executions last recorded in <state>
//!                                             (completed, failed, cancelled)
//! index/a/<state>/<a>/<b>/<inverted id>       the same for running and waiting: what a
//!                                             recovery pass looks at, in one listing
//! ```
//!
//! Entries are empty objects. `<inverted id>` is the execution id (a UUIDv7) with every
//! bit flipped, as 32 hex digits, so key order is newest first; `<a>` and `<b>` are its
//! first 6 and next 3 digits (about 4.7 hours and 4 seconds of start time), so that a
//! local directory never holds more than the executions started in 4 seconds and a walk
//! to the newest entries reads three small directories. Object stores list the same keys
//! in one flat listing (one request per 1,000 entries, newest first).
//!
//! The index is never the truth, only where to look: the time and flow entries are
//! written with the execution's first state event and never change; a status entry is
//! written when a state event moves the execution to that state and the previous one is
//! then deleted. A runner that dies leaves its execution under `running` (the summary
//! tells a lapsed lease), and a crash between the two writes leaves an extra entry, so
//! readers check each execution they are pointed at and skip what does not match.

use std::collections::BTreeSet;

use futures::stream::{BoxStream, StreamExt};

use crate::error::Result;
use crate::journal::{Journal, Scope};
use crate::store::{layout, Store};
use crate::suspend::State;

pub const INDEX: &str = "index";

/// Where an execution is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree<'a> {
    All,
    Flow(&'a str),
    /// A recorded state (`State::name`: running, waiting, completed, failed, cancelled).
    Status(&'a str),
    /// Running and waiting together (`index/a`, one listing; not in time order).
    Active,
}

fn tree_prefix(tree: Tree<'_>) -> String {
    match tree {
        Tree::All => format!("{INDEX}/t"),
        // Flow names are free text; their hash is a fixed-width key part.
        Tree::Flow(flow) => format!(
            "{INDEX}/f/{}",
            &layout::hex(blake3::hash(flow.as_bytes()).as_bytes())[..32]
        ),
        Tree::Status(state @ ("running" | "waiting")) => format!("{INDEX}/a/{state}"),
        Tree::Status(state) => format!("{INDEX}/s/{state}"),
        Tree::Active => format!("{INDEX}/a"),
    }
}

/// The id's 128 bits, flipped, as 32 hex digits (None: not a UUID).
fn inverted(exec_id: &str) -> Option<String> {
    let digits: String = exec_id.chars().filter(|c| *c != '-').collect();
    let value = u128::from_str_radix(&digits, 16).ok()?;
    (digits.len() == 32).then(|| format!("{:032x}", !value))
}

/// The execution id an index key names.
pub fn id_of_key(key: &str) -> Option<String> {
    let last = key.rsplit('/').next()?;
    if last.len() != 32 {
        return None;
    }
    Some(crate::ids::uuid_text(!u128::from_str_radix(last, 16).ok()?))
}

/// The key of `exec_id`'s entry in `tree`.
pub fn entry_key(tree: Tree<'_>, exec_id: &str) -> Option<String> {
    let inv = inverted(exec_id)?;
    Some(format!(
        "{}/{}/{}/{inv}",
        tree_prefix(tree),
        &inv[..6],
        &inv[6..9]
    ))
}

/// The state an execution is indexed under (None for `New`: it does not exist yet).
pub fn indexed_state(state: &State) -> Option<&'static str> {
    match state {
        State::New => None,
        other => Some(other.name()),
    }
}

async fn put(store: &Store, tree: Tree<'_>, exec_id: &str) -> Result<()> {
    match entry_key(tree, exec_id) {
        Some(key) => store.put_marker(&key).await,
        None => Ok(()),
    }
}

/// The entries of a new execution (written beside its first state event): all, its flow,
/// and `running`.
pub async fn note_start(store: &Store, exec_id: &str, flow: &str) -> Result<()> {
    let (a, (b, c)) = futures::future::join(
        put(store, Tree::All, exec_id),
        futures::future::join(
            put(store, Tree::Flow(flow), exec_id),
            put(store, Tree::Status("running"), exec_id),
        ),
    )
    .await;
    a.and(b).and(c)
}

/// A state event moved `exec_id` from state `from` to `to`: its status entry moves. The
/// new entry is written first, so a failure between the two leaves an extra entry (which
/// readers skip), never none.
pub async fn note_state(store: &Store, exec_id: &str, from: Option<&str>, to: &str) {
    if from == Some(to) {
        return;
    }
    let written = put(store, Tree::Status(to), exec_id).await;
    let dropped = match (
        &written,
        from.and_then(|f| entry_key(Tree::Status(f), exec_id)),
    ) {
        (Ok(()), Some(old)) => store.delete(&old).await,
        _ => Ok(()),
    };
    if let Err(e) = written.and(dropped) {
        // The listing still finds it (by time, by flow, or under its older state);
        // `kitaru store reindex` writes what is missing.
        tracing::warn!(exec_id, error = %e, "could not update the execution index");
    }
}

/// Execution ids in `tree`, newest first, read as the stream is consumed.
pub fn scan(store: &Store, tree: Tree<'_>) -> BoxStream<'static, Result<String>> {
    store
        .scan(&tree_prefix(tree))
        .filter_map(|key| async move {
            match key {
                Ok(k) => id_of_key(&k).map(Ok),
                Err(e) => Some(Err(e)),
            }
        })
        .boxed()
}

/// Execution ids in any of `trees`, newest first, each once.
pub fn scan_any(store: &Store, trees: &[Tree<'_>]) -> BoxStream<'static, Result<String>> {
    if let [one] = trees {
        return scan(store, *one);
    }
    let streams: Vec<_> = trees.iter().map(|t| scan(store, *t).peekable()).collect();
    futures::stream::unfold(
        (streams, None::<String>),
        |(mut streams, last)| async move {
            loop {
                // The newest head of all streams (ids sort by time: the largest first).
                let mut best: Option<(usize, String)> = None;
                for (i, s) in streams.iter_mut().enumerate() {
                    match std::pin::Pin::new(s).peek().await {
                        Some(Ok(id)) if best.as_ref().is_none_or(|(_, b)| id > b) => {
                            best = Some((i, id.clone()));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) => {
                            let err = streams[i].next().await?.err()?;
                            return Some((Err(err), (streams, last)));
                        }
                        None => {}
                    }
                }
                let (i, id) = best?;
                streams[i].next().await;
                if last.as_deref() == Some(id.as_str()) {
                    continue;
                }
                return Some((Ok(id.clone()), (streams, Some(id))));
            }
        },
    )
    .boxed()
}

/// The index trees that can hold the executions a listing filtered by `status` (a
/// summary status) shows: a failed execution may still be recorded as running (its
/// runner died), a waiting one as running (its runner polls for the answer).
pub fn trees_for_status(status: &str) -> Vec<Tree<'static>> {
    match status {
        "running" => vec![Tree::Status("running")],
        "waiting" => vec![Tree::Status("waiting"), Tree::Status("running")],
        "failed" => vec![Tree::Status("failed"), Tree::Status("running")],
        "completed" => vec![Tree::Status("completed")],
        "cancelled" => vec![Tree::Status("cancelled")],
        _ => Vec::new(),
    }
}

/// Writes the entries `exec_id` should have (from its state events) and drops status
/// entries that no longer apply; `existing` is every index key (one listing). Returns
/// whether any entry was missing.
async fn reindex_one(store: &Store, exec_id: &str, existing: &BTreeSet<String>) -> Result<bool> {
    let journal = Journal::load(store, exec_id, Scope::States).await?;
    let Some(state) = indexed_state(&journal.state()?) else {
        return Ok(false);
    };
    let flow = journal
        .start()
        .map(|s| s.flow_name.clone())
        .unwrap_or_default();
    let mut missing = false;
    for tree in [Tree::All, Tree::Flow(&flow), Tree::Status(state)] {
        if let Some(key) = entry_key(tree, exec_id) {
            if !existing.contains(&key) {
                missing = true;
                store.put_marker(&key).await?;
            }
        }
    }
    for other in STATES.iter().filter(|s| **s != state) {
        if let Some(key) = entry_key(Tree::Status(other), exec_id) {
            if existing.contains(&key) {
                store.delete(&key).await?;
            }
        }
    }
    Ok(missing)
}

/// The states a status entry can name.
const STATES: [&str; 5] = ["running", "waiting", "completed", "failed", "cancelled"];

/// Counts of a [`reindex`] pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reindexed {
    pub executions: u64,
    pub missing: u64,
}

/// Indexes every execution of the store (32 at a time), then marks the index complete
/// (layout version 3). Idempotent; safe beside running flows, which index themselves.
pub async fn reindex(
    store: &Store,
    progress: Option<&crate::progress::Progress>,
) -> Result<Reindexed> {
    let ids = store.list_dirs(layout::EXECUTIONS).await?;
    let existing: BTreeSet<String> = store.list(INDEX).await?.into_iter().collect();
    if let Some(p) = progress {
        p.phase("indexing executions", ids.len() as u64);
    }
    let mut out = Reindexed::default();
    for chunk in ids.chunks(32) {
        let done =
            futures::future::join_all(chunk.iter().map(|id| reindex_one(store, id, &existing)))
                .await;
        crate::progress::tick(progress, chunk.len() as u64);
        for found in done {
            match found {
                Ok(missing) => {
                    out.executions += 1;
                    out.missing += u64::from(missing);
                }
                // Not an execution (yet): no state event, or a foreign directory.
                Err(crate::Error::ExecutionNotFound { .. } | crate::Error::InvalidName { .. }) => {}
                // Damage is `store verify`'s to report; the execution is listed by time.
                Err(crate::Error::Corrupt { .. }) => out.executions += 1,
                Err(e) => return Err(e),
            }
        }
    }
    store.raise_layout(layout::LAYOUT_VERSION).await?;
    Ok(out)
}

/// Makes the index of an older store complete, once: a store of layout 2 or older is
/// indexed (one summary read per execution) and its marker raised to the current layout,
/// after which older releases refuse it instead of writing executions the index would
/// not list.
pub async fn ensure(store: &Store) -> Result<()> {
    if store.layout_version() >= layout::INDEXED_VERSION {
        return Ok(());
    }
    // another process may have indexed it since this handle opened it
    if store.reread_layout().await? >= layout::INDEXED_VERSION {
        return Ok(());
    }
    let done = reindex(store, None).await?;
    tracing::info!(
        store = store.url(),
        executions = done.executions,
        "indexed the executions of an older store"
    );
    Ok(())
}
