//! Fenced commits and damaged segments: a runner that was replaced adds nothing to the
//! execution, and only the torn end of a dying writer's segment may be dropped.

use std::io::Write;

use bytes::Bytes;
use kitaru::execution::{FinishedCall, Intent, RawValue, Runner};
use kitaru::journal::record::{self, ByteBuf};
use kitaru::journal::types::*;
use kitaru::journal::{Journal, Scope};
use kitaru::store::{layout, Store};
use kitaru::Error;

use crate::{local_store, memory_store, noise, rt, start_info};

fn finished(call: &str, out: &str) -> FinishedCall {
    FinishedCall {
        call_id: call.into(),
        name: call.into(),
        explicit_id: false,
        checkpoint_type: None,
        input_digest: Some([1; 32]),
        output: RawValue {
            serializer: "str".into(),
            bytes: Bytes::from(out.to_string()),
        },
        started_us: 1,
        ended_us: 2,
        metadata_json: None,
    }
}

/// The record a runner of claim `claim_seq` writes for `call`.
fn record_bytes(call: &str, out: &str, claim_seq: u64) -> Vec<u8> {
    let rec = CheckpointRecord {
        call_id: call.into(),
        name: call.into(),
        explicit_id: false,
        checkpoint_type: None,
        input_digest: Some(record::Digest([1; 32])),
        output: Value {
            serializer: "str".into(),
            body: Body::Inline(ByteBuf(out.as_bytes().to_vec())),
        },
        attempts: vec![Attempt {
            number: 1,
            claim_seq,
            started_us: 1,
            ended_us: 2,
            failure: None,
        }],
        metadata_json: None,
    };
    record::encode(&rec).unwrap()
}

fn output(journal: &Journal, call: &str) -> Option<Vec<u8>> {
    journal
        .checkpoints
        .get(call)
        .map(|(_, r)| match &r.output.body {
            Body::Inline(b) => b.0.clone(),
            other => panic!("{other:?}"),
        })
}

/// A runner whose 1 ms lease lapsed (no heartbeat), replaced by a claim.
async fn replaced(store: &std::sync::Arc<Store>) -> (Runner, Runner) {
    let old = Runner::start(store.clone(), start_info(), 1).await.unwrap();
    old.record_checkpoint(finished("a", "1")).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let new = Runner::claim(store.clone(), old.exec_id(), Intent::Retry, 30_000)
        .await
        .unwrap();
    (old, new)
}

#[test]
fn a_replaced_runner_cannot_record_and_its_late_appends_never_count() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = local_store(&dir).await;
        let (old, new) = replaced(&store).await;
        let exec_id = old.exec_id().to_string();
        // The old runner wakes up inside a body and commits it: the append lands after
        // the bytes the claim counted, so it never counts; at its next checkpoint
        // boundary the runner sees the claim and stops.
        old.record_checkpoint(finished("b", "late")).await.unwrap();
        let err = old.check_lease_now().await.unwrap_err();
        assert!(matches!(err, Error::LeaseLost { .. }), "{err:?}");
        let journal = Journal::load(&store, &exec_id, Scope::Full).await.unwrap();
        assert!(
            output(&journal, "b").is_none(),
            "a fenced record was counted"
        );
        // Another late frame (a commit racing the claim) is fenced the same way.
        let seg = dir.path().join(layout::segment_key(&exec_id, 0));
        let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&record_bytes("b", "late", 0)).unwrap();
        drop(f);
        let journal = Journal::load(&store, &exec_id, Scope::Full).await.unwrap();
        assert_eq!(output(&journal, "a").unwrap(), b"1");
        assert!(
            output(&journal, "b").is_none(),
            "a fenced record was counted"
        );
        assert_eq!(journal.fenced.len(), 1);
        // The new runner records the call itself; verify finds nothing wrong.
        new.record_checkpoint(finished("b", "fresh")).await.unwrap();
        let journal = Journal::load(&store, &exec_id, Scope::Full).await.unwrap();
        assert_eq!(output(&journal, "b").unwrap(), b"fresh");
        let report = kitaru::verify::verify(&store).await.unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!(report.fenced, 1);
    });
}

#[test]
fn on_object_stores_a_late_record_is_skipped_and_the_call_recorded_again() {
    rt().block_on(async {
        let store = memory_store("fence-object").await;
        let (old, new) = replaced(&store).await;
        let exec_id = old.exec_id().to_string();
        // The old runner's commit of "b" lands after the claim.
        let key = layout::checkpoint_key(&exec_id, "b", 0);
        assert!(store
            .put_create(&key, record_bytes("b", "late", 0))
            .await
            .unwrap());
        let journal = Journal::load(&store, &exec_id, Scope::Full).await.unwrap();
        assert!(output(&journal, "b").is_none());
        assert_eq!(output(&journal, "a").unwrap(), b"1");
        // The new runner's record of "b" takes the next free revision.
        new.record_checkpoint(finished("b", "fresh")).await.unwrap();
        let journal = Journal::load(&store, &exec_id, Scope::Full).await.unwrap();
        assert_eq!(output(&journal, "b").unwrap(), b"fresh");
        // A counted record that disappears is damage, not less work done.
        store
            .delete(&layout::checkpoint_key(&exec_id, "a", 0))
            .await
            .unwrap();
        let err = Journal::load(&store, &exec_id, Scope::Full)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { reason, .. } if reason.contains("missing")),
            "{err:?}"
        );
    });
}

