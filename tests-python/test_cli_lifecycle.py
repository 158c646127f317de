"""CLI commands around the execution lifecycle: logs --follow, init, status, info, interactive input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_json, run_cli, write_script

CHATTY = """
import logging, os, sys, time
from kitaru import checkpoint, flow

@checkpoint
def step(i: int) -> int:
    print(f"step {i} says hi")
    time.sleep(float(os.environ.get("SLOW", "0")))
    if i == int(os.environ.get("FAIL_AT", "-1")):
        raise RuntimeError("boom")
    return i

@flow
def chatty(n: int) -> int:
    print("body start")
    return sum(step(i) for i in range(n))

if __name__ == "__main__":
    print(chatty.run(int(sys.argv[1])).exec_id)
"""


@pytest.mark.both_stores
def test_logs_follow_streams_until_the_end(tmp_path: Path) -> None:
    write_script(tmp_path, "chatty.py", CHATTY)
    env = {**os.environ, "SLOW": "0.3"}
    proc = subprocess.Popen(
        [sys.executable, "chatty.py", "4"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        import time

        deadline = time.monotonic() + 30
        while not cli_json("executions", "list", cwd=tmp_path)["items"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        exec_id = cli_json("executions", "list", cwd=tmp_path)["items"][0]["exec_id"]
        follow = run_cli(
            "executions",
            "logs",
            exec_id,
            "--follow",
            "--interval",
            "0.1",
            "-o",
            "json",
            cwd=tmp_path,
        )
    finally:
        proc.communicate(timeout=60)
    assert follow.returncode == 0, follow.stderr
    events = [json.loads(line) for line in follow.stdout.splitlines()]
    messages = [e["item"]["message"] for e in events if e["event"] == "log"]
    assert messages == ["body start"] + [f"step {i} says hi" for i in range(4)]
    assert events[-1] == {"command": "executions.logs", "event": "terminal",
                          "item": {"status": "completed", "recovery_command": None}}  # fmt: skip


@pytest.mark.both_stores
def test_logs_follow_of_a_failed_execution_exits_1_with_the_retry_hint(tmp_path: Path) -> None:
    write_script(tmp_path, "chatty.py", CHATTY)
    env = {**os.environ, "FAIL_AT": "1"}
    out = subprocess.run(
        [sys.executable, "chatty.py", "3"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    exec_id = out.stdout.strip().splitlines()[-1]
    follow = run_cli("executions", "logs", exec_id, "--follow", cwd=tmp_path)
    assert follow.returncode == 1
    assert f"retry with: kitaru executions retry {exec_id}" in follow.stdout
    assert "[step_2] step 1 says hi" in follow.stdout


def test_init_status_info(tmp_path: Path) -> None:
    item = cli_json("init", str(tmp_path))["item"]
    assert item == {"path": str(tmp_path / ".kitaru"), "repository_directory": str(tmp_path)}
    again = run_cli("init", str(tmp_path))
    assert again.returncode == 1 and "already exists" in again.stderr
    missing = run_cli("init", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "not a directory" in missing.stderr

    write_script(tmp_path, "chatty.py", CHATTY)
    subprocess.run(
        [sys.executable, "chatty.py", "2"], cwd=tmp_path, check=True, capture_output=True
    )
    status = cli_json("status")["item"]
    assert status["store"] == os.environ["KITARU_STORE"]
    assert status["executions"] == {"completed": 1}
    assert "KITARU_STORE" in status["environment"]
    assert "Executions  1 completed" in run_cli("status", check=True).stdout

    info = cli_json("info")["item"]
    assert (
        info["kitaru"] and info["store_layout_version"] == 4 and info["record_format_version"] == 2
    )


def test_input_requires_exactly_one_action(tmp_path: Path) -> None:
    proc = run_cli("executions", "input", "01a20900-0000-7000-8000-000000000000")
    assert proc.returncode == 1 and "exactly one of --value" in proc.stderr
    proc = run_cli(
        "executions", "input", "01a20900-0000-7000-8000-000000000000", "--value", "1", "--abort"
    )
    assert proc.returncode == 1 and "exactly one of --value" in proc.stderr
    proc = run_cli("executions", "input", "01a20900-0000-7000-8000-000000000000", "--interactive")
    assert proc.returncode == 1 and "needs a terminal" in proc.stderr
