//! Executions end to end in the core: start, record, load, claim, leases.

use std::sync::Arc;

use bytes::Bytes;
use kitaru::execution::{
    self, CallRequest, FailedCall, FinishedCall, Intent, Policy, RawValue, Runner,
};
use kitaru::journal::record::{self, ByteBuf};
use kitaru::journal::types::*;
use kitaru::journal::{Journal, Scope};
use kitaru::store::{layout, Store};
use kitaru::view;
use kitaru::Error;

use crate::{local_store, rt, start_info};

fn raw(s: &str) -> RawValue {
    RawValue {
        serializer: "str".into(),
        bytes: Bytes::from(s.to_string()),
    }
}

fn failure(msg: &str) -> Failure {
    Failure {
        origin: "user_code".into(),
        message: msg.into(),
        exception_type: None,
        traceback: None,
    }
}

fn finished(call: &str, out: &str) -> FinishedCall {
    FinishedCall {
        call_id: call.into(),
        name: call.into(),
        explicit_id: false,
        checkpoint_type: None,
        input_digest: Some([1; 32]),
        output: raw(out),
        started_us: 1,
        ended_us: 2,
        metadata_json: None,
    }
}

async fn record(r: &Runner, call: &str, out: &str) {
    r.record_checkpoint(finished(call, out)).await.unwrap();
}

/// Writes an execution whose runner is a process that no longer exists.
async fn dead_execution(store: &Store) -> String {
    let exec_id = kitaru::ids::new_exec_id();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let mut holder = kitaru::lease::this_holder();
    holder.pid = pid;
    let rec = StateRecord {
        seq: 0,
        at_us: kitaru::ids::now_us(),
        event: Event::Started {
            start: Box::new(start_info()),
            lease: LeaseClaim {
                holder,
                token: 5,
                ttl_ms: 3_600_000,
            },
        },
    };
    store
        .put_create(
            &layout::state_key(&exec_id, 0),
            Bytes::from(record::encode(&rec).unwrap()),
        )
        .await
        .unwrap();
    exec_id
}

#[test]
fn run_record_complete_and_load() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = local_store(&dir).await;
        let r = Runner::start(store.clone(), start_info(), 30_000)
            .await
            .unwrap();
        let exec_id = r.exec_id().to_string();
        record(&r, "fetch", "a").await;
        record(&r, "fetch_2", "b").await;
        let big = "x".repeat(layout::INLINE_LIMIT + 1);
        record(&r, "big", &big).await;
        assert_eq!(
            r.record_failed_attempt(FailedCall {
                call_id: "flaky".into(),
                name: "flaky".into(),
                checkpoint_type: None,
                input_digest: None,
                started_us: 1,
                ended_us: 2,
                failure: failure("boom"),
            })
            .await
            .unwrap(),
            1
        );
        r.log_metadata(r#"{"stage":"x"}"#.into()).await.unwrap();
        r.complete(raw("done")).await.unwrap();

        let j = Journal::load(&store, &exec_id, Scope::Full).await.unwrap();
        assert_eq!(j.checkpoints.len(), 3);
        assert_eq!(j.failed_attempts["flaky"].len(), 1);
        assert!(matches!(
            j.checkpoints["big"].1.output.body,
            Body::Blob { .. }
        ));
        let out = execution::load_value(
            &store,
            &j.checkpoints["big"].1.output,
            &exec_id,
            Some("big"),
        )
        .await
        .unwrap();
        assert_eq!(out.bytes, Bytes::from(big));
        let v = view::inspect(&store, &exec_id, true).await.unwrap();
        assert_eq!(v.status, "completed");
        assert_eq!(v.checkpoints.len(), 4);
        assert_eq!(v.metadata_json, vec![r#"{"stage":"x"}"#.to_string()]);
        let result = execution::result(&store, &exec_id).await.unwrap().unwrap();
        assert_eq!(result.bytes, Bytes::from_static(b"done"));
        // a completed execution cannot be retried
        let err = Runner::claim(store.clone(), &exec_id, Intent::Retry, 30_000)
            .await
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("only failed executions can be retried"),
            "{err}"
        );
    });
}