/// An execution with three checkpoints in one segment, run by a process that died; the
/// local store is at `dir`.
async fn three_in_a_segment(
    store: &std::sync::Arc<Store>,
    dir: &std::path::Path,
) -> (String, std::path::PathBuf) {
    // A 1 ms lease never renewed: it lapses as a dead runner's would.
    let r = Runner::start(store.clone(), start_info(), 1).await.unwrap();
    for (c, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        r.record_checkpoint(finished(c, v)).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let exec_id = r.exec_id().to_string();
    let seg = dir.join(layout::segment_key(&exec_id, 0));
    (exec_id, seg)
}

fn frame_lens(bytes: &[u8]) -> Vec<usize> {
    let scan = record::scan_segment(bytes);
    assert!(scan.tail.is_none());
    let mut prev = 0;
    scan.frames
        .iter()
        .map(|(_, end)| {
            let n = end - prev;
            prev = *end;
            n
        })
        .collect()
}

async fn corrupt_at(store: &Store, exec_id: &str) -> String {
    match Journal::load(store, exec_id, Scope::Full).await {
        Err(Error::Corrupt { key, reason, .. }) => format!("{key}: {reason}"),
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

async fn verify_flags(store: &Store, what: &str) {
    let report = kitaru::verify::verify(store).await.unwrap();
    assert!(
        report.findings.iter().any(|f| f.key.contains("/seg/")),
        "verify missed {what}: {:?}",
        report.findings
    );
}

#[test]
fn a_flipped_length_byte_mid_segment_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = local_store(&dir).await;
        let (exec_id, seg) = three_in_a_segment(&store, dir.path()).await;
        let mut bytes = std::fs::read(&seg).unwrap();
        let first = frame_lens(&bytes)[0];
        // The second frame's length field (bytes 7..11 of its header), made larger.
        bytes[first + 10] ^= 0x40;
        std::fs::write(&seg, &bytes).unwrap();
        let err = corrupt_at(&store, &exec_id).await;
        assert!(err.contains("/seg/00000000"), "{err}");
        verify_flags(&store, "a flipped length byte").await;
    });
}

#[test]
fn only_the_cut_end_of_a_dead_writers_segment_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = local_store(&dir).await;
        let (exec_id, seg) = three_in_a_segment(&store, dir.path()).await;
        let bytes = std::fs::read(&seg).unwrap();
        let last = *frame_lens(&bytes).last().unwrap();
        // A crash mid-append: the last frame is cut short.
        std::fs::write(&seg, &bytes[..bytes.len() - last / 2]).unwrap();
        let journal = Journal::load(&store, &exec_id, Scope::Full).await.unwrap();
        assert_eq!(journal.checkpoints.len(), 2);
        assert_eq!(journal.torn_tails, 1);
        let report = kitaru::verify::verify(&store).await.unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!(report.torn_tails, 1);
        // The retry fences the two whole records; cutting into them later is damage.
        let r = Runner::claim(store.clone(), &exec_id, Intent::Retry, 30_000)
            .await
            .unwrap();
        assert_eq!(r.journal().checkpoints.len(), 2);
        drop(r);
        let first = frame_lens(&bytes)[0];
        std::fs::write(&seg, &bytes[..first + 3]).unwrap();
        let err = corrupt_at(&store, &exec_id).await;
        assert!(err.contains("truncated"), "{err}");
        verify_flags(&store, "a segment cut inside counted records").await;
        // Emptied, or deleted: the same.
        std::fs::write(&seg, b"").unwrap();
        corrupt_at(&store, &exec_id).await;
        std::fs::remove_file(&seg).unwrap();
        let err = corrupt_at(&store, &exec_id).await;
        assert!(err.contains("missing"), "{err}");
    });
}

