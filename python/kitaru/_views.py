"""The shapes of what the core hands back (`Store.inspect`, `list`, `start_record`,
`verify`): plain dicts and lists, typed here for mypy and the stub.

Each `TypedDict` mirrors a serde struct of the Rust core (`src/view.rs`, `src/verify.rs`,
`EntryPoint` in `src/journal/types.rs`); `tests-python/test_views.py` checks that what
the core returns has exactly these keys. Times are seconds since the epoch; digests and
blob hashes are hex. Imported by type checkers and tests only: no runtime module of
kitaru imports it (``typing`` costs more than kitaru's own import).
"""

from __future__ import annotations

from typing import Literal, TypedDict

Status = Literal["running", "waiting", "completed", "failed", "cancelled"]


class FailureView(TypedDict):
    origin: str
    message: str
    exception_type: str | None
    traceback: str | None


class AttemptView(TypedDict):
    number: int
    run: int  # 1 for the first process, 2 for the first retry or resume, ...
    status: Literal["completed", "failed"]
    started_at: float
    ended_at: float
    failure: FailureView | None


class ValueView(TypedDict):
    serializer: str
    size: int
    stored: Literal["inline", "blob", "delta"]
    blob: str | None


class CheckpointView(TypedDict):
    call_id: str
    name: str
    checkpoint_type: str | None
    status: Literal["completed", "failed"]
    explicit_id: bool
    started_at: float | None
    ended_at: float | None
    input_digest: str | None
    output: ValueView | None
    attempts: list[AttemptView]
    failure: FailureView | None
    metadata_json: str | None
    revision: int


class EventView(TypedDict):
    seq: int
    at: float
    event: str
    holder: str | None
    detail: str | None


class DivergenceView(TypedDict):
    call_id: str
    at: float
    stored_digest: str | None
    new_digest: str | None
    policy: str


class WaitView(TypedDict):
    name: str
    question: str | None
    schema_json: str | None
    schema_type: str | None
    metadata_json: str
    entered_waiting_at: float
    status: Literal["pending", "answered", "aborted"]
    answered_at: float | None
    value_json: str | None


class MemoryEntryView(TypedDict):
    """One version of a memory key (`src/memory.rs`); `serializer`/`size` None: deleted."""

    key: str
    value_type: str
    version: int
    scope: str
    scope_type: Literal["namespace", "flow", "execution"]
    created_us: int
    is_deleted: bool
    execution_id: str | None
    call_id: str | None
    flow_id: str | None
    flow_name: str | None
    serializer: str | None
    size: int | None


class MemoryScopeView(TypedDict):
    scope: str
    scope_type: Literal["namespace", "flow", "execution"]
    entry_count: int


class CacheEntryView(TypedDict):
    """An entry of the cross-execution cache (`src/cache.rs`); None fields: damaged. `key`
    is where it is stored (its object, or its flow's log on a local disk)."""

    key: str
    cache_key: str | None
    flow_name: str | None
    name: str | None
    exec_id: str | None
    call_id: str | None
    created_us: int | None
    damaged: str | None


class EntryPointView(TypedDict):
    module: str
    qualname: str
    script: str | None  # the script's absolute path when the flow was defined in __main__
    cwd: str


class ExecutionView(TypedDict):
    exec_id: str
    flow_name: str
    status: Status
    started_at: float
    ended_at: float | None
    failure: FailureView | None
    holder: str | None
    lease_expires_at: float | None
    entry: EntryPointView | None
    options_json: str | None
    kitaru_version: str | None
    result: ValueView | None
    checkpoint_count: int
    checkpoints: list[CheckpointView]  # empty unless inspected with full=True
    divergences: list[DivergenceView]
    metadata_json: list[str]  # kitaru.log() on the flow body, in order
    events: list[EventView]
    waits: list[WaitView]
    pending_waits: list[WaitView]


class Finding(TypedDict):
    kind: Literal["corrupt", "dangling", "sequence"]
    key: str
    detail: str


class VerifyReport(TypedDict):
    executions: int
    records: int
    blobs: int
    torn_tails: int
    fenced: int
    findings: list[Finding]


class ReindexReport(TypedDict):
    """What `kitaru store reindex` did (`src/index.rs`)."""

    executions: int
    missing: int


class ReplayPlan(TypedDict):
    """What a replay takes over from its source (`src/replay.rs`)."""

    source: str
    flow_name: str  # the flow the source ran
    frontier: str  # the call from which everything runs live
    reuse: list[str]  # finished calls before the frontier, in call order
    overrides: list[tuple[str, str]]  # (override key, the call id it replaces)


class CallSide(TypedDict):
    serializer: str
    size: int
    digest: str  # blake3 of the output bytes, hex
    input_digest: str | None
    duration: float  # seconds of the successful attempt
    metadata_json: str | None


class CallDiff(TypedDict):
    call_id: str
    name: str
    status: Literal["same", "changed", "added", "removed"]
    a: CallSide | None
    b: CallSide | None


class ExecutionDiff(TypedDict):
    """Two executions compared checkpoint by checkpoint (`src/diff.rs`)."""

    a: str
    b: str
    calls: list[CallDiff]  # in b's call order, then the calls only a has