#[test]
fn a_live_lease_refuses_a_second_runner() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = local_store(&dir).await;
        let r = Runner::start(store.clone(), start_info(), 30_000)
            .await
            .unwrap();
        let err = Runner::claim(store.clone(), r.exec_id(), Intent::Retry, 30_000)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, Error::LeaseHeld { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        let v = view::inspect(&store, r.exec_id(), false).await.unwrap();
        assert_eq!(v.status, "running");
    });
}

#[test]
fn a_dead_holder_lapses_at_once_and_one_of_many_retries_wins() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = rt.block_on(local_store(&dir));
    let exec_id = rt.block_on(dead_execution(&store));
    let v = rt.block_on(view::inspect(&store, &exec_id, false)).unwrap();
    assert_eq!(v.status, "failed");
    assert_eq!(v.failure.unwrap().origin, "runner_died");

    let claims: Vec<_> = (0..8)
        .map(|_| {
            let store: Arc<Store> = store.clone();
            let id = exec_id.clone();
            rt.spawn(async move { Runner::claim(store, &id, Intent::Retry, 30_000).await })
        })
        .collect();
    let results: Vec<_> = rt.block_on(async {
        let mut out = Vec::new();
        for c in claims {
            out.push(c.await.unwrap());
        }
        out
    });
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "exactly one retry takes the lease");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(r, Error::LeaseHeld { .. } | Error::Contention { .. }),
            "{r:?}"
        );
    }
}

#[test]
fn expired_lease_lapses_and_the_old_runner_cannot_finish() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = local_store(&dir).await;
        // a 1 ms lease that is never renewed (no heartbeat task) expires at once
        let old = Runner::start(store.clone(), start_info(), 1).await.unwrap();
        record(&old, "a", "1").await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let new = Runner::claim(store.clone(), old.exec_id(), Intent::Retry, 30_000)
            .await
            .unwrap();
        assert!(new.journal().checkpoints.contains_key("a"));
        let err = old.complete(raw("stale")).await.unwrap_err();
        assert!(matches!(err, Error::LeaseLost { .. }), "{err:?}");
        new.complete(raw("fresh")).await.unwrap();
        let result = execution::result(&store, old.exec_id())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(result.bytes, Bytes::from_static(b"fresh"));
    });
}

#[test]
fn cancel_stops_a_running_execution_at_its_next_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = rt.block_on(local_store(&dir));
    let r = rt
        .block_on(Runner::start(store.clone(), start_info(), 150))
        .unwrap();
    r.spawn_heartbeat(&rt);
    rt.block_on(execution::cancel(&store, r.exec_id(), "user"))
        .unwrap();
    // the heartbeat notices within one period (ttl / 3 = 50 ms)
    let mut stopped = false;
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        if let Err(e) = r.check_lease() {
            assert!(matches!(e, Error::Cancelled { .. }), "{e:?}");
            stopped = true;
            break;
        }
    }
    assert!(stopped, "the runner learned of the cancellation");
    let err = rt.block_on(r.complete(raw("x"))).unwrap_err();
    assert!(
        matches!(err, Error::Cancelled { .. } | Error::Transition { .. }),
        "{err:?}"
    );
    let v = rt
        .block_on(view::inspect(&store, r.exec_id(), false))
        .unwrap();
    assert_eq!(v.status, "cancelled");
}

#[test]
fn heartbeat_keeps_a_short_lease_alive() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = rt.block_on(local_store(&dir));
    let r = rt
        .block_on(Runner::start(store.clone(), start_info(), 300))
        .unwrap();
    r.spawn_heartbeat(&rt);
    std::thread::sleep(std::time::Duration::from_millis(900));
    let err = rt
        .block_on(Runner::claim(
            store.clone(),
            r.exec_id(),
            Intent::Retry,
            30_000,
        ))
        .err()
        .unwrap();
    assert!(matches!(err, Error::LeaseHeld { .. }), "{err:?}");
    rt.block_on(r.complete(raw("ok"))).unwrap();
}

