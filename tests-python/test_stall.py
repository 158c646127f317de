"""A runner that stalls (SIGSTOP) past its lease while another process takes over, and a
cancel: the old runner adds nothing to the execution and stops at its next boundary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli_json, run_cli, write_script

SLOW = """
import os, sys, time
import kitaru
from kitaru import checkpoint, flow

def mark(event):
    with open(os.environ["LEDGER"], "a") as f:
        f.write(f"{time.time_ns() // 1000} {os.getpid()} {event}\\n")

@checkpoint
def step(i: int) -> int:
    mark(f"start {i}")
    time.sleep(float(os.environ.get("STEP_SECONDS", "0.2")))
    mark(f"end {i}")
    return i * i

@flow
def slow(n: int) -> list:
    return [step(i) for i in range(n)]

if __name__ == "__main__":
    if sys.argv[1] == "run":
        slow.run(int(sys.argv[2]))
    else:
        kitaru.KitaruClient().executions.retry(sys.argv[2])
"""


def _entries(path: Path) -> list[tuple[int, int, str]]:
    out = []
    for line in path.read_text().splitlines():
        ts, pid, event = line.split(" ", 2)
        out.append((int(ts), int(pid), event))
    return out


def _exec_id() -> str:
    items = cli_json("executions", "list")["items"]
    assert len(items) == 1, items
    return str(items[0]["exec_id"])


@pytest.mark.both_stores
def test_a_stalled_runner_adds_nothing_after_a_takeover(tmp_path: Path, store_backend: str) -> None:
    script = write_script(tmp_path, "slow.py", SLOW)
    ledger = tmp_path / "ledger.txt"
    env = {**os.environ, "LEDGER": str(ledger), "KITARU_LEASE_TTL": "1.5", "STEP_SECONDS": "0.3"}
    old = subprocess.Popen([sys.executable, str(script), "run", "12"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for_line_containing(ledger, "start 2", old.pid)
        old.send_signal(signal.SIGSTOP)
        exec_id = _exec_id()
        time.sleep(2.5)  # the lease lapses while the runner is stopped
        new = subprocess.Popen([sys.executable, str(script), "retry", exec_id], cwd=tmp_path,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        wait_for_line_containing(ledger, "start 3", new.pid)
        takeover_us = time.time_ns() // 1000
        old.send_signal(signal.SIGCONT)
        _, err = old.communicate(timeout=60)
        assert old.returncode != 0
        assert "taken over" in err, err
        _, new_err = new.communicate(timeout=120)
        assert new.returncode == 0, new_err
    finally:
        for p in (old,):
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
    # The old runner finished the body it was in, then stopped: no body of it started
    # after the takeover.
    late = [
        e
        for e in _entries(ledger)
        if e[1] == old.pid and e[2].startswith("start") and e[0] > takeover_us
    ]
    assert late == [], late
    assert cli_json("executions", "get", exec_id)["item"]["status"] == "completed"
    from kitaru._config import get_store

    _tag, data = get_store().result(exec_id)  # type: ignore[misc]
    assert json.loads(data) == [i * i for i in range(12)]
    report = cli_json("store", "verify")["item"]
    assert report["findings"] == [], report


def wait_for_line_containing(path: Path, event: str, pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and any(p == pid and e == event for _, p, e in _entries(path)):
            return
        time.sleep(0.01)
    raise AssertionError(f"{event!r} of pid {pid} never appeared in {path}")


@pytest.mark.both_stores
def test_cancel_stops_the_runner_before_its_next_checkpoint(
    tmp_path: Path, store_backend: str
) -> None:
    script = write_script(tmp_path, "slow.py", SLOW)
    ledger = tmp_path / "ledger.txt"
    ttl = 3.0
    env = {
        **os.environ,
        "LEDGER": str(ledger),
        "KITARU_LEASE_TTL": str(ttl),
        "STEP_SECONDS": "0.05",
    }
    proc = subprocess.Popen([sys.executable, str(script), "run", "200"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for_line_containing(ledger, "start 3", proc.pid)
        exec_id = _exec_id()
        run_cli("executions", "cancel", exec_id, env=env, check=True)
        cancelled_us = time.time_ns() // 1000
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    starts = [ts for ts, _, e in _entries(ledger) if e.startswith("start")]
    after = [ts for ts in starts if ts > cancelled_us]
    if store_backend == "local":
        # Checked at every boundary: no body starts once the cancel is written.
        assert after == [], f"{len(after)} bodies started after the cancel"
    else:
        # Object stores: the heartbeat (every ttl / 3) carries it; allow one more period.
        # (generous on a loaded machine: the promise is one period, ttl / 3)
        bound_us = int(ttl * 1e6)
        assert all(ts <= cancelled_us + bound_us for ts in after), after
    assert cli_json("executions", "get", exec_id)["item"]["status"] == "cancelled"
    assert len(starts) < 200
