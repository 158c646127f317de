//! Two executions side by side, checkpoint by checkpoint (`kitaru executions diff`): which
//! calls have the same output, a changed one, or exist in one execution only. Outputs are
//! compared by the blake3 of their bytes (rebuilt from deltas); presenting a change (a text
//! or JSON diff, costs) is the client's.

use serde::Serialize;

use crate::error::Result;
use crate::journal::types::CheckpointRecord;
use crate::journal::{Journal, Scope};
use crate::store::{layout, Store};

/// One side of a call in a diff.
#[derive(Debug, Clone, Serialize)]
pub struct CallSide {
    pub serializer: String,
    pub size: u64,
    /// blake3 of the output bytes, hex.
    pub digest: String,
    pub input_digest: Option<String>,
    /// Seconds from the start to the end of the successful attempt.
    pub duration: f64,
    pub metadata_json: Option<String>,
}

/// One call id across the two executions.
#[derive(Debug, Clone, Serialize)]
pub struct CallDiff {
    pub call_id: String,
    pub name: String,
    /// `same`, `changed`, `added` (only in b) or `removed` (only in a).
    pub status: &'static str,
    pub a: Option<CallSide>,
    pub b: Option<CallSide>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExecutionDiff {
    pub a: String,
    pub b: String,
    /// In b's call order, then the calls only a has, in a's.
    pub calls: Vec<CallDiff>,
}

/// Compares the finished checkpoint calls of executions `a` and `b` (same store).
pub async fn diff(store: &Store, a: &str, b: &str) -> Result<ExecutionDiff> {
    let (ja, jb) = futures::future::try_join(
        Journal::load(store, a, Scope::Full),
        Journal::load(store, b, Scope::Full),
    )
    .await?;
    let (sa, sb) = (sides(store, &ja).await?, sides(store, &jb).await?);
    let mut calls: Vec<CallDiff> = Vec::with_capacity(sa.len().max(sb.len()));
    for (id, name, side_b) in &sb {
        let side_a = sa
            .iter()
            .find(|(i, _, _)| i == id)
            .map(|(_, _, s)| s.clone());
        let status = match &side_a {
            None => "added",
            Some(s) if s.digest == side_b.digest && s.serializer == side_b.serializer => "same",
            Some(_) => "changed",
        };
        calls.push(CallDiff {
            call_id: id.clone(),
            name: name.clone(),
            status,
            a: side_a,
            b: Some(side_b.clone()),
        });
    }
    for (id, name, side_a) in sa {
        if !sb.iter().any(|(i, _, _)| *i == id) {
            calls.push(CallDiff {
                call_id: id,
                name,
                status: "removed",
                a: Some(side_a),
                b: None,
            });
        }
    }
    Ok(ExecutionDiff {
        a: a.to_string(),
        b: b.to_string(),
        calls,
    })
}

/// (call id, name, side) of every finished call of `journal`, in call order.
async fn sides(store: &Store, journal: &Journal) -> Result<Vec<(String, String, CallSide)>> {
    let mut calls: Vec<(&String, &CheckpointRecord)> = journal
        .checkpoints
        .iter()
        .map(|(id, (_, rec))| (id, rec))
        .collect();
    calls.sort_by_key(|(id, rec)| (rec.attempts.last().map(|a| a.started_us), *id));
    let mut cache = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(calls.len());
    for (id, rec) in calls {
        let bytes = crate::delta::resolve(store, journal, id, &rec.output, &mut cache).await?;
        let last = rec.attempts.last();
        out.push((
            id.clone(),
            rec.name.clone(),
            CallSide {
                serializer: rec.output.serializer.clone(),
                size: bytes.len() as u64,
                digest: layout::hex(blake3::hash(&bytes).as_bytes()),
                input_digest: rec.input_digest.map(|d| layout::hex(&d.0)),
                duration: last
                    .map(|a| a.ended_us.saturating_sub(a.started_us) as f64 / 1e6)
                    .unwrap_or(0.0),
                metadata_json: rec.metadata_json.clone(),
            },
        ));
    }
    Ok(out)
}
