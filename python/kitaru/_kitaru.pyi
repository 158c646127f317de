"""Type stubs of the compiled core (kept honest by mypy.stubtest).

Every I/O method runs blocking with the GIL released, or returns an awaitable on kitaru's
runtime with ``awaitable=True`` (one binding, two overloads). Records crossing in are the
classes of `kitaru._types`; views coming back are the `TypedDict`s of `kitaru._views`.
"""

import builtins
from collections.abc import Awaitable, Generator
from typing import Any, Literal, final, overload

from kitaru._types import AttemptRecord, CallRecord, FailureRecord, StartRecord, WaitRequest
from kitaru._views import (
    CacheEntryView,
    EntryPointView,
    ExecutionDiff,
    ExecutionView,
    MemoryEntryView,
    MemoryScopeView,
    ReindexReport,
    ReplayPlan,
    VerifyReport,
    WaitView,
)

__all__ = [
    "INLINE_LIMIT",
    "LAYOUT_VERSION",
    "RECORD_FORMAT_VERSION",
    "VERSION",
    "CallDecision",
    "Progress",
    "Ready",
    "Runner",
    "Store",
    "blake3_digest",
    "new_exec_id",
    "now_us",
    "record_to_json",
    "redact_urls",
    "store_kind",
    "stored_plain",
]

VERSION: str  # kitaru's version (Cargo.toml's, which the wheel takes too)
RECORD_FORMAT_VERSION: int
LAYOUT_VERSION: int
INLINE_LIMIT: int

# (serializer, bytes) of a stored value; (aborted, value JSON) of a wait's answer.
_Value = tuple[str, bytes]
_Answer = tuple[bool, str | None]

def new_exec_id() -> str: ...
def now_us() -> int: ...
def blake3_digest(data: bytes) -> bytes: ...
def record_to_json(data: bytes) -> dict[str, Any]: ...
def redact_urls(text: str) -> str: ...
def store_kind(location: str) -> Literal["local", "memory", "object"]: ...
def stored_plain(data: bytes) -> bytes: ...

