from __future__ import annotations

import threading

import kitaru
import pytest
from kitaru import KitaruClient, checkpoint, flow

CALLS: list[str] = []
FAILS: dict[str, int] = {}


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    FAILS.clear()


@checkpoint(retries=2, type="tool_call")
def flaky(key: str, fail: int) -> str:
    CALLS.append(key)
    if FAILS.get(key, 0) < fail:
        FAILS[key] = FAILS.get(key, 0) + 1
        raise ConnectionError(f"attempt {FAILS[key]} failed")
    return key.upper()


@flow
def retrying(fail: int) -> str:
    return flaky("a", fail)


@pytest.mark.both_stores
def test_checkpoint_retries_record_every_attempt() -> None:
    handle = retrying.run(2)
    assert handle.wait() == "A"
    call = KitaruClient().executions.get(handle.exec_id).checkpoints[0]
    assert call.checkpoint_type == "tool_call"
    assert [a.status for a in call.attempts] == ["failed", "failed", "completed"]
    assert call.attempts[0].failure is not None
    assert call.attempts[0].failure.message == "attempt 1 failed"
    assert call.attempts[0].failure.exception_type == "ConnectionError"


def test_exhausted_retries_fail_the_flow_with_the_checkpoint_recorded() -> None:
    handle = retrying.run(5)
    with pytest.raises(kitaru.KitaruUserCodeError, match="attempt 3 failed"):
        handle.wait()
    call = KitaruClient().executions.get(handle.exec_id).checkpoints[0]
    assert call.status == "failed" and len(call.attempts) == 3


@checkpoint
def step(x: object) -> object:
    CALLS.append(f"step {x}")
    return x


@flow
def numbered() -> list[object]:
    return [step(1), step(2), step(3, id="custom"), step(4)]


def test_calls_are_numbered_by_name_and_explicit_ids_are_kept() -> None:
    handle = numbered.run()
    assert handle.wait() == [1, 2, 3, 4]
    names = [c.name for c in KitaruClient().executions.get(handle.exec_id).checkpoints]
    assert names == ["step", "step_2", "custom", "step_3"]


@flow
def duplicate_ids() -> None:
    step(1, id="same")
    step(2, id="same")


@flow
def bad_id() -> None:
    step(1, id="../../escape")


def test_bad_explicit_ids_are_usage_errors() -> None:
    with pytest.raises(kitaru.KitaruUserCodeError, match="used twice"):
        duplicate_ids.run().wait()
    handle = bad_id.run()
    with pytest.raises(kitaru.KitaruExecutionError, match="invalid checkpoint id"):
        handle.wait()


def test_checkpoint_outside_a_flow_is_a_context_error() -> None:
    with pytest.raises(kitaru.KitaruContextError, match="inside a @flow"):
        step(1)
    with pytest.raises(kitaru.KitaruContextError, match="inside a @flow"):
        step.submit(1)


@checkpoint
def outer() -> object:
    return step(1)


@flow
def nested() -> object:
    return outer()


def test_nested_checkpoints_are_a_context_error() -> None:
    with pytest.raises(
        kitaru.KitaruUserCodeError, match="Nested checkpoint calls are not supported"
    ):
        nested.run().wait()


@checkpoint
def slow_square(x: int) -> int:
    CALLS.append(threading.current_thread().name)
    return x * x


@flow
def fan_out(n: int) -> list[int]:
    first = slow_square.submit(10)
    rest = slow_square.map(range(n))
    return [first.result()] + [f.result() for f in rest]


@pytest.mark.both_stores
def test_submit_and_map_run_concurrently_with_stable_ids() -> None:
    handle = fan_out.run(3)
    assert handle.wait() == [100, 0, 1, 4]
    names = sorted(c.name for c in KitaruClient().executions.get(handle.exec_id).checkpoints)
    assert names == ["slow_square", "slow_square_2", "slow_square_3", "slow_square_4"]
    assert all(name.startswith("kitaru-checkpoint") for name in CALLS)


def test_bad_checkpoint_options() -> None:
    with pytest.raises(kitaru.KitaruUsageError, match="runtime"):
        checkpoint(runtime="remote")
    with pytest.raises(kitaru.KitaruUsageError, match="type"):
        checkpoint(type=3)  # type: ignore[arg-type]
    assert checkpoint(runtime="ISOLATED")(lambda: 1) is not None


class Unpicklable:
    def __reduce__(self) -> object:
        raise TypeError("sockets cannot be pickled")


@checkpoint
def returns_unpicklable() -> object:
    CALLS.append("ran")
    return Unpicklable()


@flow
def unserializable() -> object:
    return returns_unpicklable()


