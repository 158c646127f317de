"""`KitaruClient`: inspect and steer executions from any process that sees the store."""

from __future__ import annotations

import builtins
import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import _config, serde
from ._ledger import REPLAY_SEEDED, claim_of, take
from ._status import ExecutionStatus
from ._types import StoreChoice
from .errors import FailureOrigin, KitaruFeatureNotAvailableError, KitaruUsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._views import (
        CheckpointView,
        EntryPointView,
        EventView,
        ExecutionView,
        FailureView,
        WaitView,
    )

__all__ = [
    "ArtifactRef",
    "ArtifactsAPI",
    "CheckpointAttempt",
    "CheckpointCall",
    "CheckpointDiff",
    "Execution",
    "ExecutionDiff",
    "ExecutionStatus",
    "FailureInfo",
    "KitaruClient",
    "LLMCall",
    "LLMCost",
    "LogEntry",
    "PendingWait",
    "WaitInfo",
]


def _parsed(raw: str | None, default: Any) -> Any:
    """A JSON text of a view parsed, or `default` when there is none."""
    return json.loads(raw) if raw else default


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=timezone.utc)


@dataclass(frozen=True)
class FailureInfo:
    message: str
    exception_type: str | None
    traceback: str | None
    origin: FailureOrigin

    @classmethod
    def from_view(cls, v: FailureView | None) -> FailureInfo | None:
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
    """A stored value of an execution: a value saved with `kitaru.save()` (`save_type`
    ``manual``, one per version), the output of each finished checkpoint call (named after
    the call, ``step_output``), and the prompt (`<call>_prompt`) and response
    (`<call>_response`) of every `kitaru.llm()` call (``llm_call``/``llm_inline``)."""

    artifact_id: str
    name: str
    kind: str
    save_type: str
    producing_call: str | None
    metadata: dict[str, Any]

    def load(self) -> Any:
        """The value: a prompt is its list of messages; a response is its text, or a dict
        with ``text`` and ``tool_calls`` when the model called tools."""
        loader = self.__dict__.get("_loader")
        if loader is None:
            from .errors import KitaruStateError

            raise KitaruStateError(
                f"Artifact {self.artifact_id} was not read from a store; get it through "
                "KitaruClient().executions.get(...).artifacts."
            )
        return loader()


def _response_value(resp: dict[str, Any]) -> Any:
    if resp.get("tool_calls"):
        return {"text": resp.get("text"), "tool_calls": resp["tool_calls"]}
    return resp.get("text")


def _llm_artifacts(exec_id: str, call: CheckpointView, load_output: Any) -> list[ArtifactRef]:
    """The prompt and response artifacts of the `llm()` calls of one checkpoint call."""
    refs: list[ArtifactRef] = []
    call_id = call["call_id"]
    meta = _parsed(call["metadata_json"], {})
    llm_calls = meta.get("llm_calls") if isinstance(meta, dict) else None
    if not isinstance(llm_calls, dict):
        return refs
    for name, info in llm_calls.items():
        if not isinstance(info, dict):
            continue
        # An inline call keeps its prompt in the metadata; a flow-body call (its own
        # checkpoint) keeps prompt and response in the checkpoint's output.
        durable = "prompt" not in info and call.get("status") == "completed"
        model = {"model": info.get("resolved_model")}
        for kind in ("prompt", "response"):
            ref = ArtifactRef(
                artifact_id=f"{exec_id}/{call_id}/{name}_{kind}",
                name=f"{name}_{kind}",
                kind=kind,
                save_type="llm_call" if durable else "llm_inline",
                producing_call=call_id,
                metadata=model,
            )
            if durable:
                fn = (lambda k: lambda: _from_output(load_output(call_id), k))(kind)
            else:
                value = info.get(kind)
                fn = (lambda v, k: lambda: v if k == "prompt" else _response_value(v or {}))(
                    value, kind
                )
            object.__setattr__(ref, "_loader", fn)
            refs.append(ref)
    return refs


