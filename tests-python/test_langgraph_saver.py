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
