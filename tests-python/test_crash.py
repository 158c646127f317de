"""Durability: real processes killed with SIGKILL, then retried from another process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_json, ledger, race_cli, run_cli, wait_for_line, write_script

# Every durability test here runs against the local store, S3 (SeaweedFS) and Azure (Azurite).
pytestmark = pytest.mark.all_stores

AGENT = """
import asyncio, json, os, sys, time
from kitaru import checkpoint, flow

LEDGER = os.environ["LEDGER"]

def mark(event):
    with open(LEDGER, "a") as f:
        f.write(event + "\\n")

def pause(where):
    if os.environ.get("HANG") == where:
        mark("hang " + where)
        time.sleep(120)
    delay = float(os.environ.get("SLOW", "0"))
    if delay:
        time.sleep(delay)

@checkpoint
def step(i: int) -> dict:
    mark(f"start {i}")
    pause(f"in {i}")
    mark(f"end {i}")
    # ~1 KB of text: its record is stored compressed (layout 4)
    return {"i": i, "square": i * i, "notes": f"step {i}: " + "observation " * 80}

@flow
def pipeline(n: int) -> list:
    out = []
    for i in range(n):
        out.append(step(i))
        pause(f"after {i}")
    return out

@checkpoint
async def astep(i: int) -> int:
    mark(f"start {i}")
    pause(f"in {i}")
    mark(f"end {i}")
    return i * 3

@flow
async def apipeline(n: int) -> list:
    out = []
    for i in range(n):
        out.append(await astep(i))
        pause(f"after {i}")
    return out

if __name__ == "__main__":
    flow_obj = apipeline if sys.argv[1] == "async" else pipeline
    handle = flow_obj.run(int(sys.argv[2]))
    print(json.dumps({"exec_id": handle.exec_id, "status": str(handle.status)}))
