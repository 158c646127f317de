"""The typed boundary: what the core hands back has exactly the keys `kitaru._views`
declares (the stub's types), and every I/O binding has an awaitable twin that gives the
same answer without blocking the event loop."""

from __future__ import annotations

import asyncio
from typing import Any

import kitaru
import pytest
from kitaru import _config, _views
from kitaru._types import CallRecord, FailureRecord


@kitaru.checkpoint
def produce(n: int) -> list[int]:
    return list(range(n))


@kitaru.checkpoint(retries=1)
def flaky(state: dict[str, int]) -> str:
    state["n"] += 1
    if state["n"] == 1:
        raise ValueError("first attempt fails")
    return "ok"


@kitaru.flow
def shaped(n: int) -> str:
    produce(n)
    kitaru.log(stage="shaped")
    flaky({"n": 0})
    kitaru.wait(name="gate", schema=bool, question="go?", timeout=0)
    return "done"


def _keys(value: dict[str, Any], shape: Any, where: str) -> None:
    assert set(value) == set(shape.__annotations__), where


def _check_execution(view: Any) -> None:
    _keys(view, _views.ExecutionView, "execution")
    _keys(view["entry"], _views.EntryPointView, "entry")
    for cp in view["checkpoints"]:
        _keys(cp, _views.CheckpointView, "checkpoint")
        _keys(cp["output"], _views.ValueView, "output")
        for a in cp["attempts"]:
            _keys(a, _views.AttemptView, "attempt")
            if a["failure"] is not None:
                _keys(a["failure"], _views.FailureView, "failure")
    for e in view["events"]:
        _keys(e, _views.EventView, "event")
    for w in view["waits"] + view["pending_waits"]:
        _keys(w, _views.WaitView, "wait")


def test_views_have_exactly_the_declared_keys() -> None:
    handle = shaped.run(3)
    assert handle.status == "waiting"
    store = _config.get_store()
    view = store.inspect(handle.exec_id)
    _check_execution(view)
    # every nested shape was exercised
    assert view["checkpoints"] and view["waits"] and view["pending_waits"] and view["events"]
    assert any(a["failure"] for cp in view["checkpoints"] for a in cp["attempts"])
    for summary in store.list():
        _keys(summary, _views.ExecutionView, "summary")
    entry, tag, data = store.start_record(handle.exec_id)
    _keys(entry, _views.EntryPointView, "start entry")
    assert tag and data
    report = store.verify()
    _keys(report, _views.VerifyReport, "verify")
    assert report["findings"] == []
    entries = store.cache_entries()
    assert entries
    for e in entries:
        _keys(e, _views.CacheEntryView, "cache entry")


INPUTS = {"n": 2, "fail": True}


@kitaru.flow(divergence="rerun")
def diverging() -> list[int]:
    out = produce(INPUTS["n"])
    if INPUTS["fail"]:
        raise RuntimeError("fails after its checkpoint")
    return out


def test_divergences_and_failures_have_the_declared_keys() -> None:
    INPUTS.update(n=2, fail=True)
    handle = diverging.run()
    store = _config.get_store()
    failed = store.inspect(handle.exec_id)
    _keys(failed["failure"], _views.FailureView, "failure")
    # The core refuses a bad claim intent or divergence policy, naming it.
    with pytest.raises(kitaru.KitaruUsageError, match="claim intent"):
        store.claim(handle.exec_id, "restart", 60_000)  # type: ignore[call-overload]
    runner = store.claim(handle.exec_id, "retry", 60_000)
    try:
        with pytest.raises(kitaru.KitaruUsageError, match="divergence policy"):
            runner.begin_call("produce", "produce", None, ordered=True, explicit=False,
                              policy="sometimes")  # fmt: skip
    finally:
        runner.fail(FailureRecord("user_code", "given up by the test", None, None))
    INPUTS.update(n=3, fail=False)
    done = kitaru.KitaruClient().executions.retry(handle.exec_id)
    assert done.status == "completed" and len(done.divergences) == 1
    view = store.inspect(handle.exec_id)
    assert [d["policy"] for d in view["divergences"]] == ["rerun"]
    for d in view["divergences"]:
        _keys(d, _views.DivergenceView, "divergence")


@pytest.mark.both_stores
def test_every_io_binding_has_an_awaitable_twin_with_the_same_answer(store_backend: str) -> None:
    # On a local store most calls are done when they return (a `Ready` awaitable); on S3
    # they continue on kitaru's runtime while the event loop runs: both paths give the
    # answer the blocking call gives.
    handle = shaped.run(2)
    store = _config.get_store()
    exec_id = handle.exec_id

    async def both() -> list[tuple[Any, Any]]:
        pairs = [
            (store.inspect(exec_id), await store.inspect(exec_id, awaitable=True)),
            (store.list(limit=5), await store.list(limit=5, awaitable=True)),
            (store.start_record(exec_id), await store.start_record(exec_id, awaitable=True)),
            (store.result(exec_id), await store.result(exec_id, awaitable=True)),
            (
                store.checkpoint_output(exec_id, "produce"),
                await store.checkpoint_output(exec_id, "produce", awaitable=True),
            ),
            (store.logs(exec_id), await store.logs(exec_id, awaitable=True)),
            (store.keys("executions"), await store.keys("executions", awaitable=True)),
            (store.usage(), await store.usage(awaitable=True)),
            (store.verify(), await store.verify(awaitable=True)),
        ]
        await store.answer(exec_id, "gate", "true", awaitable=True)
        runner = await store.claim(exec_id, "resume", 60_000, awaitable=True)
        # A segment append on a local store is done when the call returns: its awaitable
        # is `Ready` (no event-loop round trip); an S3 put is awaited on the runtime.
        extra = CallRecord(call_id="extra", name="extra", explicit_id=False,
                           checkpoint_type=None, input_digest=None, serializer="json",
                           data=b"1", started_us=1, ended_us=2, metadata_json=None)  # fmt: skip
        recorded = runner.record_checkpoint(extra, awaitable=True)
        assert (type(recorded).__name__ == "Ready") == (store_backend == "local"), recorded
        assert await recorded is None
        assert await runner.poll_answer("gate", awaitable=True) == (False, "true")
        await runner.suspend("the test hands it back", awaitable=True)
        return pairs

    for sync, awaited in asyncio.run(both()):
        assert sync == awaited
    assert kitaru.KitaruClient().executions.resume(exec_id).status == "completed"
