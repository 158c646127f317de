//! Integration tests of kitaru's core, without Python.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cache;
mod codec;
mod calls;
mod fence;
mod fuzz;
mod golden;
mod index;
mod journal;
mod memory;
mod records;
mod replay;
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

/// The start record of a test execution.
pub fn start_info() -> kitaru::journal::types::StartInfo {
    use kitaru::journal::record::ByteBuf;
    use kitaru::journal::types::*;
    StartInfo {
        flow_name: "agent".into(),
        entry: EntryPoint {
            module: "m".into(),
            qualname: "agent".into(),
            script: None,
            cwd: "/".into(),
        },
        args: Value {
            serializer: "json".into(),
            body: Body::Inline(ByteBuf(b"[]".to_vec())),
        },
        kitaru_version: "test".into(),
        options_json: "{}".into(),
    }
}

/// `n` pseudo-random bytes (xorshift), the same for the same seed.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
