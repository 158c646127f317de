//! kitaru's durable core: a content-addressed store, the journal of each execution, the
//! execution state machine and leases. Python bindings live in `py` (feature `python`);
//! everything else is plain Rust, tested without Python in tests-rust/.

pub mod cache;
pub mod delta;
pub mod diff;
pub mod error;
pub mod execution;
pub mod graph;
pub mod ids;
pub mod index;
pub mod journal;
pub mod lease;
pub mod memory;
pub mod progress;
pub mod replay;
pub mod runtime;
pub mod store;
pub mod suspend;
pub mod verify;
pub mod view;

#[cfg(feature = "python")]
mod py;

pub use error::{Error, Result};
