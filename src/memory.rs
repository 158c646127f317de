//! Scoped, versioned memory (`kitaru.memory`): values under (scope type, scope, key), every
//! write a new numbered version, deletes as tombstone versions.
//!
//! Each version is one create-only record `memory/<type>/<scope>/<key>/<9999999999 -
//! version:010>` (scope and key encoded so that a key's versions never share a prefix with
//! another key's: `/` and `.` are escaped; the version counted down, so the newest is the
//! first key of a listing: one request on an object store however many versions there
//! are). A writer reads the newest number and creates the next; of writers racing for one
//! number exactly one wins and the others take the next,
//! so two processes writing one key get two versions, never a lost write (no overwrite,
//! no compare-and-swap). Values are stored like checkpoint outputs (inline up to 16 KiB,
//! else a content-addressed blob).
//!
//! A write made by a flow names its execution and call. A run that takes an execution over
//! again (retry, resume) passes `dedupe_since`: before writing, the versions created since
//! then are read, and one this call already wrote (the run that wrote it died before
//! recording the call) is returned instead of writing again.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::execution::{load_value, store_value, RawValue};
use crate::journal::record::{self, Kind, Record};
use crate::journal::types::Value;
use crate::store::Store;

pub const MEMORY: &str = "memory";
/// The highest version a key can have (versions are stored counted down from it).
const MAX_VERSION: u64 = 9_999_999_999;

/// The version a stored name (the last segment of a version's key) holds.
fn version_of(name: &str) -> Option<u64> {
    let n: u64 = name.parse().ok()?;
    (n < MAX_VERSION).then(|| MAX_VERSION - n)
}
const MAX_RACES: u32 = 64;

/// Where a value lives: scope type (`namespace`, `flow`, `execution`), scope and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub scope_type: String,
    pub scope: String,
    pub key: String,
}

/// Who writes a version, when a flow does.
#[derive(Debug, Clone, Default)]
pub struct Writer {
    pub execution_id: Option<String>,
    pub call_id: Option<String>,
    pub flow_id: Option<String>,
    pub flow_name: Option<String>,
    /// Look for a version this call already wrote among those created since (µs).
    pub dedupe_since: Option<u64>,
}

/// One version of one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryRecord {
    pub scope_type: String,
    pub scope: String,
    pub key: String,
    pub version: u64,
    /// None: a tombstone.
    pub value: Option<Value>,
    pub value_type: String,
    pub created_us: u64,
    pub execution_id: Option<String>,
    pub call_id: Option<String>,
    pub flow_id: Option<String>,
    pub flow_name: Option<String>,
}

impl Record for MemoryRecord {
    const KIND: Kind = Kind::Memory;
}

/// A version as people see it (`MemoryEntry`).
#[derive(Debug, Clone, Serialize)]
pub struct EntryView {
    pub key: String,
    pub value_type: String,
    pub version: u64,
    pub scope: String,
    pub scope_type: String,
    pub created_us: u64,
    pub is_deleted: bool,
    pub execution_id: Option<String>,
    pub call_id: Option<String>,
    pub flow_id: Option<String>,
    pub flow_name: Option<String>,
    pub serializer: Option<String>,
    pub size: Option<u64>,
}

impl From<&MemoryRecord> for EntryView {
    fn from(r: &MemoryRecord) -> EntryView {
        EntryView {
            key: r.key.clone(),
            value_type: r.value_type.clone(),
            version: r.version,
            scope: r.scope.clone(),
            scope_type: r.scope_type.clone(),
            created_us: r.created_us,
            is_deleted: r.value.is_none(),
            execution_id: r.execution_id.clone(),
            call_id: r.call_id.clone(),
            flow_id: r.flow_id.clone(),
            flow_name: r.flow_name.clone(),
            serializer: r.value.as_ref().map(|v| v.serializer.clone()),
            size: r.value.as_ref().map(value_size),
        }
    }
}

