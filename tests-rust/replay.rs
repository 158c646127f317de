//! Replay planning and seeding in the core: the frontier, what is taken over, selectors.

use bytes::Bytes;
use kitaru::execution::{CallRequest, FinishedCall, Policy, RawValue, Runner};
use kitaru::journal::types::Failure;
use kitaru::replay;
use kitaru::Error;

use crate::{memory_store, rt, start_info};

fn finished(call: &str, name: &str, out: &str, at: u64) -> FinishedCall {
    FinishedCall {
        call_id: call.into(),
        name: name.into(),
        explicit_id: false,
        checkpoint_type: None,
        input_digest: Some([at as u8; 32]),
        output: RawValue {
            serializer: "str".into(),
            bytes: Bytes::from(out.to_string()),
        },
        started_us: at,
        ended_us: at + 1,
        metadata_json: None,
    }
}

/// A failed source execution with calls research, fetch, fetch_2, publish (in that order).
async fn source(store: &std::sync::Arc<kitaru::store::Store>) -> String {
    let r = Runner::start(store.clone(), start_info(), 30_000)
        .await
        .unwrap();
    // recorded out of call order: the plan orders by when each call started
    for (call, name, out, at) in [
        ("publish", "publish", "P", 40),
        ("research", "research", "R", 10),
        ("fetch_2", "fetch", "F2", 30),
        ("fetch", "fetch", "F1", 20),
    ] {
        r.record_checkpoint(finished(call, name, out, at))
            .await
            .unwrap();
    }
    r.fail(Failure {
        origin: "user_code".into(),
        message: "boom".into(),
        exception_type: None,
        traceback: None,
    })
    .await
    .unwrap();
    r.exec_id().to_string()
}

#[test]
fn the_frontier_is_the_earliest_of_from_and_the_overrides() {
    rt().block_on(async {
        let store = memory_store("replay-plan").await;
        let src = source(&store).await;
        let plan = replay::plan(&store, &src, "publish", &[]).await.unwrap();
        assert_eq!(plan.frontier, "publish");
        assert_eq!(plan.reuse, ["research", "fetch", "fetch_2"]);
        let keys = vec!["checkpoint.fetch_2".to_string()];
        let plan = replay::plan(&store, &src, "publish", &keys).await.unwrap();
        assert_eq!(plan.frontier, "fetch_2");
        assert_eq!(plan.reuse, ["research", "fetch"]);
        assert_eq!(plan.overrides, [(keys[0].clone(), "fetch_2".to_string())]);
        // an override before `from`: it is replaced, not reused, and the frontier moves
        let keys = vec!["checkpoint.research".to_string()];
        let plan = replay::plan(&store, &src, "publish", &keys).await.unwrap();
        assert_eq!(plan.frontier, "research");
        assert!(plan.reuse.is_empty());
        // `<exec id>/<call id>` selects too
        let plan = replay::plan(&store, &src, &format!("{src}/fetch_2"), &[])
            .await
            .unwrap();
        assert_eq!(plan.frontier, "fetch_2");
    });
}

#[test]
fn selectors_and_override_keys_are_checked() {
    rt().block_on(async {
        let store = memory_store("replay-errors").await;
        let src = source(&store).await;
        let err = replay::plan(&store, &src, "nope", &[]).await.unwrap_err();
        assert!(
            matches!(err, Error::UnknownCheckpoint { ref available, .. } if available.len() == 4)
        );
        let bad = ["wait.approve".to_string()];
        let err = replay::plan(&store, &src, "fetch", &bad).await.unwrap_err();
        assert!(err.to_string().contains("answered with input"), "{err}");
        let err = replay::plan(&store, &src, " ", &[]).await.unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{err:?}");
        // a running execution is not replayed
        let running = Runner::start(store.clone(), start_info(), 30_000)
            .await
            .unwrap();
        running
            .record_checkpoint(finished("a", "a", "x", 1))
            .await
            .unwrap();
        let err = replay::plan(&store, running.exec_id(), "a", &[])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::StillRunning { .. }), "{err:?}");
    });
}

#[test]
fn seeded_results_answer_the_replays_calls_like_an_earlier_runs() {
    rt().block_on(async {
        let store = memory_store("replay-seed").await;
        let src = source(&store).await;
        let r = Runner::start(store.clone(), start_info(), 30_000)
            .await
            .unwrap();
        let over = RawValue {
            serializer: "str".into(),
            bytes: Bytes::from_static(b"edited"),
        };
        let n = r
            .seed_from(
                &src,
                &["research".to_string()],
                vec![("fetch".into(), over)],
            )
            .await
            .unwrap();
        assert_eq!(n, 2);
        r.new_pass();
        let ask = |id: &str, name: &str, digest: u8| CallRequest {
            call_id: id.into(),
            name: name.into(),
            digest: Some([digest; 32]),
            ordered: true,
            explicit: false,
            policy: Policy::Rerun,
            code: None,
            cache: None,
        };
        let research = r.begin_call(&ask("research", "research", 10));
        assert!(research.reuse && research.earlier_run && !research.pending());
        assert_eq!(&research.value.unwrap().bytes[..], b"R");
        // the override answers its call whatever the inputs (no digest to compare)
        let fetch = r.begin_call(&ask("fetch", "fetch", 99));
        assert!(fetch.reuse && fetch.divergence.is_none(), "{fetch:?}");
        assert_eq!(&fetch.value.unwrap().bytes[..], b"edited");
        // what was not taken over runs live
        let publish = r.begin_call(&ask("publish", "publish", 40));
        assert!(!publish.reuse);
    });
}

