//! The core's decision per checkpoint call (`Runner::begin_call` / `settle_call`): ids in
//! call order, a stored result only for a call with the same inputs, divergence under
//! each policy, flow-level passes, damaged outputs.

use bytes::Bytes;
use kitaru::execution::{
    CallRequest, Decision, FinishedCall, Intent, Notice, Policy, RawValue, Runner,
};
use kitaru::journal::types::Failure;
use kitaru::journal::{Journal, Scope};
use kitaru::store::{layout, Store};
use kitaru::Error;

use crate::{memory_store, rt, start_info};

fn d(n: u8) -> Option<[u8; 32]> {
    Some([n; 32])
}

fn req(call_id: &str, name: &str, digest: Option<[u8; 32]>, ordered: bool) -> CallRequest {
    CallRequest {
        call_id: call_id.into(),
        name: name.into(),
        digest,
        ordered,
        explicit: false,
        policy: Policy::Rerun,
        code: None,
        cache: None,
    }
}

async fn finish(r: &Runner, d: Decision) -> Decision {
    if d.pending() {
        r.settle_call(d).await.unwrap()
    } else {
        d
    }
}

/// Allocates the next id of `name` and decides it, as a checkpoint call does.
async fn call(r: &Runner, name: &str, digest: Option<[u8; 32]>, ordered: bool) -> Decision {
    let id = r.allocate_call(name, None).unwrap();
    finish(r, r.begin_call(&req(&id, name, digest, ordered))).await
}

async fn record(r: &Runner, call_id: &str, name: &str, digest: Option<[u8; 32]>, out: &[u8]) {
    let done = FinishedCall {
        call_id: call_id.into(),
        name: name.into(),
        explicit_id: false,
        checkpoint_type: None,
        input_digest: digest,
        output: RawValue {
            serializer: "bytes".into(),
            bytes: Bytes::copy_from_slice(out),
        },
        started_us: 1,
        ended_us: 2,
        metadata_json: None,
    };
    r.record_checkpoint(done).await.unwrap();
}

fn output(d: &Decision) -> Vec<u8> {
    assert!(d.reuse, "{d:?}");
    d.value.as_ref().unwrap().bytes.to_vec()
}

/// A first run that records `fetch` for inputs 1, 2, 3 (ids fetch, fetch_2, fetch_3) and
/// dies; the second run's runner.
async fn second_run(store: std::sync::Arc<Store>, outputs: [&[u8]; 3]) -> Runner {
    let r = Runner::start(store.clone(), start_info(), 1).await.unwrap();
    r.new_pass();
    for (i, out) in outputs.iter().enumerate() {
        let c = call(&r, "fetch", d(i as u8 + 1), true).await;
        assert!(!c.reuse);
        record(&r, &c.call_id, "fetch", d(i as u8 + 1), out).await;
    }
    r.fail(Failure {
        origin: "user_code".into(),
        message: "boom".into(),
        exception_type: None,
        traceback: None,
    })
    .await
    .unwrap();
    let r2 = Runner::claim(store, r.exec_id(), Intent::Retry, 30_000)
        .await
        .unwrap();
    r2.new_pass();
    r2
}

#[test]
fn ids_follow_call_order_and_explicit_ids_are_unique() {
    rt().block_on(async {
        let r = Runner::start(memory_store("ids").await, start_info(), 30_000)
            .await
            .unwrap();
        r.new_pass();
        assert_eq!(r.allocate_call("fetch", None).unwrap(), "fetch");
        assert_eq!(
            r.allocate_call("fetch", Some("fetch_2")).unwrap(),
            "fetch_2"
        );
        // the next auto id skips the one taken explicitly
        assert_eq!(r.allocate_call("fetch", None).unwrap(), "fetch_3");
        let err = r.allocate_call("other", Some("fetch")).unwrap_err();
        assert!(matches!(err, Error::IdTaken { .. }), "{err:?}");
        assert!(err.to_string().contains("used twice"), "{err}");
        // a new pass numbers from the start again
        r.new_pass();
        assert_eq!(r.allocate_call("fetch", None).unwrap(), "fetch");
    });
}

#[test]
fn stored_outputs_go_only_to_calls_with_the_same_inputs() {
    rt().block_on(async {
        let r2 = second_run(memory_store("same").await, [b"one", b"two", b"three"]).await;
        // Calls from threads arrive in another order: each gets the output of its inputs.
        let a = call(&r2, "fetch", d(3), false).await;
        let b = call(&r2, "fetch", d(1), false).await;
        let c = call(&r2, "fetch", d(2), false).await;
        assert_eq!(
            (output(&a), a.call_id.as_str()),
            (b"three".to_vec(), "fetch_3")
        );
        assert_eq!((output(&b), b.call_id.as_str()), (b"one".to_vec(), "fetch"));
        assert_eq!(
            (output(&c), c.call_id.as_str()),
            (b"two".to_vec(), "fetch_2")
        );
        assert!(a.earlier_run && b.earlier_run && c.earlier_run);
        // new inputs from a thread: a fresh id, never a stored result
        let e = call(&r2, "fetch", d(9), false).await;
        assert!(!e.reuse && e.divergence.is_none());
        assert_eq!(e.call_id, "fetch_4");
    });
}