def _cached_from(meta: Any) -> str | None:
    """Takes the core's note of a call answered by the cache out of its metadata: the
    call that produced the result, as "<exec id>/<call id>"."""
    note = meta.pop("kitaru_cached", None) if isinstance(meta, dict) else None
    if isinstance(note, dict) and note.get("exec_id") and note.get("call_id"):
        return f"{note['exec_id']}/{note['call_id']}"
    return None


def _without_artifacts(meta: Any) -> Any:
    if isinstance(meta, dict) and "kitaru_artifacts" in meta:
        meta = {k: v for k, v in meta.items() if k != "kitaru_artifacts"}
    return meta


def _saved_artifacts(
    exec_id: str, call: CheckpointView, store: Any, allow_pickle: bool = False
) -> list[ArtifactRef]:
    """The artifacts a checkpoint call saved with `kitaru.save()` (every version), and its
    output as the artifact named after the call (Kitaru 0.4's step output)."""
    from .artifacts import _blob_loader, _output_loader, saved_artifacts

    refs: list[ArtifactRef] = []
    call_id = call["call_id"]
    for name, versions in saved_artifacts(call["metadata_json"]).items():
        for n, entry in enumerate(versions, start=1):
            ref = ArtifactRef(
                artifact_id=f"{exec_id}/{call_id}/{name}" + (f"@{n}" if n > 1 else ""),
                name=name,
                kind=str(entry.get("kind", "output")),
                save_type="manual",
                producing_call=call_id,
                metadata={"tags": entry.get("tags", []), "version": n,
                          "size": entry.get("size"), "serializer": entry.get("serializer")},
            )  # fmt: skip
            loader = _blob_loader(store, exec_id, entry, name)
            object.__setattr__(ref, "_loader", lambda f=loader: f(allow_pickle))
            refs.append(ref)
    if call["status"] == "completed" and call["output"] is not None:
        ref = ArtifactRef(
            artifact_id=f"{exec_id}/{call_id}",
            name=call_id,
            kind="output",
            save_type="step_output",
            producing_call=call_id,
            metadata={"size": call["output"]["size"], "serializer": call["output"]["serializer"]},
        )
        loader = _output_loader(store, exec_id, call_id)
        object.__setattr__(ref, "_loader", lambda f=loader: f(allow_pickle))
        refs.append(ref)
    return refs


