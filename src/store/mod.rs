//! The store: one root URL, create-only records and content-addressed blobs on `object_store`.
//!
//! Everything kitaru keeps lives under the root in the layout of `layout.rs`. The store
//! offers the few primitives the journal needs: a create-only put (atomic on local disk and
//! on S3), an overwrite put for keys that only one writer ever touches, get, list, and blobs
//! named by their blake3 hash, verified on every read.

pub mod cdc;
pub mod codec;
pub mod layout;
mod local;
mod redact;
mod url;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parking_lot::Mutex;

use crate::error::{Error, Result};

pub use local::Segment;
pub use redact::{redact_urls, Redactor};
pub use url::{Cloud, StoreOptions, StoreUrl};

/// How many reads the store keeps in flight when loading many records at once.
pub const READ_CONCURRENCY: usize = 64;

/// How many chunk uploads of one large value are in flight at once.
const WRITE_CONCURRENCY: usize = 16;

/// Keys per page of an object-store listing.
const LIST_PAGE: u64 = 1000;

/// Failures of the storage backend itself.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store location {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error(
        "the store location {url} uses {scheme}://, which kitaru does not support; use {supported}"
    )]
    UnsupportedScheme {
        url: String,
        scheme: String,
        supported: &'static str,
    },

    #[error(
        "the store at {url} does not honour create-only writes: {detail}. kitaru needs \
         conditional writes (S3 `If-None-Match: *`, GCS generation preconditions, Azure \
         `If-None-Match`) so that two processes can never run one execution at once; use a \
         server that supports them (AWS S3, MinIO, SeaweedFS, R2, GCS, Azure) or remove any \
         option that disables them (conditional_put=disabled)"
    )]
    ConditionalWritesUnsupported { url: String, detail: String },

    #[error("cannot use {path} as the store directory: {source}{}", io_hint(.source))]
    LocalDir {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// `detail` is the backend's message with credentials and URL queries removed (the
    /// original error is not kept: it may quote them).
    #[error("store {op} of {key} in {url} failed: {detail}")]
    Backend {
        op: &'static str,
        key: String,
        url: String,
        detail: String,
    },

    #[error("store {op} of {key} failed: {source}{}", io_hint(.source))]
    LocalIo {
        op: &'static str,
        key: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "the store at {url} has layout version {found}, newer than this kitaru understands \
             ({supported}); upgrade kitaru to use it"
    )]
    LayoutTooNew {
        url: String,
        found: u32,
        supported: u32,
    },
}

fn io_hint(err: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    match err.kind() {
        PermissionDenied | ReadOnlyFilesystem => {
            " (the directory is not writable: point KITARU_STORE at a writable directory)"
        }
        StorageFull | QuotaExceeded => {
            " (the disk is full: free space; nothing stored earlier was lost)"
        }
        _ => "",
    }
}

fn backend_hint(err: &object_store::Error) -> &'static str {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io_hint(io);
        }
        let text = e.to_string().to_ascii_lowercase();
        if text.contains("timed out") || text.contains("timeout") {
            return " (the store did not answer in time: an operation may take \
                     KITARU_STORE_TIMEOUT seconds in all, retries included, default 60)";
        }
        cur = e.source();
    }
    ""
}

/// Kinds of requests the store sends to its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Put,
    Get,
    Head,
    List,
    Delete,
}

const REQUEST_KINDS: [(Request, &str); 5] = [
    (Request::Put, "put"),
    (Request::Get, "get"),
    (Request::Head, "head"),
    (Request::List, "list"),
    (Request::Delete, "delete"),
];

/// Requests sent by one store handle, by kind. On a local store a "put" is a file write
/// (including a segment append), a "get" a file read and a "list" a directory walk; on
/// object stores each count is an HTTP request (a listing counts one per page of 1,000).
#[derive(Debug, Default)]
pub struct RequestCounts([AtomicU64; 5]);

