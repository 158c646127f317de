"""Runs that heal themselves: `kitaru worker` and `KitaruClient().executions.recover()`
with real processes killed by SIGKILL, on the local store and on S3 (SeaweedFS)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_json, ledger, run_cli, wait_for_line, write_script
from kitaru import flow

AGENT = """
import os, sys, time
import kitaru
from kitaru import checkpoint, flow

LEDGER = os.environ["LEDGER"]

def mark(event):
    with open(LEDGER, "a") as f:
        f.write(event + "\\n")

@checkpoint
def step(i: int) -> int:
    mark(f"start {i}")
    if os.environ.get("HANG") == f"in {i}":
        mark(f"hang in {i}")
        time.sleep(120)
    if os.environ.get("DIE") == f"in {i}":
        mark(f"die in {i}")
        os.kill(os.getpid(), 9)
    mark(f"end {i}")
    return i * i

@flow
def pipeline(n: int) -> list:
    return [step(i) for i in range(n)]

@flow
def approval(n: int) -> str:
    done = step(n)
    ok = kitaru.wait(schema=bool, name="ship", question="Ship it?")
    return f"{done} shipped={ok}"

if __name__ == "__main__":
    fn = pipeline if sys.argv[1] == "pipeline" else approval
    fn.run(int(sys.argv[2]))
