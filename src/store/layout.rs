//! The store layout: every key kitaru writes, in one place. This is a versioned contract
//! (docs/store-layout.md); readers refuse a root whose layout version is newer.
//!
//! ```text
//! kitaru-store.json                         layout marker {"format": "kitaru-store", "version": 4}
//! blobs/<2 hex>/<64 hex>                    immutable content-addressed bytes (blake3)
//! executions/<exec id>/state/<seq:08>       state events, create-only, numbered from 0 (0 = Started)
//! executions/<exec id>/lease/<seq:08>       heartbeat of the claim made by state event <seq>
//! executions/<exec id>/cp/<call id>[@<rev:04>]  finished checkpoint call (rev > 0: re-run after divergence)
//! executions/<exec id>/cpfail/<call id>@<attempt:04>   failed attempt of a call
//! executions/<exec id>/meta/<seq:08>-<n:06> kitaru.log() on the flow body, by the run of claim <seq>
//! executions/<exec id>/div/<seq:08>-<call id> divergence seen by the run of claim <seq>
//! executions/<exec id>/seg/<seq:08>         local stores: checkpoint records of claim <seq>, appended
//! executions/<exec id>/seal/<seq:08>        what the run of claim <seq> committed, written as it ends
//! executions/<exec id>/wait/<name>          a wait the flow reached (create-only)
//! executions/<exec id>/answer/<name>        its answer or abort (create-only: the first wins)
//! executions/<exec id>/log/<seq:08>-<n:06>  captured output of the run of claim <seq>
//! index/<tree>/<6 hex>/<3 hex>/<32 hex>     an empty entry of the execution index (`crate::index`)
//! ```

/// 4: records and blobs may be zstd-compressed (`codec.rs`: record format version 2, blobs
/// stored as a zstd frame). Written on a new store; a version-3 store is raised to it when
/// a process that may write it opens it, an older one once it is indexed (4 implies 3).
pub const LAYOUT_VERSION: u32 = 4;
/// 3: the execution index (`index/`, `crate::index`) is complete: every execution has
/// its entries. Reached by an older store once `index::ensure` has indexed what it held.
pub const INDEXED_VERSION: u32 = 3;
/// 2: retries and resumes are `Claimed` events that fence the runs before them.
pub const FENCED_VERSION: u32 = 2;
pub const LAYOUT_MARKER: &str = "kitaru-store.json";

/// Blobs larger than this are looked up (HEAD) before they are uploaded.
pub const BLOB_HEAD_THRESHOLD: usize = 256 * 1024;

/// On object stores, blobs larger than this are stored as content-defined chunks plus a
/// manifest (`cdc.rs`), so large values that share content share storage.
pub const CDC_THRESHOLD: usize = 256 * 1024;

/// Outputs up to this size live inside their checkpoint record: one put per checkpoint.
pub const INLINE_LIMIT: usize = 16 * 1024;

pub const EXECUTIONS: &str = "executions";

pub fn layout_marker_bytes() -> Vec<u8> {
    marker_bytes(LAYOUT_VERSION)
}

pub fn marker_bytes(version: u32) -> Vec<u8> {
    format!("{{\"format\": \"kitaru-store\", \"version\": {version}}}\n").into_bytes()
}

pub fn parse_layout_marker(bytes: &[u8]) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v.get("version")?
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

pub fn blob_key(hash: &[u8; 32]) -> String {
    let h = hex(hash);
    format!("blobs/{}/{}", &h[..2], h)
}

/// The hash a blob key names (`blobs/<2 hex>/<64 hex>`); `None` if its last part is not one.
pub fn blob_hash_of_key(key: &str) -> Option<[u8; 32]> {
    key.rsplit('/').next().and_then(parse_hex32)
}

pub fn exec_prefix(exec_id: &str) -> String {
    format!("{EXECUTIONS}/{exec_id}")
}

pub fn state_prefix(exec_id: &str) -> String {
    format!("{EXECUTIONS}/{exec_id}/state")
}

pub fn state_key(exec_id: &str, seq: u64) -> String {
    format!("{EXECUTIONS}/{exec_id}/state/{seq:08}")
}

pub fn lease_key(exec_id: &str, claim_seq: u64) -> String {
    format!("{EXECUTIONS}/{exec_id}/lease/{claim_seq:08}")
}

/// Revision 0 is the first result of a call; a re-run after a divergence (policy `rerun`)
/// writes the next revision, so no record is ever overwritten.
pub fn checkpoint_key(exec_id: &str, call_id: &str, revision: u32) -> String {
    if revision == 0 {
        format!("{EXECUTIONS}/{exec_id}/cp/{call_id}")
    } else {
        format!("{EXECUTIONS}/{exec_id}/cp/{call_id}@{revision:04}")
    }
}

pub fn failed_attempt_key(exec_id: &str, call_id: &str, attempt: u32) -> String {
    format!("{EXECUTIONS}/{exec_id}/cpfail/{call_id}@{attempt:04}")
}

pub fn meta_key(exec_id: &str, claim_seq: u64, n: u32) -> String {
    format!("{EXECUTIONS}/{exec_id}/meta/{claim_seq:08}-{n:06}")
}

