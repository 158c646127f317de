from __future__ import annotations

import asyncio
import dataclasses

import kitaru
import pytest
from kitaru import KitaruClient, checkpoint, flow
from kitaru.client import ExecutionStatus
from kitaru.errors import KitaruTimeoutError

CALLS: list[str] = []


@checkpoint
def double(x: int) -> int:
    CALLS.append(f"double {x}")
    return 2 * x


@flow
def simple(x: int) -> int:
    return double(x) + double(x + 1)


@flow(retries=2)
def flaky_flow(fail_times: int) -> str:
    double(1)
    if CALLS.count("attempt") < fail_times:
        CALLS.append("attempt")
        raise RuntimeError("transient")
    return "ok"


@flow
def boom() -> None:
    double(1)
    raise ValueError("the agent broke")


@flow
def returns_none() -> None:
    double(3)


@dataclasses.dataclass
class Report:
    title: str
    scores: tuple[int, ...]


@flow
def typed_result(title: str) -> Report:
    return Report(title, (1, 2))


@checkpoint
async def adouble(x: int) -> int:
    await asyncio.sleep(0)
    CALLS.append(f"adouble {x}")
    return 2 * x


@flow
async def async_flow(n: int) -> list[int]:
    return list(await asyncio.gather(*(adouble(i) for i in range(n))))


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


@pytest.mark.both_stores
def test_run_returns_a_handle_with_status_and_result() -> None:
    handle = simple.run(5)
    assert isinstance(handle, kitaru.FlowHandle)
    assert handle.status == ExecutionStatus.COMPLETED
    assert handle.wait() == 22
    assert handle.get() == 22
    assert CALLS == ["double 5", "double 6"]
    execution = KitaruClient().executions.get(handle.exec_id)
    assert [c.name for c in execution.checkpoints] == ["double", "double_2"]
    assert execution.flow_name == "simple"
    assert execution.status == "completed"


def test_decorator_forms_keep_the_function_name() -> None:
    assert simple.__name__ == "simple" and simple.name == "simple"
    assert flaky_flow.retries == 2

    @flow()
    def inner() -> None: ...

    assert inner.name == "inner"


def test_direct_call_is_a_usage_error() -> None:
    with pytest.raises(kitaru.KitaruUsageError, match=r"simple\.run\("):
        simple(1)


@pytest.mark.parametrize("bad", [-1, "2", True, 1.5])
def test_bad_retries_are_usage_errors(bad: object) -> None:
    with pytest.raises(kitaru.KitaruUsageError, match="retries"):
        flow(retries=bad)  # type: ignore[arg-type]
    with pytest.raises(kitaru.KitaruUsageError, match="retries"):
        checkpoint(retries=bad)  # type: ignore[arg-type]
    with pytest.raises(kitaru.KitaruUsageError, match="retries"):
        simple.run(1, retries=bad)  # type: ignore[arg-type]


def test_options_are_validated() -> None:
    with pytest.raises(kitaru.KitaruUsageError, match="stack"):
        flow(stack="")
    with pytest.raises(kitaru.KitaruUsageError, match="cache"):
        flow(cache="yes")  # type: ignore[arg-type]
    with pytest.raises(kitaru.KitaruUsageError, match="image"):
        flow(image=42)
    with pytest.raises(kitaru.KitaruUsageError, match="divergence"):
        flow(divergence="ignore")
    # accepted and recorded
    handle = simple.run(1, stack="prod", cache=False, image="python:3.12")
    assert handle.wait() == 6


def test_reserved_parameter_names_are_refused() -> None:
    with pytest.raises(kitaru.KitaruUsageError, match="'retries'"):

        @flow
        def bad(retries: int) -> None: ...


def test_bad_arguments_are_refused_before_anything_is_stored() -> None:
    with pytest.raises(kitaru.KitaruUsageError, match="Bad arguments for flow 'simple'"):
        simple.run(1, 2)
    assert KitaruClient().executions.list() == []


def test_unstorable_arguments_are_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", "0")
    with pytest.raises(
        kitaru.KitaruUsageError, match="arguments of flow 'simple' cannot be stored"
    ):
        simple.run(object())


