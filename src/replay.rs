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
    /// The flow the source ran (a replay runs the same flow).
    pub flow_name: String,
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
    // A source whose runner died (its lease lapsed) has ended as far as replay goes.
    let running = matches!(journal.state()?, State::Running { .. });
    if running && !journal.lease_lapsed(crate::ids::now_us()) {
        return Err(Error::StillRunning {
            exec_id: source.to_string(),
        });
    }
    let ordered = call_order(&journal);
    if ordered.iter().all(|c| !c.finished) {
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
        let at = select(source, &ordered, selector)?;
        let call = &ordered[at];
        if call.llm {
            return Err(Error::InvalidName {
                what: "replay override key",
                value: key.clone(),
                rule: "a checkpoint that is not a flow-body llm() call (its output is the \
                       model's recorded answer; override the checkpoint that builds the prompt)",
            });
        }
        overrides.push((key.clone(), at));
    }
    let frontier_at = overrides.iter().map(|(_, at)| *at).fold(start, usize::min);
    let overridden: Vec<usize> = overrides.iter().map(|(_, at)| *at).collect();
    // Only finished calls whose inputs are known are taken over: a record without an input
    // digest (an override of an earlier replay, or inputs that could not be digested) would
    // answer its call whatever the inputs, and its place among the calls is not known.
    let reuse = (0..frontier_at)
        .filter(|at| !overridden.contains(at))
        .filter(|&at| ordered[at].finished && ordered[at].has_digest)
        .map(|at| ordered[at].id.clone())
        .collect();
    Ok(ReplayPlan {
        source: source.to_string(),
        flow_name: journal
            .start()
            .map(|s| s.flow_name.clone())
            .unwrap_or_default(),
        frontier: ordered[frontier_at].id.clone(),
        reuse,
        overrides: overrides
            .into_iter()
            .map(|(key, at)| (key, ordered[at].id.clone()))
            .collect(),
    })
}

/// A call of the source as the plan sees it.
struct Call {
    id: String,
    name: String,
    /// It has a stored result (else only failed attempts: selectable as `from`).
    finished: bool,
    has_digest: bool,
    /// A flow-body `llm()` call (its output is the recorded answer).
    llm: bool,
}

/// Every call of the source with a result or a failed attempt, in the order the calls
/// started (a finished call by its successful attempt, a failed one by its first).
fn call_order(journal: &Journal) -> Vec<Call> {
    let mut calls: Vec<(u64, Call)> = journal
        .checkpoints
        .iter()
        .map(|(id, (_, rec))| {
            let started = rec.attempts.last().map(|a| a.started_us).unwrap_or(0);
            let call = Call {
                id: id.clone(),
                name: rec.name.clone(),
                finished: true,
                has_digest: rec.input_digest.is_some(),
                llm: rec.checkpoint_type.as_deref() == Some("llm_call"),
            };
            (started, call)
        })
        .collect();
    for (id, fails) in &journal.failed_attempts {
        if journal.checkpoints.contains_key(id) {
            continue;
        }
        if let Some(first) = fails.first() {
            let call = Call {
                id: id.clone(),
                name: first.name.clone(),
                finished: false,
                has_digest: first.input_digest.is_some(),
                llm: first.checkpoint_type.as_deref() == Some("llm_call"),
            };
            calls.push((first.attempt.started_us, call));
        }
    }
    calls.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
    calls.into_iter().map(|(_, c)| c).collect()
}

/// The position of the call `selector` names: a call id (optionally `<source>/<id>`), or
/// a checkpoint name only one call has.
fn select(source: &str, ordered: &[Call], selector: &str) -> Result<usize> {
    let wanted = selector
        .strip_prefix(source)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(selector)
        .trim();
    if let Some(at) = ordered.iter().position(|c| c.id == wanted) {
        return Ok(at);
    }
    let by_name: Vec<usize> = (0..ordered.len())
        .filter(|&i| ordered[i].name == wanted)
        .collect();
    match by_name.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::UnknownCheckpoint {
            exec_id: source.to_string(),
            selector: selector.to_string(),
            available: ordered.iter().map(|c| c.id.clone()).collect(),
        }),
        many => Err(Error::AmbiguousCheckpoint {
            exec_id: source.to_string(),
            selector: selector.to_string(),
            candidates: many.iter().map(|&i| ordered[i].id.clone()).collect(),
        }),
    }
}
