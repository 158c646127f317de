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
    ratios();
    divan::main();
}

/// Sizes the timings cannot show, printed first: what compression saves on typical
/// outputs, and how much two versions of a value share under each chunker.
fn ratios() {
    for (what, data) in [
        ("chat history (JSON)", chat_json(64 << 10)),
        ("tool result (JSON records)", records_json(64 << 10)),
        ("random bytes", noise(64 << 10)),
    ] {
        for level in [1, 3, 6] {
            let z = zstd::bulk::compress(&data, level).unwrap();
            println!(
                "zstd level {level}, {what}, 64 KiB: {:.1}x smaller ({} bytes)",
                data.len() as f64 / z.len() as f64,
                z.len()
            );
        }
        let kept = kitaru::store::codec::compress(&data).map_or(data.len(), |z| z.len());
        println!("kitaru codec, {what}: {kept} bytes stored");
    }
    // Dedup: a 16 MiB value, then the same with 20 small edits (inserts) spread over it.
    let base = noise(16 << 20);
    let mut edited = base.clone();
    for i in (0..20).rev() {
        let at = i * (edited.len() / 20) + 12_345;
        edited.splice(at..at, b"an edit of a few bytes".iter().copied());
    }
    let ours = |d: &[u8]| {
        kitaru::store::cdc::split(d)
            .into_iter()
            .map(|r| (blake3::hash(&d[r.clone()]), r.len()))
            .collect::<Vec<_>>()
    };
    let theirs = |d: &[u8]| {
        fastcdc::v2020::FastCDC::new(d, 16 << 10, 64 << 10, 256 << 10)
            .map(|c| (blake3::hash(&d[c.offset..c.offset + c.length]), c.length))
            .collect::<Vec<_>>()
    };
    for (name, chunks) in [
        ("kitaru cdc", [ours(&base), ours(&edited)]),
        ("fastcdc v2020", [theirs(&base), theirs(&edited)]),
    ] {
        let known: std::collections::HashSet<_> = chunks[0].iter().map(|c| c.0).collect();
        let new_bytes: usize = chunks[1]
            .iter()
            .filter(|c| !known.contains(&c.0))
            .map(|c| c.1)
            .sum();
        println!(
            "{name}: {} chunks (mean {} KiB); the edited copy adds {:.2} MiB of new chunks",
            chunks[0].len(),
            base.len() / chunks[0].len() / 1024,
            new_bytes as f64 / (1 << 20) as f64
        );
    }
}

fn chat_json(n: usize) -> Vec<u8> {
    let mut out = b"[".to_vec();
    let mut i = 0;
    while out.len() < n {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        out.extend_from_slice(
            format!(
                r#"{{"role":"{role}","content":"Turn {i}: the agent looked at ticket {} and                  proposes to refund order {} since the parcel arrived damaged."}},"#,
                1000 + i * 7,
                50_000 + i * 13
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(n);
    out
}

fn records_json(n: usize) -> Vec<u8> {
    let mut out = b"[".to_vec();
    let mut x: u64 = 7;
    while out.len() < n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        out.extend_from_slice(
            format!(
                r#"{{"id":{},"sku":"SKU-{:06}","price":{}.{:02},"in_stock":{},"score":{:.4}}},"#,
                x % 1_000_000,
                (x >> 20) % 1_000_000,
                (x >> 40) % 500,
                (x >> 8) % 100,
                x % 3 == 0,
                (x % 10_000) as f64 / 10_000.0
            )
            .as_bytes(),
        );
    }
    out.truncate(n);
    out
}

/// zstd at three levels on 64 KiB of chat JSON (the level kitaru uses is `codec::LEVEL`).
#[divan::bench(args = [1, 3, 6])]
fn zstd_compress_chat_64kib(bencher: Bencher, level: i32) {
    let data = chat_json(64 << 10);
    bencher
        .counter(divan::counter::BytesCount::new(data.len()))
        .bench(|| zstd::bulk::compress(black_box(&data), level).unwrap());
}

/// What kitaru's codec costs per value: compressible JSON, and the trial that finds random
/// bytes incompressible (then stored raw).
#[divan::bench(args = ["chat", "random"])]
fn codec_compress_64kib(bencher: Bencher, what: &str) {
    let data = if what == "chat" { chat_json(64 << 10) } else { noise(64 << 10) };
    bencher
        .counter(divan::counter::BytesCount::new(data.len()))
        .bench(|| kitaru::store::codec::compress(black_box(&data)));
}

#[divan::bench]
fn codec_decompress_chat_64kib(bencher: Bencher) {
    let data = chat_json(64 << 10);
    let z = kitaru::store::codec::compress(&data).unwrap();
    bencher
        .counter(divan::counter::BytesCount::new(data.len()))
        .bench(|| kitaru::store::codec::decompress_blob(black_box(&z)).unwrap());
}

/// A checkpoint record holding a 12 KiB JSON output, framed raw and compressed.
#[divan::bench(args = [false, true])]
fn record_encode_12kib_json(bencher: Bencher, compress: bool) {
    let mut rec = sample_record();
    rec.output.body = Body::Inline(ByteBuf(chat_json(12 << 10)));
    bencher.bench(|| record::encode_with(black_box(&rec), compress).unwrap());
}

/// FastCDC 2020 (the `fastcdc` crate) with our sizes, beside `cdc_split` (ours).
#[divan::bench(args = [1 << 20, 16 << 20])]
fn fastcdc_v2020_split(bencher: Bencher, size: usize) {
    let data = noise(size);
    bencher
        .counter(divan::counter::BytesCount::new(size))
        .bench(|| {
            fastcdc::v2020::FastCDC::new(black_box(&data), 16 << 10, 64 << 10, 256 << 10)
                .map(|c| c.length)
                .sum::<usize>()
        });
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
