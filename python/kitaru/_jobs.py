"""Runs started on someone's behalf (the dashboard's buttons, `kitaru worker`):
`kitaru executions retry|resume|replay` in a child process.

A run executes the flow's code, so it happens in its own process, not the dashboard's or
the worker's: a flow that crashes, hangs or prints cannot take them with it, two runs of
different scripts do not share one interpreter's modules, and the run is the same one a
person gets from the CLI (the lease, its logs in the store, its exit code). The child
runs in the directory the parent was started in, with its environment, so it imports the
flow as the CLI would there. What it prints goes to a file kept for the parent's life;
the parent shows its last lines when it fails.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Job:
    number: int
    action: str  # retry, resume, replay
    exec_id: str
    args: list[str]
    started: float
    log: Path
    proc: subprocess.Popen[bytes]
    detail: str = ""
    found: str | None = field(default=None)  # a replay's new execution, once seen

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    @property
    def state(self) -> str:
        code = self.returncode
        return "running" if code is None else ("finished" if code == 0 else f"failed ({code})")

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Jobs:
    """The runs this process started, by execution."""

    def __init__(self, stack: str | None, env: dict[str, str], cwd: str, name: str = "ui") -> None:
        self._stack, self._env, self._cwd = stack, env, cwd
        self._dir = Path(tempfile.mkdtemp(prefix=f"kitaru-{name}-"))
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._jobs: list[Job] = []

    def start(self, action: str, exec_id: str, *extra: str, detail: str = "") -> Job:
        number = next(self._numbers)
        args = [sys.executable, "-m", "kitaru.cli", "executions", action, exec_id, *extra]
        if self._stack is not None:
            args += ["--stack", self._stack]
        log = self._dir / f"{number}-{action}-{exec_id}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                args, cwd=self._cwd, env=self._env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        job = Job(number, action, exec_id, args[3:], time.time(), log, proc, detail)
        with self._lock:
            self._jobs.append(job)
        return job

    def of(self, exec_id: str) -> list[Job]:
        """The runs started for `exec_id` (a retry or resume of it, a replay from it)."""
        with self._lock:
            return [j for j in self._jobs if j.exec_id == exec_id]

    def all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs)

    def forget(self, job: Job) -> None:
        """Drops a finished run (a long-lived parent keeps only what it still shows)."""
        job.proc.poll()
        with self._lock:
            self._jobs = [j for j in self._jobs if j is not job]
        job.log.unlink(missing_ok=True)

    def running(self) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs if j.returncode is None]

    def get(self, number: int) -> Job | None:
        with self._lock:
            return next((j for j in self._jobs if j.number == number), None)

    def close(self) -> None:
        """Leaves running children running (a run is the execution's, not its starter's);
        only waits for those that already ended so none is left a zombie."""
        with self._lock:
            for j in self._jobs:
                j.proc.poll()


def child_env(**defaults: str) -> dict[str, str]:
    """The environment runs get: the parent's own (with `defaults` where it sets nothing),
    unbuffered so a failure's last lines reach the log."""
    return {**defaults, **os.environ, "PYTHONUNBUFFERED": "1"}
