"""A store written by an earlier layout version still reads, and is upgraded once
(docs/store-layout.md, "Versions"). The fixture was written by the layout-2 release with
tests-python/fixtures/make_store.py and is kept as it was."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from conftest import cli_json, run_cli
from kitaru import KitaruClient, flow

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def v2_store(isolated_store: Path) -> Path:
    with tarfile.open(FIXTURES / "store-v2.tar.gz") as tar:
        tar.extractall(isolated_store, filter="data")
    marker = json.loads((isolated_store / "kitaru-store.json").read_text())
    assert marker["version"] == 2
    assert not (isolated_store / "index").exists()
    return isolated_store


def test_a_layout_2_store_reads_and_is_indexed_once(v2_store: Path) -> None:
    client = KitaruClient()
    listed = client.executions.list()
    by_flow = {e.flow_name: e for e in listed}
    assert [e.flow_name for e in listed] == [
        "fixture_died",
        "fixture_waiting",
        "fixture_failed",
        "fixture_done",
    ]
    assert by_flow["fixture_done"].status.value == "completed"
    assert by_flow["fixture_failed"].status.value == "failed"
    assert by_flow["fixture_waiting"].status.value == "waiting"
    died = by_flow["fixture_died"]
    assert died.status.value == "failed"
    assert died.failure is not None and died.failure.origin.value == "runner_died"
    # the values it stored read back, inline and blob-sized
    done = by_flow["fixture_done"].exec_id
    assert client.executions.result(done) == 2
    outputs = {a.producing_call: a.load() for a in client.artifacts.list(done, kind="output")}
    assert outputs["small"] == {"x": 1, "double": 2}
    assert outputs["big"] == "kitaru " * 5_000
    # the first listing indexed it and raised its marker: older releases now refuse it
    assert json.loads((v2_store / "kitaru-store.json").read_text())["version"] == 3
    assert (v2_store / "index" / "t").is_dir()
    # filters are answered from the index and agree with the summaries
    waiting = cli_json("executions", "list", "--status", "waiting")
    assert [e["flow_name"] for e in waiting["items"]] == ["fixture_waiting"]
    failed = cli_json("executions", "list", "--status", "failed")
    assert [e["flow_name"] for e in failed["items"]] == ["fixture_died", "fixture_failed"]
    one = cli_json("executions", "list", "--flow", "fixture_done")
    assert [e["exec_id"] for e in one["items"]] == [done]
    # it takes new writes: an answer, and a reindex finds nothing missing
    wait_id = by_flow["fixture_waiting"].exec_id
    client.executions.input(wait_id, wait="approve", value=True)
    assert client.executions.get(wait_id).pending_waits == []
    verify = run_cli("store", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    again = cli_json("store", "reindex")
    assert again["item"] == {"executions": 4, "missing": 0}


@flow
def indexed(x: int) -> int:
    return x


def test_a_missing_index_entry_is_reported_and_repaired(isolated_store: Path) -> None:
    ids = [indexed.run(i).exec_id for i in range(3)]
    for h in (isolated_store / "index" / "t").rglob("*"):
        if h.is_file():
            h.unlink()
            break
    report = run_cli("store", "verify")
    assert report.returncode == 1
    assert "missing from the execution index" in report.stdout
    assert "kitaru store reindex" in report.stdout
    assert len(KitaruClient().executions.list()) == 2
    fixed = cli_json("store", "reindex")
    assert fixed["item"] == {"executions": 3, "missing": 1}
    assert [e.exec_id for e in KitaruClient().executions.list()] == ids[::-1]
    assert run_cli("store", "verify").returncode == 0