#[test]
fn each_stored_output_answers_one_call_per_pass() {
    rt().block_on(async {
        let r2 = second_run(memory_store("once").await, [b"x", b"x", b"x"]).await;
        let first = call(&r2, "fetch", d(1), false).await;
        assert_eq!(output(&first), b"x");
        // the same inputs again: fetch is claimed, so this call runs under a fresh id
        let again = call(&r2, "fetch", d(1), false).await;
        assert!(!again.reuse);
        assert_eq!(again.call_id, "fetch_4");
    });
}

#[test]
fn divergence_in_call_order_follows_the_policy() {
    rt().block_on(async {
        let store = memory_store("policy").await;
        let r2 = second_run(store.clone(), [b"one", b"two", b"three"]).await;
        let exec_id = r2.exec_id().to_string();
        // rerun (default): runs under its own id, the divergence is recorded
        let id = r2.allocate_call("fetch", None).unwrap();
        let dec = r2.begin_call(&req(&id, "fetch", d(7), true));
        assert!(dec.pending() && !dec.reuse);
        let dec = r2.settle_call(dec).await.unwrap();
        assert!(!dec.reuse && dec.call_id == "fetch" && dec.notice.is_none());
        // reuse: the stored output, with a notice
        let id = r2.allocate_call("fetch", None).unwrap();
        let mut q = req(&id, "fetch", d(8), true);
        q.policy = Policy::Reuse;
        let dec = finish(&r2, r2.begin_call(&q)).await;
        assert_eq!(output(&dec), b"two");
        assert_eq!(dec.notice, Some(Notice::ReusedDiverged));
        assert!(dec.notice_text(&exec_id).unwrap().contains("'reuse'"));
        // error: fails with the divergence named
        let id = r2.allocate_call("fetch", None).unwrap();
        let mut q = req(&id, "fetch", d(9), true);
        q.policy = Policy::Error;
        let err = r2.settle_call(r2.begin_call(&q)).await.unwrap_err();
        assert!(matches!(err, Error::Diverged { ref call_id, .. } if call_id == "fetch_3"));
        let j = Journal::load(&store, &exec_id, Scope::Full).await.unwrap();
        let policies: Vec<_> = j.divergences.iter().map(|v| v.policy.as_str()).collect();
        assert_eq!(policies, ["rerun", "reuse", "error"]);
    });
}

#[test]
fn a_later_pass_reuses_what_this_run_recorded() {
    rt().block_on(async {
        let r = Runner::start(memory_store("pass").await, start_info(), 30_000)
            .await
            .unwrap();
        r.new_pass();
        let c = call(&r, "fetch", d(1), true).await;
        record(&r, &c.call_id, "fetch", d(1), b"mine").await;
        r.new_pass(); // a flow-level retry
        let again = call(&r, "fetch", d(1), true).await;
        assert_eq!(output(&again), b"mine");
        assert!(
            !again.earlier_run,
            "recorded by this run, not reused from an earlier one"
        );
        // other inputs at the same position: a call id is recorded once, so a fresh one
        r.new_pass();
        let other = call(&r, "fetch", d(2), true).await;
        assert!(!other.reuse);
        assert_eq!(other.call_id, "fetch_2");
    });
}

#[test]
fn a_damaged_stored_output_makes_the_call_run_again() {
    rt().block_on(async {
        let store = memory_store("damaged").await;
        let big = vec![7u8; layout::INLINE_LIMIT + 10];
        let r2 = second_run(store.clone(), [&big, b"two", b"three"]).await;
        // Damage the blob that holds fetch's output.
        let blobs = store.list("blobs").await.unwrap();
        assert_eq!(blobs.len(), 1, "{blobs:?}");
        store
            .put_overwrite(&blobs[0], Bytes::from_static(b"garbage"))
            .await
            .unwrap();
        let dec = call(&r2, "fetch", d(1), true).await;
        assert!(!dec.reuse && dec.call_id == "fetch");
        assert!(matches!(dec.notice, Some(Notice::Damaged(_))), "{dec:?}");
    });
}

#[test]
fn a_call_recorded_again_is_not_found_by_its_old_inputs() {
    // An earlier run stored fetch(1); this run's first pass calls fetch(2) (a divergence,
    // rerun: fetch is recorded again with 2's output), fails, and its second pass calls
    // fetch(1). That call must not get 2's output through the index of the old inputs.
    rt().block_on(async {
        let r2 = second_run(memory_store("stale").await, [b"one", b"two", b"three"]).await;
        let first = call(&r2, "fetch", d(7), true).await;
        assert!(!first.reuse && first.call_id == "fetch");
        record(&r2, "fetch", "fetch", d(7), b"seven").await;
        r2.new_pass();
        let again = call(&r2, "fetch", d(1), true).await;
        assert!(
            !(again.reuse && again.value.as_ref().map(|v| &v.bytes[..]) == Some(b"seven")),
            "the output of inputs 7 was handed to a call with inputs 1: {again:?}"
        );
        assert!(!again.reuse, "{again:?}");
        // and the new inputs still find their output
        r2.new_pass();
        let seven = call(&r2, "fetch", d(7), true).await;
        assert_eq!(output(&seven), b"seven");
    });
}
