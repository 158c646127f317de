//! `kitaru store verify`: read every record and blob, re-hash, and report what is corrupt,
//! dangling or out of sequence. Reads only; repairs nothing.

use std::collections::HashSet;

use serde::Serialize;

use crate::error::Result;
use crate::journal::record::{self, Record};
use crate::journal::types::*;
use crate::progress::{tick, Progress};
use crate::store::layout::{self, ExecKey};
use crate::store::Store;
use crate::suspend;

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `corrupt`, `dangling` or `sequence`.
    pub kind: &'static str,
    pub key: String,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub executions: usize,
    pub records: usize,
    pub blobs: usize,
    /// Segments whose last append was cut off by a crash (expected after a crash; the cut
    /// record never counted, so this is not a problem).
    pub torn_tails: usize,
    /// Checkpoint records a runner wrote after another process had taken its execution
    /// over (a stalled runner that woke up): never counted, not a problem.
    pub fenced: usize,
    pub findings: Vec<Finding>,
}

fn check<R: Record>(bytes: &[u8], key: &str, report: &mut Report) -> Option<R> {
    match record::decode::<R>(bytes) {
        Ok(r) => Some(r),
        Err(e) => {
            report.findings.push(Finding {
                kind: "corrupt",
                key: key.to_string(),
                detail: e.to_string(),
            });
            None
        }
    }
}

/// Blobs a stored value refers to.
fn blob_of(value: &Value) -> Option<[u8; 32]> {
    match &value.body {
        Body::Blob { hash, .. } => Some(hash.0),
        Body::Inline(_) | Body::Delta { .. } => None,
    }
}