/// Runs a call, fails, retries with a re-run of the call; returns the journal.
async fn rerun_scenario(store: Arc<Store>) -> (Runner, Journal) {
    let r = Runner::start(store.clone(), start_info(), 1).await.unwrap();
    record(&r, "a", "old").await;
    r.fail(failure("boom")).await.unwrap();
    let r2 = Runner::claim(store.clone(), r.exec_id(), Intent::Retry, 30_000)
        .await
        .unwrap();
    let d = r2.begin_call(&CallRequest {
        call_id: "a".into(),
        name: "a".into(),
        digest: Some([2; 32]),
        ordered: true,
        explicit: false,
        policy: Policy::Rerun,
        code: None,
        cache: None,
    });
    assert!(d.pending() && !d.reuse);
    let d = r2.settle_call(d).await.unwrap();
    assert!(!d.pending() && !d.reuse && d.call_id == "a");
    record(&r2, "a", "new").await;
    let j = Journal::load(&store, r.exec_id(), Scope::Full)
        .await
        .unwrap();
    (r2, j)
}

#[test]
fn rerun_after_divergence_writes_a_new_revision_on_object_stores() {
    rt().block_on(async {
        let (r2, j) = rerun_scenario(crate::memory_store("rerun").await).await;
        let (rev, rec) = &j.checkpoints["a"];
        assert_eq!(*rev, 1);
        assert_eq!(rec.output.body, Body::Inline(ByteBuf(b"new".to_vec())));
        assert_eq!(j.divergences.len(), 1);
        // a second record of the call in one run is refused: nothing is overwritten
        assert!(r2.record_checkpoint(finished("a", "again")).await.is_err());
    });
}

#[test]
fn rerun_after_divergence_on_a_local_store_takes_the_latest_run() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (r2, j) = rerun_scenario(local_store(&dir).await).await;
        let (_, rec) = &j.checkpoints["a"];
        assert_eq!(rec.output.body, Body::Inline(ByteBuf(b"new".to_vec())));
        assert_eq!(rec.attempts.last().unwrap().claim_seq, 2);
        assert!(r2.record_checkpoint(finished("a", "again")).await.is_err());
    });
}

#[test]
fn a_corrupt_segment_is_reported_with_its_key_and_execution() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = local_store(&dir).await;
        let r = Runner::start(store.clone(), start_info(), 30_000)
            .await
            .unwrap();
        record(&r, "fetch", "a").await;
        record(&r, "fetch_2", "b").await;
        let key = layout::segment_key(r.exec_id(), 0);
        let path = dir.path().join(&key);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 0x40; // inside the first of two frames
        std::fs::write(&path, bytes).unwrap();
        let err = Journal::load(&store, r.exec_id(), Scope::Full)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        assert!(msg.contains(&key) && msg.contains(r.exec_id()), "{msg}");
    });
}

#[test]
fn a_record_cut_off_by_a_crash_never_counts() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = local_store(&dir).await;
        let r = Runner::start(store.clone(), start_info(), 30_000)
            .await
            .unwrap();
        record(&r, "fetch", "a").await;
        record(&r, "fetch_2", "b").await;
        let path = dir.path().join(layout::segment_key(r.exec_id(), 0));
        let bytes = std::fs::read(&path).unwrap();
        // what a crash in the middle of the second append leaves behind
        for cut in [bytes.len() - 1, bytes.len() - 9, bytes.len() / 2 + 3] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let j = Journal::load(&store, r.exec_id(), Scope::Full)
                .await
                .unwrap();
            assert_eq!(
                j.checkpoints.keys().collect::<Vec<_>>(),
                vec!["fetch"],
                "cut at {cut}"
            );
            let report = kitaru::verify::verify(&store).await.unwrap();
            assert!(report.findings.is_empty(), "{:?}", report.findings);
            assert_eq!(report.torn_tails, 1);
        }
    });
}

#[test]
fn object_store_records_are_one_create_only_object_per_checkpoint() {
    rt().block_on(async {
        let store = crate::memory_store("one-object").await;
        let r = Runner::start(store.clone(), start_info(), 30_000)
            .await
            .unwrap();
        record(&r, "fetch", "a").await;
        let key = layout::checkpoint_key(r.exec_id(), "fetch", 0);
        let bytes = store.get(&key).await.unwrap().unwrap();
        let rec: CheckpointRecord = record::decode(&bytes).unwrap();
        assert_eq!(rec.call_id, "fetch");
    });
}

