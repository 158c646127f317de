//! Micro-benchmarks of the core (no Python): `make bench-rust` or `cargo bench --bench core`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use bytes::Bytes;
use divan::{black_box, Bencher};
use kitaru::execution::{FinishedCall, RawValue, Runner};
use kitaru::journal::record::{self, ByteBuf, Digest};
use kitaru::journal::types::*;
use kitaru::journal::{Journal, Scope};
use kitaru::store::{Store, StoreOptions};

fn main() {
    divan::main();
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn start_info() -> StartInfo {
    StartInfo {
        flow_name: "bench".into(),
        entry: EntryPoint {
            module: "m".into(),
            qualname: "f".into(),
            script: None,
            cwd: "/".into(),
        },
        args: Value {
            serializer: "json".into(),
            body: Body::Inline(ByteBuf(b"{}".to_vec())),
        },
        kitaru_version: "bench".into(),
        options_json: "{}".into(),
    }
}

fn call(i: usize, size: usize) -> FinishedCall {
    FinishedCall {
        call_id: format!("step_{i}"),
        name: "step".into(),
        explicit_id: false,
        checkpoint_type: None,
        input_digest: Some([7; 32]),
        output: RawValue {
            serializer: "str".into(),
            bytes: Bytes::from(vec![b'x'; size]),
        },
        started_us: 1,
        ended_us: 2,
        metadata_json: None,
    }
}

fn sample_record() -> CheckpointRecord {
    CheckpointRecord {
        call_id: "fetch_2".into(),
        name: "fetch".into(),
        explicit_id: false,
        checkpoint_type: Some("tool_call".into()),
        input_digest: Some(Digest([1; 32])),
        output: Value {
            serializer: "str".into(),
            body: Body::Inline(ByteBuf(vec![b'x'; 100])),
        },
        attempts: vec![Attempt {
            number: 1,
            claim_seq: 0,
            started_us: 1,
            ended_us: 2,
            failure: None,
        }],
        metadata_json: None,
    }
}

#[divan::bench(args = [100, 65_536, 1 << 20])]
fn blake3_hash(bencher: Bencher, size: usize) {
    let data = vec![3u8; size];
    bencher
        .counter(divan::counter::BytesCount::new(size))
        .bench(|| blake3::hash(black_box(&data)));
}

#[divan::bench]
fn record_encode(bencher: Bencher) {
    let rec = sample_record();
    bencher.bench(|| record::encode(black_box(&rec)).unwrap());
}

#[divan::bench]
fn record_decode(bencher: Bencher) {
    let bytes = record::encode(&sample_record()).unwrap();
    bencher.bench(|| record::decode::<CheckpointRecord>(black_box(&bytes)).unwrap());
}

#[divan::bench(args = [100, 1 << 20])]
fn store_put_blob_memory(bencher: Bencher, size: usize) {
    let rt = rt();
    let store = rt
        .block_on(Store::open("memory://bench-put", StoreOptions::default()))
        .unwrap();
    let mut n = 0u64;
    bencher
        .counter(divan::counter::BytesCount::new(size))
        .bench_local(|| {
            n += 1;
            let mut data = vec![0u8; size];
            data[..8].copy_from_slice(&n.to_le_bytes());
            rt.block_on(store.put_blob(Bytes::from(data))).unwrap()
        });
}

#[divan::bench(args = [100, 1 << 20])]
fn store_get_blob_local(bencher: Bencher, size: usize) {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let store = rt
        .block_on(Store::open(
            dir.path().to_str().unwrap(),
            StoreOptions::default(),
        ))
        .unwrap();
    let hash = rt
        .block_on(store.put_blob(Bytes::from(vec![5u8; size])))
        .unwrap();
    bencher
        .counter(divan::counter::BytesCount::new(size))
        .bench_local(|| rt.block_on(store.get_blob(&hash, None, None)).unwrap());
}

#[divan::bench]
fn journal_record_checkpoint_memory(bencher: Bencher) {
    let rt = rt();
    let store = rt
        .block_on(Store::open(
            "memory://bench-journal",
            StoreOptions::default(),
        ))
        .unwrap();
    let runner = rt
        .block_on(Runner::start(store, start_info(), 30_000))
        .unwrap();
    let mut i = 0;
    bencher.bench_local(|| {
        i += 1;
        rt.block_on(runner.record_checkpoint(call(i, 100))).unwrap()
    });
}

#[divan::bench]
fn journal_record_checkpoint_local(bencher: Bencher) {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let store = rt
        .block_on(Store::open(
            dir.path().to_str().unwrap(),
            StoreOptions::default(),
        ))
        .unwrap();
    let runner = rt
        .block_on(Runner::start(store, start_info(), 30_000))
        .unwrap();
    let mut i = 0;
    bencher.bench_local(|| {
        i += 1;
        rt.block_on(runner.record_checkpoint(call(i, 100))).unwrap()
    });
}

#[divan::bench(sample_count = 20)]
fn journal_load_1000_checkpoints_local(bencher: Bencher) {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<Store> = rt
        .block_on(Store::open(
            dir.path().to_str().unwrap(),
            StoreOptions::default(),
        ))
        .unwrap();
    let runner = rt
        .block_on(Runner::start(store.clone(), start_info(), 30_000))
        .unwrap();
    for i in 0..1000 {
        rt.block_on(runner.record_checkpoint(call(i, 100))).unwrap();
    }
    let exec_id = runner.exec_id().to_string();
    bencher.bench_local(|| {
        let j = rt
            .block_on(Journal::load(&store, &exec_id, Scope::Full))
            .unwrap();
        assert_eq!(j.checkpoints.len(), 1000);
    });
}

#[divan::bench]
fn journal_lookup(bencher: Bencher) {
    let mut j = Journal::default();
    for i in 0..1000 {
        j.checkpoints
            .insert(format!("step_{i}"), (0, sample_record()));
    }
    bencher.bench(|| {
        j.checkpoints
            .get(black_box("step_500"))
            .map(|(rev, _)| *rev)
    });
}

fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Content-defined chunking alone (the gear rolling hash), without hashing the chunks.
#[divan::bench(args = [1 << 20, 16 << 20])]
fn cdc_split(bencher: Bencher, size: usize) {
    let data = noise(size);
    bencher
        .counter(divan::counter::BytesCount::new(size))
        .bench(|| kitaru::store::cdc::split(black_box(&data)));
}

/// A 4 MiB value whose chunks are all stored already (another value shared them): split,
/// hash every chunk, write the manifest — what a re-save of shared content costs in CPU.
#[divan::bench(sample_count = 20)]
fn store_put_chunked_memory_4mib_shared(bencher: Bencher) {
    let rt = rt();
    let store = rt
        .block_on(Store::open("memory://bench-cdc", StoreOptions::default()))
        .unwrap();
    let base = noise(4 << 20);
    rt.block_on(store.put_blob(Bytes::from(base.clone())))
        .unwrap();
    let mut n: u32 = 0;
    bencher
        .counter(divan::counter::BytesCount::new(4usize << 20))
        .bench_local(|| {
            // a new value each time (a different last byte), same chunks before it
            n += 1;
            let mut v = base.clone();
            let last = v.len() - 1;
            v[last] = n as u8;
            v.extend_from_slice(&n.to_le_bytes());
            rt.block_on(store.put_blob(Bytes::from(v))).unwrap()
        });
}
