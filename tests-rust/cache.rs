//! The cross-execution cache (`kitaru::cache`): a finished call of one execution answers the
//! same call of a later execution of the same flow, and an entry is only believed for the
//! key it was made for.

use std::sync::Arc;

use bytes::Bytes;
use kitaru::cache::KeyParts;
use kitaru::execution::{CallRequest, Decision, FinishedCall, Notice, Policy, RawValue, Runner};
use kitaru::journal::record::Digest;
use kitaru::store::Store;

use crate::{local_store, memory_store, rt, start_info};

const CODE: [u8; 32] = [7; 32];

fn started(cache: bool) -> kitaru::journal::types::StartInfo {
    let mut s = start_info();
    s.options_json = format!("{{\"cache\": {cache}}}");
    s
}

fn ask(call: &str, digest: u8, code: Option<[u8; 32]>) -> CallRequest {
    CallRequest {
        call_id: call.into(),
        name: "fetch".into(),
        digest: Some([digest; 32]),
        ordered: true,
        explicit: false,
        policy: Policy::Rerun,
        code,
        cache: None,
    }
}

fn done(call: &str, digest: u8, out: &[u8]) -> FinishedCall {
    FinishedCall {
        call_id: call.into(),
        name: "fetch".into(),
        explicit_id: false,
        checkpoint_type: Some("tool_call".into()),
        input_digest: Some([digest; 32]),
        output: RawValue {
            serializer: "bytes".into(),
            bytes: Bytes::copy_from_slice(out),
        },
        started_us: 1,
        ended_us: 2,
        metadata_json: Some(r#"{"llm_calls": {"x": {"cost_usd": 0.5}}}"#.into()),
    }
}

/// One execution that runs `fetch` with inputs `digest` and finishes it with `out`.
async fn produce(store: &Arc<Store>, digest: u8, out: &[u8]) -> String {
    let r = Runner::start(store.clone(), started(true), 30_000)
        .await
        .unwrap();
    r.new_pass();
    let d = r.begin_call(&ask("fetch", digest, Some(CODE)));
    let d = r.settle_call(d).await.unwrap();
    assert!(!d.reuse);
    r.record_checkpoint(done("fetch", digest, out))
        .await
        .unwrap();
    // the end of the run waits for the entries still being written (object stores)
    r.complete(RawValue {
        serializer: "json".into(),
        bytes: Bytes::from_static(b"null"),
    })
    .await
    .unwrap();
    r.exec_id().to_string()
}

async fn decide(store: &Arc<Store>, cache: bool, req: CallRequest) -> Decision {
    let r = Runner::start(store.clone(), started(cache), 30_000)
        .await
        .unwrap();
    r.new_pass();
    let d = r.begin_call(&req);
    let d = r.settle_call(d).await.unwrap();
    r.stop_heartbeat().await;
    d
}

#[test]
fn a_later_execution_is_answered_with_the_output_and_its_source() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        for store in [memory_store("cache-hit").await, local_store(&dir).await] {
            let first = produce(&store, 1, b"answer").await;
            let d = decide(&store, true, ask("fetch", 1, Some(CODE))).await;
            assert!(d.reuse);
            assert_eq!(&d.value.unwrap().bytes[..], b"answer");
            let from = d.cached_from.unwrap();
            assert_eq!(
                (from.exec_id.as_str(), from.call_id.as_str()),
                (first.as_str(), "fetch")
            );
            assert!(from.metadata_json.unwrap().contains("cost_usd"));
        }
    });
}

#[test]
fn other_inputs_other_code_no_code_or_cache_off_are_misses() {
    rt().block_on(async {
        let store = memory_store("cache-miss").await;
        produce(&store, 1, b"answer").await;
        let misses = [
            (true, ask("fetch", 2, Some(CODE))),
            (true, ask("fetch", 1, Some([8; 32]))),
            (true, ask("fetch", 1, None)),
            (false, ask("fetch", 1, Some(CODE))),
        ];
        for (cache, req) in misses {
            let d = decide(&store, cache, req).await;
            assert!(!d.reuse && d.cached_from.is_none());
        }
        // the checkpoint's own setting beats the execution's
        let mut req = ask("fetch", 1, Some(CODE));
        req.cache = Some(true);
        assert!(decide(&store, false, req).await.reuse);
        let mut req = ask("fetch", 1, Some(CODE));
        req.cache = Some(false);
        assert!(!decide(&store, true, req).await.reuse);
    });
}

