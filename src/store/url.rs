//! Store locations: a bare path, `file://...` or `memory://[name]` today; object-store
//! URLs (`s3://`, `gs://`, `az://`) plug in here without touching the rest of the core.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ObjectStore;
use parking_lot::Mutex;

use super::StoreError;
use crate::error::Result;

/// How a store is opened.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// fsync every written file and its directory before a put returns (local disk only).
    pub fsync: bool,
}

/// A parsed store location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Local(std::path::PathBuf),
    Memory(String),
}

/// `memory://name` stores live as long as the process, shared by every handle on that name.
fn memory_stores() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    STORES.get_or_init(|| Mutex::new(HashMap::new()))
}

impl StoreUrl {
    pub fn parse(location: &str) -> Result<StoreUrl> {
        let invalid = |reason: &str| StoreError::InvalidUrl {
            url: location.to_string(),
            reason: reason.to_string(),
        };
        let location_trimmed = location.trim();
        if location_trimmed.is_empty() {
            return Err(invalid(
                "it is empty; give a directory path or a URL such as file:///data/kitaru",
            )
            .into());
        }
        if location_trimmed.contains('\0') {
            return Err(invalid("it contains a NUL byte").into());
        }
        if let Some(rest) = location_trimmed.strip_prefix("memory://") {
            let name = rest.trim_end_matches('/');
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(
                    invalid("a memory:// store name may only use A-Z a-z 0-9 - _ .").into(),
                );
            }
            return Ok(StoreUrl::Memory(name.to_string()));
        }
        if let Some(rest) = location_trimmed.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(invalid(
                    "a file:// URL needs an absolute path, e.g. file:///home/me/kitaru-store",
                )
                .into());
            }
            return Ok(StoreUrl::Local(rest.into()));
        }
        if let Some((scheme, _)) = location_trimmed.split_once("://") {
            return Err(StoreError::UnsupportedScheme {
                url: location.to_string(),
                scheme: scheme.to_string(),
            }
            .into());
        }
        let path = std::path::Path::new(location_trimmed);
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| StoreError::LocalDir {
                    path: location.to_string(),
                    source: e,
                })?
                .join(path)
        };
        Ok(StoreUrl::Local(abs))
    }

    /// The location as shown to users and recorded in errors.
    pub fn display(&self) -> String {
        match self {
            StoreUrl::Local(p) => format!("file://{}", p.display()),
            StoreUrl::Memory(name) => format!("memory://{name}"),
        }
    }

    /// Builds the backend and the key prefix under which the store lives.
    pub fn connect(&self, options: &StoreOptions) -> Result<(Arc<dyn ObjectStore>, Path)> {
        match self {
            StoreUrl::Local(dir) => {
                let local_err = |e: std::io::Error| StoreError::LocalDir {
                    path: dir.display().to_string(),
                    source: e,
                };
                std::fs::create_dir_all(dir).map_err(local_err)?;
                let fs = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| StoreError::InvalidUrl {
                        url: self.display(),
                        reason: e.to_string(),
                    })?
                    .with_fsync(options.fsync);
                Ok((Arc::new(fs), Path::default()))
            }
            StoreUrl::Memory(name) => {
                let store = memory_stores()
                    .lock()
                    .entry(name.clone())
                    .or_insert_with(|| Arc::new(InMemory::new()))
                    .clone();
                Ok((store, Path::default()))
            }
        }
    }
}
