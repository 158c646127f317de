"""Runs that heal themselves: which executions a recovery pass takes on, and why.

An execution is taken on when its runner died (the lease lapsed with no live process:
status ``failed`` with origin ``runner_died``) — it is retried — or when it waits and
every one of its waits has an answer — it is resumed. Nothing else: an execution that
failed in its own code stays failed (its flow's ``retries=`` already ran), one that waits
for a person keeps waiting.

Retries are bounded and spaced, from what the execution itself records, so any number
of workers on any number of machines agree without talking to each other: the runs in a
row that died (every claim is an event; a run that ended records its end) against
``max_attempts``, and the time of the last claim plus ``backoff_s * 2 ** (deaths - 2)``
before the next. Which worker
runs it is decided by the claim (a create-only numbered state event): exactly one wins,
the others' claims fail and they move on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .errors import FailureOrigin

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BACKOFF_S = 5.0


@dataclass(frozen=True)
class Recovery:
    """One execution a recovery pass looked at: what it does with it, and why."""

    exec_id: str
    flow_name: str | None
    action: str
    """retry, resume, or skip (gave up, backing off, or excluded)"""
    reason: str
    runs: int
    """runs the execution has had (its first included)"""
    outcome: str | None = None
    """after `recover()` ran it here: the status it ended in, or what stopped it"""


_RUN_STARTS = ("started", "retried", "resumed")
_RUN_ENDS = ("completed", "failed", "suspended", "cancelled")


def runs_of(e: Any) -> int:
    """How many runs an execution has had (its start and every claim)."""
    return sum(1 for ev in e.events if ev.event in _RUN_STARTS)


def deaths_in_a_row(e: Any) -> int:
    """How many of the execution's last runs died (began and never recorded an end) with
    no run between them that ended: what the attempt limit counts, so an execution that
    waited and was resumed many times is not given up on for its resumes."""
    died, in_run = 0, False
    for ev in e.events:
        if ev.event in _RUN_STARTS:
            died += in_run  # the run before this one never ended
            in_run = True
        elif ev.event in _RUN_ENDS and in_run:
            died, in_run = 0, False
    return died + in_run


def _last_claim(e: Any) -> datetime | None:
    for ev in reversed(e.events):
        if ev.event in ("started", "retried", "resumed"):
            return ev.at  # type: ignore[no-any-return]
    return None


def plan(
    executions: list[Any],
    *,
    flows: list[str] | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    backoff_s: float = DEFAULT_BACKOFF_S,
    resume_answered: bool = True,
    now: datetime | None = None,
) -> list[Recovery]:
    """What to do with each of `executions` (summaries) that needs recovering; the rest
    are left out. Pure: no I/O."""
    now = now or datetime.now(timezone.utc)
    out: list[Recovery] = []
    for e in executions:
        status = e.status.value
        died = (
            status == "failed"
            and e.failure is not None
            and (e.failure.origin == FailureOrigin.RUNNER_DIED)
        )
        answered = status == "waiting" and not e.pending_waits and bool(e.waits)
        if not died and not (answered and resume_answered):
            continue
        runs = runs_of(e)
        rec = dict(exec_id=e.exec_id, flow_name=e.flow_name, runs=runs)
        if flows is not None and e.flow_name not in flows:
            out.append(Recovery(**rec, action="skip", reason=f"flow {e.flow_name!r} is not "
                                f"one of --flows {', '.join(flows)}"))  # fmt: skip
            continue
        if died:
            dead = deaths_in_a_row(e)
            if dead >= max_attempts:
                out.append(Recovery(**rec, action="skip", reason=(
                    f"gave up: its runner died in each of its last {dead} runs (limit "
                    f"{max_attempts}); `kitaru executions retry {e.exec_id}` runs it again")))  # fmt: skip
                continue
            last = _last_claim(e)
            wait = backoff_s * 2 ** max(dead - 2, 0) if dead > 1 else 0.0
            if last is not None and (now - last).total_seconds() < wait:
                due = last.timestamp() + wait
                out.append(Recovery(**rec, action="skip", reason=(
                    f"backing off: retry {dead} of {max_attempts - 1} is due at "
                    f"{datetime.fromtimestamp(due, timezone.utc).isoformat(timespec='seconds')}")))  # fmt: skip
                continue
            out.append(Recovery(**rec, action="retry", reason=f"its runner died (run {runs})"))
        else:
            names = ", ".join(w.name for w in e.waits)
            out.append(Recovery(**rec, action="resume", reason=f"every wait is answered ({names})"))
    return out
