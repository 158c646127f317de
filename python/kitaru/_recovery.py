"""Runs that heal themselves: which executions a recovery pass takes on, and why.

An execution is taken on when its runner died (the lease lapsed with no live process:
status ``failed`` with origin ``runner_died``) — it is retried — or when it waits and
every one of its waits has an answer — it is resumed. Nothing else: an execution that
failed in its own code stays failed (its flow's ``retries=`` already ran), one that waits
for a person keeps waiting.

Retries are bounded and spaced, from what the execution itself records, so any number
of workers on any number of machines agree without talking to each other: the number of
runs its journal holds (every claim is an event) against ``max_attempts``, and the time
of its last claim plus ``backoff_s * 2 ** (runs - 2)`` before the next. Which worker
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


def runs_of(e: Any) -> int:
    """How many runs an execution has had (its start and every claim)."""
    return sum(1 for ev in e.events if ev.event in ("started", "retried", "resumed"))


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
            if runs >= max_attempts:
                out.append(Recovery(**rec, action="skip", reason=(
                    f"gave up: its runner died in each of its {runs} runs (limit "
                    f"{max_attempts}); `kitaru executions retry {e.exec_id}` runs it again")))  # fmt: skip
                continue
            last = _last_claim(e)
            wait = backoff_s * 2 ** max(runs - 2, 0) if runs > 1 else 0.0
            if last is not None and (now - last).total_seconds() < wait:
                due = last.timestamp() + wait
                out.append(Recovery(**rec, action="skip", reason=(
                    f"backing off: run {runs + 1} of {max_attempts} is due at "
                    f"{datetime.fromtimestamp(due, timezone.utc).isoformat(timespec='seconds')}")))  # fmt: skip
                continue
            out.append(Recovery(**rec, action="retry", reason=f"its runner died (run {runs})"))
        else:
            names = ", ".join(w.name for w in e.waits)
            out.append(Recovery(**rec, action="resume", reason=f"every wait is answered ({names})"))
    return out