@final
class Store:
    def __new__(
        cls, location: str, *, fsync: bool = False, options: dict[str, str] | None = None
    ) -> Store: ...
    @property
    def url(self) -> str: ...
    def request_counts(self) -> dict[str, int]: ...
    def reset_request_counts(self) -> None: ...
    @overload
    def usage(self, prefix: str = ..., *, awaitable: Literal[False] = False) -> tuple[int, int]: ...
    @overload
    def usage(
        self, prefix: str = ..., *, awaitable: Literal[True]
    ) -> Awaitable[tuple[int, int]]: ...
    @overload
    def start(
        self, start: StartRecord, ttl_ms: int, *, awaitable: Literal[False] = False
    ) -> Runner: ...
    @overload
    def start(
        self, start: StartRecord, ttl_ms: int, *, awaitable: Literal[True]
    ) -> Awaitable[Runner]: ...
    @overload
    def claim(
        self,
        exec_id: str,
        intent: Literal["retry", "resume"],
        ttl_ms: int,
        *,
        awaitable: Literal[False] = False,
    ) -> Runner: ...
    @overload
    def claim(
        self,
        exec_id: str,
        intent: Literal["retry", "resume"],
        ttl_ms: int,
        *,
        awaitable: Literal[True],
    ) -> Awaitable[Runner]: ...
    @overload
    def inspect(
        self, exec_id: str, *, full: bool = True, awaitable: Literal[False] = False
    ) -> ExecutionView: ...
    @overload
    def inspect(
        self, exec_id: str, *, full: bool = True, awaitable: Literal[True]
    ) -> Awaitable[ExecutionView]: ...
    @overload
    def list(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        progress: Progress | None = None,
        recoverable: bool = False,
        awaitable: Literal[False] = False,
    ) -> builtins.list[ExecutionView]: ...
    @overload
    def list(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        progress: Progress | None = None,
        recoverable: bool = False,
        awaitable: Literal[True],
    ) -> Awaitable[builtins.list[ExecutionView]]: ...
    @overload
    def start_record(
        self, exec_id: str, *, awaitable: Literal[False] = False
    ) -> tuple[EntryPointView, str, bytes]: ...
    @overload
    def start_record(
        self, exec_id: str, *, awaitable: Literal[True]
    ) -> Awaitable[tuple[EntryPointView, str, bytes]]: ...
    @overload
    def pending_wait(
        self, exec_id: str, name: str | None = None, *, awaitable: Literal[False] = False
    ) -> WaitView: ...
    @overload
    def pending_wait(
        self, exec_id: str, name: str | None = None, *, awaitable: Literal[True]
    ) -> Awaitable[WaitView]: ...
    @overload
    def memory_get(
        self,
        scope_type: str,
        scope: str,
        key: str,
        version: int | None = None,
        *,
        awaitable: Literal[False] = False,
    ) -> tuple[MemoryEntryView, _Value | None] | None: ...
    @overload
    def memory_get(
        self,
        scope_type: str,
        scope: str,
        key: str,
        version: int | None = None,
        *,
        awaitable: Literal[True],
    ) -> Awaitable[tuple[MemoryEntryView, _Value | None] | None]: ...
    @overload
    def memory_write(
        self,
        scope_type: str,
        scope: str,
        key: str,
        value: tuple[str, bytes] | None,
        value_type: str,
        *,
        execution_id: str | None = None,
        call_id: str | None = None,
        flow_id: str | None = None,
        flow_name: str | None = None,
        dedupe_since: int | None = None,
        awaitable: Literal[False] = False,
    ) -> MemoryEntryView: ...
    @overload
    def memory_write(
        self,
        scope_type: str,
        scope: str,
        key: str,
        value: tuple[str, bytes] | None,
        value_type: str,
        *,
        execution_id: str | None = None,
        call_id: str | None = None,
        flow_id: str | None = None,
        flow_name: str | None = None,
        dedupe_since: int | None = None,
        awaitable: Literal[True],
    ) -> Awaitable[MemoryEntryView]: ...
    @overload
    def memory_history(
        self, scope_type: str, scope: str, key: str, *, awaitable: Literal[False] = False
    ) -> builtins.list[MemoryEntryView]: ...
    @overload
    def memory_history(
        self, scope_type: str, scope: str, key: str, *, awaitable: Literal[True]
    ) -> Awaitable[builtins.list[MemoryEntryView]]: ...
    @overload
    def memory_list(
        self, scope_type: str, scope: str, *, awaitable: Literal[False] = False
    ) -> builtins.list[MemoryEntryView]: ...
    @overload
    def memory_list(
        self, scope_type: str, scope: str, *, awaitable: Literal[True]
    ) -> Awaitable[builtins.list[MemoryEntryView]]: ...
    @overload
    def memory_keys(
        self,
        scope_type: str,
        scope: str,
        include_deleted: bool = False,
        *,
        awaitable: Literal[False] = False,
    ) -> builtins.list[str]: ...
    @overload
    def memory_keys(
        self,
        scope_type: str,
        scope: str,
        include_deleted: bool = False,
        *,
        awaitable: Literal[True],
    ) -> Awaitable[builtins.list[str]]: ...
    @overload
    def memory_scopes(
        self, *, awaitable: Literal[False] = False
    ) -> builtins.list[MemoryScopeView]: ...
    @overload
    def memory_scopes(
        self, *, awaitable: Literal[True]
    ) -> Awaitable[builtins.list[MemoryScopeView]]: ...
    @overload
    def memory_purge(
        self,
        scope_type: str,
        scope: str,
        key: str,
        keep: int,
        *,
        awaitable: Literal[False] = False,
    ) -> int: ...
    @overload
    def memory_purge(
        self, scope_type: str, scope: str, key: str, keep: int, *, awaitable: Literal[True]
    ) -> Awaitable[int]: ...
    @overload
    def cache_entries(
        self, flow: str | None = None, *, awaitable: Literal[False] = False
    ) -> builtins.list[CacheEntryView]: ...
    @overload
    def cache_entries(
        self, flow: str | None = None, *, awaitable: Literal[True]
    ) -> Awaitable[builtins.list[CacheEntryView]]: ...
    @overload
    def clear_cache(self, flow: str | None = None, *, awaitable: Literal[False] = False) -> int: ...
    @overload
    def clear_cache(
        self, flow: str | None = None, *, awaitable: Literal[True]
    ) -> Awaitable[int]: ...
    @overload
    def replay_plan(
        self,
        exec_id: str,
        from_: str,
        override_keys: builtins.list[str],
        *,
        awaitable: Literal[False] = False,
    ) -> ReplayPlan: ...
    @overload
    def replay_plan(
        self,
        exec_id: str,
        from_: str,
        override_keys: builtins.list[str],
        *,
        awaitable: Literal[True],
    ) -> Awaitable[ReplayPlan]: ...
    @overload
    def diff(self, a: str, b: str, *, awaitable: Literal[False] = False) -> ExecutionDiff: ...
    @overload
    def diff(self, a: str, b: str, *, awaitable: Literal[True]) -> Awaitable[ExecutionDiff]: ...
    @overload
    def result(self, exec_id: str, *, awaitable: Literal[False] = False) -> _Value | None: ...
    @overload
    def result(self, exec_id: str, *, awaitable: Literal[True]) -> Awaitable[_Value | None]: ...
    @overload
    def checkpoint_output(
        self, exec_id: str, call_id: str, *, awaitable: Literal[False] = False
    ) -> _Value | None: ...
    @overload
    def checkpoint_output(
        self, exec_id: str, call_id: str, *, awaitable: Literal[True]
    ) -> Awaitable[_Value | None]: ...
    @overload
    def checkpoint_outputs(
        self, exec_id: str, call_ids: builtins.list[str], *, awaitable: Literal[False] = False
    ) -> builtins.list[_Value | None]: ...
    @overload
    def checkpoint_outputs(
        self, exec_id: str, call_ids: builtins.list[str], *, awaitable: Literal[True]
    ) -> Awaitable[builtins.list[_Value | None]]: ...
    @overload
    def cancel(
        self, exec_id: str, reason: str = ..., *, awaitable: Literal[False] = False
    ) -> None: ...
    @overload
    def cancel(
        self, exec_id: str, reason: str = ..., *, awaitable: Literal[True]
    ) -> Awaitable[None]: ...
    @overload
    def answer(
        self,
        exec_id: str,
        name: str,
        value_json: str | None,
        *,
        aborted: bool = False,
        awaitable: Literal[False] = False,
    ) -> None: ...
    @overload
    def answer(
        self,
        exec_id: str,
        name: str,
        value_json: str | None,
        *,
        aborted: bool = False,
        awaitable: Literal[True],
    ) -> Awaitable[None]: ...
    @overload
    def logs(self, exec_id: str, *, awaitable: Literal[False] = False) -> str: ...
    @overload
    def logs(self, exec_id: str, *, awaitable: Literal[True]) -> Awaitable[str]: ...
    @overload
    def dump_key(self, key: str, *, awaitable: Literal[False] = False) -> dict[str, Any] | None: ...
    @overload
    def dump_key(
        self, key: str, *, awaitable: Literal[True]
    ) -> Awaitable[dict[str, Any] | None]: ...
    @overload
    def graph_put_checkpoint(
        self,
        thread: str,
        ns: str,
        checkpoint_id: str,
        data: bytes,
        *,
        awaitable: Literal[False] = False,
    ) -> bool: ...
    @overload
    def graph_put_checkpoint(
        self, thread: str, ns: str, checkpoint_id: str, data: bytes, *, awaitable: Literal[True]
    ) -> Awaitable[bool]: ...
    @overload
    def graph_checkpoint_ids(
        self, thread: str, ns: str, *, awaitable: Literal[False] = False
    ) -> builtins.list[str]: ...
    @overload
    def graph_checkpoint_ids(
        self, thread: str, ns: str, *, awaitable: Literal[True]
    ) -> Awaitable[builtins.list[str]]: ...
    @overload
    def graph_get_checkpoints(
        self, thread: str, ns: str, ids: builtins.list[str], *, awaitable: Literal[False] = False
    ) -> builtins.list[bytes | None]: ...
    @overload
    def graph_get_checkpoints(
        self, thread: str, ns: str, ids: builtins.list[str], *, awaitable: Literal[True]
    ) -> Awaitable[builtins.list[bytes | None]]: ...
    @overload
    def graph_put_writes(
        self,
        thread: str,
        ns: str,
        checkpoint_id: str,
        task_id: str,
        writes: builtins.list[tuple[int, bytes]],
        *,
        awaitable: Literal[False] = False,
    ) -> None: ...
    @overload
    def graph_put_writes(
        self,
        thread: str,
        ns: str,
        checkpoint_id: str,
        task_id: str,
        writes: builtins.list[tuple[int, bytes]],
        *,
        awaitable: Literal[True],
    ) -> Awaitable[None]: ...
    @overload
    def graph_writes(
        self,
        thread: str,
        ns: str,
        ids: builtins.list[str] | None = None,
        *,
        awaitable: Literal[False] = False,
    ) -> builtins.list[tuple[str, builtins.list[tuple[str, int, bytes]]]]: ...
    @overload
    def graph_writes(
        self,
        thread: str,
        ns: str,
        ids: builtins.list[str] | None = None,
        *,
        awaitable: Literal[True],
    ) -> Awaitable[builtins.list[tuple[str, builtins.list[tuple[str, int, bytes]]]]]: ...
    @overload
    def graph_threads(
        self, thread: str | None = None, *, awaitable: Literal[False] = False
    ) -> builtins.list[str]: ...
    @overload
    def graph_threads(
        self, thread: str | None = None, *, awaitable: Literal[True]
    ) -> Awaitable[builtins.list[str]]: ...
    @overload
    def graph_delete(
        self,
        thread: str,
        ns: str | None = None,
        ids: builtins.list[str] | None = None,
        *,
        awaitable: Literal[False] = False,
    ) -> int: ...
    @overload
    def graph_delete(
        self,
        thread: str,
        ns: str | None = None,
        ids: builtins.list[str] | None = None,
        *,
        awaitable: Literal[True],
    ) -> Awaitable[int]: ...
    @overload
    def put_blob(self, data: bytes, *, awaitable: Literal[False] = False) -> str: ...
    @overload
    def put_blob(self, data: bytes, *, awaitable: Literal[True]) -> Awaitable[str]: ...
    @overload
    def get_blob(
        self, hash: str, exec_id: str | None = None, *, awaitable: Literal[False] = False
    ) -> bytes: ...
    @overload
    def get_blob(
        self, hash: str, exec_id: str | None = None, *, awaitable: Literal[True]
    ) -> Awaitable[bytes]: ...
    @overload
    def verify(
        self, *, progress: Progress | None = None, awaitable: Literal[False] = False
    ) -> VerifyReport: ...
    @overload
    def verify(
        self, *, progress: Progress | None = None, awaitable: Literal[True]
    ) -> Awaitable[VerifyReport]: ...
    @overload
    def reindex(
        self, *, progress: Progress | None = None, awaitable: Literal[False] = False
    ) -> ReindexReport: ...
    @overload
    def reindex(
        self, *, progress: Progress | None = None, awaitable: Literal[True]
    ) -> Awaitable[ReindexReport]: ...
    @overload
    def keys(self, prefix: str, *, awaitable: Literal[False] = False) -> builtins.list[str]: ...
    @overload
    def keys(self, prefix: str, *, awaitable: Literal[True]) -> Awaitable[builtins.list[str]]: ...

