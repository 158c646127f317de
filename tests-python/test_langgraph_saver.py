"""`KitaruSaver` against LangGraph's published conformance suite
(`langgraph-checkpoint-conformance`): every base and extended capability, on a local store
and on S3 (the project's SeaweedFS)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

pytest.importorskip("langgraph.checkpoint.conformance")

from kitaru.adapters.langgraph import KitaruSaver
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES


@pytest.mark.both_stores
def test_conformance_suite_passes_every_capability() -> None:
    @checkpointer_test(name="KitaruSaver")
    async def kitaru_saver() -> AsyncIterator[KitaruSaver]:
        yield KitaruSaver()

    report = asyncio.run(validate(kitaru_saver))
    failures = {
        cap: result.failures for cap, result in report.results.items() if result.passed is not True
    }
    assert not failures, failures
    # every capability, base and extended, detected and run
    assert set(report.results) == {c.value for c in ALL_CAPABILITIES}
    assert all(r.detected and r.tests_passed > 0 for r in report.results.values())
    assert report.conformance_level() == "FULL"


def test_an_unchanged_channel_is_found_when_the_parent_holds_another_version() -> None:
    """A put naming a channel version that this saver has not seen (another process wrote
    it) and that its parent holds at another version finds it in an older checkpoint."""
    from langgraph.checkpoint.base import empty_checkpoint

    writer = KitaruSaver()

    def put(saver: KitaruSaver, parent: str | None, values: dict, versions: dict, new: dict) -> str:
        cp = empty_checkpoint()
        cp["channel_values"], cp["channel_versions"] = values, versions
        conf: dict = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        if parent:
            conf["configurable"]["checkpoint_id"] = parent
        return str(saver.put(conf, cp, {}, new)["configurable"]["checkpoint_id"])

    first = put(writer, None, {"a": "a1", "b": "b1"}, {"a": 1, "b": 1}, {"a": 1, "b": 1})
    second = put(writer, first, {"a": "a1", "b": "b2"}, {"a": 1, "b": 2}, {"b": 2})
    # a fresh saver (nothing cached) forks from `second` but names b at version 1
    third = put(KitaruSaver(), second, {"a": "a1", "b": "b1"}, {"a": 1, "b": 1}, {})
    got = KitaruSaver().get_tuple(
        {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": third}}
    )
    assert got is not None
    assert got.checkpoint["channel_values"] == {"a": "a1", "b": "b1"}
