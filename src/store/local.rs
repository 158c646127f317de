//! Bulk reads and listings of a local store, straight on the file system.
//!
//! `object_store`'s `LocalFileSystem` runs every object read in its own blocking task and
//! stats every listed file; loading a 1,000-checkpoint journal that way is dominated by
//! task hops. Here a batch of reads is split over a few blocking tasks and a listing reads
//! directories only. Writes still go through `object_store` (its create-only publish is the
//! atomic primitive). Keys map to paths unchanged: layout keys only use `[A-Za-z0-9_.@/-]`,
//! which `object_store` does not percent-encode.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::StoreError;
use crate::error::Result;

/// Blocking tasks a batch of reads is split over.
const READERS: usize = 4;

fn io_err(op: &'static str, key: &str, source: std::io::Error) -> crate::Error {
    StoreError::LocalIo {
        op,
        key: key.to_string(),
        source,
    }
    .into()
}

/// Opens `key` for reading, or None when it does not exist. A symbolic link is never
/// followed: kitaru writes only plain files, so a link is someone else's doing (it could
/// point a reader at any file on the host).
fn open_plain(dir: &Path, key: &str) -> Result<Option<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(key));
    match opened {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(crate::Error::Corrupt {
            key: key.to_string(),
            exec_id: None,
            checkpoint: None,
            reason: "a symbolic link where kitaru writes plain files (not followed)".into(),
        }),
        Err(e) => Err(io_err("get", key, e)),
    }
}

/// Reads one object (see `open_plain`).
pub(crate) fn read_one(dir: &Path, key: &str) -> Result<Option<Bytes>> {
    use std::io::Read;
    let Some(mut file) = open_plain(dir, key)? else {
        return Ok(None);
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.read_to_end(&mut buf)
        .map_err(|e| io_err("get", key, e))?;
    Ok(Some(Bytes::from(buf)))
}

async fn join<T: Send + 'static>(task: tokio::task::JoinHandle<Result<T>>, key: &str) -> Result<T> {
    task.await
        .map_err(|e| io_err("read", key, std::io::Error::other(e.to_string())))?
}

pub async fn get_many(dir: &Path, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
    if keys.len() <= 2 {
        let dir = dir.to_path_buf();
        let keys = keys.to_vec();
        let first = keys.first().cloned().unwrap_or_default();
        let task =
            tokio::task::spawn_blocking(move || keys.iter().map(|k| read_one(&dir, k)).collect());
        return join(task, &first).await;
    }
    let per = keys.len().div_ceil(READERS);
    let tasks: Vec<_> = keys
        .chunks(per)
        .map(|chunk| {
            let dir = dir.to_path_buf();
            let chunk = chunk.to_vec();
            tokio::task::spawn_blocking(move || {
                chunk
                    .iter()
                    .map(|k| read_one(&dir, k))
                    .collect::<Result<Vec<_>>>()
            })
        })
        .collect();
    let mut out = Vec::with_capacity(keys.len());
    for task in tasks {
        out.extend(join(task, "<batch>").await?);
    }
    Ok(out)
}

/// Reads `key` from byte `offset` to its end, with the file's size (`None`: no such file;
/// a file not longer than `offset` gives no bytes).
pub(crate) fn read_from(dir: &Path, key: &str, offset: u64) -> Result<Option<(u64, Bytes)>> {
    use std::io::{Read, Seek, SeekFrom};
    let Some(mut file) = open_plain(dir, key)? else {
        return Ok(None);
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size <= offset {
        return Ok(Some((size, Bytes::new())));
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| io_err("get", key, e))?;
    let mut buf = Vec::with_capacity(usize::try_from(size - offset).unwrap_or(0));
    file.read_to_end(&mut buf)
        .map_err(|e| io_err("get", key, e))?;
    Ok(Some((size, Bytes::from(buf))))
}

/// Writes a small `key` create-only, right here (no task hop): the bytes go to a staged
/// file beside it (`name#<digits>`, skipped by listings), published with a hard link,
/// which fails if the key exists. Returns `false` then (the store is unchanged).
pub fn put_small_create(dir: &Path, key: &str, bytes: &[u8], fsync: bool) -> Result<bool> {
    use std::io::Write;
    let dest = dir.join(key);
    let mut tag = [0u8; 4];
    let _ = getrandom::fill(&mut tag);
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("x");
    let staged = dest.with_file_name(format!(
        "{name}#{}{}",
        std::process::id(),
        u32::from_le_bytes(tag)
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staged)?;
        f.write_all(bytes)?;
        if fsync {
            f.sync_all()?;
        }
        Ok(())
    };
    let written = match write() {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            // The first write under this prefix: make the directory.
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_err("put", key, e))?;
            }
            write()
        }
        other => other,
    };
    let cleanup = |e: std::io::Error| {
        let _ = std::fs::remove_file(&staged);
        io_err("put", key, e)
    };
    written.map_err(cleanup)?;
    let created = match std::fs::hard_link(&staged, &dest) {
        Ok(()) => true,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
        Err(e) => return Err(cleanup(e)),
    };
    let _ = std::fs::remove_file(&staged);
    if created && fsync {
        if let Some(parent) = dest.parent() {
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err("put", key, e))?;
        }
    }
    Ok(created)
}