#[test]
fn a_cut_segment_of_a_run_that_ended_by_itself_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = local_store(&dir).await;
        let (exec_id, seg) = three_in_a_segment(&store, dir.path()).await;
        let journal = Journal::load(&store, &exec_id, Scope::States)
            .await
            .unwrap();
        let token = journal.current_claim().unwrap().2.token;
        // End the run the way a runner does, then cut its last record.
        let rec = StateRecord {
            seq: 1,
            at_us: kitaru::ids::now_us(),
            event: Event::Failed {
                token,
                failure: Failure {
                    origin: "user_code".into(),
                    message: "boom".into(),
                    exception_type: None,
                    traceback: None,
                },
            },
        };
        assert!(store
            .put_create(
                &layout::state_key(&exec_id, 1),
                record::encode(&rec).unwrap()
            )
            .await
            .unwrap());
        let bytes = std::fs::read(&seg).unwrap();
        std::fs::write(&seg, &bytes[..bytes.len() - 5]).unwrap();
        let err = corrupt_at(&store, &exec_id).await;
        assert!(err.contains("/seg/00000000"), "{err}");
        verify_flags(&store, "a cut segment of a finished run").await;
    });
}

#[test]
fn a_symlinked_segment_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = local_store(&dir).await;
        let (exec_id, seg) = three_in_a_segment(&store, dir.path()).await;
        let elsewhere = dir.path().join("elsewhere");
        std::fs::rename(&seg, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &seg).unwrap();
        let err = corrupt_at(&store, &exec_id).await;
        assert!(err.contains("symbolic link"), "{err}");
        let report = kitaru::verify::verify(&store).await.unwrap();
        assert!(!report.findings.is_empty());
    });
}

#[test]
fn torn_tail_rules() {
    let frame = record_bytes("a", "value", 0);
    assert!(record::is_torn_tail(&frame[..3]));
    assert!(record::is_torn_tail(&frame[..frame.len() - 1]));
    assert!(record::is_torn_tail(&[0u8; 40]));
    // A header whose length runs past the end, but a whole frame follows: damage.
    let mut damaged = frame.clone();
    damaged[10] ^= 0x40;
    damaged.extend_from_slice(&frame);
    assert!(!record::is_torn_tail(&damaged));
    // Not the start of a frame at all.
    assert!(!record::is_torn_tail(b"garbage that is not a frame"));
    // Whole but invalid (a flipped payload byte): damage.
    let mut flipped = frame.clone();
    flipped[20] ^= 1;
    assert!(!record::is_torn_tail(&flipped));
}

#[test]
fn a_blob_found_already_stored_is_checked_and_a_damaged_one_rewritten() {
    rt().block_on(async {
        for (name, size) in [("dedup-plain", 40_000), ("dedup-chunked", 900_000)] {
            let first = memory_store(name).await;
            let value = Bytes::from(noise(size, 7));
            let hash = first.put_blob(value.clone()).await.unwrap();
            // Damage one stored object of the value (for a chunked value: a chunk).
            let keys = first.list("blobs").await.unwrap();
            let victim = keys
                .iter()
                .find(|k| keys.len() == 1 || **k != layout::blob_key(&hash))
                .unwrap()
                .clone();
            let mut bytes = first.get(&victim).await.unwrap().unwrap().to_vec();
            bytes[100] ^= 0xFF;
            first.put_overwrite(&victim, bytes).await.unwrap();
            assert!(first.get_blob(&hash, None, None).await.is_err());
            // Another process saves the same bytes: it checks what it found and repairs it.
            let second = memory_store(name).await;
            assert_eq!(second.put_blob(value.clone()).await.unwrap(), hash);
            assert_eq!(second.get_blob(&hash, None, None).await.unwrap(), value);
            // The first process found the damage while reading: it does not skip the write.
            let mut bytes = first.get(&victim).await.unwrap().unwrap().to_vec();
            bytes[100] ^= 0xFF;
            first.put_overwrite(&victim, bytes).await.unwrap();
            assert!(first.get_blob(&hash, None, None).await.is_err());
            first.put_blob(value.clone()).await.unwrap();
            assert_eq!(
                first.get_blob(&hash, None, None).await.unwrap(),
                value,
                "{name}"
            );
        }
    });
}

#[test]
fn a_new_local_store_is_private_and_proc_is_not_a_store() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("new").join("store");
    rt().block_on(async {
        kitaru::store::Store::open(root.to_str().unwrap(), Default::default())
            .await
            .unwrap();
        let mode = std::fs::metadata(&root).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        // A location where nothing can be created or read: an error, not a busy loop.
        let err = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            kitaru::store::Store::open("/proc/self", Default::default()),
        )
        .await
        .expect("opening /proc/self hung")
        .unwrap_err();
        assert!(err.to_string().contains("/proc/self"), "{err}");
    });
}

#[test]
fn a_call_recorded_twice_in_one_run_says_so() {
    rt().block_on(async {
        let store = memory_store("recorded-twice").await;
        let r = Runner::start(store.clone(), start_info(), 30_000)
            .await
            .unwrap();
        r.record_checkpoint(finished("a", "1")).await.unwrap();
        let err = r.record_checkpoint(finished("a", "2")).await.unwrap_err();
        assert!(matches!(err, Error::RecordedTwice { .. }), "{err:?}");
    });
}
