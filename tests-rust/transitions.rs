//! Every (state, event, lease lapsed?) combination of the execution state machine.

use kitaru::journal::types::*;
use kitaru::suspend::{replay, transition, Facts, State, TransitionError};

const HOLDER_TOKEN: u64 = 41;
const OTHER_TOKEN: u64 = 99;

fn claim(token: u64) -> LeaseClaim {
    LeaseClaim {
        holder: Holder {
            host: "h".into(),
            boot_id: "b".into(),
            pid: 1,
            pid_start: 1,
        },
        token,
        ttl_ms: 1000,
    }
}

fn failure() -> Failure {
    Failure {
        origin: "user_code".into(),
        message: "boom".into(),
        exception_type: None,
        traceback: None,
    }
}

fn value() -> Value {
    Value {
        serializer: "json".into(),
        body: Body::Inline(kitaru::journal::record::ByteBuf(b"1".to_vec())),
    }
}

fn start() -> Event {
    Event::Started {
        start: Box::new(StartInfo {
            flow_name: "f".into(),
            entry: EntryPoint {
                module: "m".into(),
                qualname: "f".into(),
                script: None,
                cwd: "/".into(),
            },
            args: value(),
            kitaru_version: "0".into(),
            options_json: "{}".into(),
        }),
        lease: claim(7),
    }
}

/// Events by name; holder-only events are made by the holder unless `_by_other`.
fn events() -> Vec<(&'static str, Event)> {
    vec![
        ("started", start()),
        (
            "completed",
            Event::Completed {
                token: HOLDER_TOKEN,
                result: value(),
            },
        ),
        (
            "completed_by_other",
            Event::Completed {
                token: OTHER_TOKEN,
                result: value(),
            },
        ),
        (
            "failed",
            Event::Failed {
                token: HOLDER_TOKEN,
                failure: failure(),
            },
        ),
        (
            "failed_by_other",
            Event::Failed {
                token: OTHER_TOKEN,
                failure: failure(),
            },
        ),
        (
            "suspended",
            Event::Suspended {
                token: HOLDER_TOKEN,
                reason: "wait".into(),
            },
        ),
        (
            "suspended_by_other",
            Event::Suspended {
                token: OTHER_TOKEN,
                reason: "wait".into(),
            },
        ),
        (
            "flow_attempt_failed",
            Event::FlowAttemptFailed {
                token: HOLDER_TOKEN,
                attempt: 1,
                failure: failure(),
            },
        ),
        ("resumed", Event::Resumed { lease: claim(5) }),
        ("retried", Event::Retried { lease: claim(5) }),
        (
            "cancelled",
            Event::Cancelled {
                reason: "user".into(),
            },
        ),
    ]
}

fn states() -> Vec<(&'static str, State)> {
    vec![
        ("new", State::New),
        (
            "running",
            State::Running {
                claim_seq: 0,
                token: HOLDER_TOKEN,
            },
        ),
        ("waiting", State::Waiting),
        ("completed", State::Completed),
        ("failed", State::Failed),
        ("cancelled", State::Cancelled),
    ]
}

#[derive(Debug, PartialEq)]
enum Want {
    To(&'static str),
    Illegal,
    LeaseLive,
    NotHolder,
}
use Want::*;

/// The table: (state, event) → (outcome with a live lease, outcome with a lapsed lease).
fn expected(state: &str, event: &str) -> (Want, Want) {
    match (state, event) {
        ("new", "started") => (To("running"), To("running")),
        ("running", "completed") => (To("completed"), To("completed")),
        ("running", "failed") => (To("failed"), To("failed")),
        ("running", "suspended") => (To("waiting"), To("waiting")),
        ("running", "flow_attempt_failed") => (To("running"), To("running")),
        ("running", "completed_by_other" | "failed_by_other" | "suspended_by_other") => {
            (NotHolder, NotHolder)
        }
        ("running", "retried" | "resumed") => (LeaseLive, To("running")),
        ("running", "cancelled") => (To("cancelled"), To("cancelled")),
        ("waiting", "resumed") => (To("running"), To("running")),
        ("waiting", "cancelled") => (To("cancelled"), To("cancelled")),
        ("failed", "retried") => (To("running"), To("running")),
        ("failed", "cancelled") => (To("cancelled"), To("cancelled")),
        _ => (Illegal, Illegal),
    }
}

fn outcome(r: Result<State, TransitionError>) -> Want {
    match r {
        Ok(s) => To(s.name()),
        Err(TransitionError::Illegal { .. }) => Illegal,
        Err(TransitionError::LeaseLive { .. }) => LeaseLive,
        Err(TransitionError::NotHolder { .. }) => NotHolder,
    }
}

#[test]
fn transition_table() {
    let mut checked = 0;
    for (sname, state) in states() {
        for (ename, event) in events() {
            let (live, lapsed) = expected(sname, ename);
            let got_live = outcome(transition(
                &state,
                3,
                &event,
                Facts {
                    lease_lapsed: false,
                },
            ));
            let got_lapsed = outcome(transition(&state, 3, &event, Facts { lease_lapsed: true }));
            assert_eq!(got_live, live, "{sname} + {ename} (lease live)");
            assert_eq!(got_lapsed, lapsed, "{sname} + {ename} (lease lapsed)");
            checked += 2;
        }
    }
    assert_eq!(checked, 6 * 11 * 2);
}

#[test]
fn new_claims_take_the_event_sequence_number_and_token() {
    let s = transition(
        &State::Failed,
        4,
        &Event::Retried { lease: claim(5) },
        Facts {
            lease_lapsed: false,
        },
    )
    .unwrap();
    assert_eq!(
        s,
        State::Running {
            claim_seq: 4,
            token: 5
        }
    );
    // after the takeover, the old holder's token no longer counts
    let old = Event::Completed {
        token: HOLDER_TOKEN,
        result: value(),
    };
    assert_eq!(
        outcome(transition(
            &s,
            5,
            &old,
            Facts {
                lease_lapsed: false
            }
        )),
        NotHolder
    );
}

#[test]
fn illegal_errors_explain_what_is_allowed() {
    let e = transition(
        &State::Completed,
        2,
        &Event::Retried { lease: claim(5) },
        Facts { lease_lapsed: true },
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("only failed executions can be retried"),
        "{e}"
    );
    let e = transition(
        &State::Failed,
        2,
        &Event::Resumed { lease: claim(5) },
        Facts { lease_lapsed: true },
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("only waiting executions can be resumed"),
        "{e}"
    );
}

#[test]
fn replay_folds_a_recorded_history() {
    let history = [
        start(),
        Event::Suspended {
            token: 7,
            reason: "wait".into(),
        },
        Event::Resumed { lease: claim(8) },
        Event::FlowAttemptFailed {
            token: 8,
            attempt: 1,
            failure: failure(),
        },
        Event::Failed {
            token: 8,
            failure: failure(),
        },
        Event::Retried { lease: claim(9) },
        Event::Completed {
            token: 9,
            result: value(),
        },
    ];
    let state = replay(history.iter().enumerate().map(|(i, e)| (i as u64, e))).unwrap();
    assert_eq!(state, State::Completed);
    // a corrupt history (completed by a non-holder) is reported with its sequence number
    let bad = [
        start(),
        Event::Completed {
            token: 1234,
            result: value(),
        },
    ];
    let (seq, _) = replay(bad.iter().enumerate().map(|(i, e)| (i as u64, e))).unwrap_err();
    assert_eq!(seq, 1);
}