#[test]
fn unknown_executions_and_bad_ids_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = local_store(&dir).await;
        let id = kitaru::ids::new_exec_id();
        let err = view::inspect(&store, &id, true).await.unwrap_err();
        assert!(matches!(err, Error::ExecutionNotFound { .. }), "{err:?}");
        let err = view::inspect(&store, "../../etc/passwd", true)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{err:?}");
        let r = Runner::start(store.clone(), start_info(), 30_000)
            .await
            .unwrap();
        let err = r
            .record_checkpoint(finished("../x", "v"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{err:?}");
    });
}

#[test]
fn list_is_newest_first_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = local_store(&dir).await;
        let mut ids = Vec::new();
        for i in 0..5 {
            let mut s = start_info();
            s.flow_name = if i % 2 == 0 {
                "even".into()
            } else {
                "odd".into()
            };
            let r = Runner::start(store.clone(), s, 30_000).await.unwrap();
            if i < 4 {
                r.complete(raw("x")).await.unwrap();
            }
            ids.push(r.exec_id().to_string());
        }
        let all = view::list(&store, &Default::default()).await.unwrap();
        let listed: Vec<_> = all.iter().map(|v| v.exec_id.clone()).collect();
        let mut newest_first = ids.clone();
        newest_first.reverse();
        assert_eq!(listed, newest_first);
        let f = view::ListFilter {
            flow: Some("even".into()),
            status: Some("completed".into()),
            limit: Some(1),
            ..Default::default()
        };
        let got = view::list(&store, &f).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].exec_id, ids[2]);
    });
}

