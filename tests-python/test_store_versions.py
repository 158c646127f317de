"""A store written by an earlier layout version still reads, and is upgraded once
(docs/store-layout.md, "Versions"). The fixtures were written by the layout-2 and layout-3
releases with tests-python/fixtures/make_store.py and are kept as they were."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from conftest import cli_json, run_cli
from kitaru import KitaruClient, checkpoint, flow

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
    assert json.loads((v2_store / "kitaru-store.json").read_text())["version"] == 4
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


@pytest.fixture
def v3_store(isolated_store: Path) -> Path:
    with tarfile.open(FIXTURES / "store-v3.tar.gz") as tar:
        tar.extractall(isolated_store, filter="data")
    marker = json.loads((isolated_store / "kitaru-store.json").read_text())
    assert marker["version"] == 3
    return isolated_store


def _history(turns: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"question {i} " * 20} for i in range(turns)]


@checkpoint
def turn(history: list[dict[str, str]], i: int) -> list[dict[str, str]]:
    return [*history, {"role": "user", "content": f"question {i} " * 20}]


@flow
def chat_now(turns: int) -> int:
    history: list[dict[str, str]] = []
    for i in range(turns):
        history = turn(history, i)
    return len(history)


def test_a_layout_3_store_reads_and_takes_compressed_records(v3_store: Path) -> None:
    client = KitaruClient()
    by_flow = {e.flow_name: e for e in client.executions.list()}
    assert sorted(by_flow) == [
        "fixture_chat",
        "fixture_died",
        "fixture_done",
        "fixture_failed",
        "fixture_waiting",
    ]
    # opened by a process that may write it: marked 4 (older releases refuse it now)
    assert json.loads((v3_store / "kitaru-store.json").read_text())["version"] == 4
    assert by_flow["fixture_died"].failure.origin.value == "runner_died"  # type: ignore[union-attr]
    done = by_flow["fixture_done"].exec_id
    outputs = {a.producing_call: a.load() for a in client.artifacts.list(done, kind="output")}
    assert outputs == {"small": {"x": 1, "double": 2}, "big": "kitaru " * 5_000}
    # the history saved every turn as deltas, written uncompressed, reads back whole
    chat = by_flow["fixture_chat"].exec_id
    assert client.executions.result(chat) == 12
    last = [a for a in client.artifacts.list(chat, kind="output") if a.producing_call == "turn_12"]
    assert last[0].load() == _history(12)
    # new writes in the same store are compressed and read back next to the old ones
    handle = chat_now.run(40)
    assert handle.wait() == 40
    dumped = cli_json("store", "dump", handle.exec_id)["items"]
    versions = {
        r["format_version"]
        for item in dumped
        for r in (item["records"] if item["kind"] == "segment" else [item])
    }
    assert versions == {1, 2}, versions  # small records raw, the long histories compressed
    new_last = [
        a for a in client.artifacts.list(handle.exec_id, kind="output")
        if a.producing_call == "turn_40"
    ]
    assert new_last[0].load() == _history(40)
    wait_id = by_flow["fixture_waiting"].exec_id
    client.executions.input(wait_id, wait="approve", value=True)
    verify = run_cli("store", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


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


@checkpoint
def note(text: str) -> str:
    return text


@flow
def notes(n: int) -> int:
    for i in range(n):
        note(f"MARKER-{i:03d} " * 60)  # a compressible record
    note("MARKER-BLOB " * 3000)  # a compressible blob (over the inline limit)
    return n


def test_a_search_of_the_store_sees_inside_compressed_records_and_blobs(
    isolated_store: Path,
) -> None:
    """Scans for secrets (`conftest.stored_files`) must see what compression hides."""
    from conftest import stored_files

    notes.run(3).wait()
    raw = b"".join(p.read_bytes() for p in isolated_store.rglob("*") if p.is_file())
    plain = b"".join(data for _, data in stored_files(isolated_store))
    for marker in (b"MARKER-001 MARKER-001", b"MARKER-BLOB MARKER-BLOB"):
        assert marker not in raw  # stored compressed...
        assert marker in plain  # ...and found once compression is undone