def test_unserializable_output_names_checkpoint_and_type_and_records_nothing() -> None:
    handle = unserializable.run()
    with pytest.raises(kitaru.KitaruExecutionError) as info:
        handle.wait()
    msg = str(info.value)
    assert "returns_unpicklable" in msg and "Unpicklable" in msg
    assert info.value.failure_origin == "runtime"
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.checkpoints == []


# --- divergence -------------------------------------------------------------------

INPUT = {"value": 1}


@checkpoint
def remember(x: int) -> int:
    CALLS.append(f"remember {x}")
    return x * 10


@flow(divergence="reuse")
def diverging_reuse() -> int:
    out = remember(INPUT["value"])
    if INPUT.get("crash"):
        raise RuntimeError("crash after the checkpoint")
    return out


@flow(divergence="rerun")
def diverging_rerun() -> int:
    out = remember(INPUT["value"])
    if INPUT.get("crash"):
        raise RuntimeError("crash after the checkpoint")
    return out


@flow(divergence="error")
def diverging_error() -> int:
    out = remember(INPUT["value"])
    if INPUT.get("crash"):
        raise RuntimeError("crash after the checkpoint")
    return out


@pytest.mark.parametrize(
    ("definition", "expected", "runs"),
    [(diverging_reuse, 10, 1), (diverging_rerun, 20, 2), (diverging_error, None, 1)],
)
@pytest.mark.both_stores
def test_divergence_policies(definition: kitaru.flow, expected: int | None, runs: int) -> None:  # type: ignore[valid-type]
    INPUT.clear()
    INPUT.update(value=1, crash=True)
    handle = definition.run()
    assert handle.status == "failed"
    INPUT.update(value=2, crash=False)
    client = KitaruClient()
    if definition.divergence == "reuse":
        # Reusing an output recorded for other inputs is the user's choice, and visible.
        with pytest.warns(kitaru.errors.KitaruDivergenceWarning, match="'reuse'") as caught:
            execution = client.executions.retry(handle.exec_id)
        # the warning points at the user's call in the flow body, not inside kitaru
        assert [w.filename for w in caught] == [__file__]
    else:
        execution = client.executions.retry(handle.exec_id)
    assert CALLS.count("remember 1") == 1
    assert len([c for c in CALLS if c.startswith("remember")]) == runs
    assert [d.call_id for d in execution.divergences] == ["remember"]
    assert execution.divergences[0].policy == definition.divergence
    if expected is None:
        with pytest.raises(kitaru.KitaruDivergenceError, match="divergence policy is 'error'"):
            handle.wait()
    else:
        assert handle.wait() == expected


@flow
def diverging_default() -> int:
    out = remember(INPUT["value"])
    if INPUT.get("crash"):
        raise RuntimeError("crash after the checkpoint")
    return out


def test_default_policy_reruns_a_call_whose_inputs_changed() -> None:
    INPUT.clear()
    INPUT.update(value=1, crash=True)
    handle = diverging_default.run()
    INPUT.update(value=2, crash=False)
    execution = KitaruClient().executions.retry(handle.exec_id)
    assert handle.wait() == 20
    assert CALLS == ["remember 1", "remember 2"]
    assert [(d.call_id, d.policy) for d in execution.divergences] == [("remember", "rerun")]


def test_same_inputs_are_not_a_divergence() -> None:
    INPUT.clear()
    INPUT.update(value=3, crash=True)
    handle = diverging_error.run()
    INPUT.update(crash=False)
    execution = KitaruClient().executions.retry(handle.exec_id)
    assert execution.divergences == [] and handle.wait() == 30
    assert CALLS == ["remember 3"]


PLAN: dict[str, list[object]] = {"inputs": [], "fail": []}


@checkpoint
def fetch_for(x: int) -> str:
    return f"out-{x}"


@flow(retries=1)
def replanned() -> str:
    out = fetch_for(PLAN["inputs"].pop(0))
    if PLAN["fail"].pop(0):
        raise RuntimeError("the pass fails after its checkpoint")
    return out


def test_a_call_recorded_again_never_answers_its_old_inputs() -> None:
    # Run 1 stores fetch_for(1) and fails (both passes). The retry's first pass calls
    # fetch_for(2): a divergence, rerun, recorded again under the same id; its second pass
    # calls fetch_for(1) again, which must get 1's output, not the 2's now recorded.
    PLAN.update(inputs=[1, 1, 2, 1], fail=[True, True, True, False])
    handle = replanned.run()
    assert handle.status == "failed"
    done = kitaru.KitaruClient().executions.retry(handle.exec_id)
    assert done.status == "completed"
    assert kitaru.KitaruClient().executions.result(handle.exec_id) == "out-1"
    assert PLAN == {"inputs": [], "fail": []}