/// Reads `keys`; a key that cannot be read as kitaru's (a symlink, say) is a finding, not
/// the end of the report.
async fn read_each(
    store: &Store,
    keys: &[String],
    report: &mut Report,
) -> Result<Vec<Option<bytes::Bytes>>> {
    if let Ok(values) = store.get_many(keys).await {
        return Ok(values);
    }
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        match store.get_many(std::slice::from_ref(key)).await {
            Ok(mut v) => out.push(v.pop().flatten()),
            Err(crate::Error::Corrupt { reason, .. }) => {
                report.findings.push(Finding {
                    kind: "corrupt",
                    key: key.clone(),
                    detail: reason,
                });
                out.push(None);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

pub async fn verify(store: &Store) -> Result<Report> {
    verify_with(store, None).await
}

/// `verify`, counting its work on `progress` (phases: blobs, executions, journals, cache).
pub async fn verify_with(store: &Store, progress: Option<&Progress>) -> Result<Report> {
    let mut report = Report::default();
    let phase = |name, total: usize| {
        if let Some(p) = progress {
            p.phase(name, total as u64);
        }
    };
    phase("listing blobs", 0);
    let mut present: HashSet<[u8; 32]> = HashSet::new();
    let mut manifests: Vec<(String, [u8; 32])> = Vec::new();
    let blob_keys = store.list("blobs").await?;
    phase("blobs", blob_keys.len());
    for chunk in blob_keys.chunks(256) {
        let values = store.get_many(chunk).await?;
        tick(progress, chunk.len() as u64);
        for (key, bytes) in chunk.iter().zip(values) {
            let Some(bytes) = bytes else { continue };
            report.blobs += 1;
            let name = layout::blob_hash_of_key(key);
            match name {
                Some(hash) if crate::store::content_of(&hash, &bytes).is_some() => {
                    present.insert(hash);
                }
                Some(hash) if crate::store::cdc::Manifest::decode(&bytes).is_some() => {
                    manifests.push((key.clone(), hash));
                }
                Some(_) => report.findings.push(Finding {
                    kind: "corrupt",
                    key: key.clone(),
                    detail: "the content does not match its blake3 name".into(),
                }),
                None => report.findings.push(Finding {
                    kind: "corrupt",
                    key: key.clone(),
                    detail: "not a blob name".into(),
                }),
            }
        }
    }
    // A chunked value is present when its chunks put together hash to its name.
    for (key, hash) in manifests {
        match store.get_blob(&hash, None, None).await {
            Ok(_) => {
                present.insert(hash);
            }
            Err(e) => report.findings.push(Finding {
                kind: "corrupt",
                key,
                detail: e.to_string(),
            }),
        }
    }
    let mut refs: Vec<(String, [u8; 32])> = Vec::new();
    phase("listing executions", 0);
    let exec_ids = store.list_dirs(layout::EXECUTIONS).await?;
    phase("executions", exec_ids.len());
    let mut started: Vec<String> = Vec::new();
    for exec_id in exec_ids {
        tick(progress, 1);
        report.executions += 1;
        let keys = store.list(&layout::exec_prefix(&exec_id)).await?;
        let values = read_each(store, &keys, &mut report).await?;
        let mut states: Vec<StateRecord> = Vec::new();
        for (key, bytes) in keys.iter().zip(values) {
            let Some(bytes) = bytes else { continue };
            report.records += 1;
            match layout::classify(&exec_id, key) {
                Some(ExecKey::State(_)) => {
                    if let Some(s) = check::<StateRecord>(&bytes, key, &mut report) {
                        match &s.event {
                            Event::Started { start, .. } => {
                                refs.extend(blob_of(&start.args).map(|h| (key.clone(), h)))
                            }
                            Event::Completed { result, .. } => {
                                refs.extend(blob_of(result).map(|h| (key.clone(), h)))
                            }
                            _ => {}
                        }
                        states.push(s);
                    }
                }
                Some(ExecKey::Segment(_)) => {
                    // Whether a cut-off end is a torn append or damage depends on the
                    // execution's claims: the journal load below decides.
                    for (frame, _) in record::scan_segment(&bytes).frames {
                        if let Some(c) = check::<CheckpointRecord>(frame, key, &mut report) {
                            refs.extend(blob_of(&c.output).map(|h| (key.clone(), h)));
                        }
                    }
                }
                Some(ExecKey::Checkpoint(..)) => {
                    if let Some(c) = check::<CheckpointRecord>(&bytes, key, &mut report) {
                        refs.extend(blob_of(&c.output).map(|h| (key.clone(), h)));
                    }
                }
                Some(ExecKey::Lease(_)) => {
                    let _ = check::<Heartbeat>(&bytes, key, &mut report);
                }
                Some(ExecKey::FailedAttempt(..)) => {
                    drop(check::<FailedAttemptRecord>(&bytes, key, &mut report))
                }
                Some(ExecKey::Meta) => {
                    let _ = check::<MetaRecord>(&bytes, key, &mut report);
                }
                Some(ExecKey::Divergence) => {
                    drop(check::<DivergenceRecord>(&bytes, key, &mut report))
                }
                Some(ExecKey::Wait) => {
                    let _ = check::<WaitRecord>(&bytes, key, &mut report);
                }
                Some(ExecKey::Answer) => {
                    let _ = check::<AnswerRecord>(&bytes, key, &mut report);
                }
                Some(ExecKey::Seal(_)) => {
                    let _ = check::<SealRecord>(&bytes, key, &mut report);
                }
                Some(ExecKey::Log) => {
                    let _ = check::<LogRecord>(&bytes, key, &mut report);
                }
                Some(ExecKey::Pack(_)) => {
                    if let Err(why) = crate::journal::pack::decode(&bytes) {
                        report.findings.push(Finding {
                            kind: "corrupt",
                            key: key.clone(),
                            detail: format!("a pack that cannot be used ({why}); its records are read one by one"),
                        });
                    }
                }
                Some(ExecKey::Other) | None => report.findings.push(Finding {
                    kind: "corrupt",
                    key: key.clone(),
                    detail: "a key kitaru does not write".into(),
                }),
            }
        }
        states.sort_by_key(|s| s.seq);
        if !states.is_empty() {
            started.push(exec_id.clone());
        }
        let gap = states.iter().enumerate().find(|(i, s)| s.seq != *i as u64);
        if let Some((i, _)) = gap {
            report.findings.push(Finding {
                kind: "sequence",
                key: layout::state_key(&exec_id, i as u64),
                detail: "a state event is missing from the sequence".into(),
            });
        } else if states.is_empty() {
            report.findings.push(Finding {
                kind: "sequence",
                key: layout::exec_prefix(&exec_id),
                detail: "records without a Started event".into(),
            });
        } else if let Err((seq, e)) = suspend::replay(states.iter().map(|s| (s.seq, &s.event))) {
            report.findings.push(Finding {
                kind: "sequence",
                key: layout::state_key(&exec_id, seq),
                detail: format!("recorded events are not a legal sequence: {e}"),
            });
        }
    }
    // Deltas: every one must rebuild to its digest from the bases in its execution.
    let exec_ids = store.list_dirs(layout::EXECUTIONS).await?;
    phase("journals", exec_ids.len());
    for exec_id in exec_ids {
        tick(progress, 1);
        let journal =
            match crate::journal::Journal::load(store, &exec_id, crate::journal::Scope::Full).await
            {
                Ok(j) => j,
                Err(e) => {
                    // Damage only the execution as a whole shows (a segment cut or damaged
                    // mid-way, a counted record gone); record by record it was reported above.
                    let key = match &e {
                        crate::Error::Corrupt { key, .. } => key.clone(),
                        _ => layout::exec_prefix(&exec_id),
                    };
                    if !report.findings.iter().any(|f| f.key == key) {
                        report.findings.push(Finding {
                            kind: "corrupt",
                            key,
                            detail: e.to_string(),
                        });
                    }
                    continue;
                }
            };
        report.torn_tails += journal.torn_tails;
        report.fenced += journal.fenced.len();
        let mut cache = std::collections::HashMap::new();
        for (call_id, (_, rec)) in &journal.checkpoints {
            if let Body::Delta { .. } = rec.output.body {
                if let Err(e) =
                    crate::delta::resolve(store, &journal, call_id, &rec.output, &mut cache).await
                {
                    report.findings.push(Finding {
                        kind: "corrupt",
                        key: format!("{}/{call_id}", layout::exec_prefix(&exec_id)),
                        detail: e.to_string(),
                    });
                }
            }
        }
    }
    // Cache entries: each must read back, under its own key.
    let cache_keys = store.list(&format!("{}/", layout::CACHE)).await?;
    phase("cache entries", cache_keys.len());
    let values = read_each(store, &cache_keys, &mut report).await?;
    tick(progress, cache_keys.len() as u64);
    for (key, bytes) in cache_keys.iter().zip(values) {
        let Some(bytes) = bytes else { continue };
        if key.ends_with(".log") {
            // A local flow's entries: each frame must read back (a crash-cut last append
            // is not damage).
            for entry in crate::cache::log_entries(&bytes) {
                report.records += 1;
                if let Err(detail) = entry {
                    report.findings.push(Finding {
                        kind: "corrupt",
                        key: key.clone(),
                        detail,
                    });
                }
            }
            continue;
        }
        report.records += 1;
        let Some(rec) = check::<crate::cache::CacheRecord>(&bytes, key, &mut report) else {
            continue;
        };
        if layout::cache_key(&rec.key.0) != *key {
            report.findings.push(Finding {
                kind: "corrupt",
                key: key.clone(),
                detail: "a cache entry made for another key".into(),
            });
        }
    }
    phase("index", 0);
    check_index(store, &started, &mut report).await?;
    for (key, hash) in refs {
        if !present.contains(&hash) {
            report.findings.push(Finding {
                kind: "dangling",
                key,
                detail: format!(
                    "refers to blob {} which is missing or corrupt",
                    layout::hex(&hash)
                ),
            });
        }
    }
    Ok(report)
}

/// The execution index (`crate::index`): entries are empty and well named, and on a store
/// whose index is complete (layout 3) every execution has its time entry. One listing.
async fn check_index(store: &Store, started: &[String], report: &mut Report) -> Result<()> {
    let mut timed: HashSet<String> = HashSet::new();
    for (key, size) in store.list_sized(crate::index::INDEX).await? {
        let Some(id) = crate::index::id_of_key(&key) else {
            report.findings.push(Finding {
                kind: "corrupt",
                key,
                detail: "not an execution index entry".into(),
            });
            continue;
        };
        if crate::index::entry_key(crate::index::Tree::All, &id).as_deref() == Some(key.as_str()) {
            timed.insert(id);
        }
        if size != 0 {
            report.findings.push(Finding {
                kind: "corrupt",
                key,
                detail: format!("an index entry holds {size} bytes; kitaru writes them empty"),
            });
        }
    }
    if store.layout_version() >= layout::INDEXED_VERSION {
        for id in started.iter().filter(|id| !timed.contains(*id)) {
            report.findings.push(Finding {
                kind: "index",
                key: layout::exec_prefix(id),
                detail: "the execution is missing from the execution index (listings do not \
                         show it); run `kitaru store reindex`"
                    .into(),
            });
        }
    }
    Ok(())
}
