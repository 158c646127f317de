//! What users see of an execution: its public status and details, as plain serde data
//! (the client, CLI and a future UI all read this one view).

use serde::Serialize;

use crate::error::Result;
use crate::ids::now_us;
use crate::journal::types::*;
use crate::journal::{Journal, Scope};
use crate::store::{layout, Store};
use crate::suspend::State;

#[derive(Debug, Clone, Serialize)]
pub struct FailureView {
    pub origin: String,
    pub message: String,
    pub exception_type: Option<String>,
    pub traceback: Option<String>,
}

impl From<&Failure> for FailureView {
    fn from(f: &Failure) -> Self {
        FailureView {
            origin: f.origin.clone(),
            message: f.message.clone(),
            exception_type: f.exception_type.clone(),
            traceback: f.traceback.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    pub number: u32,
    /// Which run of the execution made the attempt: 1 for the first process, 2 for the
    /// first retry or resume, ...
    pub run: u32,
    pub status: &'static str,
    pub started_at: f64,
    pub ended_at: f64,
    pub failure: Option<FailureView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ValueView {
    pub serializer: String,
    pub size: u64,
    pub stored: &'static str,
    pub blob: Option<String>,
}

impl From<&Value> for ValueView {
    fn from(v: &Value) -> Self {
        let (stored, blob) = match &v.body {
            Body::Inline(_) => ("inline", None),
            Body::Blob { hash, .. } => ("blob", Some(layout::hex(&hash.0))),
            Body::Delta { .. } => ("delta", None),
        };
        ValueView {
            serializer: v.serializer.clone(),
            size: v.body.size(),
            stored,
            blob,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckpointView {
    pub call_id: String,
    pub name: String,
    pub checkpoint_type: Option<String>,
    pub status: &'static str,
    pub explicit_id: bool,
    pub started_at: Option<f64>,
    pub ended_at: Option<f64>,
    pub input_digest: Option<String>,
    pub output: Option<ValueView>,
    pub attempts: Vec<AttemptView>,
    pub failure: Option<FailureView>,
    pub metadata_json: Option<String>,
    pub revision: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub seq: u64,
    pub at: f64,
    pub event: &'static str,
    pub holder: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DivergenceView {
    pub call_id: String,
    pub at: f64,
    pub stored_digest: Option<String>,
    pub new_digest: Option<String>,
    pub policy: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct WaitView {
    pub name: String,
    pub question: Option<String>,
    pub schema_json: Option<String>,
    pub schema_type: Option<String>,
    pub metadata_json: String,
    pub entered_waiting_at: f64,
    /// pending, answered or aborted
    pub status: &'static str,
    pub answered_at: Option<f64>,
    pub value_json: Option<String>,
}

fn wait_view(journal: &Journal, w: &WaitRecord) -> WaitView {
    let answer = journal.answers.get(&w.name);
    WaitView {
        name: w.name.clone(),
        question: w.question.clone(),
        schema_json: w.schema_json.clone(),
        schema_type: w.schema_type.clone(),
        metadata_json: w.metadata_json.clone(),
        entered_waiting_at: secs(w.created_us),
        status: match answer {
            None => "pending",
            Some(a) if a.aborted => "aborted",
            Some(_) => "answered",
        },
        answered_at: answer.map(|a| secs(a.at_us)),
        value_json: answer.and_then(|a| a.value_json.clone()),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ExecutionView {
    pub exec_id: String,
    pub flow_name: String,
    /// Public status: running, waiting, completed, failed, cancelled.
    pub status: &'static str,
    pub started_at: f64,
    pub ended_at: Option<f64>,
    pub failure: Option<FailureView>,
    /// The process running the execution now (None when its lease lapsed).
    pub holder: Option<String>,
    pub lease_expires_at: Option<f64>,
    pub entry: Option<EntryPoint>,
    pub options_json: Option<String>,
    pub kitaru_version: Option<String>,
    pub result: Option<ValueView>,
    pub checkpoint_count: usize,
    pub checkpoints: Vec<CheckpointView>,
    pub divergences: Vec<DivergenceView>,
    /// `kitaru.log()` calls on the flow body, in order, as JSON strings.
    pub metadata_json: Vec<String>,
    pub events: Vec<EventView>,
    /// Every wait the flow reached, in order.
    pub waits: Vec<WaitView>,
    /// The waits without an answer, oldest first.
    pub pending_waits: Vec<WaitView>,
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

fn digest_hex(d: &Option<crate::journal::record::Digest>) -> Option<String> {
    d.as_ref().map(|d| layout::hex(&d.0))
}

fn attempt_view(journal: &Journal, a: &Attempt) -> AttemptView {
    AttemptView {
        number: a.number,
        run: journal.run_number(a.claim_seq),
        status: if a.failure.is_some() {
            "failed"
        } else {
            "completed"
        },
        started_at: secs(a.started_us),
        ended_at: secs(a.ended_us),
        failure: a.failure.as_ref().map(FailureView::from),
    }
}

fn event_view(s: &StateRecord) -> EventView {
    let detail = match &s.event {
        Event::Failed { failure, .. } | Event::FlowAttemptFailed { failure, .. } => {
            Some(failure.message.clone())
        }
        Event::Suspended { reason, .. } | Event::Cancelled { reason } => Some(reason.clone()),
        _ => None,
    };
    EventView {
        seq: s.seq,
        at: secs(s.at_us),
        event: s.event.name(),
        holder: s.event.claim().map(|c| c.holder.to_string()),
        detail,
    }
}

impl ExecutionView {
    pub fn build(journal: &Journal, full: bool) -> Result<ExecutionView> {
        let state = journal.state()?;
        let now = now_us();
        let start = journal.start();
        let claim = journal.current_claim();
        let mut failure = None;
        let pending = journal.pending_waits();
        let status = match state {
            // Polling for an answer, or its runner died while it polled: either way the
            // execution waits for input, and nothing is lost.
            State::Running { .. } if !pending.is_empty() => "waiting",
            State::Running { .. } if journal.lease_lapsed(now) => {
                let holder = claim
                    .map(|(_, _, c)| c.holder.to_string())
                    .unwrap_or_default();
                failure = Some(FailureView {
                    origin: "runner_died".into(),
                    message: format!(
                        "the process running this execution ({holder}) died or stopped renewing its lease; \
                         run `kitaru executions retry {}` to run it again",
                        journal.exec_id
                    ),
                    exception_type: None,
                    traceback: None,
                });
                "failed"
            }
            State::Running { .. } | State::New => "running",
            State::Waiting => "waiting",
            State::Completed => "completed",
            State::Failed => {
                failure = journal.states.iter().rev().find_map(|s| match &s.event {
                    Event::Failed { failure, .. } => Some(FailureView::from(failure)),
                    _ => None,
                });
                "failed"
            }
            State::Cancelled => "cancelled",
        };
        let result = journal.states.iter().rev().find_map(|s| match &s.event {
            Event::Completed { result, .. } => Some(ValueView::from(result)),
            _ => None,
        });
        let mut checkpoints: Vec<CheckpointView> = Vec::new();
        if full {
            for (call_id, (rev, rec)) in &journal.checkpoints {
                checkpoints.push(CheckpointView {
                    call_id: call_id.clone(),
                    name: rec.name.clone(),
                    checkpoint_type: rec.checkpoint_type.clone(),
                    status: "completed",
                    explicit_id: rec.explicit_id,
                    started_at: rec.attempts.first().map(|a| secs(a.started_us)),
                    ended_at: rec.attempts.last().map(|a| secs(a.ended_us)),
                    input_digest: digest_hex(&rec.input_digest),
                    output: Some(ValueView::from(&rec.output)),
                    attempts: rec
                        .attempts
                        .iter()
                        .map(|a| attempt_view(journal, a))
                        .collect(),
                    failure: None,
                    metadata_json: rec.metadata_json.clone(),
                    revision: *rev,
                });
            }
            for (call_id, fails) in &journal.failed_attempts {
                if journal.checkpoints.contains_key(call_id) {
                    continue;
                }
                let Some(first) = fails.first() else { continue };
                let attempts: Vec<AttemptView> = fails
                    .iter()
                    .map(|f| attempt_view(journal, &f.attempt))
                    .collect();
                checkpoints.push(CheckpointView {
                    call_id: call_id.clone(),
                    name: first.name.clone(),
                    checkpoint_type: first.checkpoint_type.clone(),
                    status: "failed",
                    explicit_id: false,
                    started_at: attempts.first().map(|a| a.started_at),
                    ended_at: attempts.last().map(|a| a.ended_at),
                    input_digest: digest_hex(&first.input_digest),
                    output: None,
                    failure: attempts.last().and_then(|a| a.failure.clone()),
                    attempts,
                    metadata_json: None,
                    revision: 0,
                });
            }
            checkpoints.sort_by(|a, b| {
                a.started_at
                    .partial_cmp(&b.started_at)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then_with(|| a.call_id.cmp(&b.call_id))
            });
        }
        Ok(ExecutionView {
            exec_id: journal.exec_id.clone(),
            flow_name: start.map(|s| s.flow_name.clone()).unwrap_or_default(),
            status,
            started_at: journal.states.first().map(|s| secs(s.at_us)).unwrap_or(0.0),
            ended_at: journal.ended_at_us().map(secs),
            failure,
            // Only a live runner: one whose lease lapsed (it died, or stopped renewing) holds
            // nothing, and `resume` or `retry` takes over.
            holder: match state {
                State::Running { .. } if !journal.lease_lapsed(now) => {
                    claim.map(|(_, _, c)| c.holder.to_string())
                }
                _ => None,
            },
            lease_expires_at: match state {
                State::Running { .. } => journal.lease_expiry_us().map(secs),
                _ => None,
            },
            entry: start.map(|s| s.entry.clone()),
            options_json: start.map(|s| s.options_json.clone()),
            kitaru_version: start.map(|s| s.kitaru_version.clone()),
            result,
            checkpoint_count: if full { journal.checkpoints.len() } else { 0 },
            checkpoints,
            divergences: journal
                .divergences
                .iter()
                .map(|d| DivergenceView {
                    call_id: d.call_id.clone(),
                    at: secs(d.at_us),
                    stored_digest: digest_hex(&d.stored_digest),
                    new_digest: digest_hex(&d.new_digest),
                    policy: d.policy.clone(),
                })
                .collect(),
            metadata_json: journal.meta.iter().map(|m| m.json.clone()).collect(),
            events: journal.states.iter().map(event_view).collect(),
            waits: {
                let mut waits: Vec<&WaitRecord> = journal.waits.values().collect();
                waits.sort_by_key(|w| w.created_us);
                waits.into_iter().map(|w| wait_view(journal, w)).collect()
            },
            pending_waits: pending.iter().map(|w| wait_view(journal, w)).collect(),
        })
    }
}

impl ExecutionView {
    /// An execution that cannot be read because its records are damaged.
    fn damaged(exec_id: &str, err: &crate::Error) -> ExecutionView {
        ExecutionView {
            exec_id: exec_id.to_string(),
            flow_name: String::new(),
            status: "failed",
            started_at: 0.0,
            ended_at: None,
            failure: Some(FailureView {
                origin: "backend".into(),
                message: err.to_string(),
                exception_type: Some("kitaru.errors.KitaruCorruptionError".into()),
                traceback: None,
            }),
            holder: None,
            lease_expires_at: None,
            entry: None,
            options_json: None,
            kitaru_version: None,
            result: None,
            checkpoint_count: 0,
            checkpoints: Vec::new(),
            divergences: Vec::new(),
            metadata_json: Vec::new(),
            events: Vec::new(),
            waits: Vec::new(),
            pending_waits: Vec::new(),
        }
    }
}

/// One execution's details (`full`) or summary.
pub async fn inspect(store: &Store, exec_id: &str, full: bool) -> Result<ExecutionView> {
    let scope = if full { Scope::Full } else { Scope::States };
    let journal = Journal::load(store, exec_id, scope).await?;
    ExecutionView::build(&journal, full)
}

/// The pending wait a person answers: `name` (a wait name, or a wait id
/// `<exec id>/<name>`), or, when `name` is None, the execution's only pending wait.
pub async fn pending_wait(store: &Store, exec_id: &str, name: Option<&str>) -> Result<WaitView> {
    let mut view = inspect(store, exec_id, false).await?;
    let names = |v: &ExecutionView| v.pending_waits.iter().map(|w| w.name.clone()).collect();
    let at = match name {
        None if view.pending_waits.len() == 1 => 0,
        None => {
            return Err(crate::Error::WaitAmbiguous {
                exec_id: exec_id.to_string(),
                names: names(&view),
                status: view.status,
            })
        }
        Some(wanted) => {
            let key = wanted.rsplit('/').next().unwrap_or(wanted);
            match view.pending_waits.iter().position(|w| w.name == key) {
                Some(at) => at,
                None => {
                    return Err(crate::Error::WaitNotFound {
                        exec_id: exec_id.to_string(),
                        name: wanted.to_string(),
                        pending: names(&view),
                    })
                }
            }
        }
    };
    Ok(view.pending_waits.swap_remove(at))
}

/// Filters for [`list`].
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub flow: Option<String>,
    pub status: Option<String>,
    pub limit: Option<usize>,
    /// Only executions a recovery pass may act on: recorded as running (their runner may
    /// have died) or waiting (their waits may be answered). The recovery worker's poll.
    pub recoverable: bool,
}

/// Execution summaries, newest first. Finds them through the execution index (by flow
/// or status when filtered), reads the summaries of the ones it looks at, 32 at a time,
/// and stops once `limit` match: the cost grows with what is asked, not with the store.
pub async fn list(store: &Store, filter: &ListFilter) -> Result<Vec<ExecutionView>> {
    list_with(store, filter, None).await
}

/// `list`, counting on `progress` the executions read.
pub async fn list_with(
    store: &Store,
    filter: &ListFilter,
    progress: Option<&crate::progress::Progress>,
) -> Result<Vec<ExecutionView>> {
    use crate::index::{self, Tree};
    use futures::StreamExt;

    if let Err(e) = index::ensure(store).await {
        // A store this process may not write (read-only credentials): list the slow way.
        tracing::warn!(store = store.url(), error = %e, "could not index the store");
    }
    if store.layout_version() < layout::INDEXED_VERSION {
        return list_every(store, filter, progress).await;
    }
    let trees: Vec<Tree<'_>> = match (&filter.flow, &filter.status) {
        _ if filter.recoverable => vec![Tree::Active],
        (Some(flow), _) => vec![Tree::Flow(flow)],
        (None, Some(status)) => index::trees_for_status(status),
        (None, None) => vec![Tree::All],
    };
    let limit = filter.limit.unwrap_or(usize::MAX);
    // Without a filter every summary read is one listed; with one, some are skipped.
    let plain = filter.flow.is_none() && filter.status.is_none();
    if let Some(p) = progress {
        p.phase(
            "reading executions",
            filter.limit.filter(|_| plain).unwrap_or(0) as u64,
        );
    }
    let mut ids = index::scan_any(store, &trees).fuse();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    loop {
        let want = if plain {
            (limit - out.len()).min(32)
        } else {
            32
        };
        let mut batch = Vec::with_capacity(want);
        while batch.len() < want {
            match ids.next().await {
                // an execution under two states (a crash between the writes of a state
                // change) is read once
                Some(id) => {
                    let id = id?;
                    if seen.insert(id.clone()) {
                        batch.push(id);
                    }
                }
                None => break,
            }
        }
        if batch.is_empty() {
            return Ok(out);
        }
        if !summaries_into(store, filter, &batch, progress, limit, &mut out).await? {
            return Ok(out);
        }
    }
}

/// Reads the summaries of `ids` concurrently and adds those that match `filter` to `out`;
/// false once `out` holds `limit`.
async fn summaries_into(
    store: &Store,
    filter: &ListFilter,
    ids: &[String],
    progress: Option<&crate::progress::Progress>,
    limit: usize,
    out: &mut Vec<ExecutionView>,
) -> Result<bool> {
    let views = futures::future::join_all(ids.iter().map(|id| inspect(store, id, false))).await;
    crate::progress::tick(progress, ids.len() as u64);
    for (id, view) in ids.iter().zip(views) {
        let view = match view {
            Ok(v) => v,
            // A directory (or an index entry) with no state event yet: an execution
            // being created, or one whose start failed.
            Err(crate::Error::ExecutionNotFound { .. }) => continue,
            Err(crate::Error::InvalidName { .. }) => continue,
            // One damaged execution does not hide the others: it is listed as failed,
            // with the damage as its failure (`get` names the same error).
            Err(e @ crate::Error::Corrupt { .. }) => ExecutionView::damaged(id, &e),
            Err(e) => return Err(e),
        };
        if filter.flow.as_ref().is_some_and(|f| *f != view.flow_name) {
            continue;
        }
        if filter.status.as_ref().is_some_and(|s| s != view.status) {
            continue;
        }
        out.push(view);
        if out.len() >= limit {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `list` on a store whose index is not complete (an older layout this process could
/// not upgrade): every execution directory is listed, then read newest first. Public for
/// the benchmark that compares it with the index (benches/list.rs).
pub async fn list_every(
    store: &Store,
    filter: &ListFilter,
    progress: Option<&crate::progress::Progress>,
) -> Result<Vec<ExecutionView>> {
    if let Some(p) = progress {
        p.phase("listing executions", 0);
    }
    let mut ids = store.list_dirs(layout::EXECUTIONS).await?;
    ids.reverse();
    if let Some(p) = progress {
        // at most `limit` when nothing is filtered out; all of them otherwise
        let plain = filter.flow.is_none() && filter.status.is_none();
        let reads = filter
            .limit
            .filter(|_| plain)
            .map_or(ids.len(), |l| l.min(ids.len()));
        p.phase("reading executions", reads as u64);
    }
    let mut out = Vec::new();
    let limit = filter.limit.unwrap_or(usize::MAX);
    for chunk in ids.chunks(32) {
        if !summaries_into(store, filter, chunk, progress, limit, &mut out).await? {
            break;
        }
    }
    Ok(out)
}