impl RequestCounts {
    fn add(&self, kind: Request, n: u64) {
        self.0[kind as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        REQUEST_KINDS
            .iter()
            .map(|(k, name)| (*name, self.0[*k as usize].load(Ordering::Relaxed)))
            .collect()
    }

    pub fn reset(&self) {
        for c in &self.0 {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// Builds a fresh client for the store's backend.
type Connect = Box<dyn Fn() -> Result<Arc<dyn ObjectStore>> + Send + Sync>;

/// The backend client of this process. A client built before `fork()` holds pooled
/// connections served by tasks of the parent's runtime, which do not exist in the child;
/// the child builds its own.
struct Backend {
    pid: u32,
    os: Arc<dyn ObjectStore>,
}

/// A handle on one store root. Cheap to share (`Arc<Store>`); all methods are async and run
/// on kitaru's I/O runtime.
pub struct Store {
    backend: Mutex<Backend>,
    /// Rebuilds the client (after a fork); `None` for backends shared in memory.
    connect: Option<Connect>,
    root: Path,
    url: String,
    /// The directory of a local store: bulk reads and listings go straight to the file
    /// system there (one blocking task per batch instead of one per object).
    local_dir: Option<std::path::PathBuf>,
    fsync: bool,
    known_blobs: Mutex<HashSet<[u8; 32]>>,
    redactor: Redactor,
    counts: Arc<RequestCounts>,
    /// The layout version the marker names (3 once the execution index is complete).
    version: std::sync::atomic::AtomicU32,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

/// The content named `hash` that stored blob bytes hold: the bytes themselves, or what
/// their zstd frame holds (layout 4); None when they are neither (a manifest, or damage).
pub fn content_of(hash: &[u8; 32], stored: &Bytes) -> Option<Bytes> {
    if blake3::hash(stored).as_bytes() == hash {
        return Some(stored.clone());
    }
    if !codec::is_zstd(stored) {
        return None;
    }
    let content = codec::decompress_blob(stored).ok()?;
    (blake3::hash(&content).as_bytes() == hash).then(|| Bytes::from(content))
}

/// `location` relative to the store root `root`.
fn relative_to(root: &Path, location: &Path) -> String {
    let (full, root) = (location.as_ref(), root.as_ref());
    if root.is_empty() {
        full.to_string()
    } else {
        full.strip_prefix(root)
            .map(|s| s.trim_start_matches('/'))
            .unwrap_or(full)
            .to_string()
    }
}

/// Object stores whose create-only puts were verified by this process, by identity.
fn verified_backends() -> &'static Mutex<HashSet<String>> {
    static VERIFIED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    VERIFIED.get_or_init(|| Mutex::new(HashSet::new()))
}

impl Store {
    /// Opens (and, for a local directory, creates) the store at `location`, and checks the
    /// layout version written at its root. An object store is also checked, once per
    /// process, to honour create-only writes.
    pub async fn open(location: &str, options: StoreOptions) -> Result<Arc<Store>> {
        let parsed = StoreUrl::parse(location)?;
        let redactor = Redactor::new(
            options
                .options
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let (os, root) = parsed.connect(&options, &redactor)?;
        let local_dir = match &parsed {
            StoreUrl::Local(dir) => Some(dir.clone()),
            _ => None,
        };
        let connect: Option<Connect> = if parsed.is_cloud() {
            let (parsed, options, redactor) = (parsed.clone(), options.clone(), redactor.clone());
            Some(Box::new(move || {
                parsed.connect(&options, &redactor).map(|(os, _)| os)
            }))
        } else {
            None
        };
        let store = Arc::new(Store {
            backend: Mutex::new(Backend {
                pid: crate::runtime::pid(),
                os,
            }),
            connect,
            root,
            url: parsed.display(),
            local_dir,
            fsync: options.fsync,
            known_blobs: Mutex::new(HashSet::new()),
            redactor,
            counts: Default::default(),
            version: Default::default(),
        });
        let marker = store.check_layout().await?;
        if let Some(dir) = &store.local_dir {
            local::sweep_staging(dir);
        }
        if parsed.is_cloud() {
            let identity = parsed.identity(&options);
            if !verified_backends().lock().contains(&identity) {
                store.verify_create_only(marker).await?;
                verified_backends().lock().insert(identity);
            }
        }
        Ok(store)
    }

    /// A store over any `object_store` backend (tests, embedders). Checks the layout and
    /// that create-only puts are honoured, like [`Store::open`] does for object stores.
    pub async fn from_object_store(os: Arc<dyn ObjectStore>, name: &str) -> Result<Arc<Store>> {
        let store = Arc::new(Store {
            backend: Mutex::new(Backend {
                pid: crate::runtime::pid(),
                os,
            }),
            connect: None,
            root: Path::default(),
            url: name.to_string(),
            local_dir: None,
            fsync: false,
            known_blobs: Mutex::new(HashSet::new()),
            redactor: Redactor::default(),
            counts: Default::default(),
            version: Default::default(),
        });
        let marker = store.check_layout().await?;
        store.verify_create_only(marker).await?;
        Ok(store)
    }

    /// The backend client of this process (rebuilt in a forked child).
    fn os(&self) -> Result<Arc<dyn ObjectStore>> {
        let pid = crate::runtime::pid();
        let mut backend = self.backend.lock();
        if backend.pid != pid {
            if let Some(connect) = &self.connect {
                let fresh = connect()?;
                // The parent's client is leaked, not dropped: dropping it could wait on
                // connection tasks that do not exist in this process.
                std::mem::forget(std::mem::replace(&mut backend.os, fresh));
            }
            backend.pid = pid;
        }
        Ok(backend.os.clone())
    }

    /// Requests sent so far, by kind.
    pub fn request_counts(&self) -> &RequestCounts {
        &self.counts
    }

    fn count(&self, kind: Request) {
        self.counts.add(kind, 1);
    }

    /// Whether this is a local directory (where a run appends its checkpoint records to a
    /// segment instead of writing a key per record).
    /// Whether small writes on this store finish in microseconds: a local disk without
    /// fsync (bindings may then do them without handing the GIL over and back).
    pub fn is_quick(&self) -> bool {
        self.local_dir.is_some() && !self.fsync
    }

    pub fn is_local(&self) -> bool {
        self.local_dir.is_some()
    }

    /// The location of the store as shown to users (never with credentials).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Checks (or writes) the layout marker; returns its bytes.
    async fn check_layout(&self) -> Result<Bytes> {
        let marker = layout::LAYOUT_MARKER;
        let mut found = None;
        // Another process may create the store at the same moment (the create fails, the
        // read then finds its marker); a location where a created key still cannot be read
        // (`/proc`, a broken server) is an error, not a loop.
        for _ in 0..3 {
            if let Some(bytes) = self.get(marker).await? {
                found = Some(bytes);
                break;
            }
            let bytes = Bytes::from(layout::layout_marker_bytes());
            if self.put_create(marker, bytes.clone()).await? {
                // A new store: its index is complete (it is empty).
                self.version
                    .store(layout::LAYOUT_VERSION, Ordering::Release);
                return Ok(bytes);
            }
        }
        let found = found.ok_or_else(|| Error::Corrupt {
            key: marker.to_string(),
            exec_id: None,
            checkpoint: None,
            reason: format!(
                "{} does not behave like a store: the layout marker can be neither created nor \
                 read there; point KITARU_STORE at a directory or bucket of your own",
                self.url
            ),
        })?;
        let version = layout::parse_layout_marker(&found).ok_or_else(|| Error::Corrupt {
            key: marker.to_string(),
            exec_id: None,
            checkpoint: None,
            reason: "the layout marker is not valid JSON with a numeric \"version\"".into(),
        })?;
        if version > layout::LAYOUT_VERSION {
            return Err(StoreError::LayoutTooNew {
                url: self.url.clone(),
                found: version,
                supported: layout::LAYOUT_VERSION,
            }
            .into());
        }
        // Everything older is still read; what this version writes is not readable by
        // older releases, which the new marker makes them say instead of misreading.
        // Version 2 (fences) is written at once, and so is 4 (compression, which needs
        // nothing else) over 3; a store below 3 gets 4 from `index::ensure` once its index
        // is complete.
        let raised = match version {
            v if v < layout::FENCED_VERSION => Some(layout::FENCED_VERSION),
            layout::INDEXED_VERSION => Some(layout::LAYOUT_VERSION),
            _ => None,
        };
        if let Some(to) = raised {
            let bytes = Bytes::from(layout::marker_bytes(to));
            match self.put_overwrite(marker, bytes.clone()).await {
                Ok(()) => {
                    self.version.store(to, Ordering::Release);
                    return Ok(bytes);
                }
                // A store this process may not write (read-only credentials) stays as it
                // is: nothing written through this handle lands anyway.
                Err(e) if version >= layout::FENCED_VERSION => {
                    tracing::debug!(store = %self.url, error = %e, "layout marker not raised");
                }
                Err(e) => return Err(e),
            }
        }
        self.version.store(version, Ordering::Release);
        Ok(found)
    }

    /// Whether records and blobs written through this handle may be compressed (layout
    /// 4): older releases that read this store refuse it by its marker first.
    pub fn compresses(&self) -> bool {
        self.layout_version() >= layout::LAYOUT_VERSION
    }

    /// The layout version of this store's marker, as read when it was opened (or as
    /// raised since by [`Store::raise_layout`]).
    pub fn layout_version(&self) -> u32 {
        self.version.load(Ordering::Acquire)
    }

    /// Reads the layout marker again (another process may have raised it since this
    /// handle was opened); returns the version it names now.
    pub async fn reread_layout(&self) -> Result<u32> {
        if let Some(version) = self
            .get(layout::LAYOUT_MARKER)
            .await?
            .and_then(|b| layout::parse_layout_marker(&b))
        {
            self.version.fetch_max(version, Ordering::AcqRel);
        }
        Ok(self.layout_version())
    }

    /// Rewrites the layout marker to name `version` (a newer one than it names): for the
    /// upgrade that makes older releases refuse the store.
    pub async fn raise_layout(&self, version: u32) -> Result<()> {
        if version > self.layout_version() {
            self.put_overwrite(layout::LAYOUT_MARKER, layout::marker_bytes(version))
                .await?;
            self.version.store(version, Ordering::Release);
        }
        Ok(())
    }

    /// Creates the empty object `key` (an index entry); an existing one is left as it is.
    pub async fn put_marker(&self, key: &str) -> Result<()> {
        if let Some(dir) = &self.local_dir {
            self.count(Request::Put);
            return local::put_empty(dir, key);
        }
        self.put_create(key, Bytes::new()).await.map(|_| ())
    }

    /// Every key under `prefix`, in key order, read as the stream is consumed: on object
    /// stores one listing request per 1,000 keys taken (they list in key order), on a
    /// local store one directory read per directory entered, each sorted. A caller that
    /// needs the first few keys of a big prefix pays for those only.
    pub fn scan(&self, prefix: &str) -> futures::stream::BoxStream<'static, Result<String>> {
        let prefix = prefix.trim_end_matches('/').to_string();
        if let Some(dir) = &self.local_dir {
            self.count(Request::List);
            return stream::iter(local::Scan::new(dir.clone(), prefix)).boxed();
        }
        let os = match self.os() {
            Ok(os) => os,
            Err(e) => return stream::once(async move { Err(e) }).boxed(),
        };
        let (root, url, redactor) = (self.root.clone(), self.url.clone(), self.redactor.clone());
        let listed = os.list(Some(&self.path(&prefix)));
        let mut taken = 0u64;
        self.count(Request::List);
        let counts = self.counts_handle();
        listed
            .map(move |item| {
                taken += 1;
                if taken % LIST_PAGE == 0 {
                    counts.add(Request::List, 1);
                }
                match item {
                    Ok(meta) => Ok(relative_to(&root, &meta.location)),
                    Err(e) => Err(StoreError::Backend {
                        op: "list",
                        key: prefix.clone(),
                        url: url.clone(),
                        detail: redactor.clean(&e.to_string()),
                    }
                    .into()),
                }
            })
            .boxed()
    }

    /// Checks that a create-only put of an existing key is refused: every mutable pointer
    /// of the layout (state events, answers, claims) relies on it, and a server that
    /// ignores `If-None-Match` would let two processes run one execution. The probe re-puts
    /// the layout marker with the bytes it already holds, so even a server that ignores
    /// the condition changes nothing. Costs one request.
    async fn verify_create_only(&self, existing: Bytes) -> Result<()> {
        let marker = layout::LAYOUT_MARKER;
        let refused = |detail: String| -> Error {
            StoreError::ConditionalWritesUnsupported {
                url: self.url.clone(),
                detail,
            }
            .into()
        };
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.count(Request::Put);
        match self
            .os()?
            .put_opts(&self.path(marker), PutPayload::from_bytes(existing), opts)
            .await
        {
            Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Ok(_) => Err(refused(format!(
                "a create-only put of the existing key {marker} succeeded (the server ignored \
                 the condition and overwrote it)"
            ))),
            Err(object_store::Error::NotImplemented { .. }) => Err(self.no_conditional_puts()),
            Err(e) => Err(self.backend("create-only put", marker, e)),
        }
    }

    fn no_conditional_puts(&self) -> Error {
        StoreError::ConditionalWritesUnsupported {
            url: self.url.clone(),
            detail: "the backend is configured without conditional puts".into(),
        }
        .into()
    }

    fn path(&self, key: &str) -> Path {
        if self.root.as_ref().is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{}", self.root.as_ref(), key))
        }
    }

    fn relative(&self, location: &Path) -> String {
        relative_to(&self.root, location)
    }

    fn counts_handle(&self) -> Arc<RequestCounts> {
        self.counts.clone()
    }

    fn backend(&self, op: &'static str, key: &str, source: object_store::Error) -> Error {
        let mut detail = source.to_string();
        let mut cur = std::error::Error::source(&source);
        while let Some(e) = cur {
            let text = e.to_string();
            if !detail.contains(&text) {
                detail.push_str(": ");
                detail.push_str(&text);
            }
            cur = e.source();
        }
        detail.push_str(backend_hint(&source));
        StoreError::Backend {
            op,
            key: key.to_string(),
            url: self.url.clone(),
            detail: self.redactor.clean(&detail),
        }
        .into()
    }

    /// Writes `key` only if nothing is there yet. Returns `false` when the key already
    /// existed (the store is unchanged). Atomic: readers see all of the bytes or no object.
    pub async fn put_create(&self, key: &str, bytes: impl Into<Bytes>) -> Result<bool> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let payload = PutPayload::from_bytes(bytes.into());
        self.count(Request::Put);
        match self.os()?.put_opts(&self.path(key), payload, opts).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => Err(self.no_conditional_puts()),
            Err(e) => Err(self.backend("create-only put", key, e)),
        }
    }

    /// Replaces `key` atomically. Only for keys with a single writer (a lease holder's
    /// heartbeat); everything shared is written with `put_create`.
    pub async fn put_overwrite(&self, key: &str, bytes: impl Into<Bytes>) -> Result<()> {
        let payload = PutPayload::from_bytes(bytes.into());
        self.count(Request::Put);
        self.os()?
            .put(&self.path(key), payload)
            .await
            .map(|_| ())
            .map_err(|e| self.backend("put", key, e))
    }

    /// Reads `key`, or `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.count(Request::Get);
        let res = match self.os()?.get(&self.path(key)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.backend("get", key, e)),
        };
        match res.bytes().await {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.backend("get", key, e)),
        }
    }

    /// On a local store, reads a small `key` right here (no task hop: a missing file costs
    /// one failed open); `None` on object stores.
    pub fn read_local_now(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        let dir = self.local_dir.as_ref()?;
        self.count(Request::Get);
        Some(local::read_one(dir, key))
    }

    /// On a local store, reads `key` from byte `offset` on, right here (an append-only file
    /// read as it grows); `None` on object stores.
    pub fn read_local_from(&self, key: &str, offset: u64) -> Option<Result<Option<(u64, Bytes)>>> {
        let dir = self.local_dir.as_ref()?;
        self.count(Request::Get);
        Some(local::read_from(dir, key, offset))
    }

    /// On a local store, writes a small `key` create-only right here (no task hop; `false`
    /// when it exists); `None` on object stores (use [`Store::put_create`]).
    pub fn put_create_local_now(&self, key: &str, bytes: &[u8]) -> Option<Result<bool>> {
        let dir = self.local_dir.as_ref()?;
        self.count(Request::Put);
        Some(local::put_small_create(dir, key, bytes, self.fsync))
    }

    /// Local stores: removes what a failed write left under `prefix` (best effort; object
    /// stores never keep a failed put).
    pub fn discard_local(&self, prefix: &str) {
        if let Some(dir) = &self.local_dir {
            let _ = std::fs::remove_dir_all(dir.join(prefix));
        }
    }

    /// Local stores: a handle on the segment at `key`, opened on its first append; `None`
    /// on object stores.
    pub fn segment(&self, key: String) -> Option<Segment> {
        Some(Segment::new(self.local_dir.as_ref()?, key))
    }

    /// Appends `bytes` to `segment` (fsynced if the store is); counts as a put.
    pub fn append_segment(&self, segment: &mut Segment, bytes: &[u8]) -> Result<()> {
        self.count(Request::Put);
        segment.append(bytes, self.fsync)
    }

    /// Appends a hint (a cache entry): never fsynced, since losing it costs a miss only.
    pub fn append_hint(&self, segment: &mut Segment, bytes: &[u8]) -> Result<()> {
        self.count(Request::Put);
        segment.append(bytes, false)
    }

    /// Reads many keys concurrently; missing keys give `None`. Order follows `keys`.
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        if let Some(dir) = &self.local_dir {
            self.counts.add(Request::Get, keys.len() as u64);
            return local::get_many(dir, keys).await;
        }
        // Owned keys: a closure over `&String` makes the future's Send bound higher-ranked.
        let reads: Vec<_> = keys
            .iter()
            .cloned()
            .map(|k| async move { self.get(&k).await })
            .collect();
        stream::iter(reads)
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Deletes `key` (absent keys are not an error).
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.count(Request::Delete);
        match self.os()?.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.backend("delete", key, e)),
        }
    }

    /// Every key under `prefix` (a directory-like key without trailing slash), relative to
    /// the store root, sorted. One listing request per 1,000 keys on object stores.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        if let Some(dir) = &self.local_dir {
            self.count(Request::List);
            return local::list(dir, prefix).await;
        }
        let path = self.path(prefix);
        let mut keys: Vec<String> = match self
            .os()?
            .list(Some(&path))
            .map_ok(|meta| self.relative(&meta.location))
            .try_collect()
            .await
        {
            Ok(keys) => keys,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(self.backend("list", prefix, e)),
        };
        // One listing request per page of 1,000 keys (the S3/GCS/Azure page size).
        self.counts
            .add(Request::List, (keys.len() as u64 / LIST_PAGE) + 1);
        keys.sort_unstable();
        Ok(keys)
    }

    /// Every key under `prefix` with its size in bytes, sorted (one listing, no reads).
    pub async fn list_sized(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        if let Some(dir) = &self.local_dir {
            let keys = self.list(prefix).await?;
            return Ok(keys
                .into_iter()
                .map(|k| {
                    let size = std::fs::metadata(dir.join(&k))
                        .map(|m| m.len())
                        .unwrap_or(0);
                    (k, size)
                })
                .collect());
        }
        let metas: Vec<object_store::ObjectMeta> = match self
            .os()?
            .list(Some(&self.path(prefix)))
            .try_collect()
            .await
        {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(self.backend("list", prefix, e)),
        };
        self.counts
            .add(Request::List, (metas.len() as u64 / LIST_PAGE) + 1);
        let mut out: Vec<(String, u64)> = metas
            .iter()
            .map(|m| (self.relative(&m.location), m.size))
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// The smallest key under `prefix`, or None: on object stores the first key of the
    /// first listing page (they list in key order), one request however many keys there are.
    pub async fn first_key(&self, prefix: &str) -> Result<Option<String>> {
        if let Some(dir) = &self.local_dir {
            // One directory read, right here (no task hop): the keys under a prefix of
            // one level, as memory versions are.
            self.count(Request::List);
            let mut out = Vec::new();
            local::walk(dir, prefix.trim_end_matches('/'), &mut out)?;
            return Ok(out.into_iter().min());
        }
        self.count(Request::List);
        let path = self.path(prefix);
        let mut stream = self.os()?.list(Some(&path));
        match stream.try_next().await {
            Ok(first) => Ok(first.map(|meta| self.relative(&meta.location))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.backend("list", prefix, e)),
        }
    }

    /// How many objects are stored under `prefix` (relative to the root, "" for all) and
    /// their total size in bytes.
    pub async fn usage(&self, prefix: &str) -> Result<(u64, u64)> {
        if let Some(dir) = &self.local_dir {
            let keys = self.list(prefix).await?;
            let dir = dir.clone();
            let count = keys.len() as u64;
            let total = tokio::task::spawn_blocking(move || {
                keys.iter()
                    .map(|k| std::fs::metadata(dir.join(k)).map(|m| m.len()).unwrap_or(0))
                    .sum::<u64>()
            })
            .await
            .map_err(|e| StoreError::LocalIo {
                op: "list",
                key: prefix.to_string(),
                source: std::io::Error::other(e.to_string()),
            })?;
            return Ok((count, total));
        }
        // `path("")` is the root itself (object_store paths drop empty segments).
        let path = self.path(prefix);
        let metas: Vec<object_store::ObjectMeta> =
            match self.os()?.list(Some(&path)).try_collect().await {
                Ok(m) => m,
                Err(e) => return Err(self.backend("list", prefix, e)),
            };
        self.counts
            .add(Request::List, (metas.len() as u64 / LIST_PAGE) + 1);
        Ok((metas.len() as u64, metas.iter().map(|m| m.size).sum()))
    }

    /// The names of the direct children "directories" of `prefix`, sorted.
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        let path = self.path(prefix);
        let listing = match self.os()?.list_with_delimiter(Some(&path)).await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(self.backend("list", prefix, e)),
        };
        self.counts.add(
            Request::List,
            ((listing.common_prefixes.len() + listing.objects.len()) as u64 / LIST_PAGE) + 1,
        );
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort_unstable();
        Ok(names)
    }

    /// Stores `bytes` as a blob named by its blake3 hash and returns the hash. A blob that
    /// is already there is never rewritten: one this process saw is skipped outright; on
    /// object stores a large one is looked up (HEAD) first and stored as content-defined
    /// chunks (`put_chunked`), so values sharing content share chunks; on local stores a large one is
    /// hashed while a staged copy is written, and the copy is dropped if the blob exists
    /// (re-saving identical large content across processes is rare; hiding the hash behind
    /// the write is what makes big saves fast).
    pub async fn put_blob(&self, bytes: Bytes) -> Result<[u8; 32]> {
        if let (Some(dir), true) = (&self.local_dir, bytes.len() > layout::BLOB_HEAD_THRESHOLD) {
            // Large local blobs: hash while writing (see local::put_blob).
            let (dir, fsync) = (dir.clone(), self.fsync);
            let hash = tokio::task::spawn_blocking(move || local::put_blob(&dir, &bytes, fsync))
                .await
                .map_err(|e| StoreError::LocalIo {
                    op: "put",
                    key: "blobs".into(),
                    source: std::io::Error::other(e.to_string()),
                })??;
            self.count(Request::Put);
            self.known_blobs.lock().insert(hash);
            return Ok(hash);
        }
        let hash = *blake3::hash(&bytes).as_bytes();
        if self.known_blobs.lock().contains(&hash) {
            return Ok(hash);
        }
        if bytes.len() > layout::CDC_THRESHOLD {
            self.put_chunked(hash, bytes).await?;
            self.known_blobs.lock().insert(hash);
            return Ok(hash);
        }
        let key = layout::blob_key(&hash);
        let stored = self.blob_bytes(&bytes);
        // A small blob on a local disk: created right here (staged file and hard link, still
        // create-only), without `object_store`'s task hop.
        if let Some(done) = self.put_create_local_now(&key, &stored) {
            if !done? {
                self.verify_or_rewrite(&key, &hash, stored).await?;
            }
            self.known_blobs.lock().insert(hash);
            return Ok(hash);
        }
        // Large blobs: ask first, so a re-save of big content sends no bytes.
        let exists = bytes.len() > layout::BLOB_HEAD_THRESHOLD && {
            self.count(Request::Head);
            match self.os()?.head(&self.path(&key)).await {
                Ok(_) => true,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => return Err(self.backend("head", &key, e)),
            }
        };
        if exists || !self.put_create(&key, stored.clone()).await? {
            self.verify_or_rewrite(&key, &hash, stored).await?;
        }
        self.known_blobs.lock().insert(hash);
        Ok(hash)
    }

    /// What the blob key of `content` holds: one zstd frame on a store of layout 4 when
    /// that saves an eighth (`codec`), else the content itself.
    fn blob_bytes(&self, content: &Bytes) -> Bytes {
        if self.compresses()
            && (codec::BLOB_MIN..=codec::MAX_BLOB_RAW).contains(&content.len())
        {
            if let Some(z) = codec::compress(content) {
                return Bytes::from(z);
            }
        }
        content.clone()
    }

    /// A blob found already there is trusted only once its bytes are checked against its
    /// name: new work never comes to depend on a damaged copy, and a damaged copy is
    /// replaced by the bytes just produced (so re-running the producing call repairs it).
    async fn verify_or_rewrite(&self, key: &str, hash: &[u8; 32], bytes: Bytes) -> Result<()> {
        match self.get(key).await? {
            Some(existing) if content_of(hash, &existing).is_some() => Ok(()),
            _ => {
                tracing::warn!(key, "a stored blob did not match its name; rewritten");
                self.put_overwrite(key, bytes).await
            }
        }
    }

    /// Stores a large value as content-defined chunks (each an ordinary blob) plus a
    /// manifest under the value's own blob key. Chunks go first, the manifest last, so a
    /// manifest never names a missing chunk. A value already stored costs one HEAD.
    async fn put_chunked(&self, hash: [u8; 32], bytes: Bytes) -> Result<()> {
        let key = layout::blob_key(&hash);
        self.count(Request::Head);
        let exists = match self.os()?.head(&self.path(&key)).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(self.backend("head", &key, e)),
        };
        // Already stored: trusted once its chunks rebuild the value (see verify_or_rewrite).
        if exists {
            match self.get_blob(&hash, None, None).await {
                Ok(_) => return Ok(()),
                Err(Error::Corrupt { .. }) => {
                    tracing::warn!(key, "a stored chunked value did not rebuild; rewritten")
                }
                Err(e) => return Err(e),
            }
        }
        let mut manifest = cdc::Manifest {
            size: bytes.len() as u64,
            chunks: Vec::new(),
        };
        let mut uploads = Vec::new();
        {
            let known = self.known_blobs.lock();
            for range in cdc::split(&bytes) {
                let chunk = bytes.slice(range);
                let chunk_hash = *blake3::hash(&chunk).as_bytes();
                manifest.chunks.push((chunk_hash, chunk.len() as u32));
                if !known.contains(&chunk_hash) {
                    uploads.push((chunk_hash, chunk));
                }
            }
            drop(known);
            // Each chunk compressed on its own (still named by its content's hash).
            for (_, chunk) in &mut uploads {
                *chunk = self.blob_bytes(chunk);
            }
        }
        let written: Vec<[u8; 32]> = stream::iter(uploads)
            .map(|(h, chunk)| async move {
                // A chunk another value stored is kept if it is intact, else rewritten.
                let chunk_key = layout::blob_key(&h);
                if !self.put_create(&chunk_key, chunk.clone()).await? {
                    self.verify_or_rewrite(&chunk_key, &h, chunk).await?;
                }
                Ok::<_, Error>(h)
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .try_collect()
            .await?;
        self.known_blobs.lock().extend(written);
        if exists {
            self.put_overwrite(&key, manifest.encode()).await?;
        } else if !self.put_create(&key, manifest.encode()).await? {
            // Another process stored the same value meanwhile; it must rebuild too.
            self.get_blob(&hash, None, None).await?;
        }
        Ok(())
    }

    /// Rebuilds a chunked value from its manifest, verifying every chunk and the whole.
    async fn get_chunked(
        &self,
        manifest: cdc::Manifest,
        corrupt: impl Fn(String) -> Error,
    ) -> Result<Bytes> {
        let keys: Vec<String> = manifest
            .chunks
            .iter()
            .map(|(h, _)| layout::blob_key(h))
            .collect();
        let parts = self.get_many(&keys).await?;
        let mut out = bytes::BytesMut::with_capacity(manifest.size as usize);
        for ((hash, len), part) in manifest.chunks.iter().zip(parts) {
            let part = part.ok_or_else(|| {
                corrupt(format!(
                    "chunk {} of the value is missing",
                    layout::hex(hash)
                ))
            })?;
            let part = content_of(hash, &part).filter(|p| p.len() == *len as usize);
            let Some(part) = part else {
                self.known_blobs.lock().remove(hash);
                return Err(corrupt(format!(
                    "chunk {} does not match its blake3 name",
                    layout::hex(hash)
                )));
            };
            out.extend_from_slice(&part);
        }
        Ok(out.freeze())
    }

    /// Reads the blob named `hash` and verifies its content. `exec_id` and `checkpoint`
    /// only name the owner in errors.
    /// [`Store::get_blob`] by the hex form of the hash (as views and artifacts show it); a
    /// malformed hash is a usage error naming it.
    pub async fn get_blob_hex(&self, hash: &str, exec_id: Option<&str>) -> Result<Bytes> {
        let parsed = layout::parse_hex32(hash).ok_or_else(|| crate::Error::InvalidName {
            what: "blob hash",
            value: hash.to_string(),
            rule: "64 hexadecimal digits (a blake3 hash)",
        })?;
        self.get_blob(&parsed, exec_id, None).await
    }

    pub async fn get_blob(
        &self,
        hash: &[u8; 32],
        exec_id: Option<&str>,
        checkpoint: Option<&str>,
    ) -> Result<Bytes> {
        let key = layout::blob_key(hash);
        let corrupt = |reason: String| {
            // Found damaged: no longer a blob this process may skip writing.
            self.known_blobs.lock().remove(hash);
            Error::Corrupt {
                key: key.clone(),
                exec_id: exec_id.map(str::to_string),
                checkpoint: checkpoint.map(str::to_string),
                reason,
            }
        };
        let bytes = self
            .get(&key)
            .await?
            .ok_or_else(|| corrupt("the blob is missing (dangling reference)".into()))?;
        if let Some(content) = content_of(hash, &bytes) {
            self.known_blobs.lock().insert(*hash);
            return Ok(content);
        }
        // Not the content itself: a manifest of chunks, or damage.
        let Some(manifest) = cdc::Manifest::decode(&bytes) else {
            return Err(corrupt("the content does not match its blake3 name".into()));
        };
        let whole = self.get_chunked(manifest, &corrupt).await?;
        if blake3::hash(&whole).as_bytes() != hash {
            return Err(corrupt(
                "the chunks put together do not match the value's blake3 name".into(),
            ));
        }
        self.known_blobs.lock().insert(*hash);
        Ok(whole)
    }
}
