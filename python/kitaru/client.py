"""`KitaruClient`: inspect and steer executions from any process that sees the store."""

from __future__ import annotations

import builtins
import json
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import _config, serde
from .errors import FailureOrigin, KitaruFeatureNotAvailableError, KitaruUsageError

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover
    from .errors import StrEnum

__all__ = [
    "ArtifactRef",
    "CheckpointAttempt",
    "CheckpointCall",
    "Execution",
    "ExecutionStatus",
    "FailureInfo",
    "KitaruClient",
    "LogEntry",
    "PendingWait",
    "WaitInfo",
]


class ExecutionStatus(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        return self in (
            ExecutionStatus.COMPLETED,
            ExecutionStatus.FAILED,
            ExecutionStatus.CANCELLED,
        )


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=timezone.utc)


@dataclass(frozen=True)
class FailureInfo:
    message: str
    exception_type: str | None
    traceback: str | None
    origin: FailureOrigin

    @classmethod
    def from_view(cls, v: dict[str, Any] | None) -> FailureInfo | None:
        if not v:
            return None
        try:
            origin = FailureOrigin(v.get("origin") or "unknown")
        except ValueError:
            origin = FailureOrigin.UNKNOWN
        return cls(v.get("message") or "", v.get("exception_type"), v.get("traceback"), origin)


@dataclass(frozen=True)
class CheckpointAttempt:
    attempt_id: str
    status: ExecutionStatus
    started_at: datetime | None
    ended_at: datetime | None
    metadata: dict[str, Any]
    failure: FailureInfo | None
    run: int = 1
    """Which run of the execution made the attempt (1 = the first process, 2 = the first retry...)."""


@dataclass(frozen=True)
class ArtifactRef:
    artifact_id: str
    name: str
    kind: str
    save_type: str
    producing_call: str | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class CheckpointCall:
    call_id: str
    name: str
    status: ExecutionStatus
    started_at: datetime | None
    ended_at: datetime | None
    metadata: dict[str, Any]
    original_call_id: str | None
    parent_call_ids: list[str]
    failure: FailureInfo | None
    attempts: list[CheckpointAttempt]
    artifacts: list[ArtifactRef]
    checkpoint_type: str | None
    input_digest: str | None = None
    output_serializer: str | None = None
    output_size: int | None = None

    @classmethod
    def from_view(cls, exec_id: str, v: dict[str, Any]) -> CheckpointCall:
        attempts = [
            CheckpointAttempt(
                attempt_id=f"{exec_id}/{v['call_id']}/{a['number']}",
                status=ExecutionStatus(a["status"]),
                started_at=_ts(a["started_at"]),
                ended_at=_ts(a["ended_at"]),
                metadata={},
                failure=FailureInfo.from_view(a.get("failure")),
                run=a["run"],
            )
            for a in v["attempts"]
        ]
        output = v.get("output") or {}
        return cls(
            call_id=f"{exec_id}/{v['call_id']}",
            name=v["call_id"],
            status=ExecutionStatus(v["status"]),
            started_at=_ts(v.get("started_at")),
            ended_at=_ts(v.get("ended_at")),
            metadata=json.loads(v["metadata_json"]) if v.get("metadata_json") else {},
            original_call_id=None,
            parent_call_ids=[],
            failure=FailureInfo.from_view(v.get("failure")),
            attempts=attempts,
            artifacts=[],
            checkpoint_type=v.get("checkpoint_type"),
            input_digest=v.get("input_digest"),
            output_serializer=output.get("serializer"),
            output_size=output.get("size"),
        )


@dataclass(frozen=True)
class PendingWait:
    wait_id: str
    name: str
    question: str | None
    schema: dict[str, Any] | None
    metadata: dict[str, Any]
    entered_waiting_at: datetime | None

    @classmethod
    def from_view(cls, exec_id: str, v: dict[str, Any]) -> PendingWait:
        return cls(
            wait_id=f"{exec_id}/{v['name']}",
            name=v["name"],
            question=v.get("question"),
            schema=json.loads(v["schema_json"]) if v.get("schema_json") else None,
            metadata=json.loads(v.get("metadata_json") or "{}"),
            entered_waiting_at=_ts(v.get("entered_waiting_at")),
        )