#[test]
fn a_diff_aligns_calls_by_id_and_compares_outputs() {
    rt().block_on(async {
        let store = memory_store("diff").await;
        let a = source(&store).await;
        let r = Runner::start(store.clone(), start_info(), 30_000)
            .await
            .unwrap();
        let over = RawValue {
            serializer: "str".into(),
            bytes: Bytes::from_static(b"other"),
        };
        r.seed_from(&a, &["research".to_string()], vec![("fetch".into(), over)])
            .await
            .unwrap();
        r.record_checkpoint(finished("extra", "extra", "E", 50))
            .await
            .unwrap();
        let d = kitaru::diff::diff(&store, &a, r.exec_id()).await.unwrap();
        let got: Vec<(&str, &str)> = d
            .calls
            .iter()
            .map(|c| (c.call_id.as_str(), c.status))
            .collect();
        assert_eq!(
            got,
            [
                ("research", "same"),
                ("fetch", "changed"),
                ("extra", "added"),
                ("fetch_2", "removed"),
                ("publish", "removed"),
            ]
        );
    });
}

#[test]
fn a_seeded_explicit_call_is_found_by_its_id_only() {
    rt().block_on(async {
        let store = memory_store("seed-explicit").await;
        let src = Runner::start(store.clone(), start_info(), 30_000)
            .await
            .unwrap();
        let mut home = finished("home", "fetch", "HOME", 10);
        home.explicit_id = true;
        src.record_checkpoint(home).await.unwrap();
        src.complete(RawValue {
            serializer: "str".into(),
            bytes: Bytes::from_static(b"done"),
        })
        .await
        .unwrap();
        let r = Runner::start(store.clone(), start_info(), 30_000)
            .await
            .unwrap();
        r.seed_from(src.exec_id(), &["home".to_string()], vec![])
            .await
            .unwrap();
        r.new_pass();
        // an auto-numbered call with the same inputs does not take the explicit call's result
        let id = r.allocate_call("fetch", None).unwrap();
        let auto = r.begin_call(&CallRequest {
            call_id: id,
            name: "fetch".into(),
            digest: Some([10; 32]),
            ordered: true,
            explicit: false,
            policy: Policy::Rerun,
            code: None,
            cache: None,
        });
        assert!(!auto.reuse && auto.call_id == "fetch", "{auto:?}");
        let id = r.allocate_call("fetch", Some("home")).unwrap();
        let explicit = r.begin_call(&CallRequest {
            call_id: id,
            name: "fetch".into(),
            digest: Some([10; 32]),
            ordered: true,
            explicit: true,
            policy: Policy::Rerun,
            code: None,
            cache: None,
        });
        assert_eq!(&explicit.value.unwrap().bytes[..], b"HOME");
    });
}

#[test]
fn plans_of_crashed_sources_failed_steps_and_unknown_inputs() {
    rt().block_on(async {
        let store = memory_store("replay-crash").await;
        // a runner that died (its 1 ms lease lapsed) after two calls and a failed third
        let r = Runner::start(store.clone(), start_info(), 1).await.unwrap();
        r.record_checkpoint(finished("a", "a", "A", 10))
            .await
            .unwrap();
        let mut b = finished("b", "b", "B", 20);
        b.input_digest = None; // inputs that could not be digested
        r.record_checkpoint(b).await.unwrap();
        let mut llm = finished("llm_1", "llm", "answer", 25);
        llm.checkpoint_type = Some("llm_call".into());
        r.record_checkpoint(llm).await.unwrap();
        r.record_failed_attempt(kitaru::execution::FailedCall {
            call_id: "c".into(),
            name: "c".into(),
            checkpoint_type: None,
            input_digest: Some([3; 32]),
            started_us: 30,
            ended_us: 31,
            failure: Failure {
                origin: "user_code".into(),
                message: "boom".into(),
                exception_type: None,
                traceback: None,
            },
        })
        .await
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        // the failed step is selectable; the digest-less call is not taken over
        let plan = replay::plan(&store, r.exec_id(), "c", &[]).await.unwrap();
        assert_eq!(plan.frontier, "c");
        assert_eq!(plan.reuse, ["a", "llm_1"]);
        // a failed call can be given an output; a flow-body llm() call cannot
        let keys = vec!["checkpoint.c".to_string()];
        let plan = replay::plan(&store, r.exec_id(), "c", &keys).await.unwrap();
        assert_eq!(plan.overrides, [(keys[0].clone(), "c".to_string())]);
        let bad = vec!["checkpoint.llm_1".to_string()];
        let err = replay::plan(&store, r.exec_id(), "c", &bad)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("llm()"), "{err}");
        // and the override of the failed call is seeded as that call
        let seeded = Runner::start(store.clone(), start_info(), 30_000)
            .await
            .unwrap();
        let over = RawValue {
            serializer: "str".into(),
            bytes: Bytes::from_static(b"given"),
        };
        seeded
            .seed_from(r.exec_id(), &["a".to_string()], vec![("c".into(), over)])
            .await
            .unwrap();
        seeded.new_pass();
        let c = seeded.begin_call(&CallRequest {
            call_id: "c".into(),
            name: "c".into(),
            digest: Some([3; 32]),
            ordered: true,
            explicit: false,
            policy: Policy::Rerun,
            code: None,
            cache: None,
        });
        assert_eq!(&c.value.unwrap().bytes[..], b"given");
    });
}