def _from_output(out: Any, kind: str) -> Any:
    return out["messages"] if kind == "prompt" else _response_value(out["response"])


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
    # Answered by the cross-execution cache: the call that produced it ("<exec id>/<call id>").
    cached_from: str | None = None

    @classmethod
    def from_view(cls, exec_id: str, v: CheckpointView) -> CheckpointCall:
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
        output = v["output"]
        metadata = _without_artifacts(_parsed(v["metadata_json"], {}))
        cached = _cached_from(metadata)
        parents = metadata.pop("kitaru_parents", None) if isinstance(metadata, dict) else None
        return cls(
            call_id=f"{exec_id}/{v['call_id']}",
            name=v["call_id"],
            status=ExecutionStatus(v["status"]),
            started_at=_ts(v.get("started_at")),
            ended_at=_ts(v.get("ended_at")),
            metadata=metadata,
            original_call_id=cached,
            parent_call_ids=[
                p if "/" in p else f"{exec_id}/{p}"
                for p in (parents if isinstance(parents, list) else [])
                if isinstance(p, str)
            ],
            failure=FailureInfo.from_view(v.get("failure")),
            attempts=attempts,
            artifacts=[],
            checkpoint_type=v.get("checkpoint_type"),
            input_digest=v.get("input_digest"),
            output_serializer=output["serializer"] if output else None,
            output_size=output["size"] if output else None,
            cached_from=cached,
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
    def from_view(cls, exec_id: str, v: WaitView) -> PendingWait:
        return cls(
            wait_id=f"{exec_id}/{v['name']}",
            name=v["name"],
            question=v.get("question"),
            schema=_parsed(v["schema_json"], None),
            metadata=_parsed(v["metadata_json"], {}),
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
    def from_view(cls, v: WaitView) -> WaitInfo:
        return cls(
            name=v["name"],
            question=v.get("question"),
            schema=_parsed(v["schema_json"], None),
            metadata=_parsed(v["metadata_json"], {}),
            entered_waiting_at=_ts(v.get("entered_waiting_at")),
            status=v["status"],
            answered_at=_ts(v.get("answered_at")),
            value=_parsed(v["value_json"], None),
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


@dataclass(frozen=True)
class LLMCall:
    """One `kitaru.llm()` call that reached a provider (an entry of the cost ledger)."""

    call: str
    checkpoint: str | None
    run: int
    model: str | None
    alias: str | None
    tokens_input: int | None
    tokens_output: int | None
    total_tokens: int | None
    latency_ms: float | None
    cost_usd: float | None


@dataclass(frozen=True)
class LLMCost:
    """The execution's LLM spend over all its runs, and what reusing stored calls saved."""

    calls: int
    tokens_input: int
    tokens_output: int
    cost_usd: float
    unpriced_calls: int
    saved_calls: int
    saved_usd: float
    budget_usd: float | None


@dataclass(frozen=True)
class CheckpointDiff:
    """One checkpoint call across two executions (`ExecutionsAPI.diff`)."""

    call_id: str
    name: str
    status: str
    """same, changed, added (only in b) or removed (only in a)"""
    output_diff: str | None
    """a unified diff of the two outputs, rendered as text or indented JSON (changed only)"""
    duration_a: float | None
    duration_b: float | None
    cost_usd_a: float | None
    cost_usd_b: float | None
    tokens_a: int | None
    tokens_b: int | None


@dataclass(frozen=True)
class ExecutionDiff:
    """Two executions of a flow side by side, checkpoint by checkpoint, with the totals."""

    a: str
    b: str
    checkpoints: list[CheckpointDiff]
    cost_usd_a: float
    cost_usd_b: float
    tokens_a: int
    tokens_b: int
    duration_a: float | None
    duration_b: float | None

    def count(self, status: str) -> int:
        return sum(1 for c in self.checkpoints if c.status == status)


def _call_costs(side: Any) -> tuple[float | None, int | None]:
    """(cost, tokens) of the `llm()` calls recorded on one side of a checkpoint diff."""
    if side is None:
        return None, None
    calls = (_parsed(side["metadata_json"], {}) or {}).get("llm_calls") or {}
    if not isinstance(calls, dict) or not calls:
        return None, None
    infos = [i for i in calls.values() if isinstance(i, dict)]
    cost = sum(i.get("cost_usd") or 0.0 for i in infos)
    tokens = sum((i.get("tokens_input") or 0) + (i.get("tokens_output") or 0) for i in infos)
    return round(cost, 10), tokens


def _rendered(found: tuple[str, bytes] | None, what: str) -> list[str]:
    """An output as lines to diff: text as it is, other values as indented JSON."""
    if found is None:
        return []
    try:
        value = serde.loads(*found, what=what)
    except Exception as exc:  # e.g. a pickle this process may not load
        return [f"<{what} cannot be shown: {exc}>"]
    if isinstance(value, str):
        return value.splitlines()
    return json.dumps(value, indent=2, sort_keys=True, default=_plain).splitlines()


def _plain(v: Any) -> Any:
    """JSON for what `json` cannot show itself: models and dataclasses by their fields."""
    if hasattr(v, "model_dump"):
        return v.model_dump(mode="json")
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return dataclasses.asdict(v)
    if isinstance(v, (set, frozenset)):
        return sorted(v, key=repr)
    if isinstance(v, bytes):
        return v.decode("utf-8", "backslashreplace")
    return repr(v)


def _ledger(
    metadata: dict[str, Any], options: dict[str, Any] | None, events: list[EventView]
) -> tuple[list[LLMCall], LLMCost]:
    """Takes kitaru's ledger keys out of `metadata` into calls and totals."""
    claims = [e["seq"] for e in events if e.get("holder")]
    entries, saved, budget = take(metadata, options)
    calls = [
        LLMCall(
            call=e.get("call", ""),
            checkpoint=e.get("checkpoint"),
            run=sum(1 for seq in claims if seq <= claim_of(key)),
            model=e.get("resolved_model"),
            alias=e.get("alias"),
            tokens_input=e.get("tokens_input"),
            tokens_output=e.get("tokens_output"),
            total_tokens=e.get("total_tokens"),
            latency_ms=e.get("latency_ms"),
            cost_usd=e.get("cost_usd"),
        )
        for key, e in sorted(entries.items())
    ]
    cost = LLMCost(
        calls=len(calls),
        tokens_input=sum(c.tokens_input or 0 for c in calls),
        tokens_output=sum(c.tokens_output or 0 for c in calls),
        cost_usd=round(sum(c.cost_usd or 0.0 for c in calls), 10),
        unpriced_calls=sum(1 for c in calls if c.cost_usd is None),
        saved_calls=sum(int(v.get("calls", 0)) for v in saved.values()),
        saved_usd=round(sum(float(v.get("cost_usd", 0.0)) for v in saved.values()), 10),
        budget_usd=budget,
    )
    return calls, cost


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
    entry: EntryPointView | None = None
    holder: str | None = None
    pending_waits: list[PendingWait] = field(default_factory=list)
    waits: list[WaitInfo] = field(default_factory=list)
    events: list[ExecutionEvent] = field(default_factory=list)
    llm_calls: list[LLMCall] = field(default_factory=list)
    llm_cost: LLMCost | None = None

    @classmethod
    def from_view(cls, v: ExecutionView) -> Execution:
        entry = v.get("entry")
        failure = FailureInfo.from_view(v.get("failure"))
        options = _parsed(v["options_json"], None)
        metadata = _merged_metadata(v.get("metadata_json") or [])
        llm_calls, llm_cost = _ledger(metadata, options, v.get("events") or [])
        metadata.pop(REPLAY_SEEDED, None)
        replay = options.pop("replay", None) if isinstance(options, dict) else None
        replay = replay if isinstance(replay, dict) else {}
        source = replay.get("source")
        taken = set(replay.get("reused", []) + list(replay.get("overridden", [])))
        checkpoints = [CheckpointCall.from_view(v["exec_id"], c) for c in v.get("checkpoints", [])]
        if taken:  # the calls a replay took over from its source
            checkpoints = [
                dataclasses.replace(c, original_call_id=f"{source}/{c.name}")
                if c.name in taken
                else c
                for c in checkpoints
            ]
        return cls(
            exec_id=v["exec_id"],
            flow_id=f"{entry['module']}.{entry['qualname']}" if entry else None,
            flow_name=v.get("flow_name"),
            status=ExecutionStatus(v["status"]),
            started_at=_ts(v.get("started_at")),
            ended_at=_ts(v.get("ended_at")),
            stack_name=options.get("stack") if options else None,
            metadata=metadata,
            status_reason=failure.message if failure else None,
            failure=failure,
            pending_wait=(
                PendingWait.from_view(v["exec_id"], v["pending_waits"][0])
                if v.get("pending_waits")
                else None
            ),
            frozen_execution_spec=options,
            original_exec_id=source,
            checkpoints=checkpoints,
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
            llm_calls=llm_calls,
            llm_cost=llm_cost,
        )

    def list_checkpoints(self) -> list[CheckpointCall]:
        return list(self.checkpoints)

    def list_artifacts(self) -> list[ArtifactRef]:
        return list(self.artifacts)

    @property
    def _executions(self) -> ExecutionsAPI:
        # The API (and so the store) this execution was read from; set by ExecutionsAPI.
        api: ExecutionsAPI | None = self.__dict__.get("_api")
        return api if api is not None else KitaruClient().executions

    def refresh(self) -> Execution:
        return self._executions.get(self.exec_id)

    def retry(self) -> Execution:
        return self._executions.retry(self.exec_id)

    def cancel(self) -> Execution:
        return self._executions.cancel(self.exec_id)

    def resume(self) -> Execution:
        return self._executions.resume(self.exec_id)

    def replay(
        self, *, from_: str, overrides: dict[str, Any] | None = None, **flow_inputs: Any
    ) -> Execution:
        return self._executions.replay(
            self.exec_id, from_=from_, overrides=overrides, **flow_inputs
        )


class ExecutionsAPI:
    """`KitaruClient().executions`."""

    def __init__(self, stack: str | None, source: str = "KitaruClient(stack=...)") -> None:
        self._stack, self._source = stack, source

    def store_choice(self) -> StoreChoice:
        """Which store this API reads and steers, and why (resolved at each call)."""
        return _config.resolve_store(self._stack, self._source)

    @property
    def _store(self) -> Any:
        choice = self.store_choice()
        return _config.get_store(choice.location, choice.options)

    def _execution(self, view: ExecutionView) -> Execution:
        e = Execution.from_view(view)
        object.__setattr__(e, "_api", self)  # its refresh()/retry()/... use the same store
        if view["checkpoints"]:
            store, exec_id = self._store, e.exec_id

            def load_output(call_id: str) -> Any:
                found = store.checkpoint_output(exec_id, call_id)
                if found is None:  # pragma: no cover - listed calls have a stored output
                    raise LookupError(f"No stored output for call {call_id} of {exec_id}.")
                return serde.loads(*found, what=f"output of call {call_id!r}")

            every: list[ArtifactRef] = []
            for c, raw in zip(e.checkpoints, view["checkpoints"], strict=True):
                refs = _saved_artifacts(exec_id, raw, store) + _llm_artifacts(
                    exec_id, raw, load_output
                )
                c.artifacts.extend(refs)
                every.extend(refs)
            e.artifacts.extend(every)
        return e

    def get(self, exec_id: str) -> Execution:
        """Full details of one execution (checkpoints, attempts, failure, divergences)."""
        return self._execution(self._store.inspect(_check_id(exec_id), full=True))

    def list(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        progress: Any = None,
    ) -> list[Execution]:
        """Execution summaries, newest first.

        `progress` (a `kitaru._kitaru.Progress`) counts the executions read, for a display
        on another thread while a big store is listed.
        """
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
        views = self._store.list(flow=flow, status=status, limit=limit, progress=progress)
        return [self._execution(v) for v in views]

    def latest(self, *, flow: str | None = None, status: str | None = None) -> Execution:
        found = self.list(flow=flow, status=status, limit=1)
        if not found:
            raise LookupError(f"No executions found for flow={flow!r}, status={status!r}.")
        return self.get(found[0].exec_id)

    def result(self, exec_id: str) -> Any:
        """The return value of a completed execution (None if it has not completed)."""
        # Damaged records fail this as they fail `get` (KitaruCorruptionError): the core
        # reads the whole execution.
        found = self._store.result(_check_id(exec_id))
        return None if found is None else serde.loads(*found, what=f"result of execution {exec_id}")

    def retry(self, exec_id: str, *, budget_usd: float | None = None) -> Execution:
        """Run a failed execution (or one whose runner died) again from the top, in this process.

        Finished checkpoints return their stored outputs; the rest run live. `budget_usd`
        replaces the execution's LLM budget from now on (e.g. after a budget stop).
        """
        return self._rerun(_check_id(exec_id), "retry", budget_usd)

    def replay(
        self,
        exec_id: str,
        *,
        from_: str,
        overrides: dict[str, Any] | None = None,
        **flow_inputs: Any,
    ) -> Execution:
        """A new execution of the flow of `exec_id` that takes over its results before the
        checkpoint `from_` and runs the rest live, in this process (see `FlowDefinition.replay`).

        `overrides` maps ``"checkpoint.<call id or name>"`` to the output that checkpoint
        has in the replay; `flow_inputs` replace the source's arguments by name.
        """
        from . import _entry
        from .flow import FlowDefinition

        exec_id = _check_id(exec_id)
        store = self._store
        entry, _, _ = store.start_record(exec_id)
        if not entry:
            raise KitaruUsageError(f"Execution {exec_id} has no recorded entry point.")
        definition = _entry.load_flow(entry, FlowDefinition)
        handle = definition._replay(
            store, exec_id, from_, overrides, flow_inputs, definition.retries, None
        )
        return self.get(handle.exec_id)

    def diff(self, a: str, b: str) -> ExecutionDiff:
        """Executions `a` and `b` (typically a run and its replay) checkpoint by checkpoint:
        which calls kept their output, changed it or exist in one only; a readable diff of
        each changed output; durations, tokens and cost on both sides."""
        import difflib

        a, b = _check_id(a), _check_id(b)
        store = self._store
        compared = store.diff(a, b)
        changed = [c["call_id"] for c in compared["calls"] if c["status"] == "changed"]
        # one journal read per side for every changed output, not one per call
        before = dict(zip(changed, store.checkpoint_outputs(a, changed), strict=True))
        after = dict(zip(changed, store.checkpoint_outputs(b, changed), strict=True))
        checkpoints = []
        for c in compared["calls"]:
            text, call_id = None, c["call_id"]
            if call_id in before:
                what = f"output of {call_id}"
                text = "\n".join(difflib.unified_diff(
                    _rendered(before[call_id], what), _rendered(after[call_id], what),
                    f"a/{call_id}", f"b/{call_id}", lineterm=""))  # fmt: skip
            (cost_a, tokens_a), (cost_b, tokens_b) = _call_costs(c["a"]), _call_costs(c["b"])
            checkpoints.append(
                CheckpointDiff(
                    call_id=c["call_id"],
                    name=c["name"],
                    status=c["status"],
                    output_diff=text,
                    duration_a=c["a"]["duration"] if c["a"] else None,
                    duration_b=c["b"]["duration"] if c["b"] else None,
                    cost_usd_a=cost_a,
                    cost_usd_b=cost_b,
                    tokens_a=tokens_a,
                    tokens_b=tokens_b,
                )
            )
        ea, eb = self.get(a), self.get(b)

        def totals(e: Execution) -> tuple[float, int, float | None]:
            cost = e.llm_cost
            spent = (cost.cost_usd, cost.tokens_input + cost.tokens_output) if cost else (0.0, 0)
            took = (
                (e.ended_at - e.started_at).total_seconds() if e.ended_at and e.started_at else None
            )
            return spent[0], spent[1], took

        (ca, ta, da), (cb, tb, db) = totals(ea), totals(eb)
        return ExecutionDiff(a, b, checkpoints, ca, cb, ta, tb, da, db)

    def _rerun(
        self, exec_id: str, intent: str, budget_usd: float | None = None, root: str | None = None
    ) -> Execution:
        from . import _entry
        from .flow import FlowDefinition, _check_budget

        store = self._store
        # One read of the (immutable) start record, then the claim: one listing of the
        # execution and concurrent reads of its records, which the run resumes from.
        entry, tag, data = store.start_record(exec_id)
        if not entry:
            raise KitaruUsageError(f"Execution {exec_id} has no recorded entry point.")
        definition = _entry.load_flow(entry, FlowDefinition, root)
        if budget_usd is not None:
            budget_usd = _check_budget(budget_usd, intent)
        saved = serde.loads(
            tag,
            data,
            what=f"arguments of execution {exec_id}",
            allow_pickle=bool(getattr(definition, "allow_pickle", False)),
        )
        runner = store.claim(exec_id, intent, _config.lease_ttl_ms())
        definition.resume_execution(
            runner, tuple(saved["args"]), dict(saved["kwargs"]), store, budget_usd
        )
        return self.get(exec_id)

    def resume(self, exec_id: str, *, budget_usd: float | None = None) -> Execution:
        """Run a waiting execution whose waits are answered again from the top, in this process.

        Finished checkpoints and answered waits return their stored values at once.
        """
        return self._rerun(_check_id(exec_id), "resume", budget_usd)

    def pending_waits(self, exec_id: str) -> builtins.list[PendingWait]:
        """The waits of an execution that have no answer yet, oldest first."""
        view = self._store.inspect(_check_id(exec_id), full=False)
        return [PendingWait.from_view(view["exec_id"], w) for w in view["pending_waits"]]

    def input(self, exec_id: str, *, wait: str | None = None, value: Any = None) -> Execution:
        """Answer a pending wait (by name or wait id; optional when only one is pending).

        The value is validated against the wait's stored JSON Schema first (no code of the
        flow is imported here; the flow checks it again with its own types when it resumes);
        a bad value raises `KitaruWaitValidationError` and the execution keeps waiting,
        unchanged.
        """
        from . import _schema

        exec_id = _check_id(exec_id)
        w = self._store.pending_wait(exec_id, wait)
        accepted = _schema.validate(w, value)
        self._store.answer(exec_id, w["name"], json.dumps(accepted))
        return self.get(exec_id)

    def abort_wait(self, exec_id: str, *, wait: str | None = None) -> Execution:
        """Abort a pending wait: the execution is cancelled."""
        exec_id = _check_id(exec_id)
        w = self._store.pending_wait(exec_id, wait)
        self._store.answer(exec_id, w["name"], None, aborted=True)
        return self.get(exec_id)

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

    def recover(
        self,
        *,
        flows: builtins.list[str] | None = None,
        max_attempts: int = 3,
        backoff_s: float = 5.0,
        resume_answered: bool = True,
        dry_run: bool = False,
    ) -> builtins.list[Any]:
        """One recovery pass, in this process: retries every execution whose runner died
        (until `max_attempts` runs in a row have died, spaced by `backoff_s` doubling) and
        resumes every waiting execution whose waits are all answered (unless
        `resume_answered=False`).

        Returns a `kitaru._recovery.Recovery` per execution looked at, with what was done
        and why (and with `dry_run`, what would be). An execution another process claims
        first is left to it; one whose flow cannot be loaded here says why. `kitaru
        worker` runs this pass in a loop, each run in a child process. Only flows under the
        current directory (or installed) are loaded: a script or directory the store names
        elsewhere is refused, since no person chose these runs.
        """
        import os

        from . import _recovery

        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise KitaruUsageError(
                f"max_attempts must be a positive integer, got {max_attempts!r}."
            )
        if not isinstance(backoff_s, (int, float)) or isinstance(backoff_s, bool) or backoff_s < 0:
            raise KitaruUsageError(f"backoff_s must be a number >= 0, got {backoff_s!r}.")
        # one listing of the running and waiting executions, not a read of every one
        views = [self._execution(v) for v in self._store.list(recoverable=True)]
        found = _recovery.plan(views, flows=flows, max_attempts=max_attempts,
                               backoff_s=float(backoff_s), resume_answered=resume_answered)  # fmt: skip
        if dry_run:
            return found
        done = []
        for r in found:
            if r.action != "skip":
                try:
                    # nobody chose these runs: only code under this directory is loaded
                    outcome = self._rerun(r.exec_id, r.action, root=os.getcwd()).status.value
                except Exception as exc:  # the run's own failure, a lost claim, a load error
                    after = self.get(r.exec_id)
                    # a new run (this one, failing in the flow's code, or another process's
                    # that claimed it first) shows as its status; else nothing ran
                    outcome = (after.status.value if _recovery.runs_of(after) > r.runs
                               else f"not run: {type(exc).__name__}: {exc}")  # fmt: skip
                r = dataclasses.replace(r, outcome=outcome)
            done.append(r)
        return done

    def cancel(self, exec_id: str) -> Execution:
        """Cancel an execution; a running one stops at its next checkpoint boundary."""
        self._store.cancel(_check_id(exec_id), "cancelled by user")
        return self.get(exec_id)


def _check_id(exec_id: str) -> str:
    if not isinstance(exec_id, str) or not exec_id.strip():
        raise KitaruUsageError(f"An execution id must be a non-empty string, got {exec_id!r}.")
    return exec_id.strip()


class ArtifactsAPI:
    """`KitaruClient().artifacts`: the values of executions, by execution."""

    def __init__(self, executions: ExecutionsAPI) -> None:
        self._executions = executions

    def list(
        self,
        exec_id: str,
        *,
        name: str | None = None,
        kind: str | None = None,
        producing_call: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[ArtifactRef]:
        """The artifacts of an execution: saved with `kitaru.save()`, each checkpoint's
        output, and the prompts and responses of its `llm()` calls."""
        found = [
            a
            for a in self._executions.get(exec_id).artifacts
            if (name is None or a.name == name)
            and (kind is None or a.kind == kind)
            and (producing_call is None or a.producing_call == producing_call)
        ]
        return found[:limit] if limit is not None else found

    def get(self, artifact_id: str) -> ArtifactRef:
        """One artifact by its id (``<exec id>/<call id>[/<name>]``, as `list` shows it), or
        a memory version (``MemoryEntry.artifact_id``)."""
        if isinstance(artifact_id, str) and artifact_id.startswith("memory:"):
            return self._memory(artifact_id)
        if not isinstance(artifact_id, str) or "/" not in artifact_id:
            raise KitaruUsageError(
                f"An artifact id looks like <exec id>/<call id>/<name>, got {artifact_id!r}."
            )
        exec_id = artifact_id.split("/", 1)[0]
        for a in self._executions.get(exec_id).artifacts:
            if a.artifact_id == artifact_id:
                return a
        from .errors import KitaruRuntimeError

        raise KitaruRuntimeError(
            f"No artifact {artifact_id!r}; `KitaruClient().artifacts.list({exec_id!r})` "
            "shows the execution's artifacts."
        )

    def _memory(self, artifact_id: str) -> ArtifactRef:
        parts = artifact_id.split(":")
        if len(parts) != 5 or not parts[4].isdigit():
            raise KitaruUsageError(
                "A memory artifact id looks like memory:<scope type>:<scope>:<key>:<version>, "
                f"got {artifact_id!r}."
            )
        _, scope_type, scope, key, version = parts
        from ._memory_admin import MemoriesAPI

        api = MemoriesAPI(self._executions._store)
        entry = api.get(key, scope=scope, scope_type=scope_type, version=int(version))
        if entry is None:
            from .errors import KitaruRuntimeError

            raise KitaruRuntimeError(f"No memory version {artifact_id!r} (purged?).")
        ref = ArtifactRef(artifact_id=artifact_id, name=key, kind="memory", save_type="memory",
                          producing_call=None, metadata={"scope": scope, "scope_type": scope_type,
                                                         "version": entry.version})  # fmt: skip
        object.__setattr__(
            ref,
            "_loader",
            lambda: api.value(key, scope=scope, scope_type=scope_type, version=int(version)),
        )
        return ref


class KitaruClient:
    """Entry point for inspecting executions in a store.

    The store is chosen like a flow's (``KITARU_STORE`` > ``kitaru.configure(stack=)`` >
    ``stack`` > pyproject.toml ``[tool.kitaru] stack`` > the active stack > ``default``),
    at each call, so ``kitaru stack use`` takes effect at once.
    """

    def __init__(
        self,
        *,
        stack: str | None = None,
        server_url: str | None = None,
        auth_token: str | None = None,
        project: str | None = None,
    ) -> None:
        if server_url is not None or auth_token is not None or project is not None:
            raise KitaruFeatureNotAvailableError(
                "KitaruClient talks to the store directly; there is no server to connect to. "
                "Choose the store with a stack (`kitaru stack use NAME`) or KITARU_STORE."
            )
        if stack is not None:
            from .stacks import check_name

            stack = check_name(stack, "KitaruClient(stack=)")
        self.executions = ExecutionsAPI(stack)
        self.artifacts = ArtifactsAPI(self.executions)

    @property
    def graphs(self) -> Any:
        """The LangGraph threads kept in the store by `KitaruSaver` (`GraphsAPI`)."""
        from ._graphs import GraphsAPI

        return GraphsAPI(self.executions._store)

    @property
    def memories(self) -> Any:
        """`kitaru.memory` with an explicit scope, and its maintenance (`MemoriesAPI`)."""
        from ._memory_admin import MemoriesAPI

        return MemoriesAPI(self.executions._store)