@dataclass(frozen=True)
class WaitInfo:
    """A wait the flow reached, with its answer once given."""

    name: str
    question: str | None
    schema: dict[str, Any] | None
    metadata: dict[str, Any]
    entered_waiting_at: datetime | None
    status: str
    """pending, answered or aborted"""
    answered_at: datetime | None
    value: Any

    @classmethod
    def from_view(cls, v: dict[str, Any]) -> WaitInfo:
        return cls(
            name=v["name"],
            question=v.get("question"),
            schema=json.loads(v["schema_json"]) if v.get("schema_json") else None,
            metadata=json.loads(v.get("metadata_json") or "{}"),
            entered_waiting_at=_ts(v.get("entered_waiting_at")),
            status=v["status"],
            answered_at=_ts(v.get("answered_at")),
            value=json.loads(v["value_json"]) if v.get("value_json") else None,
        )


@dataclass(frozen=True)
class ExecutionEvent:
    """One state change of an execution (started, suspended, resumed, retried, ...)."""

    seq: int
    at: datetime | None
    event: str
    holder: str | None
    detail: str | None


@dataclass(frozen=True)
class LogEntry:
    message: str
    level: str | None = None
    timestamp: datetime | None = None
    source: str | None = None
    checkpoint_name: str | None = None
    module: str | None = None
    filename: str | None = None
    lineno: int | None = None


@dataclass(frozen=True)
class Divergence:
    """A finished checkpoint called again with different inputs."""

    call_id: str
    at: datetime | None
    stored_digest: str | None
    new_digest: str | None
    policy: str


def _merged_metadata(entries: list[str]) -> dict[str, Any]:
    from ._context import merge_metadata

    out: dict[str, Any] = {}
    for raw in entries:
        merge_metadata(out, json.loads(raw))
    return out


@dataclass(frozen=True)
class Execution:
    exec_id: str
    flow_id: str | None
    flow_name: str | None
    status: ExecutionStatus
    started_at: datetime | None
    ended_at: datetime | None
    stack_name: str | None
    metadata: dict[str, Any]
    status_reason: str | None
    failure: FailureInfo | None
    pending_wait: PendingWait | None
    frozen_execution_spec: dict[str, Any] | None
    original_exec_id: str | None
    checkpoints: list[CheckpointCall] = field(default_factory=list)
    artifacts: list[ArtifactRef] = field(default_factory=list)
    checkpoint_count: int = 0
    divergences: list[Divergence] = field(default_factory=list)
    entry: dict[str, Any] | None = None
    holder: str | None = None
    pending_waits: list[PendingWait] = field(default_factory=list)
    waits: list[WaitInfo] = field(default_factory=list)
    events: list[ExecutionEvent] = field(default_factory=list)

    @classmethod
    def from_view(cls, v: dict[str, Any]) -> Execution:
        entry = v.get("entry")
        failure = FailureInfo.from_view(v.get("failure"))
        return cls(
            exec_id=v["exec_id"],
            flow_id=f"{entry['module']}.{entry['qualname']}" if entry else None,
            flow_name=v.get("flow_name"),
            status=ExecutionStatus(v["status"]),
            started_at=_ts(v.get("started_at")),
            ended_at=_ts(v.get("ended_at")),
            stack_name=None,
            metadata=_merged_metadata(v.get("metadata_json") or []),
            status_reason=failure.message if failure else None,
            failure=failure,
            pending_wait=(
                PendingWait.from_view(v["exec_id"], v["pending_waits"][0])
                if v.get("pending_waits")
                else None
            ),
            frozen_execution_spec=json.loads(v["options_json"]) if v.get("options_json") else None,
            original_exec_id=None,
            checkpoints=[
                CheckpointCall.from_view(v["exec_id"], c) for c in v.get("checkpoints", [])
            ],
            artifacts=[],
            checkpoint_count=v.get("checkpoint_count", 0),
            divergences=[
                Divergence(
                    d["call_id"],
                    _ts(d["at"]),
                    d.get("stored_digest"),
                    d.get("new_digest"),
                    d["policy"],
                )
                for d in v.get("divergences", [])
            ],
            entry=entry,
            holder=v.get("holder"),
            pending_waits=[
                PendingWait.from_view(v["exec_id"], w) for w in v.get("pending_waits", [])
            ],
            waits=[WaitInfo.from_view(w) for w in v.get("waits", [])],
            events=[
                ExecutionEvent(e["seq"], _ts(e["at"]), e["event"], e.get("holder"), e.get("detail"))
                for e in v.get("events", [])
            ],
        )

    def list_checkpoints(self) -> list[CheckpointCall]:
        return list(self.checkpoints)

    def list_artifacts(self) -> list[ArtifactRef]:
        return list(self.artifacts)

    def refresh(self) -> Execution:
        return KitaruClient().executions.get(self.exec_id)

    def retry(self) -> Execution:
        return KitaruClient().executions.retry(self.exec_id)

    def cancel(self) -> Execution:
        return KitaruClient().executions.cancel(self.exec_id)

    def resume(self) -> Execution:
        return KitaruClient().executions.resume(self.exec_id)


