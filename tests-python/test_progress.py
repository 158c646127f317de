"""Progress of long commands (`kitaru.cli._progress`): the core counts the work of
`store verify` and of listing executions; a terminal gets a line rewritten in place,
a pipe gets nothing extra."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import kitaru
import pytest
from conftest import run_cli, write_script
from kitaru import checkpoint, flow
from kitaru._kitaru import Progress
from kitaru.cli import _progress


@checkpoint
def step(i: int) -> int:
    return i * 2


@flow
def small(i: int) -> int:
    return step(i)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _fill(n: int) -> None:
    for i in range(n):
        small.run(i)


def test_the_core_counts_what_verify_and_list_read() -> None:
    _fill(40)
    from kitaru import _config

    choice = _config.resolve_store(None, "test")
    store = _config.get_store(choice.location, choice.options)
    p = Progress()
    assert p.read() == ("", 0, 0, 0)
    report = store.verify(progress=p)
    assert report["executions"] == 40 and report["findings"] == []
    phase, done, total, number = p.read()
    # blobs and executions (each listed, then read), journals, cache entries, index: all ended
    assert phase == "index" and done == total and number == 7

    p = Progress()
    assert len(store.list(limit=5, progress=p)) == 5
    phase, done, total, _ = p.read()
    # a limit without filters reads about as many executions as it returns (in chunks)
    assert phase == "reading executions" and total == 5 and 5 <= done <= 32
    p = Progress()
    assert len(kitaru.KitaruClient().executions.list(status="completed", progress=p)) == 40
    # a filter read from the index: the count of executions read, with no total to reach
    assert p.read()[1:3] == (40, 0)


def test_a_terminal_sees_one_line_rewritten_and_then_cleared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_progress, "SHOW_AFTER", 0.0)
    monkeypatch.setattr(_progress, "EVERY", 0.01)
    term = Terminal()
    with _progress.progress("verifying", term) as p:
        assert p is not None
        p.read()  # the same object the core call gets
        time.sleep(0.1)
    text = term.getvalue()
    assert text.startswith("\r") and "verifying:" in text
    assert text.endswith("\r") and text.rstrip("\r").split("\r")[-1].strip() == ""
    piped = io.StringIO()
    with _progress.progress("verifying", piped) as p:
        assert p is None
    assert piped.getvalue() == ""


def test_store_verify_in_a_pipe_prints_only_its_report(tmp_path: Path) -> None:
    _fill(3)
    proc = run_cli("store", "verify", check=True)
    assert proc.stderr == "" and "Checked 3 executions" in proc.stdout


FOLLOWED = """
import time
import kitaru
from kitaru import checkpoint, flow

@checkpoint
def slow() -> str:
    print("started slow", flush=True)
    time.sleep(4)
    return "done"

@flow
def followed() -> str:
    return slow()

if __name__ == "__main__":
    followed.run()
"""


def test_logs_follow_on_a_terminal_says_what_it_waits_for(tmp_path: Path) -> None:
    write_script(tmp_path, "followed.py", FOLLOWED)
    runner = subprocess.Popen([sys.executable, "followed.py"], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            listed = run_cli("executions", "list", "-o", "json", check=True).stdout
            if '"running"' in listed:
                break
            assert time.monotonic() < deadline, listed
            time.sleep(0.1)
        exec_id = listed.split('"exec_id": "', 1)[1].split('"', 1)[0]
        master, slave = pty.openpty()
        follow = subprocess.Popen(
            [sys.executable, "-m", "kitaru.cli", "executions", "logs", exec_id, "--follow",
             "--interval", "0.2"],
            stdout=subprocess.PIPE, stderr=slave, text=True,
        )  # fmt: skip
        os.close(slave)
        seen = b""
        while follow.poll() is None or select.select([master], [], [], 0.2)[0]:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        out = follow.communicate(timeout=60)[0]
        os.close(master)
    finally:
        runner.wait(timeout=60)
    assert follow.returncode == 0
    assert "started slow" in out and "-- execution completed" in out
    assert "\r" not in out  # the status line never reaches stdout
    status = seen.decode()
    assert "… running" in status and "following for" in status
