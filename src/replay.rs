//! Replay planning: which results of a source execution a replay takes over.
//!
//! A replay is a new execution of the same flow that reuses the source's results up to a
//! chosen checkpoint (the frontier) and runs the rest live, with some outputs replaced
//! (overrides). Checkpoints are ordered by when their successful attempt started (the
//! flow's call order; calls from threads by their start). Selectors name a call id
//! (`fetch_2`, also as `<exec id>/fetch_2`) or a checkpoint name that only one call has.
//! The seeding itself is `Runner::seed_from` / `seed_checkpoint` (`execution/recording.rs`).

use serde::Serialize;

use crate::error::{Error, Result};
use crate::journal::{Journal, Scope};
use crate::store::Store;
use crate::suspend::State;

/// What a replay takes over from its source, as decided from the source's journal.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReplayPlan {
    pub source: String,
    /// The call from which everything runs live (the earliest of `from` and the
    /// overridden calls).
    pub frontier: String,
    /// The finished calls before the frontier, in call order: their results are reused.
    pub reuse: Vec<String>,
    /// Each override key with the call whose output it replaces.
    pub overrides: Vec<(String, String)>,
}

/// Override keys look like `checkpoint.<selector>`.
const OVERRIDE_PREFIX: &str = "checkpoint.";

/// Plans a replay of `source` from the call `from`, replacing the outputs named by
/// `override_keys`.
pub async fn plan(
    store: &Store,
    source: &str,
    from: &str,
    override_keys: &[String],
) -> Result<ReplayPlan> {
    if from.trim().is_empty() {
        return Err(Error::InvalidName {
            what: "replay start (from_)",
            value: from.to_string(),
            rule: "a checkpoint's call id or name",
        });
    }
    let journal = Journal::load(store, source, Scope::Full).await?;
    if matches!(journal.state()?, State::Running { .. }) {
        return Err(Error::StillRunning {
            exec_id: source.to_string(),
        });
    }
    let ordered = call_order(&journal);
    if ordered.is_empty() {
        return Err(Error::NothingToReplay {
            exec_id: source.to_string(),
        });
    }
    let start = select(source, &ordered, from)?;
    let mut overrides = Vec::with_capacity(override_keys.len());
    for key in override_keys {
        let Some(selector) = key.strip_prefix(OVERRIDE_PREFIX) else {
            let rule = if key.starts_with("wait.") {
                "checkpoint.<name or call id>; a wait is answered with input, not overridden"
            } else {
                "checkpoint.<name or call id>"
            };
            return Err(Error::InvalidName {
                what: "replay override key",
                value: key.clone(),
                rule,
            });
        };
        overrides.push((key.clone(), select(source, &ordered, selector)?));
    }
    let frontier_at = overrides.iter().map(|(_, at)| *at).fold(start, usize::min);
    let overridden: Vec<usize> = overrides.iter().map(|(_, at)| *at).collect();
    let reuse = (0..frontier_at)
        .filter(|at| !overridden.contains(at))
        .map(|at| ordered[at].0.clone())
        .collect();
    Ok(ReplayPlan {
        source: source.to_string(),
        frontier: ordered[frontier_at].0.clone(),
        reuse,
        overrides: overrides
            .into_iter()
            .map(|(key, at)| (key, ordered[at].0.clone()))
            .collect(),
    })
}

/// (call id, checkpoint name) of every finished call, in the order the calls started.
fn call_order(journal: &Journal) -> Vec<(String, String)> {
    let mut calls: Vec<(u64, &String, &String)> = journal
        .checkpoints
        .iter()
        .map(|(id, (_, rec))| {
            let started = rec.attempts.last().map(|a| a.started_us).unwrap_or(0);
            (started, id, &rec.name)
        })
        .collect();
    calls.sort();
    calls
        .into_iter()
        .map(|(_, id, name)| (id.clone(), name.clone()))
        .collect()
}

/// The position of the call `selector` names: a call id (optionally `<source>/<id>`), or
/// a checkpoint name only one call has.
fn select(source: &str, ordered: &[(String, String)], selector: &str) -> Result<usize> {
    let wanted = selector
        .strip_prefix(source)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(selector)
        .trim();
    if let Some(at) = ordered.iter().position(|(id, _)| id == wanted) {
        return Ok(at);
    }
    let by_name: Vec<usize> = (0..ordered.len())
        .filter(|&i| ordered[i].1 == wanted)
        .collect();
    match by_name.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::UnknownCheckpoint {
            exec_id: source.to_string(),
            selector: selector.to_string(),
            available: ordered.iter().map(|(id, _)| id.clone()).collect(),
        }),
        many => Err(Error::AmbiguousCheckpoint {
            exec_id: source.to_string(),
            selector: selector.to_string(),
            candidates: many.iter().map(|&i| ordered[i].0.clone()).collect(),
        }),
    }
}