/// A staged upload of `object_store` (`name#<digits>`), not an object.
fn is_staged(name: &str) -> bool {
    matches!(name.rsplit_once('#'), Some((_, suffix)) if !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()))
}

pub(crate) fn walk(root: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
    let entries = match std::fs::read_dir(root.join(rel)) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("list", rel, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err("list", rel, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let key = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let ty = entry.file_type().map_err(|e| io_err("list", &key, e))?;
        if ty.is_dir() {
            walk(root, &key, out)?;
        } else if !is_staged(&name) {
            out.push(key);
        }
    }
    Ok(())
}

pub async fn list(dir: &Path, prefix: &str) -> Result<Vec<String>> {
    let root: PathBuf = dir.to_path_buf();
    let prefix = prefix.trim_end_matches('/').to_string();
    let key = prefix.clone();
    let task = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        walk(&root, &prefix, &mut out)?;
        out.sort_unstable();
        Ok(out)
    });
    join(task, &key).await
}

/// Writes a large blob without hashing it first: the hash runs on a second thread while
/// this one writes a staged file (`blobs/staging/<random>#1`, skipped by listings), then
/// the file is published under its hash with a hard link, which is create-only: if the
/// blob already exists the existing one stands and the staged copy is removed.
pub fn put_blob(dir: &Path, bytes: &Bytes, fsync: bool) -> Result<[u8; 32]> {
    use std::io::Write;
    let staging = dir.join("blobs").join("staging");
    let key = |p: &Path| p.strip_prefix(dir).unwrap_or(p).display().to_string();
    std::fs::create_dir_all(&staging).map_err(|e| io_err("put", &key(&staging), e))?;
    let mut tag = [0u8; 8];
    let _ = getrandom::fill(&mut tag);
    let staged = staging.join(format!(
        "{}-{}#1",
        std::process::id(),
        super::layout::hex(&tag)
    ));
    let (hash, written) = std::thread::scope(|s| {
        let hasher = s.spawn(|| *blake3::hash(bytes).as_bytes());
        let written = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&staged)?;
            f.write_all(bytes)?;
            if fsync {
                f.sync_all()?;
            }
            Ok::<(), std::io::Error>(())
        })();
        (hasher.join(), written)
    });
    let cleanup = |e: std::io::Error| {
        let _ = std::fs::remove_file(&staged);
        io_err("put", &key(&staged), e)
    };
    written.map_err(cleanup)?;
    let hash = hash.map_err(|_| cleanup(std::io::Error::other("the hashing thread panicked")))?;
    let dest = dir.join(super::layout::blob_key(&hash));
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(cleanup)?;
    }
    match std::fs::hard_link(&staged, &dest) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            // The blob is there already: trusted only if its bytes match its name; a
            // damaged copy is replaced (atomically) by the one just written.
            let intact = std::fs::read(&dest)
                .map(|b| b.len() == bytes.len() && *blake3::hash(&b).as_bytes() == hash)
                .unwrap_or(false);
            if !intact {
                tracing::warn!(key = %key(&dest), "a stored blob did not match its name; rewritten");
                std::fs::rename(&staged, &dest).map_err(cleanup)?;
            }
        }
        Err(e) => return Err(cleanup(e)),
    }
    let _ = std::fs::remove_file(&staged); // (already gone if it replaced a damaged copy)
    if fsync {
        if let Some(parent) = dest.parent() {
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err("put", &key(&dest), e))?;
        }
    }
    Ok(hash)
}

