"""Checkpoints called from threads and concurrent tasks: a stored output goes to the call
with the same inputs whatever order the threads run in (issue: Tokyo got Lima's result)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import kitaru
import pytest
from kitaru import KitaruClient, checkpoint, flow

CALLS: list[str] = []
PLAN: dict[str, object] = {}


@pytest.fixture(autouse=True)
def _clean() -> None:
    CALLS.clear()
    PLAN.clear()


@checkpoint(type="tool_call")
def lookup(city: str) -> str:
    CALLS.append(city)
    return f"weather in {city}"


def _in_threads(order: list[str]) -> dict[str, str]:
    """Calls `lookup` once per city, each from its own thread (as agent frameworks run sync
    tools), started in `order`: each thread calls only after the previous one finished."""
    results: dict[str, str] = {}
    threads = []
    previous: threading.Event | None = None
    for city in order:
        done = threading.Event()

        def work(city: str = city, wait_for: threading.Event | None = previous,
                 done: threading.Event = done) -> None:  # fmt: skip
            if wait_for is not None:
                wait_for.wait(10)
            try:
                results[city] = lookup(city)
            finally:
                done.set()

        ctx = contextvars.copy_context()
        threads.append(threading.Thread(target=ctx.run, args=(work,)))
        previous = done
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return results


@flow
def travel(cities: list[str]) -> dict[str, str]:
    order = PLAN.get("order") or cities
    results = _in_threads(list(order))  # type: ignore[arg-type]
    if PLAN.get("crash"):
        raise RuntimeError("pod evicted")
    return results


@pytest.mark.both_stores
def test_thread_order_changes_on_retry_each_city_gets_its_own_result() -> None:
    PLAN.update(order=["Tokyo", "Lima"], crash=True)
    handle = travel.run(["Tokyo", "Lima"])
    assert handle.status == "failed"
    assert CALLS == ["Tokyo", "Lima"]
    # The retry's threads run the other way round: ids by start order would swap results.
    PLAN.update(order=["Lima", "Tokyo"], crash=False)
    execution = KitaruClient().executions.retry(handle.exec_id)
    assert handle.wait() == {"Tokyo": "weather in Tokyo", "Lima": "weather in Lima"}
    assert CALLS == ["Tokyo", "Lima"]  # nothing ran twice
    assert execution.divergences == []


def test_a_missing_result_runs_live_without_taking_another_calls_result() -> None:
    # Only Tokyo's result was stored before the crash; on retry Lima's thread comes first and
    # takes the id Tokyo had. It must run live, and Tokyo must still get its stored result.
    PLAN.update(order=["Tokyo"], crash=True)
    handle = travel.run(["Tokyo", "Lima"])
    assert CALLS == ["Tokyo"]
    PLAN.update(order=["Lima", "Tokyo"], crash=False)
    KitaruClient().executions.retry(handle.exec_id)
    assert handle.wait() == {"Tokyo": "weather in Tokyo", "Lima": "weather in Lima"}
    assert CALLS == ["Tokyo", "Lima"]
    # And again: both are stored now, under ids that do not collide.
    PLAN.update(order=["Tokyo", "Lima"])
    execution = KitaruClient().executions.get(handle.exec_id)
    assert sorted(c.name for c in execution.checkpoints) == ["lookup", "lookup_2"]


@flow(divergence="error")
def strict_travel(cities: list[str]) -> dict[str, str]:
    order = PLAN.get("order") or cities
    results = _in_threads(list(order))  # type: ignore[arg-type]
    if PLAN.get("crash"):
        raise RuntimeError("pod evicted")
    return results


def test_threads_in_another_order_are_not_a_divergence() -> None:
    PLAN.update(order=["Tokyo"], crash=True)
    handle = strict_travel.run(["Tokyo", "Lima"])
    PLAN.update(order=["Lima", "Tokyo"], crash=False)
    execution = KitaruClient().executions.retry(handle.exec_id)
    assert handle.wait() == {"Tokyo": "weather in Tokyo", "Lima": "weather in Lima"}
    assert execution.divergences == []


@flow
def sequential(cities: list[str]) -> dict[str, str]:
    order = list(reversed(cities)) if PLAN.get("reverse") else cities
    out = {c: lookup(c) for c in order}
    if PLAN.get("crash"):
        raise RuntimeError("pod evicted")
    return out


def test_reordered_sequential_calls_get_the_result_of_their_inputs() -> None:
    PLAN.update(crash=True)
    handle = sequential.run(["Tokyo", "Lima"])
    # The code changed: the same calls now come in the other order.
    PLAN.update(crash=False, reverse=True)
    execution = KitaruClient().executions.retry(handle.exec_id)
    assert handle.wait() == {"Tokyo": "weather in Tokyo", "Lima": "weather in Lima"}
    assert CALLS == ["Tokyo", "Lima"]
    assert execution.divergences == []


THREAD_ERRORS: list[BaseException] = []


@flow
def spawns_plain_thread() -> None:
    def work() -> None:
        try:
            lookup("Oslo")
        except BaseException as exc:
            THREAD_ERRORS.append(exc)

    t = threading.Thread(target=work)
    t.start()
    t.join(10)


def test_checkpoint_from_a_thread_without_the_flow_context_says_what_to_do() -> None:
    THREAD_ERRORS.clear()
    spawns_plain_thread.run()
    errors = THREAD_ERRORS
    assert len(errors) == 1 and isinstance(errors[0], kitaru.KitaruContextError)
    msg = str(errors[0])
    assert "does not carry its context" in msg and "copy_context" in msg and ".submit()" in msg
    # Outside any flow the message stays short.
    with pytest.raises(kitaru.KitaruContextError) as info:
        lookup("Oslo")
    assert "copy_context" not in str(info.value)


# --- a failed pass ends before the next one starts ------------------------------------

STARTED: list[str] = []


@checkpoint
async def slow_step(x: int) -> int:
    STARTED.append(f"start {x}")
    await asyncio.sleep(0.3)
    STARTED.append(f"end {x}")
    return x


@checkpoint
async def fails_fast(x: int) -> int:
    if PLAN.get("fail"):
        PLAN["fail"] = False
        raise RuntimeError("transient")
    return x


@flow(retries=1)
async def gathered() -> list[int]:
    return list(await asyncio.gather(slow_step(1), fails_fast(2)))


def test_flow_retry_cancels_the_failed_pass_tasks_first() -> None:
    STARTED.clear()
    PLAN.update(fail=True)
    handle = gathered.run()
    assert handle.status == "completed", handle.status
    assert handle.wait() == [1, 2]
    # The first pass's slow step was cancelled before the retry pass started it again:
    # never two runs of the body at once.
    assert STARTED == ["start 1", "start 1", "end 1"]
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.ended_at is not None


@checkpoint
def slow_sync(x: int) -> int:
    STARTED.append(f"start {x}")
    time.sleep(0.3)
    STARTED.append(f"end {x}")
    return x


@flow(retries=1)
def submitted() -> list[int]:
    futures = [slow_sync.submit(1)]
    if PLAN.get("fail"):
        PLAN["fail"] = False
        raise RuntimeError("transient")
    return [f.result() for f in futures]


def test_flow_retry_waits_for_the_failed_pass_submitted_calls() -> None:
    STARTED.clear()
    PLAN.update(fail=True)
    handle = submitted.run()
    assert handle.wait() == [1]
    # The retry pass reused the result of the call the failed pass submitted: it ran once.
    assert STARTED == ["start 1", "end 1"]
