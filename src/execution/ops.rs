//! What any process may do to an execution without holding its lease.

use bytes::Bytes;

use super::{encode, RawValue, MAX_RACES};
use crate::error::{Error, Result};
use crate::ids::{self, now_us};
use crate::journal::record::{ByteBuf, Digest};
use crate::journal::types::*;
use crate::journal::{Journal, Scope};
use crate::lease;
use crate::store::layout;
use crate::store::Store;
use crate::suspend::{self, Facts, State};

/// Stores a value inline when small, else as a blob.
pub async fn store_value(store: &Store, raw: RawValue) -> Result<Value> {
    let body = if raw.bytes.len() <= layout::INLINE_LIMIT {
        Body::Inline(ByteBuf(raw.bytes.to_vec()))
    } else {
        let size = raw.bytes.len() as u64;
        Body::Blob {
            hash: Digest(store.put_blob(raw.bytes).await?),
            size,
        }
    };
    Ok(Value {
        serializer: raw.serializer,
        body,
    })
}

/// Reads a stored value back (verifying blobs against their hash).
pub async fn load_value(
    store: &Store,
    value: &Value,
    exec_id: &str,
    checkpoint: Option<&str>,
) -> Result<RawValue> {
    let bytes = match &value.body {
        Body::Inline(b) => Bytes::from(b.0.clone()),
        Body::Blob { hash, .. } => store.get_blob(&hash.0, Some(exec_id), checkpoint).await?,
        // Only checkpoint outputs are deltas, and they are read through `delta::resolve`.
        Body::Delta { .. } => {
            return Err(Error::Corrupt {
                key: layout::exec_prefix(exec_id),
                exec_id: Some(exec_id.to_string()),
                checkpoint: checkpoint.map(str::to_string),
                reason: "a delta where only a whole value may be".into(),
            })
        }
    };
    Ok(RawValue {
        serializer: value.serializer.clone(),
        bytes,
    })
}

/// The state after `event` given the journal, or the error a user should see.
fn check(journal: &Journal, event: &Event) -> Result<State> {
    let state = journal.state()?;
    let facts = Facts {
        lease_lapsed: journal.lease_lapsed(now_us()),
    };
    suspend::transition(&state, journal.next_seq(), event, facts).map_err(|e| match e {
        suspend::TransitionError::LeaseLive { .. } => Error::LeaseHeld {
            exec_id: journal.exec_id.clone(),
            holder: journal
                .current_claim()
                .map(|(_, _, c)| c.holder.to_string())
                .unwrap_or_else(|| "another process".into()),
        },
        other => Error::Transition {
            exec_id: journal.exec_id.clone(),
            source: other,
        },
    })
}

/// Appends `make(journal)` as the next state event, re-reading and re-checking after every
/// lost race, until it is written or refused.
async fn append_event(
    store: &Store,
    exec_id: &str,
    make: impl FnMut(&Journal) -> Result<Event>,
) -> Result<(u64, Journal)> {
    append_event_in(store, exec_id, Scope::States, make).await
}

/// [`append_event`] reading `scope` of the journal; the returned journal includes the
/// event that was written.
pub(super) async fn append_event_in(
    store: &Store,
    exec_id: &str,
    scope: Scope,
    mut make: impl FnMut(&Journal) -> Result<Event>,
) -> Result<(u64, Journal)> {
    for _ in 0..MAX_RACES {
        let mut journal = Journal::load(store, exec_id, scope).await?;
        let event = make(&journal)?;
        check(&journal, &event)?;
        let seq = journal.next_seq();
        let rec = StateRecord {
            seq,
            at_us: now_us(),
            event,
        };
        if store
            .put_create(
                &layout::state_key(exec_id, seq),
                encode(store, exec_id, "state", &rec)?,
            )
            .await?
        {
            let from = journal
                .state()
                .ok()
                .and_then(|s| crate::index::indexed_state(&s));
            journal.states.push(rec);
            if let Some(to) = journal
                .state()
                .ok()
                .and_then(|s| crate::index::indexed_state(&s))
            {
                crate::index::note_state(store, exec_id, from, to).await;
            }
            return Ok((seq, journal));
        }
    }
    Err(Error::Contention {
        exec_id: exec_id.to_string(),
        attempts: MAX_RACES,
    })
}

/// Cancels an execution: a running one stops at its next checkpoint boundary.
pub async fn cancel(store: &Store, exec_id: &str, reason: &str) -> Result<()> {
    append_event(store, exec_id, |_| {
        Ok(Event::Cancelled {
            reason: reason.to_string(),
        })
    })
    .await
    .map(|_| ())
}

