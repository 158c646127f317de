//! The store: one root URL, create-only records and content-addressed blobs on `object_store`.
//!
//! Everything kitaru keeps lives under the root in the layout of `layout.rs`. The store
//! offers the few primitives the journal needs: a create-only put (atomic on local disk and
//! on S3), an overwrite put for keys that only one writer ever touches, get, list, and blobs
//! named by their blake3 hash, verified on every read.

pub mod layout;
mod local;
mod url;

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parking_lot::Mutex;

use crate::error::{Error, Result};

pub use url::{StoreOptions, StoreUrl};

/// How many reads the store keeps in flight when loading many records at once.
pub const READ_CONCURRENCY: usize = 64;

/// Failures of the storage backend itself.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store location {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error("the store location {url} uses {scheme}://, which this build of kitaru does not support yet; \
             use a local directory (a path or file://...) or memory://")]
    UnsupportedScheme { url: String, scheme: String },

    #[error("cannot use {path} as the store directory: {source}{}", io_hint(.source))]
    LocalDir {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("store {op} of {key} failed: {source}{}", backend_hint(.source))]
    Backend {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
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
        cur = e.source();
    }
    ""
}

/// A handle on one store root. Cheap to share (`Arc<Store>`); all methods are async and run
/// on kitaru's I/O runtime.
pub struct Store {
    os: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
    /// The directory of a local store: bulk reads and listings go straight to the file
    /// system there (one blocking task per batch instead of one per object).
    local_dir: Option<std::path::PathBuf>,
    fsync: bool,
    known_blobs: Mutex<HashSet<[u8; 32]>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

impl Store {
    /// Opens (and, for a local directory, creates) the store at `location`, and checks the
    /// layout version written at its root.
    pub async fn open(location: &str, options: StoreOptions) -> Result<Arc<Store>> {
        let parsed = StoreUrl::parse(location)?;
        let (os, root) = parsed.connect(&options)?;
        let local_dir = match &parsed {
            StoreUrl::Local(dir) => Some(dir.clone()),
            StoreUrl::Memory(_) => None,
        };
        let store = Arc::new(Store {
            os,
            root,
            url: parsed.display(),
            local_dir,
            fsync: options.fsync,
            known_blobs: Mutex::new(HashSet::new()),
        });
        store.check_layout().await?;
        Ok(store)
    }

    /// The directory of a local store (where append-only segments can live).
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        self.local_dir.as_deref()
    }

    /// Whether writes are fsynced before they count as done.
    pub fn fsync(&self) -> bool {
        self.fsync
    }

    /// The location of the store as shown to users (never with credentials).
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn check_layout(&self) -> Result<()> {
        let marker = layout::LAYOUT_MARKER;
        let found = match self.get(marker).await? {
            Some(bytes) => bytes,
            None => {
                self.put_create(marker, layout::layout_marker_bytes())
                    .await?;
                return Ok(());
            }
        };
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
        Ok(())
    }

    fn path(&self, key: &str) -> Path {
        if self.root.as_ref().is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{}", self.root.as_ref(), key))
        }
    }

    fn relative(&self, location: &Path) -> String {
        let full = location.as_ref();
        let root = self.root.as_ref();
        if root.is_empty() {
            full.to_string()
        } else {
            full.strip_prefix(root)
                .map(|s| s.trim_start_matches('/'))
                .unwrap_or(full)
                .to_string()
        }
    }

    fn backend(op: &'static str, key: &str, source: object_store::Error) -> Error {
        StoreError::Backend {
            op,
            key: key.to_string(),
            source,
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
        match self.os.put_opts(&self.path(key), payload, opts).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(Self::backend("create-only put", key, e)),
        }
    }

    /// Replaces `key` atomically. Only for keys with a single writer (a lease holder's
    /// heartbeat); everything shared is written with `put_create`.
    pub async fn put_overwrite(&self, key: &str, bytes: impl Into<Bytes>) -> Result<()> {
        let payload = PutPayload::from_bytes(bytes.into());
        self.os
            .put(&self.path(key), payload)
            .await
            .map(|_| ())
            .map_err(|e| Self::backend("put", key, e))
    }

    /// Reads `key`, or `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let res = match self.os.get(&self.path(key)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Self::backend("get", key, e)),
        };
        match res.bytes().await {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Self::backend("get", key, e)),
        }
    }

    /// Reads many keys concurrently; missing keys give `None`. Order follows `keys`.
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        if let Some(dir) = &self.local_dir {
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
        match self.os.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Self::backend("delete", key, e)),
        }
    }

    /// Every key under `prefix` (a directory-like key without trailing slash), relative to
    /// the store root, sorted. One listing request per 1,000 keys on object stores.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        if let Some(dir) = &self.local_dir {
            return local::list(dir, prefix).await;
        }
        let path = self.path(prefix);
        let mut keys: Vec<String> = match self
            .os
            .list(Some(&path))
            .map_ok(|meta| self.relative(&meta.location))
            .try_collect()
            .await
        {
            Ok(keys) => keys,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(Self::backend("list", prefix, e)),
        };
        keys.sort_unstable();
        Ok(keys)
    }

    /// The names of the direct children "directories" of `prefix`, sorted.
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        let path = self.path(prefix);
        let listing = match self.os.list_with_delimiter(Some(&path)).await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(Self::backend("list", prefix, e)),
        };
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
    /// object stores a large one is looked up (HEAD) first; on local stores a large one is
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
            self.known_blobs.lock().insert(hash);
            return Ok(hash);
        }
        let hash = *blake3::hash(&bytes).as_bytes();
        if self.known_blobs.lock().contains(&hash) {
            return Ok(hash);
        }
        let key = layout::blob_key(&hash);
        // Large blobs: ask first, so a re-save of big content sends no bytes.
        let exists = bytes.len() > layout::BLOB_HEAD_THRESHOLD
            && match self.os.head(&self.path(&key)).await {
                Ok(_) => true,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => return Err(Self::backend("head", &key, e)),
            };
        if !exists {
            self.put_create(&key, bytes).await?;
        }
        self.known_blobs.lock().insert(hash);
        Ok(hash)
    }

    /// Reads the blob named `hash` and verifies its content. `exec_id` and `checkpoint`
    /// only name the owner in errors.
    pub async fn get_blob(
        &self,
        hash: &[u8; 32],
        exec_id: Option<&str>,
        checkpoint: Option<&str>,
    ) -> Result<Bytes> {
        let key = layout::blob_key(hash);
        let corrupt = |reason: String| Error::Corrupt {
            key: key.clone(),
            exec_id: exec_id.map(str::to_string),
            checkpoint: checkpoint.map(str::to_string),
            reason,
        };
        let bytes = self
            .get(&key)
            .await?
            .ok_or_else(|| corrupt("the blob is missing (dangling reference)".into()))?;
        if blake3::hash(&bytes).as_bytes() != hash {
            return Err(corrupt("the content does not match its blake3 name".into()));
        }
        self.known_blobs.lock().insert(*hash);
        Ok(bytes)
    }
}
