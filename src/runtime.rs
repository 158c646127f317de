//! One tokio runtime per process, rebuilt after `fork()`.
//!
//! A runtime inherited across fork has no worker threads in the child, and any I/O on it
//! hangs. The runtime is therefore keyed by pid: a child that uses kitaru gets a fresh one
//! and the parent's copy is leaked, never dropped (dropping it would try to join threads
//! that do not exist in the child).

use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::runtime::{Builder, Runtime};

use crate::error::{Error, Result};

static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

/// The runtime of this process, created on first use.
pub fn get() -> Result<Arc<Runtime>> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock();
    if let Some((owner, rt)) = slot.as_ref() {
        if *owner == pid {
            return Ok(rt.clone());
        }
    }
    let rt = Arc::new(
        Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(64)
            .thread_name("kitaru-io")
            .enable_all()
            .build()
            .map_err(Error::RuntimeStart)?,
    );
    if let Some((_, inherited)) = slot.replace((pid, rt.clone())) {
        std::mem::forget(inherited);
    }
    Ok(rt)
}

/// Runs `fut` to completion on the runtime, blocking the calling thread (which must not be
/// a runtime thread).
pub fn block_on<F: Future>(fut: F) -> Result<F::Output> {
    Ok(get()?.block_on(fut))
}
