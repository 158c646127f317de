"""`kitaru worker`: recovery passes in a loop, each run in a child process.

Each poll lists the store once, plans with `kitaru._recovery.plan` (what the executions
record decides: no state of the worker's own but what it started), and starts `kitaru
executions retry|resume ID` children for what is due, up to `--concurrency` at a time. A
child that loses the claim to another worker exits at once; the winner runs the flow. A
child that cannot even start (the flow's code cannot be loaded here, say) is reported
with its last lines and not tried again for a while, so a worker that cannot help with
one execution does not spin on it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from datetime import datetime
from typing import Any

from ._common import Exit, Output, client_for, stack_arg

# An execution whose run could not start here is not tried again before this many polls.
COOL_DOWN_POLLS = 10


def add_parsers(
    sub: Any, common: argparse.ArgumentParser, common_st: list[argparse.ArgumentParser]
) -> None:
    p = sub.add_parser(
        "worker",
        help="retry executions whose runner died and resume answered waits, by itself",
        parents=common_st,
    )
    p.add_argument("--once", action="store_true", help="one pass, wait for its runs, exit")
    p.add_argument("--flows", help="only executions of these flows (comma-separated names)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between polls (5)")
    p.add_argument(
        "--max-attempts", type=int, default=3,
        help="runs in a row whose runner died before the worker gives up on it (3)",
    )  # fmt: skip
    p.add_argument(
        "--backoff", type=float, default=5.0,
        help="seconds before a second retry, doubling after (5)",
    )  # fmt: skip
    p.add_argument("--concurrency", type=int, default=2, help="runs at a time (2)")
    p.add_argument(
        "--no-resume", action="store_true", help="do not resume executions whose waits are answered"
    )


def cmd_worker(args: argparse.Namespace, out: Output) -> None:
    from .. import _recovery
    from .._jobs import Jobs, child_env
    from ..errors import KitaruError, KitaruUsageError

    if args.interval <= 0 or args.concurrency < 1 or args.max_attempts < 1 or args.backoff < 0:
        raise KitaruUsageError(
            "--interval must be > 0, --concurrency and --max-attempts >= 1, --backoff >= 0."
        )
    flows = [f.strip() for f in args.flows.split(",") if f.strip()] if args.flows else None
    api = client_for(args).executions
    # Runs that reach a new wait suspend at once: the worker resumes them when answered.
    # Runs load only code under this directory (`_entry.load_flow`): nobody chose the
    # execution, so a path or directory the store names is not trusted.
    env = {**child_env(KITARU_WAIT_TIMEOUT="0"), "KITARU_WORKER_ROOT": os.getcwd()}
    jobs = Jobs(stack_arg(args), env, os.getcwd(), "worker")
    said: set[tuple[str, str]] = set()
    cooling: dict[str, int] = {}
    started: dict[int, int] = {}  # job number -> runs the execution had before it
    failures = 0

    def say(event: str, exec_id: str, text: str, **extra: Any) -> None:
        if out.json:
            print(json.dumps({"command": "worker", "event": event, "exec_id": exec_id,
                              "message": text, **extra}), flush=True)  # fmt: skip
        else:
            print(f"{datetime.now().strftime('%H:%M:%S')} {exec_id} {text}", flush=True)

    def settle() -> None:
        nonlocal failures
        for job in [j for j in jobs.all() if j.number in started and j.returncode is not None]:
            e = api.get(job.exec_id)  # first: a failed read leaves the job to the next poll
            before = started.pop(job.number)
            # the child's own claim names it (a claim's holder is "pid N on host H")
            mine = f"pid {job.proc.pid} on host {socket.gethostname()}"
            claims = [ev for ev in e.events if ev.event in ("retried", "resumed")]
            if any(ev.holder == mine for ev in claims):
                say("finished", job.exec_id, f"{job.action} ended: {e.status.value}",
                    status=e.status.value)  # fmt: skip
            elif _recovery.runs_of(e) > before:
                say("taken", job.exec_id, "claimed first by another process; left to it")
            else:
                failures += 1
                cooling[job.exec_id] = COOL_DOWN_POLLS
                tail = job.tail(12)
                say("not_run", job.exec_id, f"{job.action} could not start here "
                    f"(exit {job.returncode}); not tried again for {COOL_DOWN_POLLS} polls:\n"
                    + tail, tail=tail)  # fmt: skip
            jobs.forget(job)

    from .._kitaru import redact_urls

    print(
        f"kitaru worker: watching {redact_urls(api.store_choice().location)} every "
        f"{args.interval:g}s (Ctrl-C stops; runs in progress go on)",
        file=sys.stderr,
        flush=True,
    )
    while True:
        try:
            settle()
            listed = api.list()
        except KitaruError as exc:  # the store is unreachable for now: try again later
            if args.once:
                raise
            say("error", "", f"this poll failed, trying again in {args.interval:g}s: {exc}")
            time.sleep(args.interval)
            continue
        busy = {j.exec_id for j in jobs.running()}
        for key in list(cooling):
            cooling[key] -= 1
            if cooling[key] <= 0:
                del cooling[key]
        for r in _recovery.plan(listed, flows=flows, max_attempts=args.max_attempts,
                                backoff_s=args.backoff, resume_answered=not args.no_resume):  # fmt: skip
            if r.exec_id in busy or r.exec_id in cooling:
                continue
            if r.action == "skip":
                if (r.exec_id, r.reason.split(":")[0]) not in said:
                    said.add((r.exec_id, r.reason.split(":")[0]))
                    say("skip", r.exec_id, r.reason)
                continue
            if len(busy) >= args.concurrency:
                break
            job = jobs.start(r.action, r.exec_id)
            started[job.number] = r.runs
            busy.add(r.exec_id)
            say(r.action, r.exec_id, f"{r.action}: {r.reason}", flow=r.flow_name)
        if args.once:
            while jobs.running():
                time.sleep(0.1)
            settle()
            if failures:
                raise Exit(1)
            return
        time.sleep(args.interval)
