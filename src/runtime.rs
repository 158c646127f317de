//! One tokio runtime per process, rebuilt after `fork()`.
//!
//! A runtime inherited across fork has no worker threads in the child, and any I/O on it
//! hangs. The runtime is therefore keyed by pid: a child that uses kitaru gets a fresh one
//! and the parent's copy is leaked, never dropped (dropping it would try to join threads
//! that do not exist in the child).

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Once};

use parking_lot::Mutex;
use tokio::runtime::{Builder, Runtime};

use crate::error::{Error, Result};

static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

/// This process's id, remembered (`getpid` is a system call on every checkpoint's path
/// otherwise: glibc stopped caching it) and forgotten in a forked child by a
/// `pthread_atfork` handler, registered before the first id is remembered.
static PID: AtomicU32 = AtomicU32::new(0);
static AT_FORK: Once = Once::new();

extern "C" fn forget_pid() {
    PID.store(0, Ordering::Relaxed);
}

pub fn pid() -> u32 {
    let known = PID.load(Ordering::Relaxed);
    if known != 0 {
        return known;
    }
    AT_FORK.call_once(|| {
        // SAFETY: registers a handler that only stores to an atomic (async-signal-safe).
        unsafe { libc::pthread_atfork(None, None, Some(forget_pid)) };
    });
    let pid = std::process::id();
    PID.store(pid, Ordering::Relaxed);
    pid
}

/// The runtime of this process, created on first use.
pub fn get() -> Result<Arc<Runtime>> {
    let pid = pid();
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