fn parts(d: u8) -> KeyParts {
    KeyParts {
        flow_name: "agent".into(),
        name: "fetch".into(),
        code: Digest(CODE),
        input_digest: Digest([d; 32]),
    }
}

#[test]
fn an_object_under_another_key_or_damaged_is_a_miss_with_a_notice() {
    rt().block_on(async {
        let store = memory_store("cache-swap").await;
        produce(&store, 1, b"one").await;
        produce(&store, 2, b"two").await;
        let key = |d: u8| kitaru::store::layout::cache_key(&parts(d).key());
        // swapped: each key holds the other call's entry
        let a = store.get(&key(1)).await.unwrap().unwrap();
        let b = store.get(&key(2)).await.unwrap().unwrap();
        store.put_overwrite(&key(1), b.clone()).await.unwrap();
        store.put_overwrite(&key(2), a.clone()).await.unwrap();
        let d = decide(&store, true, ask("fetch", 1, Some(CODE))).await;
        assert!(!d.reuse);
        assert!(
            matches!(&d.notice, Some(Notice::CacheUnusable(why)) if why.contains("another call"))
        );
        // damaged
        let mut bytes = a.to_vec();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xFF;
        store.put_overwrite(&key(1), bytes).await.unwrap();
        let d = decide(&store, true, ask("fetch", 1, Some(CODE))).await;
        assert!(!d.reuse);
        assert!(matches!(&d.notice, Some(Notice::CacheUnusable(why)) if why.contains("checksum")));
        // listed as damaged, cleared with the rest
        let listed = kitaru::cache::list(&store, None).await.unwrap();
        assert_eq!(listed.iter().filter(|e| e.damaged.is_some()).count(), 1);
        assert_eq!(kitaru::cache::clear(&store, None).await.unwrap(), 2);
        assert!(kitaru::cache::list(&store, None).await.unwrap().is_empty());
    });
}

#[test]
fn a_local_log_skips_damage_waits_for_a_cut_append_and_is_cleared() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(&dir).await;
        produce(&store, 1, b"one").await;
        produce(&store, 2, b"two").await;
        let log = dir.path().join(kitaru::cache::log_key("agent"));
        let whole = std::fs::read(&log).unwrap();
        let first_len = whole.len() / 2; // two entries of the same size
                                         // the first entry damaged, then half of a third append (a crash, or one in progress)
        let mut bytes = whole.clone();
        bytes[first_len / 2] ^= 0xFF;
        bytes.extend_from_slice(&whole[..first_len / 2]);
        std::fs::write(&log, &bytes).unwrap();
        assert!(
            !decide(&store, true, ask("fetch", 1, Some(CODE)))
                .await
                .reuse
        );
        let d = decide(&store, true, ask("fetch", 2, Some(CODE))).await;
        assert!(d.reuse, "the entry after the damage is still found");
        assert_eq!(&d.value.unwrap().bytes[..], b"two");
        let listed = kitaru::cache::list(&store, Some("agent")).await.unwrap();
        let damaged: Vec<_> = listed.iter().filter_map(|e| e.damaged.as_ref()).collect();
        assert_eq!(damaged.len(), 1, "the cut tail is not damage: {listed:?}");
        let report = kitaru::verify::verify(&store).await.unwrap();
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        assert_eq!(
            kitaru::cache::clear(&store, Some("other")).await.unwrap(),
            0
        );
        assert_eq!(
            kitaru::cache::clear(&store, Some("agent")).await.unwrap(),
            2
        );
        assert!(!log.exists());
        assert!(
            !decide(&store, true, ask("fetch", 2, Some(CODE)))
                .await
                .reuse
        );
    });
}

#[test]
fn key_parts_are_length_prefixed() {
    let parts = |flow: &str, name: &str| KeyParts {
        flow_name: flow.into(),
        name: name.into(),
        code: Digest([0; 32]),
        input_digest: Digest([0; 32]),
    };
    assert_ne!(parts("ab", "c").key(), parts("a", "bc").key());
    assert_eq!(parts("a", "b").key(), parts("a", "b").key());
}
