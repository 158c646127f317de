//! Fuzzing every decoder that reads store bytes, in two ways, for a fixed budget in CI
//! (`KITARU_FUZZ_ITERS` raises it; `KITARU_FUZZ_SEED` picks another sequence):
//!
//! - random and mutated bytes straight into the decoders (records of every kind,
//!   segments, torn-tail detection, chunk manifests): none may panic, abort or hang;
//! - random damage to the files of real executions (local store with segments, memory
//!   store with record keys and chunked blobs): every read either gives back exactly the
//!   value that was stored or a corruption error, `verify` reports 100% of the damage
//!   (only appends a fence already excludes are silent), and no read of one execution
//!   returns another's data.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kitaru::execution::{self, FinishedCall, Intent, RawValue, Runner};
use kitaru::journal::record::{self, ByteBuf};
use kitaru::journal::types::*;
use kitaru::journal::{Journal, Scope};
use kitaru::store::{cdc, layout, Store};

use crate::{local_store, memory_store, rt, start_info};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn budget(default: usize) -> usize {
    std::env::var("KITARU_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed() -> u64 {
    std::env::var("KITARU_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x6b69_7461_7275)
}

/// One damage: flip bits, overwrite a byte, cut, extend, or rewrite a length field.
fn mutate(rng: &mut Rng, orig: &[u8]) -> Vec<u8> {
    let mut b = orig.to_vec();
    match rng.below(6) {
        0 if !b.is_empty() => {
            let i = rng.below(b.len());
            b[i] ^= 1 << rng.below(8);
        }
        1 if !b.is_empty() => {
            let i = rng.below(b.len());
            b[i] = rng.next() as u8;
        }
        2 => b.truncate(rng.below(b.len())),
        3 => {
            let n = 1 + rng.below(64);
            let extra = rng.bytes(n);
            b.extend_from_slice(&extra);
        }
        4 if b.len() >= 11 => {
            // the length field of a record header (at a frame start if there is one there)
            let starts: Vec<usize> = record::scan_segment(&b)
                .frames
                .iter()
                .map(|(f, end)| end - f.len())
                .collect();
            let at = if starts.is_empty() {
                0
            } else {
                starts[rng.below(starts.len())]
            };
            let v = (rng.next() as u32).to_le_bytes();
            b[at + 7..at + 11].copy_from_slice(&v);
        }
        _ => {
            let n = rng.below(200);
            b = rng.bytes(n);
        }
    }
    b
}

fn decode_everything(bytes: &[u8]) {
    let _ = record::to_json(bytes);
    let _ = record::decode::<StateRecord>(bytes);
    let _ = record::decode::<CheckpointRecord>(bytes);
    let _ = record::decode::<Heartbeat>(bytes);
    let _ = record::decode::<FailedAttemptRecord>(bytes);
    let _ = record::decode::<WaitRecord>(bytes);
    let _ = record::decode::<AnswerRecord>(bytes);
    let _ = record::decode::<LogRecord>(bytes);
    let _ = record::segment_to_json(bytes);
    let _ = record::is_torn_tail(bytes);
    if let Some(m) = cdc::Manifest::decode(bytes) {
        // a manifest that decodes announces no more than its chunks can hold
        assert!(m.size <= m.chunks.len() as u64 * cdc::MAX_CHUNK as u64);
    }
    if let Ok(rec) = record::decode::<StateRecord>(bytes) {
        let j = Journal {
            exec_id: "x".into(),
            states: vec![rec],
            ..Default::default()
        };
        let _ = j.state();
        let _ = j.lease_expiry_us();
        let _ = j.lease_lapsed(u64::MAX);
        let _ = j.fence_for_next_claim();
    }
    if let Ok(rec) = record::decode::<CheckpointRecord>(bytes) {
        let _ = rec.output.body.size();
    }
}

fn samples() -> Vec<Vec<u8>> {
    let lease = LeaseClaim {
        holder: kitaru::lease::this_holder(),
        token: 7,
        ttl_ms: u64::MAX,
    };
    let states = [
        Event::Claimed {
            resume: false,
            lease: lease.clone(),
            fence: Fence {
                segments: vec![(0, 100)],
                records: vec!["cp/a".into()],
            },
        },
        Event::Retried { lease },
        Event::Cancelled { reason: "x".into() },
    ];
    let mut out: Vec<Vec<u8>> = states
        .into_iter()
        .map(|event| {
            record::encode(&StateRecord {
                seq: 1,
                at_us: u64::MAX,
                event,
            })
            .unwrap()
        })
        .collect();
    let cp = CheckpointRecord {
        call_id: "a".into(),
        name: "a".into(),
        explicit_id: false,
        checkpoint_type: None,
        input_digest: None,
        output: Value {
            serializer: "str".into(),
            body: Body::Delta {
                base_call: "b".into(),
                base_digest: record::Digest([0; 32]),
                keep: u64::MAX,
                suffix: ByteBuf(vec![1, 2, 3]),
                digest: record::Digest([1; 32]),
                depth: u32::MAX,
            },
        },
        attempts: vec![],
        metadata_json: None,
    };
    let frame = record::encode(&cp).unwrap();
    out.push([frame.clone(), frame.clone(), frame].concat());
    let manifest = cdc::Manifest {
        size: 3 * 1000,
        chunks: vec![([9; 32], 1000); 3],
    };
    out.push(manifest.encode());
    out
}

#[test]
fn decoders_survive_random_and_mutated_bytes() {
    let mut rng = Rng(seed());
    let samples = samples();
    for i in 0..budget(20_000) {
        let input = if i % 4 == 0 {
            let n = rng.below(300);
            rng.bytes(n)
        } else {
            let s = &samples[rng.below(samples.len())];
            let mut b = mutate(&mut rng, s);
            if rng.below(3) == 0 {
                b = mutate(&mut rng, &b);
            }
            b
        };
        decode_everything(&input);
    }
    println!("decoders: {} inputs, no panic", budget(20_000));
    // The crafted manifest of the issue: 100 chunks of 4 GiB in 3.6 KB.
    let mut crafted = Vec::new();
    crafted.extend_from_slice(cdc::MAGIC);
    crafted.extend_from_slice(&(100u64 * u64::from(u32::MAX)).to_le_bytes());
    crafted.extend_from_slice(&100u32.to_le_bytes());
    for _ in 0..100 {
        crafted.extend_from_slice(&[3; 32]);
        crafted.extend_from_slice(&u32::MAX.to_le_bytes());
    }
    assert!(cdc::Manifest::decode(&crafted).is_none());
}

// --- damage to real executions ----------------------------------------------------

fn call(id: &str, name: &str, bytes: Vec<u8>) -> FinishedCall {
    FinishedCall {
        call_id: id.into(),
        name: name.into(),
        explicit_id: false,
        checkpoint_type: None,
        input_digest: Some(*blake3::hash(id.as_bytes()).as_bytes()),
        output: RawValue {
            serializer: "bytes".into(),
            bytes: Bytes::from(bytes),
        },
        started_us: 1,
        ended_us: 2,
        metadata_json: None,
    }
}

/// Two executions with inline, blob, delta and (on object stores) chunked outputs, one of
/// them retried once (a fence): call id -> the exact bytes stored, per execution.
async fn fixture(store: &Arc<Store>, tag: u8) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
    let mut rng = Rng(u64::from(tag) + 11);
    let mut out = BTreeMap::new();
    for n in 0..2u8 {
        let mut calls = BTreeMap::new();
        let first = Runner::start(store.clone(), start_info(), 1).await.unwrap();
        let exec_id = first.exec_id().to_string();
        let conv = rng.bytes(20_000);
        let outputs = vec![
            ("small", "small", format!("exec {n} tag {tag}").into_bytes()),
            ("blob", "blob", rng.bytes(40_000)),
            ("conv", "conv", conv.clone()),
            ("conv_2", "conv", [conv.clone(), rng.bytes(3_000)].concat()),
        ];
        for (id, name, bytes) in outputs {
            first
                .record_checkpoint(call(id, name, bytes.clone()))
                .await
                .unwrap();
            calls.insert(id.to_string(), bytes);
        }
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        let second = Runner::claim(store.clone(), &exec_id, Intent::Retry, 60_000)
            .await
            .unwrap();
        let big = rng.bytes(700_000);
        second
            .record_checkpoint(call("big", "big", big.clone()))
            .await
            .unwrap();
        calls.insert("big".into(), big);
        second
            .complete(RawValue {
                serializer: "json".into(),
                bytes: Bytes::from(format!("{n}")),
            })
            .await
            .unwrap();
        out.insert(exec_id, calls);
    }
    out
}

/// Reads an execution the way users do; every value must be exactly what was stored.
async fn read_back(
    store: &Store,
    exec_id: &str,
    expected: &BTreeMap<String, Vec<u8>>,
) -> Result<(), String> {
    let journal = Journal::load(store, exec_id, Scope::Full)
        .await
        .map_err(|e| e.to_string())?;
    let mut cache = std::collections::HashMap::new();
    for (id, (_, rec)) in &journal.checkpoints {
        let got = kitaru::delta::resolve(store, &journal, id, &rec.output, &mut cache)
            .await
            .map_err(|e| e.to_string())?;
        let want = expected
            .get(id)
            .ok_or_else(|| format!("unexpected call {id}"))?;
        assert_eq!(
            &got[..],
            &want[..],
            "{exec_id}/{id}: a wrong value was returned"
        );
    }
    kitaru::view::inspect(store, exec_id, true)
        .await
        .map_err(|e| e.to_string())?;
    execution::result(store, exec_id)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn damage_campaign(store: Arc<Store>, local: Option<std::path::PathBuf>, tag: u8) -> usize {
    let executions = fixture(&store, tag).await;
    for (id, calls) in &executions {
        read_back(&store, id, calls).await.unwrap();
    }
    let keys: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k != layout::LAYOUT_MARKER)
        .collect();
    let mut rng = Rng(seed() ^ u64::from(tag));
    let mut mutations = 0;
    for _ in 0..budget(150) {
        let key = keys[rng.below(keys.len())].clone();
        let orig = store.get(&key).await.unwrap().unwrap();
        let damaged = mutate(&mut rng, &orig);
        if damaged == orig {
            continue;
        }
        mutations += 1;
        match &local {
            Some(dir) => std::fs::write(dir.join(&key), &damaged).unwrap(),
            None => store.put_overwrite(&key, damaged.clone()).await.unwrap(),
        }
        let report = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            kitaru::verify::verify(&store),
        )
        .await
        .expect("verify hung")
        .unwrap();
        let fenced_append = damaged.starts_with(&orig) && report.fenced > 0;
        assert!(
            !report.findings.is_empty() || fenced_append,
            "verify missed damage to {key} ({} -> {} bytes)",
            orig.len(),
            damaged.len()
        );
        for (id, calls) in &executions {
            let read = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                read_back(&store, id, calls),
            )
            .await
            .expect("a read hung");
            if !key.contains(id.as_str()) && !key.starts_with("blobs/") {
                assert!(
                    read.is_ok(),
                    "damage to {key} broke execution {id}: {read:?}"
                );
            }
        }
        let listed = kitaru::view::list(&store, &Default::default())
            .await
            .expect("one damaged execution must not hide the others");
        assert_eq!(listed.len(), executions.len());
        match &local {
            Some(dir) => std::fs::write(dir.join(&key), &orig).unwrap(),
            None => store.put_overwrite(&key, orig).await.unwrap(),
        }
    }
    println!(
        "{} store: {mutations} mutations, every one reported by verify or fenced, no wrong value",
        if local.is_some() { "local" } else { "object" }
    );
    mutations
}

#[test]
fn damage_to_local_executions_is_reported_never_misread() {
    let dir = tempfile::tempdir().unwrap();
    let n = rt().block_on(async {
        let store = local_store(&dir).await;
        damage_campaign(store, Some(dir.path().to_path_buf()), 1).await
    });
    assert!(n > 0);
}

#[test]
fn damage_to_object_store_executions_is_reported_never_misread() {
    let n = rt().block_on(async {
        let store = memory_store("fuzz-damage").await;
        damage_campaign(store, None, 2).await
    });
    assert!(n > 0);
}