/// One run's append-only file of checkpoint records on a local store, opened on its first
/// append and kept open: one `write` per record instead of a file per record. Only the
/// lease holder appends to it; a crash mid-append leaves a short last frame, which readers
/// drop. Made by `Store::segment`, written through `Store::append_segment`.
#[derive(Debug)]
pub struct Segment {
    key: String,
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl Segment {
    pub(super) fn new(dir: &Path, key: String) -> Segment {
        Segment {
            path: dir.join(&key),
            key,
            file: None,
        }
    }

    pub(super) fn append(&mut self, bytes: &[u8], fsync: bool) -> Result<()> {
        use std::io::Write;
        let io = |e| io_err("append", &self.key, e);
        let file = match &mut self.file {
            Some(file) => file,
            None => self
                .file
                .insert(open_for_append(&self.path, fsync).map_err(io)?),
        };
        file.write_all(bytes).map_err(io)?;
        if fsync {
            file.sync_data().map_err(io)?;
        }
        Ok(())
    }
}

/// Creates (or reopens) a file for appending; with `fsync`, its directory entry is made
/// durable before the first record counts.
fn open_for_append(path: &Path, fsync: bool) -> std::io::Result<std::fs::File> {
    let parent = path.parent();
    if let Some(parent) = parent {
        std::fs::create_dir_all(parent)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if let (true, Some(parent)) = (fsync, parent) {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(file)
}

/// Removes large-blob uploads that a killed process left in `blobs/staging`: those of a
/// process of this host that no longer exists, after ten minutes, and any after a day (a
/// store shared over a network file system may hold another host's live upload).
pub fn sweep_staging(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir.join("blobs").join("staging")) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default();
        let pid: Option<i32> = name.split('-').next().and_then(|p| p.parse().ok());
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let dead = pid.is_some_and(|p| {
            p > 0
                && unsafe { libc::kill(p, 0) } != 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
        });
        let old = |mins: u64| age > std::time::Duration::from_secs(mins * 60);
        if (dead && old(10)) || old(24 * 60) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Creates the empty file `key` (and its directories); an existing one is left alone.
/// Empty files take an inode and no data block.
pub fn put_empty(dir: &Path, key: &str) -> Result<()> {
    let path = dir.join(key);
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map(|_| ())
    };
    let made = match create() {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_err("put", key, e))?;
            }
            create()
        }
        other => other,
    };
    match made {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err("put", key, e)),
    }
}

/// The keys under a prefix of a local store in key order, read lazily: a directory is
/// read (and sorted) only when the walk enters it, so the first keys of a big tree cost a
/// few directory reads. Keys and directory names compare as in an object store listing
/// because index names are fixed-width hex (a name never ends where another continues).
pub struct Scan {
    root: PathBuf,
    /// (directory relative to the root, its entries sorted: name and whether a dir)
    stack: Vec<(String, std::vec::IntoIter<(String, bool)>)>,
    start: Option<String>,
}

impl Scan {
    pub fn new(root: PathBuf, prefix: String) -> Scan {
        Scan {
            root,
            stack: Vec::new(),
            start: Some(prefix),
        }
    }

    fn enter(&mut self, rel: String) -> Result<()> {
        let entries = match std::fs::read_dir(self.root.join(&rel)) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("list", &rel, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_err("list", &rel, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if is_staged(&name) {
                continue;
            }
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            names.push((name, is_dir));
        }
        names.sort_unstable();
        self.stack.push((rel, names.into_iter()));
        Ok(())
    }
}

impl Iterator for Scan {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        if let Some(prefix) = self.start.take() {
            if let Err(e) = self.enter(prefix) {
                return Some(Err(e));
            }
        }
        loop {
            let (rel, entries) = self.stack.last_mut()?;
            let Some((name, is_dir)) = entries.next() else {
                self.stack.pop();
                continue;
            };
            let key = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if !is_dir {
                return Some(Ok(key));
            }
            if let Err(e) = self.enter(key) {
                return Some(Err(e));
            }
        }
    }
}