"""

TTL = 4.0  # seconds: the lease TTL of these tests


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "LEDGER": str(tmp_path / "ledger.txt"),
            "KITARU_LEASE_TTL": str(TTL), "KITARU_WAIT_TIMEOUT": "0", "KITARU_CACHE": "0", **extra}  # fmt: skip


def start_and_kill(tmp_path: Path, n: int = 4, hang: str = "in 2") -> tuple[str, dict[str, str]]:
    write_script(tmp_path, "agent.py", AGENT)
    env = _env(tmp_path, HANG=hang)
    proc = subprocess.Popen([sys.executable, "agent.py", "pipeline", str(n)], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for_line(tmp_path / "ledger.txt", f"hang {hang}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    env.pop("HANG")
    listing = cli_json("executions", "list", cwd=tmp_path, env=env)
    return listing["items"][0]["exec_id"], env


def worker(tmp_path: Path, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kitaru.cli", "worker", "--interval", "0.3", "-o", "json", *extra],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip


def stop(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    """Stops workers; the events they printed."""
    events = []
    for p in procs:
        p.terminate()
        out = p.communicate(timeout=30)[0]
        events += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return events


def get(exec_id: str, cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    return cli_json("executions", "get", exec_id, cwd=cwd, env=env)["item"]


def until_status(exec_id: str, status: str, cwd: Path, env: dict[str, str], within: float) -> float:
    """Seconds until the execution has `status` (fails after `within`)."""
    t0 = time.monotonic()
    while True:
        got = get(exec_id, cwd, env)
        if got["status"] == status:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < within, f"still {got['status']} after {within}s: {got}"
        time.sleep(0.2)


def claims(item: dict[str, Any]) -> list[str]:
    return [e["event"] for e in item["events"] if e["event"] in ("retried", "resumed")]


@pytest.mark.both_stores
def test_a_killed_run_completes_with_no_command_and_no_finished_step_again(tmp_path: Path) -> None:
    exec_id, env = start_and_kill(tmp_path)
    killed = time.monotonic()
    w = worker(tmp_path, env)
    try:
        until_status(exec_id, "completed", tmp_path, env, within=2 * TTL + 20)
        took = time.monotonic() - killed
        time.sleep(1.5)  # the worker's next poll settles the run it started
    finally:
        events = stop([w])
    lines = ledger(tmp_path / "ledger.txt")
    assert lines.count("start 0") == lines.count("start 1") == 1  # finished: not run again
    assert lines.count("start 2") == 2 and lines.count("end 2") == 1 and lines.count("end 3") == 1
    item = get(exec_id, tmp_path, env)
    assert claims(item) == ["retried"]
    assert [e["event"] for e in events] == ["retry", "finished"], events
    assert events[1]["status"] == "completed"
    proc = run_cli("executions", "get", exec_id, "-o", "json", cwd=tmp_path, env=env, check=True)
    assert json.loads(proc.stdout)["item"]["status"] == "completed"
    print(f"completed {took:.1f}s after the kill (lease TTL {TTL}s)")


@pytest.mark.both_stores
def test_three_racing_workers_take_it_exactly_once(tmp_path: Path) -> None:
    exec_id, env = start_and_kill(tmp_path)
    workers = [worker(tmp_path, env) for _ in range(3)]
    try:
        until_status(exec_id, "completed", tmp_path, env, within=60)
        time.sleep(1.5)  # let every worker settle what it started
    finally:
        events = stop(workers)
    lines = ledger(tmp_path / "ledger.txt")
    assert lines.count("start 2") == 2 and lines.count("start 3") == 1
    assert claims(get(exec_id, tmp_path, env)) == ["retried"]
    finished = [e for e in events if e["event"] == "finished"]
    assert len(finished) == 1 and finished[0]["status"] == "completed", events
    # the others either saw it claimed already or never started it
    assert all(e["event"] in ("retry", "finished", "taken") for e in events), events


def test_an_answered_wait_completes_without_resume(tmp_path: Path) -> None:
    write_script(tmp_path, "agent.py", AGENT)
    env = _env(tmp_path)
    subprocess.run([sys.executable, "agent.py", "approval", "3"], cwd=tmp_path, env=env,
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    exec_id = cli_json("executions", "list", cwd=tmp_path, env=env)["items"][0]["exec_id"]
    w = worker(tmp_path, env)
    try:
        time.sleep(1.0)
        assert get(exec_id, tmp_path, env)["status"] == "waiting"  # nobody answered: it waits
        run_cli("executions", "input", exec_id, "--value", "true", cwd=tmp_path, env=env,
                check=True)  # fmt: skip
        until_status(exec_id, "completed", tmp_path, env, within=60)
        time.sleep(1.5)
    finally:
        events = stop([w])
    assert claims(get(exec_id, tmp_path, env)) == ["resumed"]
    assert ledger(tmp_path / "ledger.txt").count("start 3") == 1
    result = run_cli("executions", "get", exec_id, "-o", "json", cwd=tmp_path, env=env).stdout
    assert "waiting" not in json.loads(result)["item"]["status"]
    assert [e["event"] for e in events] == ["resume", "finished"], events


def test_a_run_that_dies_every_time_is_given_up_after_the_attempt_limit(tmp_path: Path) -> None:
    write_script(tmp_path, "agent.py", AGENT)
    env = _env(tmp_path, DIE="in 1")
    proc = subprocess.run([sys.executable, "agent.py", "pipeline", "3"], cwd=tmp_path, env=env,
                          capture_output=True, timeout=120)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL
    exec_id = cli_json("executions", "list", cwd=tmp_path, env=env)["items"][0]["exec_id"]
    w = worker(tmp_path, env, "--max-attempts", "3", "--backoff", "0.5")
    try:
        deadline = time.monotonic() + 60
        while claims(get(exec_id, tmp_path, env)) != ["retried", "retried"]:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(2.0)  # the worker's next polls see the limit
    finally:
        events = stop([w])
    item = get(exec_id, tmp_path, env)
    assert claims(item) == ["retried", "retried"] and item["status"] == "failed"
    lines = ledger(tmp_path / "ledger.txt")
    assert lines.count("start 0") == 1 and lines.count("die in 1") == 3
    gave_up = [e for e in events if e["event"] == "skip"]
    assert gave_up and "gave up" in gave_up[-1]["message"] and "limit 3" in gave_up[-1]["message"]


def test_recover_in_process_and_a_flow_that_cannot_be_loaded(tmp_path: Path) -> None:
    exec_id, env = start_and_kill(tmp_path, n=3)
    code = (
        "import json, kitaru\n"
        "api = kitaru.KitaruClient().executions\n"
        "plan = api.recover(dry_run=True)\n"
        "done = api.recover()\n"
        "print(json.dumps([[r.exec_id, r.action, r.reason, r.outcome] for r in plan + done]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    (a, planned, reason, none), (b, action, _, outcome) = json.loads(out.stdout.splitlines()[-1])
    assert (planned, none, action, outcome) == ("retry", None, "retry", "completed")
    assert a == b == exec_id
    assert "runner died" in reason
    assert ledger(tmp_path / "ledger.txt").count("start 0") == 1

    # a second execution, killed; then its script is gone: the worker says why, once
    (tmp_path / "ledger.txt").unlink()
    second, env = start_and_kill(tmp_path, n=3)
    (tmp_path / "agent.py").unlink()
    proc = subprocess.run([sys.executable, "-m", "kitaru.cli", "worker", "--once", "-o", "json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 1
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events] == ["retry", "not_run"]
    assert events[1]["exec_id"] == second and "no longer exists" in events[1]["message"]
    assert get(second, tmp_path, env)["status"] == "failed"


def test_a_worker_loads_no_code_from_outside_its_directory(tmp_path: Path) -> None:
    # An execution recorded by a script elsewhere (or a store writer naming any path): a
    # worker started in the project refuses to load it; nothing of the script runs.
    outside, project = tmp_path / "outside", tmp_path / "project"
    outside.mkdir()
    project.mkdir()
    exec_id, env = start_and_kill(outside, n=3)
    ran = tmp_path / "imported"
    script = outside / "agent.py"
    script.write_text(f"open({str(ran)!r}, 'w').close()\n" + script.read_text())
    proc = subprocess.run([sys.executable, "-m", "kitaru.cli", "worker", "--once", "-o", "json"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 1
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events] == ["retry", "not_run"], events
    assert "outside the worker's directory" in events[1]["message"]
    assert not ran.exists()
    # the same refusal in process, from KitaruClient().executions.recover()
    code = "import kitaru; print([r.outcome for r in kitaru.KitaruClient().executions.recover()])"
    out = subprocess.run([sys.executable, "-c", code], cwd=project, env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "outside the worker" in out.stdout and not ran.exists(), out.stdout + out.stderr
    # a person may still retry it by hand, from anywhere
    run_cli("executions", "retry", exec_id, cwd=project, env=env, check=True)
    assert ran.exists() and get(exec_id, project, env)["status"] == "completed"


def _summary(events: list[str], status: str = "failed", origin: str = "runner_died") -> Any:
    from datetime import datetime, timedelta, timezone
    from types import SimpleNamespace

    from kitaru.errors import FailureOrigin

    t0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
    return SimpleNamespace(
        exec_id="e1", flow_name="agent", status=SimpleNamespace(value=status),
        failure=SimpleNamespace(origin=FailureOrigin(origin)), pending_waits=[], waits=[],
        events=[SimpleNamespace(event=ev, at=t0 + timedelta(seconds=i))
                for i, ev in enumerate(events)],
    )  # fmt: skip


def test_the_plan_counts_runs_that_died_in_a_row_not_resumes() -> None:
    from datetime import datetime, timezone

    from kitaru._recovery import plan

    late = datetime(2026, 12, 2, tzinfo=timezone.utc)
    # waited and was resumed four times, then its runner died once: retried, not given up
    waited = ["started", "suspended"] + ["resumed", "suspended"] * 3 + ["resumed"]
    [r] = plan([_summary(waited)], max_attempts=3, now=late)
    assert (r.action, r.runs) == ("retry", 5)
    # three runs in a row died: given up, with how to go on by hand
    [r] = plan([_summary(["started", "retried", "retried"])], max_attempts=3, now=late)
    assert r.action == "skip" and "last 3 runs" in r.reason and "executions retry e1" in r.reason
    # a run that ended in between resets the count
    [r] = plan([_summary(["started", "retried", "failed", "retried", "retried"])],
               max_attempts=3, now=late)  # fmt: skip
    assert r.action == "retry"
    # the second retry waits backoff_s after the last claim, the third twice that
    soon = _summary(["started", "retried"])
    claimed = soon.events[-1].at
    [r] = plan([soon], backoff_s=10, now=claimed.replace(second=claimed.second + 5))
    assert r.action == "skip" and r.reason.startswith("backing off")
    [r] = plan([soon], backoff_s=10, now=claimed.replace(second=claimed.second + 11))
    assert r.action == "retry"
    # failures of the flow's own code and executions waiting for a person are left alone
    assert plan([_summary(["started", "failed"], origin="user_code")]) == []
    asked = _summary(["started", "suspended"], status="waiting")
    asked.pending_waits = [object()]
    assert plan([asked]) == []


@flow
def finished_quickly(x: int) -> int:
    return x


@pytest.mark.both_stores
def test_a_recovery_pass_reads_only_the_running_and_waiting(tmp_path: Path) -> None:
    # 40 finished executions and one whose runner died: the pass lists the running and
    # waiting executions' index tree once and reads the one execution there, none of the 40
    from kitaru import KitaruClient, _config

    for i in range(40):
        finished_quickly.run(i)
    exec_id, _ = start_and_kill(tmp_path, n=3)
    store = _config.get_store()
    store.reset_request_counts()
    plan = KitaruClient().executions.recover(dry_run=True)
    counts = store.request_counts()
    assert [(r.exec_id, r.action) for r in plan] == [(exec_id, "retry")]
    assert counts["list"] == 1 + 1, counts  # index/a, then the one execution
    assert counts["get"] <= 6, counts
