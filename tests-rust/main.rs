//! Integration tests of kitaru's core, without Python.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fence;
mod fuzz;
mod golden;
mod journal;
mod records;
mod store;
mod transitions;

use std::sync::Arc;

use kitaru::store::{Store, StoreOptions};

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub async fn local_store(dir: &tempfile::TempDir) -> Arc<Store> {
    Store::open(dir.path().to_str().unwrap(), StoreOptions::default())
        .await
        .unwrap()
}

pub async fn memory_store(name: &str) -> Arc<Store> {
    Store::open(&format!("memory://{name}"), StoreOptions::default())
        .await
        .unwrap()
}