fn value_size(v: &Value) -> u64 {
    use crate::journal::types::Body;
    match &v.body {
        Body::Inline(b) => b.0.len() as u64,
        Body::Blob { size, .. } => *size,
        Body::Delta { .. } => 0,
    }
}

/// A scope and how many live keys it holds (`MemoryScopeInfo`).
#[derive(Debug, Clone, Serialize)]
pub struct ScopeView {
    pub scope: String,
    pub scope_type: String,
    pub entry_count: u64,
}

// --- names --------------------------------------------------------------------------

const SCOPE_TYPES: [&str; 3] = ["namespace", "flow", "execution"];

fn invalid(what: &'static str, value: &str, rule: &'static str) -> Error {
    Error::InvalidName {
        what,
        value: value.to_string(),
        rule,
    }
}

impl Address {
    /// Checks the parts (Kitaru 0.4's rules: `[A-Za-z0-9._-/]+`, trimmed, no `..` segment
    /// that could climb out of a directory).
    pub fn new(scope_type: &str, scope: &str, key: &str) -> Result<Address> {
        check_scope_type(scope_type)?;
        Ok(Address {
            scope_type: scope_type.to_string(),
            scope: check_identifier("memory scope", scope)?,
            key: check_identifier("memory key", key)?,
        })
    }

    fn prefix(&self) -> String {
        format!(
            "{}{}/",
            scope_prefix(&self.scope_type, &self.scope),
            encode(&self.key)
        )
    }

    fn version_key(&self, version: u64) -> String {
        format!("{}{:010}", self.prefix(), MAX_VERSION - version)
    }
}

pub fn check_scope_type(scope_type: &str) -> Result<()> {
    if SCOPE_TYPES.contains(&scope_type) {
        Ok(())
    } else {
        Err(invalid(
            "memory scope_type",
            scope_type,
            "one of 'namespace', 'flow', 'execution'",
        ))
    }
}

pub fn check_identifier(what: &'static str, value: &str) -> Result<String> {
    let rule = "letters, digits, '.', '_', '-' and '/' (no colons), not empty";
    let v = value.trim();
    let ok = !v.is_empty()
        && v.len() <= 512
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(invalid(what, value, rule))
    }
}

/// A scope or key as one path segment: `!s` for `/` and `!d` for `.` (a checked identifier
/// holds no `!`, and object stores keep `!` as it is), so segments never nest or climb.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '/' => out.push_str("!s"),
            '.' => out.push_str("!d"),
            c => out.push(c),
        }
    }
    out
}

fn decode(s: &str) -> String {
    s.replace("!s", "/").replace("!d", ".")
}

fn scope_prefix(scope_type: &str, scope: &str) -> String {
    format!("{MEMORY}/{scope_type}/{}/", encode(scope))
}

// --- reading ------------------------------------------------------------------------