fn history(turns: usize) -> String {
    (0..turns)
        .map(|i| {
            format!(
                "{{\"role\":\"user\",\"content\":\"message {i} {}\"}}",
                "lorem ipsum ".repeat(80)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        dir_size(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_growing_history_stores_roughly_the_new_bytes_per_turn() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = local_store(&dir).await;
        let r = Runner::start(store.clone(), start_info(), 1).await.unwrap();
        let mut call = finished("turn", "");
        for t in 1..=100 {
            call.call_id = if t == 1 {
                "turn".into()
            } else {
                format!("turn_{t}")
            };
            call.name = "turn".into();
            call.output = raw(&history(t));
            r.record_checkpoint(call.clone()).await.unwrap();
        }
        let final_size = history(100).len() as u64;
        let stored = dir_size(dir.path());
        assert!(
            stored < 2 * final_size,
            "stored {stored} bytes for a final history of {final_size}"
        );
        r.fail(failure("stop")).await.unwrap();

        // every turn rebuilds exactly, from a new runner's journal
        let r2 = Runner::claim(store.clone(), r.exec_id(), Intent::Retry, 30_000)
            .await
            .unwrap();
        for t in (1..=100).rev() {
            let id = if t == 1 {
                "turn".to_string()
            } else {
                format!("turn_{t}")
            };
            let (v, _) = r2.lookup_output(&id).await.unwrap().unwrap();
            assert_eq!(v.bytes, Bytes::from(history(t)), "turn {t}");
        }
        let report = kitaru::verify::verify(&store).await.unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
    });
}

#[test]
fn a_delta_whose_base_is_damaged_is_a_corruption_error() {
    rt().block_on(async {
        let store = crate::memory_store("delta-damage").await;
        let r = Runner::start(store.clone(), start_info(), 1).await.unwrap();
        for (t, id) in [(40, "turn"), (41, "turn_2")] {
            let mut call = finished(id, &history(t));
            call.name = "turn".into();
            r.record_checkpoint(call).await.unwrap();
        }
        // replace the base's blob with other content of the same name: the rebuild catches it
        let j = Journal::load(&store, r.exec_id(), Scope::Full)
            .await
            .unwrap();
        assert!(matches!(
            j.checkpoints["turn_2"].1.output.body,
            Body::Delta { .. }
        ));
        let Body::Blob { hash, .. } = &j.checkpoints["turn"].1.output.body else {
            panic!("base is a blob")
        };
        store.delete(&layout::blob_key(&hash.0)).await.unwrap();
        r.fail(failure("stop")).await.unwrap();
        let r2 = Runner::claim(store.clone(), r.exec_id(), Intent::Retry, 30_000)
            .await
            .unwrap();
        let err = r2.lookup_output("turn_2").await.unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    });
}

fn gets(store: &Store) -> u64 {
    store
        .request_counts()
        .snapshot()
        .into_iter()
        .find(|(k, _)| *k == "get")
        .map(|(_, n)| n)
        .unwrap_or(0)
}

#[test]
fn an_ended_run_is_packed_and_a_full_read_is_one_get_plus_what_came_after() {
    rt().block_on(async {
        let store = crate::memory_store("packs").await;
        let r = Runner::start(store.clone(), start_info(), 30_000)
            .await
            .unwrap();
        let exec_id = r.exec_id().to_string();
        for i in 0..50 {
            record(&r, &format!("step_{i}"), &format!("out {i}")).await;
        }
        r.fail(failure("crashed")).await.unwrap();
        let before = Journal::load(&store, &exec_id, Scope::Full).await.unwrap();
        let keys = store.list(&layout::exec_prefix(&exec_id)).await.unwrap();
        let packs: Vec<_> = keys.iter().filter(|k| k.contains("/pack/")).collect();
        assert_eq!(packs.len(), 1, "{keys:?}");

        // a full read: the pack, plus the lease heartbeat keys (never packed)
        store.request_counts().reset();
        let j = Journal::load(&store, &exec_id, Scope::Full).await.unwrap();
        let leases = keys.iter().filter(|k| k.contains("/lease/")).count() as u64;
        assert_eq!(gets(&store), 1 + leases);
        assert_eq!(j.checkpoints.len(), 50);
        assert_eq!(j.states.len(), before.states.len());

        // a retry adds records after the pack: read from their own keys, then packed anew
        let r2 = Runner::claim(store.clone(), &exec_id, Intent::Retry, 30_000)
            .await
            .unwrap();
        record(&r2, "after", "new").await;
        let mid = Journal::load(&store, &exec_id, Scope::Full).await.unwrap();
        assert_eq!(mid.checkpoints.len(), 51);
        r2.complete(raw("done")).await.unwrap();
        let keys = store.list(&layout::exec_prefix(&exec_id)).await.unwrap();
        let packs: Vec<_> = keys.iter().filter(|k| k.contains("/pack/")).collect();
        assert_eq!(packs.len(), 1, "the superseded pack is dropped: {keys:?}");
        let v = view::inspect(&store, &exec_id, true).await.unwrap();
        assert_eq!((v.status, v.checkpoints.len()), ("completed", 51));

        // a damaged pack is ignored: the records are read one by one, nothing is lost
        let pack = packs[0].clone();
        store.delete(&pack).await.unwrap();
        assert!(store
            .put_create(
                &pack,
                Bytes::from_static(b"KITPACK1 damaged..............................")
            )
            .await
            .unwrap());
        let j = Journal::load(&store, &exec_id, Scope::Full).await.unwrap();
        assert_eq!(j.checkpoints.len(), 51);
        let report = kitaru::verify::verify(&store).await.unwrap();
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.key == pack && f.detail.contains("pack")),
            "{:?}",
            report.findings
        );
    });
}

#[test]
fn pack_bytes_are_bounded_and_checked() {
    use kitaru::journal::pack;
    let a = Bytes::from_static(b"record a");
    let b = Bytes::from_static(b"");
    let bytes = Bytes::from(pack::encode(&[("k/a", &a), ("k/b", &b)]));
    let got = pack::decode(&bytes).unwrap();
    assert_eq!((got["k/a"].clone(), got["k/b"].clone()), (a, b));
    let mut flipped = bytes.to_vec();
    flipped[12] ^= 1;
    assert!(pack::decode(&Bytes::from(flipped)).is_err());
    // a length past the end, with a hash that matches: refused, not read out of bounds
    let mut body = b"KITPACK1".to_vec();
    body.extend_from_slice(&u32::MAX.to_le_bytes());
    let hash = blake3::hash(&body);
    body.extend_from_slice(hash.as_bytes());
    assert!(pack::decode(&Bytes::from(body)).is_err());
}