"""


def start_and_kill(
    tmp_path: Path, kind: str, hang: str, n: int = 5
) -> tuple[str, Path, dict[str, str]]:
    script = write_script(tmp_path, "agent.py", AGENT)
    ledger_path = tmp_path / "ledger.txt"
    env = {**os.environ, "LEDGER": str(ledger_path), "HANG": hang}
    proc = subprocess.Popen(
        [sys.executable, str(script), kind, str(n)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_line(ledger_path, f"hang {hang}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    env.pop("HANG")
    listing = cli_json("executions", "list", cwd=tmp_path)
    assert listing["count"] == 1
    return listing["items"][0]["exec_id"], ledger_path, env


def result_in_new_process(exec_id: str, cwd: Path, env: dict[str, str]) -> object:
    code = f"import kitaru, json; print(json.dumps(kitaru.KitaruClient().executions.result({exec_id!r})))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def expected(kind: str, n: int) -> list:
    return (
        [i * 3 for i in range(n)]
        if kind == "async"
        else [
            {"i": i, "square": i * i, "notes": f"step {i}: " + "observation " * 80}
            for i in range(n)
        ]
    )


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("where", ["after 2", "in 3"])
def test_sigkill_then_retry_from_another_process(tmp_path: Path, kind: str, where: str) -> None:
    exec_id, ledger_path, env = start_and_kill(tmp_path, kind, where)
    # The dead runner is visible as failed (origin runner_died) at once.
    got = cli_json("executions", "get", exec_id, cwd=tmp_path)["item"]
    assert got["status"] == "failed"
    assert got["failure"]["origin"] == "runner_died"
    assert f"kitaru executions retry {exec_id}" in got["failure"]["message"]

    before = ledger(ledger_path)
    retried = run_cli("executions", "retry", exec_id, cwd=tmp_path, env=env)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    after = ledger(ledger_path)[len(before) :]

    finished_before = [i for i in range(5) if f"end {i}" in before]
    assert finished_before == [0, 1, 2]
    if where == "in 3":
        assert "start 3" in before  # killed inside the body of step 3
    # no finished checkpoint body ran again; the rest ran exactly once more
    for i in finished_before:
        assert f"start {i}" not in after, after
    for i in range(3, 5):
        assert after.count(f"start {i}") == 1 and after.count(f"end {i}") == 1, after
    everything = ledger(ledger_path)
    for i in range(5):
        assert everything.count(f"end {i}") == 1

    # Re-entry imported the script without running its `if __name__ == "__main__":` block.
    assert cli_json("executions", "list", cwd=tmp_path)["count"] == 1

    # Same result as an uninterrupted run.
    item = cli_json("executions", "get", exec_id, cwd=tmp_path)["item"]
    assert item["status"] == "completed"
    assert result_in_new_process(exec_id, tmp_path, env) == expected(kind, 5)
    if kind == "sync":  # the outputs read back above were stored compressed
        dumped = cli_json("store", "dump", exec_id, cwd=tmp_path)["items"]
        versions = {
            r["format_version"]
            for item in dumped
            for r in (item["records"] if item["kind"] in ("segment", "pack") else [item])
            if "format_version" in r
        }
        assert 2 in versions, versions
        # object stores packed the journal when the retry ended; a dump shows the pack
        packs = [i for i in dumped if i["kind"] == "pack"]
        local = "://" not in os.environ["KITARU_STORE"]
        assert (not packs) if local else any(r["kind"] == "checkpoint" for r in packs[0]["records"])
    runs = {c["name"]: c["attempts"][-1]["run"] for c in item["checkpoints"]}
    base = "step" if kind == "sync" else "astep"
    assert [
        runs[base],
        runs[f"{base}_2"],
        runs[f"{base}_3"],
        runs[f"{base}_4"],
        runs[f"{base}_5"],
    ] == [1, 1, 1, 2, 2]


def test_uninterrupted_run_matches(tmp_path: Path) -> None:
    script = write_script(tmp_path, "agent.py", AGENT)
    env = {**os.environ, "LEDGER": str(tmp_path / "l.txt")}
    out = subprocess.run(
        [sys.executable, str(script), "sync", "5"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    exec_id = json.loads(out.stdout)["exec_id"]
    assert result_in_new_process(exec_id, tmp_path, env) == expected("sync", 5)


def test_eight_racing_retries_run_the_execution_once(tmp_path: Path) -> None:
    exec_id, ledger_path, env = start_and_kill(tmp_path, "sync", "after 1")
    env["SLOW"] = "0.3"
    outcomes = race_cli(8, "executions", "retry", exec_id, cwd=tmp_path, env=env)
    winners = [o for o in outcomes if o[0] == 0]
    losers = [o for o in outcomes if o[0] != 0]
    assert len(winners) == 1, outcomes
    for code, _out, err in losers:
        assert code == 1
        # refused either while the winner ran (naming it) or after it finished
        assert ("already being run by pid" in err) or (
            "only failed executions can be retried" in err
        ), err
    everything = ledger(ledger_path)
    for i in range(5):
        assert everything.count(f"end {i}") == 1, everything


def test_retry_of_a_running_execution_is_refused_naming_the_holder(tmp_path: Path) -> None:
    script = write_script(tmp_path, "agent.py", AGENT)
    ledger_path = tmp_path / "ledger.txt"
    env = {**os.environ, "LEDGER": str(ledger_path), "HANG": "in 1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), "sync", "3"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_line(ledger_path, "hang in 1")
        exec_id = cli_json("executions", "list", cwd=tmp_path)["items"][0]["exec_id"]
        item = cli_json("executions", "get", exec_id, cwd=tmp_path)["item"]
        assert item["status"] == "running"
        env.pop("HANG")
        refused = run_cli("executions", "retry", exec_id, "-o", "json", cwd=tmp_path, env=env)
        assert refused.returncode == 1
        error = json.loads(refused.stderr)["error"]
        assert f"pid {proc.pid}" in error["message"] and error["type"] == "KitaruLeaseError"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