class ExecutionsAPI:
    """`KitaruClient().executions`."""

    def __init__(self, location: str | None) -> None:
        self._location = location

    @property
    def _store(self) -> Any:
        return _config.get_store(self._location)

    def get(self, exec_id: str) -> Execution:
        """Full details of one execution (checkpoints, attempts, failure, divergences)."""
        return Execution.from_view(json.loads(self._store.inspect(_check_id(exec_id), full=True)))

    def list(
        self, *, flow: str | None = None, status: str | None = None, limit: int | None = None
    ) -> list[Execution]:
        """Execution summaries, newest first."""
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise KitaruUsageError(f"limit must be a positive integer, got {limit!r}.")
        if status is not None:
            try:
                status = ExecutionStatus(str(status).lower()).value
            except ValueError:
                raise KitaruUsageError(
                    f"Unknown status {status!r}; use one of {', '.join(s.value for s in ExecutionStatus)}."
                ) from None
        views = json.loads(self._store.list(flow=flow, status=status, limit=limit))
        return [Execution.from_view(v) for v in views]

    def latest(self, *, flow: str | None = None, status: str | None = None) -> Execution:
        found = self.list(flow=flow, status=status, limit=1)
        if not found:
            raise LookupError(f"No executions found for flow={flow!r}, status={status!r}.")
        return self.get(found[0].exec_id)

    def result(self, exec_id: str) -> Any:
        """The return value of a completed execution (None if it has not completed)."""
        found = self._store.result(_check_id(exec_id))
        return None if found is None else serde.loads(*found, what=f"result of execution {exec_id}")

    def retry(self, exec_id: str) -> Execution:
        """Run a failed execution (or one whose runner died) again from the top, in this process.

        Finished checkpoints return their stored outputs; the rest run live.
        """
        return self._rerun(_check_id(exec_id), "retry")

    def _rerun(self, exec_id: str, intent: str) -> Execution:
        from . import _entry

        store = self._store
        # One read of the (immutable) start record, then the claim: one listing of the
        # execution and concurrent reads of its records, which the run resumes from.
        entry_json, tag, data = store.start_record(exec_id)
        entry = json.loads(entry_json)
        if not entry:
            raise KitaruUsageError(f"Execution {exec_id} has no recorded entry point.")
        definition = _entry.load_flow(entry)
        saved = serde.loads(tag, data, what=f"arguments of execution {exec_id}")
        runner = store.claim(exec_id, intent, _config.lease_ttl_ms())
        definition.resume_execution(runner, tuple(saved["args"]), dict(saved["kwargs"]))
        return self.get(exec_id)

    def resume(self, exec_id: str) -> Execution:
        """Run a waiting execution whose waits are answered again from the top, in this process.

        Finished checkpoints and answered waits return their stored values at once.
        """
        return self._rerun(_check_id(exec_id), "resume")

    def pending_waits(self, exec_id: str) -> builtins.list[PendingWait]:
        """The waits of an execution that have no answer yet, oldest first."""
        view = json.loads(self._store.inspect(_check_id(exec_id), full=False))
        return [PendingWait.from_view(view["exec_id"], w) for w in view["pending_waits"]]

    def _find_wait(self, exec_id: str, wait: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        from .errors import KitaruStateError

        view = json.loads(self._store.inspect(_check_id(exec_id), full=False))
        pending = view["pending_waits"]
        names = ", ".join(w["name"] for w in pending) or "none"
        if wait is None:
            if len(pending) != 1:
                raise KitaruStateError(
                    f"Execution {exec_id} has {len(pending)} pending waits ({names}); name one with wait=..."
                    if pending
                    else f"Execution {exec_id} has no pending wait (status: {view['status']})."
                )
            return view, pending[0]
        key = wait.rsplit("/", 1)[-1]  # a wait_id is "<exec id>/<name>"
        for w in pending:
            if w["name"] == key:
                return view, w
        raise KitaruStateError(
            f"Execution {exec_id} has no pending wait {wait!r}. Available waits: {names}."
        )

    def input(self, exec_id: str, *, wait: str | None = None, value: Any = None) -> Execution:
        """Answer a pending wait (by name or wait id; optional when only one is pending).

        The value is validated against the wait's schema first; a bad value raises
        `KitaruWaitValidationError` and the execution keeps waiting, unchanged.
        """
        from . import _schema

        view, w = self._find_wait(exec_id, wait)
        accepted = _schema.validate(w, value, (view.get("entry") or {}).get("cwd"))
        self._store.answer(view["exec_id"], w["name"], json.dumps(accepted))
        return self.get(view["exec_id"])

    def abort_wait(self, exec_id: str, *, wait: str | None = None) -> Execution:
        """Abort a pending wait: the execution is cancelled."""
        view, w = self._find_wait(exec_id, wait)
        self._store.answer(view["exec_id"], w["name"], None, aborted=True)
        return self.get(view["exec_id"])

    def logs(
        self,
        exec_id: str,
        *,
        checkpoint: str | None = None,
        source: str = "step",
        limit: int | None = None,
    ) -> builtins.list[LogEntry]:
        """Captured stdout, stderr and logging output, oldest first.

        `source="step"` gives every line (each tagged with its checkpoint, or None for the
        flow body); `source="runner"` only the flow body's; `checkpoint` filters by call id.
        """
        if source not in ("step", "runner"):
            raise KitaruUsageError(f"source must be 'step' or 'runner', got {source!r}.")
        if checkpoint is not None and source == "runner":
            raise KitaruUsageError(
                "checkpoint= filters step logs; it cannot be combined with source='runner'."
            )
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise KitaruUsageError(f"limit must be a positive integer, got {limit!r}.")
        out: list[LogEntry] = []
        for line in self._store.logs(_check_id(exec_id)).splitlines():
            e = json.loads(line)
            if source == "runner" and e.get("checkpoint") is not None:
                continue
            if checkpoint is not None and e.get("checkpoint") != checkpoint:
                continue
            out.append(
                LogEntry(
                    message=e["message"],
                    level=e.get("level"),
                    timestamp=_ts(e.get("ts")),
                    source=e.get("source"),
                    checkpoint_name=e.get("checkpoint"),
                    module=e.get("module"),
                    filename=e.get("filename"),
                    lineno=e.get("lineno"),
                )
            )
            if limit is not None and len(out) >= limit:
                break
        return out

    def cancel(self, exec_id: str) -> Execution:
        """Cancel an execution; a running one stops at its next checkpoint boundary."""
        self._store.cancel(_check_id(exec_id), "cancelled by user")
        return self.get(exec_id)


def _check_id(exec_id: str) -> str:
    if not isinstance(exec_id, str) or not exec_id.strip():
        raise KitaruUsageError(f"An execution id must be a non-empty string, got {exec_id!r}.")
    return exec_id.strip()


class KitaruClient:
    """Entry point for inspecting executions in the configured store (``KITARU_STORE``)."""

    def __init__(
        self,
        *,
        server_url: str | None = None,
        auth_token: str | None = None,
        project: str | None = None,
    ) -> None:
        if server_url is not None or auth_token is not None or project is not None:
            raise KitaruFeatureNotAvailableError(
                "KitaruClient talks to the store directly; there is no server to connect to. "
                "Point KITARU_STORE at the store instead."
            )
        self.executions = ExecutionsAPI(None)