/// Answers (or aborts) a pending wait. An abort also cancels the execution. The answer is
/// create-only: of two racing answers exactly one is kept, the other gets `WaitAnswered`.
pub async fn answer(
    store: &Store,
    exec_id: &str,
    name: &str,
    value_json: Option<String>,
    aborted: bool,
) -> Result<()> {
    let journal = Journal::load(store, exec_id, Scope::States).await?;
    let pending: Vec<String> = journal
        .pending_waits()
        .iter()
        .map(|w| w.name.clone())
        .collect();
    if journal.answers.contains_key(name) {
        return Err(Error::WaitAnswered {
            exec_id: exec_id.to_string(),
            name: name.to_string(),
        });
    }
    if !journal.waits.contains_key(name) {
        return Err(Error::WaitNotFound {
            exec_id: exec_id.to_string(),
            name: name.to_string(),
            pending,
        });
    }
    let state = journal.state()?;
    if !matches!(state, State::Running { .. } | State::Waiting) {
        return Err(Error::Transition {
            exec_id: exec_id.to_string(),
            source: suspend::TransitionError::Illegal {
                state: state.name(),
                event: "given input",
            },
        });
    }
    let rec = AnswerRecord {
        name: name.to_string(),
        value_json: if aborted { None } else { value_json },
        aborted,
        at_us: now_us(),
        by: lease::this_holder(),
    };
    let key = layout::answer_key(exec_id, name);
    if !store.put_create(&key, encode(store, exec_id, name, &rec)?).await? {
        return Err(Error::WaitAnswered {
            exec_id: exec_id.to_string(),
            name: name.to_string(),
        });
    }
    if aborted {
        cancel(store, exec_id, &format!("wait {name} was aborted")).await?;
    }
    Ok(())
}

/// What an execution was started with (entry point, arguments): one read of its first
/// state event, which never changes.
pub async fn start_info(store: &Store, exec_id: &str) -> Result<StartInfo> {
    ids::validate_exec_id(exec_id)?;
    let key = layout::state_key(exec_id, 0);
    let bytes = store
        .get(&key)
        .await?
        .ok_or_else(|| Error::ExecutionNotFound {
            exec_id: exec_id.to_string(),
            store: store.url().to_string(),
        })?;
    let rec: StateRecord = crate::journal::decode_at(&key, exec_id, &bytes)?;
    match rec.event {
        Event::Started { start, .. } => Ok(*start),
        _ => Err(Error::Corrupt {
            key,
            exec_id: Some(exec_id.to_string()),
            checkpoint: None,
            reason: "the first state event is not the start of the execution".into(),
        }),
    }
}

/// What an execution was started with, its arguments read back: (entry point, arguments).
pub async fn start_args(store: &Store, exec_id: &str) -> Result<(EntryPoint, RawValue)> {
    let start = start_info(store, exec_id).await?;
    let args = load_value(store, &start.args, exec_id, None).await?;
    Ok((start.entry, args))
}

/// The stored output of one checkpoint call of any execution (rebuilt if it is a delta),
/// or None when the call has no stored output.
pub async fn checkpoint_output(
    store: &Store,
    exec_id: &str,
    call_id: &str,
) -> Result<Option<RawValue>> {
    let mut found = checkpoint_outputs(store, exec_id, &[call_id.to_string()]).await?;
    Ok(found.pop().flatten())
}

/// [`checkpoint_output`] of several calls, from one load of the execution's journal.
pub async fn checkpoint_outputs(
    store: &Store,
    exec_id: &str,
    call_ids: &[String],
) -> Result<Vec<Option<RawValue>>> {
    let journal = Journal::load(store, exec_id, Scope::Full).await?;
    let mut cache = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(call_ids.len());
    for call_id in call_ids {
        let Some((_, rec)) = journal.checkpoints.get(call_id) else {
            out.push(None);
            continue;
        };
        let bytes =
            crate::delta::resolve(store, &journal, call_id, &rec.output, &mut cache).await?;
        out.push(Some(RawValue {
            serializer: rec.output.serializer.clone(),
            bytes,
        }));
    }
    Ok(out)
}

/// The flow's return value of a completed execution. The whole journal is read and checked
/// (as `executions get` does): no result is handed out of an execution whose records are
/// damaged.
pub async fn result(store: &Store, exec_id: &str) -> Result<Option<RawValue>> {
    let journal = Journal::load(store, exec_id, Scope::Full).await?;
    let value = journal.states.iter().rev().find_map(|s| match &s.event {
        Event::Completed { result, .. } => Some(result.clone()),
        _ => None,
    });
    match value {
        Some(v) => Ok(Some(load_value(store, &v, exec_id, None).await?)),
        None => Ok(None),
    }
}