pub fn divergence_key(exec_id: &str, claim_seq: u64, call_id: &str) -> String {
    format!("{EXECUTIONS}/{exec_id}/div/{claim_seq:08}-{call_id}")
}

/// On a local store, the checkpoint records of the run of claim `claim_seq`, appended to
/// one file (see `Runner::record_checkpoint`).
pub fn segment_key(exec_id: &str, claim_seq: u64) -> String {
    format!("{EXECUTIONS}/{exec_id}/seg/{claim_seq:08}")
}

/// What the run of claim `claim_seq` committed, sealed by itself when it ended.
pub fn pack_key(exec_id: &str, last_state_seq: u64) -> String {
    format!("{EXECUTIONS}/{exec_id}/pack/{last_state_seq:08}")
}

pub fn seal_key(exec_id: &str, claim_seq: u64) -> String {
    format!("{EXECUTIONS}/{exec_id}/seal/{claim_seq:08}")
}

pub fn wait_key(exec_id: &str, name: &str) -> String {
    format!("{EXECUTIONS}/{exec_id}/wait/{name}")
}

pub fn answer_key(exec_id: &str, name: &str) -> String {
    format!("{EXECUTIONS}/{exec_id}/answer/{name}")
}

/// The cross-execution cache (`cache.rs`): one create-only entry per key.
pub const CACHE: &str = "cache";

pub fn cache_key(key: &[u8; 32]) -> String {
    format!("{CACHE}/{}", hex(key))
}

pub fn log_prefix(exec_id: &str) -> String {
    format!("{EXECUTIONS}/{exec_id}/log")
}

pub fn log_key(exec_id: &str, claim_seq: u64, n: u32) -> String {
    format!("{EXECUTIONS}/{exec_id}/log/{claim_seq:08}-{n:06}")
}

/// Whether `key` is a segment of checkpoint records (`executions/<id>/seg/<seq>`).
pub fn is_segment_key(key: &str) -> bool {
    let mut parts = key.split('/');
    parts.next() == Some(EXECUTIONS)
        && parts.next().is_some()
        && parts.next() == Some("seg")
        && parts.next().is_some_and(|n| n.parse::<u64>().is_ok())
        && parts.next().is_none()
}

/// `key` relative to its execution's directory (`cp/step`), or `key` itself if it is not
/// under `exec_id`.
pub fn exec_relative<'a>(exec_id: &str, key: &'a str) -> &'a str {
    key.strip_prefix(EXECUTIONS)
        .and_then(|r| r.strip_prefix('/'))
        .and_then(|r| r.strip_prefix(exec_id))
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(key)
}

/// What a key under `executions/<id>/` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecKey<'a> {
    State(u64),
    Lease(u64),
    Checkpoint(&'a str, u32),
    Segment(u64),
    Seal(u64),
    FailedAttempt(&'a str, u32),
    Meta,
    Divergence,
    Wait,
    Answer,
    Log,
    /// A pack of the execution's records (`journal/pack.rs`), covering state events up to
    /// this sequence number.
    Pack(u64),
    Other,
}

/// Classifies a key relative to the store root; `None` if it is not under `exec_id`.
pub fn classify<'a>(exec_id: &str, key: &'a str) -> Option<ExecKey<'a>> {
    let rest = key.strip_prefix(EXECUTIONS)?.strip_prefix('/')?;
    let rest = rest.strip_prefix(exec_id)?.strip_prefix('/')?;
    let (dir, name) = rest.split_once('/')?;
    Some(match dir {
        "state" => name.parse().map(ExecKey::State).unwrap_or(ExecKey::Other),
        "lease" => name.parse().map(ExecKey::Lease).unwrap_or(ExecKey::Other),
        "cp" => match name.rsplit_once('@') {
            None => ExecKey::Checkpoint(name, 0),
            Some((call, rev)) => rev
                .parse()
                .map(|r| ExecKey::Checkpoint(call, r))
                .unwrap_or(ExecKey::Other),
        },
        "cpfail" => match name
            .rsplit_once('@')
            .and_then(|(c, n)| Some((c, n.parse().ok()?)))
        {
            Some((call, n)) => ExecKey::FailedAttempt(call, n),
            None => ExecKey::Other,
        },
        "meta" => ExecKey::Meta,
        "div" => ExecKey::Divergence,
        "seg" => name.parse().map(ExecKey::Segment).unwrap_or(ExecKey::Other),
        "wait" => ExecKey::Wait,
        "answer" => ExecKey::Answer,
        "log" => ExecKey::Log,
        "seal" => name.parse().map(ExecKey::Seal).unwrap_or(ExecKey::Other),
        "pack" => name.parse().map(ExecKey::Pack).unwrap_or(ExecKey::Other),
        _ => ExecKey::Other,
    })
}

/// The checkpoint call a key belongs to (`cp/<call id>[@<rev>]`, `cpfail/<call id>@<n>`),
/// whatever its execution; `None` for any other key.
pub fn call_of_key(key: &str) -> Option<&str> {
    let exec_id = key
        .strip_prefix(EXECUTIONS)?
        .strip_prefix('/')?
        .split('/')
        .next()?;
    match classify(exec_id, key)? {
        ExecKey::Checkpoint(call, _) | ExecKey::FailedAttempt(call, _) => Some(call),
        _ => None,
    }
}
