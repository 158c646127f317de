"""Lineage: `CheckpointCall.parent_call_ids` names the calls whose outputs a call was given."""

from __future__ import annotations

import kitaru
import pytest
from kitaru import KitaruClient, checkpoint, flow

FAIL: dict[str, bool] = {}


@checkpoint
def research(topic: str) -> dict[str, str]:
    return {"notes": f"about {topic}"}


@checkpoint
def draft(notes: dict[str, str], style: str) -> str:
    return f"draft of {notes['notes']} ({style})"


@checkpoint
def fetch(url: str) -> list[str]:
    return [url]


@checkpoint
def count(n: int) -> int:
    return n + 1


@checkpoint
def combine(pages: list[list[str]], extra: dict[str, object], n: int, text: str) -> str:
    return f"{len(pages)} {sorted(extra)} {n} {text}"


@flow
def lineage(topic: str) -> str:
    notes = research(topic)
    d = draft(notes, "short")
    pages = [f.result() for f in fetch.map(["a", "b"])]
    n = count(1)
    if FAIL.get("fail"):
        raise RuntimeError("stop after the first calls")
    # a list of outputs, a dict holding one, a scalar output, a derived string
    return combine(pages, {"d": d}, n, d.upper())


def _parents(exec_id: str) -> dict[str, list[str]]:
    e = KitaruClient().executions.get(exec_id)
    return {c.name: [p.split("/", 1)[1] for p in c.parent_call_ids] for c in e.checkpoints}


@pytest.fixture(autouse=True)
def _clean() -> None:
    FAIL.clear()


def test_outputs_passed_on_are_parents() -> None:
    h = lineage.run("x", cache=False)
    assert h.wait() == "2 ['d'] 2 DRAFT OF ABOUT X (SHORT)"
    parents = _parents(h.exec_id)
    assert parents["research"] == [] and parents["fetch"] == []
    assert parents["draft"] == ["research"]
    # the pages list (each element an output) and the dict value are traced; the scalar
    # and the derived string are not
    assert parents["combine"] == ["fetch", "fetch_2", "draft"]
    e = KitaruClient().executions.get(h.exec_id)
    combine_call = next(c for c in e.checkpoints if c.name == "combine")
    assert all(p.startswith(f"{h.exec_id}/") for p in combine_call.parent_call_ids)
    assert "kitaru_parents" not in combine_call.metadata


def test_outputs_reused_by_a_retry_are_parents_too() -> None:
    FAIL["fail"] = True
    h = lineage.run("y", cache=False)
    with pytest.raises(kitaru.KitaruExecutionError):
        h.wait()
    FAIL["fail"] = False
    KitaruClient().executions.retry(h.exec_id)
    h.wait()
    assert _parents(h.exec_id)["combine"] == ["fetch", "fetch_2", "draft"]


def test_a_cached_call_names_the_parents_of_the_call_it_came_from() -> None:
    first = lineage.run("z")
    first.wait()
    second = lineage.run("z")
    second.wait()
    e = KitaruClient().executions.get(second.exec_id)
    d = next(c for c in e.checkpoints if c.name == "draft")
    assert d.cached_from == f"{first.exec_id}/draft"
    assert d.parent_call_ids == [f"{first.exec_id}/research"]