def test_flows_defined_in_functions_are_refused() -> None:
    @flow
    def local() -> int:
        return 1

    with pytest.raises(kitaru.KitaruUsageError, match="module level"):
        local.run()


@pytest.mark.both_stores
def test_flow_retries_rerun_the_body_and_reuse_checkpoints() -> None:
    handle = flaky_flow.run(2)
    assert handle.wait() == "ok"
    assert CALLS.count("double 1") == 1, CALLS
    assert CALLS.count("attempt") == 2
    events = [e for e in KitaruClient().executions.get(handle.exec_id).checkpoints]
    assert [c.name for c in events] == ["double"]


def test_flow_retries_exhausted_fail() -> None:
    handle = flaky_flow.run(5, retries=1)
    with pytest.raises(kitaru.KitaruUserCodeError, match="transient"):
        handle.wait()


def test_failure_is_a_typed_error_with_the_retry_hint() -> None:
    handle = boom.run()
    assert handle.status == "failed"
    with pytest.raises(kitaru.KitaruUserCodeError) as info:
        handle.wait()
    msg = str(info.value)
    assert "the agent broke" in msg and f"kitaru executions retry {handle.exec_id}" in msg
    assert info.value.exec_id == handle.exec_id and info.value.failure_origin == "user_code"
    with pytest.raises(kitaru.KitaruUserCodeError):
        handle.get()
    failure = KitaruClient().executions.get(handle.exec_id).failure
    assert failure is not None and failure.exception_type == "ValueError"
    assert "the agent broke" in (failure.traceback or "")


def test_none_and_typed_results_round_trip() -> None:
    assert returns_none.run().wait() is None
    assert typed_result.run("t").wait() == Report("t", (1, 2))


@pytest.mark.both_stores
def test_async_flow_with_gather_numbers_calls_in_call_order() -> None:
    handle = async_flow.run(4)
    assert handle.wait() == [0, 2, 4, 6]
    calls = KitaruClient().executions.get(handle.exec_id).checkpoints
    names = {c.name: c for c in calls}
    assert sorted(names) == ["adouble", "adouble_2", "adouble_3", "adouble_4"]
    # the digest of adouble_3 is the digest of input 2: numbering follows the call, not completion
    from kitaru import serde

    assert names["adouble_3"].input_digest == serde.digest({"x": 2}).hex()  # type: ignore[union-attr]


def test_arun_inside_a_running_loop() -> None:
    async def main() -> list[int]:
        with pytest.raises(kitaru.KitaruUsageError, match="arun"):
            async_flow.run(1)
        handle = await async_flow.arun(2)
        return handle.wait()

    assert asyncio.run(main()) == [0, 2]


def test_handle_wait_timeout_and_get_while_running() -> None:
    # A handle on an execution whose runner holds a live lease is running.
    from kitaru import _config
    from kitaru._types import StartRecord

    start = StartRecord(
        flow_name="manual",
        module="m",
        qualname="q",
        script=None,
        cwd="/",
        args_serializer="json",
        args=b"{}",
        kitaru_version="t",
        options_json="{}",
    )
    runner = _config.get_store().start(start, 60_000)
    handle = kitaru.FlowHandle(runner.exec_id)
    assert handle.status == "running"
    with pytest.raises(kitaru.KitaruStateError, match="still running"):
        handle.get()
    with pytest.raises(KitaruTimeoutError, match="still running"):
        handle.wait(timeout=0.2)
    runner.complete("json", b"7")
    assert handle.wait(timeout=5) == 7


def test_flow_log_records_execution_metadata() -> None:
    handle = logging_flow.run()
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.metadata == {"stage": "done", "cost": {"usd": 1, "tokens": 2}}
    assert execution.checkpoints[0].metadata == {"note": {"a": 1, "b": 2}}


@checkpoint
def logging_step() -> int:
    kitaru.log(note={"a": 1})
    kitaru.log(note={"b": 2})
    return 1


@flow
def logging_flow() -> int:
    kitaru.log(stage="start", cost={"usd": 1})
    kitaru.log(stage="done", cost={"tokens": 2})
    return logging_step()


def test_log_outside_a_flow_is_a_context_error() -> None:
    with pytest.raises(kitaru.KitaruContextError, match="inside a @flow"):
        kitaru.log(x=1)
