//! How far a long operation has come (`store verify`, listing a big store), for whoever
//! shows it. The operation counts; a reader on another thread polls. Relaxed atomics are
//! enough: the figures are for people, and no decision is made on them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

#[derive(Debug, Default)]
pub struct Progress {
    phase: Mutex<&'static str>,
    done: AtomicU64,
    total: AtomicU64,
    /// Which phase this is (1, 2, ...), so a reader sees a phase change even when two
    /// phases have the same name.
    number: AtomicUsize,
}

impl Progress {
    /// A new phase of `total` steps (0: not known yet); its count starts at 0.
    pub fn phase(&self, name: &'static str, total: u64) {
        *self.phase.lock() = name;
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        self.number.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// (phase, done, total, phase number).
    pub fn read(&self) -> (&'static str, u64, u64, usize) {
        let phase = *self.phase.lock();
        (
            phase,
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
            self.number.load(Ordering::Relaxed),
        )
    }
}

/// Counts on `progress` when there is one.
pub fn tick(progress: Option<&Progress>, n: u64) {
    if let Some(p) = progress {
        p.add(n);
    }
}