@final
class Progress:
    """How far a `Store.verify` or `Store.list` has come; read from another thread."""

    def __init__(self) -> None: ...
    def read(self) -> tuple[str, int, int, int]:
        """(phase, done, total, phase number); total 0: not known yet."""

@final
class Ready:
    """The awaitable of a result that was ready when the call returned."""

    def __await__(self) -> Generator[None, None, Any]: ...
    def __iter__(self) -> Ready: ...
    def __next__(self) -> None: ...

@final
class CallDecision:
    """The core's decision for one checkpoint call."""

    @property
    def call_id(self) -> str: ...
    @property
    def reuse(self) -> bool: ...
    @property
    def pending(self) -> bool: ...
    @property
    def earlier_run(self) -> bool: ...
    @property
    def value(self) -> _Value | None: ...
    @property
    def notice(self) -> str | None: ...
    @property
    def notice_kind(self) -> Literal["diverged", "damaged", "cache"] | None: ...
    @property
    def cached_from(self) -> tuple[str, str] | None: ...
    @property
    def cached_metadata(self) -> str | None: ...

@final
class Runner:
    @property
    def exec_id(self) -> str: ...
    @property
    def claim_seq(self) -> int: ...
    @property
    def options_json(self) -> str | None: ...
    def new_pass(self) -> int: ...
    def allocate_call(self, name: str, explicit_id: str | None = None) -> str: ...
    def begin_call(
        self,
        call_id: str,
        name: str,
        digest: bytes | None,
        *,
        ordered: bool,
        explicit: bool,
        policy: Literal["reuse", "rerun", "error"] | str,
        code: bytes | None = None,
        cache: bool | None = None,
    ) -> CallDecision: ...
    @overload
    def settle_call(
        self, decision: CallDecision, *, awaitable: Literal[False] = False
    ) -> CallDecision: ...
    @overload
    def settle_call(
        self, decision: CallDecision, *, awaitable: Literal[True]
    ) -> Awaitable[CallDecision]: ...
    def call_metadata(self, call_id: str) -> str | None: ...
    def execution_metadata(self) -> builtins.list[str]: ...
    def lease_ok(self) -> bool: ...
    @overload
    def check_lease(self, *, awaitable: Literal[False] = False) -> None: ...
    @overload
    def check_lease(self, *, awaitable: Literal[True]) -> Awaitable[None]: ...
    @overload
    def record_checkpoint(self, call: CallRecord, *, awaitable: Literal[False] = False) -> None: ...
    @overload
    def record_checkpoint(
        self, call: CallRecord, *, awaitable: Literal[True]
    ) -> Awaitable[None]: ...
    @overload
    def seed_from(
        self,
        source: str,
        calls: builtins.list[str],
        overrides: builtins.list[tuple[str, str, bytes]],
        *,
        awaitable: Literal[False] = False,
    ) -> int: ...
    @overload
    def seed_from(
        self,
        source: str,
        calls: builtins.list[str],
        overrides: builtins.list[tuple[str, str, bytes]],
        *,
        awaitable: Literal[True],
    ) -> Awaitable[int]: ...
    @overload
    def record_failed_attempt(
        self, attempt: AttemptRecord, *, awaitable: Literal[False] = False
    ) -> int: ...
    @overload
    def record_failed_attempt(
        self, attempt: AttemptRecord, *, awaitable: Literal[True]
    ) -> Awaitable[int]: ...
    @overload
    def open_wait(
        self, wait: WaitRequest, *, awaitable: Literal[False] = False
    ) -> _Answer | None: ...
    @overload
    def open_wait(
        self, wait: WaitRequest, *, awaitable: Literal[True]
    ) -> Awaitable[_Answer | None]: ...
    @overload
    def poll_answer(self, name: str, *, awaitable: Literal[False] = False) -> _Answer | None: ...
    @overload
    def poll_answer(self, name: str, *, awaitable: Literal[True]) -> Awaitable[_Answer | None]: ...
    @overload
    def write_logs(self, entries_jsonl: str, *, awaitable: Literal[False] = False) -> None: ...
    @overload
    def write_logs(self, entries_jsonl: str, *, awaitable: Literal[True]) -> Awaitable[None]: ...
    @overload
    def log_metadata(self, json: str, *, awaitable: Literal[False] = False) -> None: ...
    @overload
    def log_metadata(self, json: str, *, awaitable: Literal[True]) -> Awaitable[None]: ...
    @overload
    def complete(
        self, serializer: str, data: bytes, *, awaitable: Literal[False] = False
    ) -> None: ...
    @overload
    def complete(
        self, serializer: str, data: bytes, *, awaitable: Literal[True]
    ) -> Awaitable[None]: ...
    @overload
    def fail(self, failure: FailureRecord, *, awaitable: Literal[False] = False) -> None: ...
    @overload
    def fail(self, failure: FailureRecord, *, awaitable: Literal[True]) -> Awaitable[None]: ...
    @overload
    def flow_attempt_failed(
        self, attempt: int, failure: FailureRecord, *, awaitable: Literal[False] = False
    ) -> None: ...
    @overload
    def flow_attempt_failed(
        self, attempt: int, failure: FailureRecord, *, awaitable: Literal[True]
    ) -> Awaitable[None]: ...
    @overload
    def suspend(self, reason: str, *, awaitable: Literal[False] = False) -> None: ...
    @overload
    def suspend(self, reason: str, *, awaitable: Literal[True]) -> Awaitable[None]: ...
    @overload
    def release(self, *, awaitable: Literal[False] = False) -> None: ...
    @overload
    def release(self, *, awaitable: Literal[True]) -> Awaitable[None]: ...