/// The versions of `addr`, oldest first.
async fn versions(store: &Store, addr: &Address) -> Result<Vec<u64>> {
    let prefix = addr.prefix();
    let mut out: Vec<u64> = store
        .list(&prefix)
        .await?
        .iter()
        .filter_map(|k| version_of(k.strip_prefix(&prefix)?))
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// The newest version of `addr` (one listing request on object stores).
async fn newest(store: &Store, addr: &Address) -> Result<Option<u64>> {
    let prefix = addr.prefix();
    Ok(store
        .first_key(&prefix)
        .await?
        .and_then(|k| version_of(k.strip_prefix(&prefix)?)))
}

async fn read(store: &Store, addr: &Address, version: u64) -> Result<Option<MemoryRecord>> {
    let key = addr.version_key(version);
    let found = match store.read_local_now(&key) {
        Some(read) => read?, // a local disk: read right here
        None => store.get(&key).await?,
    };
    let Some(bytes) = found else {
        return Ok(None);
    };
    let rec: MemoryRecord =
        record::decode(&bytes).map_err(|e| Error::corrupt_record(&key, None, e))?;
    if rec.version != version || rec.key != addr.key || rec.scope != addr.scope {
        return Err(Error::Corrupt {
            key,
            exec_id: None,
            checkpoint: None,
            reason: "a memory record stored under another key or version".into(),
        });
    }
    Ok(Some(rec))
}

/// A version (the latest when `version` is None) and its value (None for a tombstone).
pub async fn get(
    store: &Store,
    addr: &Address,
    version: Option<u64>,
) -> Result<Option<(EntryView, Option<RawValue>)>> {
    let version = match version {
        Some(v) => v,
        None => match newest(store, addr).await? {
            Some(v) => v,
            None => return Ok(None),
        },
    };
    let Some(rec) = read(store, addr, version).await? else {
        return Ok(None);
    };
    let value = match &rec.value {
        Some(v) => Some(load_value(store, v, "memory", Some(&addr.key)).await?),
        None => None,
    };
    Ok(Some((EntryView::from(&rec), value)))
}

/// Every version of `addr`, newest first (tombstones included).
pub async fn history(store: &Store, addr: &Address) -> Result<Vec<EntryView>> {
    let vs = versions(store, addr).await?;
    let keys: Vec<String> = vs.iter().rev().map(|v| addr.version_key(*v)).collect();
    let mut out = Vec::with_capacity(keys.len());
    for (key, bytes) in keys.iter().zip(store.get_many(&keys).await?) {
        let Some(bytes) = bytes else { continue }; // purged meanwhile
        let rec: MemoryRecord =
            record::decode(&bytes).map_err(|e| Error::corrupt_record(key, None, e))?;
        out.push(EntryView::from(&rec));
    }
    Ok(out)
}

/// The latest version of each key of a scope (tombstones included), by key.
async fn latest_of_scope(
    store: &Store,
    scope_type: &str,
    scope: &str,
) -> Result<Vec<MemoryRecord>> {
    check_scope_type(scope_type)?;
    let scope = check_identifier("memory scope", scope)?;
    let prefix = scope_prefix(scope_type, &scope);
    let mut latest: std::collections::BTreeMap<String, (u64, String)> = Default::default();
    for k in store.list(&prefix).await? {
        let Some(rest) = k.strip_prefix(&prefix) else {
            continue;
        };
        let Some((key, version)) = rest.rsplit_once('/') else {
            continue;
        };
        let Some(version) = version_of(version) else {
            continue;
        };
        let e = latest.entry(decode(key)).or_insert((0, String::new()));
        if version >= e.0 {
            *e = (version, k.clone());
        }
    }
    let keys: Vec<String> = latest.values().map(|(_, k)| k.clone()).collect();
    let mut out = Vec::with_capacity(keys.len());
    for (key, bytes) in keys.iter().zip(store.get_many(&keys).await?) {
        let Some(bytes) = bytes else { continue };
        out.push(record::decode(&bytes).map_err(|e| Error::corrupt_record(key, None, e))?);
    }
    Ok(out)
}

/// The live keys of a scope: the latest version of each key that is not deleted, by key.
pub async fn list(store: &Store, scope_type: &str, scope: &str) -> Result<Vec<EntryView>> {
    Ok(latest_of_scope(store, scope_type, scope)
        .await?
        .iter()
        .filter(|r| r.value.is_some())
        .map(EntryView::from)
        .collect())
}

/// Every scope that holds a key, with how many live keys it has.
pub async fn scopes(store: &Store) -> Result<Vec<ScopeView>> {
    let mut found: std::collections::BTreeSet<(String, String)> = Default::default();
    for k in store.list(&format!("{MEMORY}/")).await? {
        let mut parts = k.splitn(4, '/');
        let (_, Some(t), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        found.insert((t.to_string(), decode(s)));
    }
    let mut out = Vec::with_capacity(found.len());
    for (scope_type, scope) in found {
        let entry_count = list(store, &scope_type, &scope).await?.len() as u64;
        out.push(ScopeView {
            scope,
            scope_type,
            entry_count,
        });
    }
    Ok(out)
}

// --- writing ------------------------------------------------------------------------

/// Writes a new version of `addr`: `value`, or a tombstone when None. Returns it (or the
/// version this call wrote before, see `Writer::dedupe_since`).
pub async fn write(
    store: &Store,
    addr: &Address,
    value: Option<RawValue>,
    value_type: &str,
    writer: &Writer,
) -> Result<EntryView> {
    if writer.dedupe_since.is_some() {
        let vs = versions(store, addr).await?;
        if let Some(earlier) = already_written(store, addr, &vs, writer).await? {
            return Ok(EntryView::from(&earlier));
        }
    }
    let mut next = newest(store, addr).await?.unwrap_or(0) + 1;
    let value = match value {
        Some(v) => Some(store_value(store, v).await?),
        None => None,
    };
    for _ in 0..MAX_RACES {
        let version = next;
        let rec = MemoryRecord {
            scope_type: addr.scope_type.clone(),
            scope: addr.scope.clone(),
            key: addr.key.clone(),
            version,
            value: value.clone(),
            value_type: value_type.to_string(),
            created_us: crate::ids::now_us(),
            execution_id: writer.execution_id.clone(),
            call_id: writer.call_id.clone(),
            flow_id: writer.flow_id.clone(),
            flow_name: writer.flow_name.clone(),
        };
        let bytes = record::encode_with(&rec, store.compresses()).map_err(|e| Error::Encode {
            exec_id: writer.execution_id.clone().unwrap_or_default(),
            call_id: format!("memory {}", addr.key),
            reason: e.to_string(),
        })?;
        let key = addr.version_key(version);
        let created = match store.put_create_local_now(&key, &bytes) {
            Some(done) => done?, // a local disk: written right here
            None => store.put_create(&key, bytes).await?,
        };
        if created {
            return Ok(EntryView::from(&rec));
        }
        // Another writer took that number: take the one after the newest now.
        next = newest(store, addr).await?.unwrap_or(0).max(version) + 1;
    }
    Err(Error::Contention {
        exec_id: format!("memory {}/{}/{}", addr.scope_type, addr.scope, addr.key),
        attempts: MAX_RACES,
    })
}

/// A version this call wrote in an earlier run of its execution, if there is one.
async fn already_written(
    store: &Store,
    addr: &Address,
    versions: &[u64],
    writer: &Writer,
) -> Result<Option<MemoryRecord>> {
    let (Some(since), Some(exec), Some(call)) =
        (writer.dedupe_since, &writer.execution_id, &writer.call_id)
    else {
        return Ok(None);
    };
    for v in versions.iter().rev() {
        let Some(rec) = read(store, addr, *v).await? else {
            continue;
        };
        if rec.created_us < since {
            break;
        }
        if rec.execution_id.as_ref() == Some(exec) && rec.call_id.as_ref() == Some(call) {
            return Ok(Some(rec));
        }
    }
    Ok(None)
}

/// Deletes versions of `addr` beyond the newest `keep`; how many.
pub async fn purge(store: &Store, addr: &Address, keep: u64) -> Result<u64> {
    let vs = versions(store, addr).await?;
    let cut = vs.len().saturating_sub(keep as usize);
    for v in &vs[..cut] {
        store.delete(&addr.version_key(*v)).await?;
    }
    Ok(cut as u64)
}

/// The keys of a scope whose latest version is live (with `include_deleted`, every key).
pub async fn keys(
    store: &Store,
    scope_type: &str,
    scope: &str,
    include_deleted: bool,
) -> Result<Vec<String>> {
    Ok(latest_of_scope(store, scope_type, scope)
        .await?
        .into_iter()
        .filter(|r| include_deleted || r.value.is_some())
        .map(|r| r.key)
        .collect())
}
