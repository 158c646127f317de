"""Type stubs of the compiled core (kept honest by mypy.stubtest)."""

import builtins
from collections.abc import Awaitable
from typing import Literal, final, overload

__all__ = [
    "INLINE_LIMIT",
    "LAYOUT_VERSION",
    "RECORD_FORMAT_VERSION",
    "Runner",
    "Store",
    "blake3_digest",
    "new_exec_id",
    "now_us",
    "record_to_json",
    "redact_urls",
]

RECORD_FORMAT_VERSION: int
LAYOUT_VERSION: int
INLINE_LIMIT: int

def new_exec_id() -> str: ...
def now_us() -> int: ...
def blake3_digest(data: bytes) -> bytes: ...
def record_to_json(data: bytes) -> str: ...
def redact_urls(text: str) -> str: ...

@final
class Store:
    def __new__(
        cls, location: str, *, fsync: bool = False, options: dict[str, str] | None = None
    ) -> Store: ...
    @property
    def url(self) -> str: ...
    def request_counts(self) -> dict[str, int]: ...
    def reset_request_counts(self) -> None: ...
    def usage(self, prefix: str = ...) -> tuple[int, int]: ...
    def start(
        self,
        *,
        flow_name: str,
        module: str,
        qualname: str,
        script: str | None,
        cwd: str,
        args_serializer: str,
        args: bytes,
        kitaru_version: str,
        options_json: str,
        ttl_ms: int,
    ) -> Runner: ...
    def claim(self, exec_id: str, intent: str, ttl_ms: int) -> Runner: ...
    def inspect(self, exec_id: str, *, full: bool = True) -> str: ...
    def list(
        self, *, flow: str | None = None, status: str | None = None, limit: int | None = None
    ) -> str: ...
    def start_args(self, exec_id: str) -> tuple[str, bytes]: ...
    def start_record(self, exec_id: str) -> tuple[str, str, bytes]: ...
    def result(self, exec_id: str) -> tuple[str, bytes] | None: ...
    def checkpoint_output(self, exec_id: str, call_id: str) -> tuple[str, bytes] | None: ...
    def cancel(self, exec_id: str, reason: str = ...) -> None: ...
    def answer(
        self, exec_id: str, name: str, value_json: str | None, *, aborted: bool = False
    ) -> None: ...
    def logs(self, exec_id: str) -> str: ...
    def dump_key(self, key: str) -> str | None: ...
    def verify(self) -> str: ...
    def keys(self, prefix: str) -> builtins.list[str]: ...

@final
class Runner:
    @property
    def exec_id(self) -> str: ...
    @property
    def claim_seq(self) -> int: ...
    def stored_calls(self) -> builtins.list[tuple[str, str, bool, bytes | None]]: ...
    def lookup(self, call_id: str) -> tuple[str, bytes, bytes | None] | None: ...
    def call_metadata(self, call_id: str) -> str | None: ...
    def execution_metadata(self) -> builtins.list[str]: ...
    def failed_attempts(self, call_id: str) -> int: ...
    def check_lease(self) -> None: ...
    @overload
    def record_checkpoint(
        self,
        call_id: str,
        name: str,
        explicit_id: bool,
        checkpoint_type: str | None,
        input_digest: bytes | None,
        serializer: str,
        data: bytes,
        started_us: int,
        ended_us: int,
        metadata_json: str | None,
        *,
        awaitable: Literal[False] = False,
    ) -> None: ...
    @overload
    def record_checkpoint(
        self,
        call_id: str,
        name: str,
        explicit_id: bool,
        checkpoint_type: str | None,
        input_digest: bytes | None,
        serializer: str,
        data: bytes,
        started_us: int,
        ended_us: int,
        metadata_json: str | None,
        *,
        awaitable: Literal[True],
    ) -> Awaitable[None]: ...
    def record_failed_attempt(
        self,
        call_id: str,
        name: str,
        checkpoint_type: str | None,
        input_digest: bytes | None,
        started_us: int,
        ended_us: int,
        origin: str,
        message: str,
        exception_type: str | None,
        traceback: str | None,
    ) -> int: ...
    def record_divergence(
        self, call_id: str, stored: bytes | None, new: bytes | None, policy: str
    ) -> None: ...
    @overload
    def open_wait(
        self,
        name: str,
        question: str | None,
        schema_json: str | None,
        schema_type: str | None,
        metadata_json: str,
        *,
        awaitable: Literal[False] = False,
    ) -> tuple[bool, str | None] | None: ...
    @overload
    def open_wait(
        self,
        name: str,
        question: str | None,
        schema_json: str | None,
        schema_type: str | None,
        metadata_json: str,
        *,
        awaitable: Literal[True],
    ) -> Awaitable[tuple[bool, str | None] | None]: ...
    @overload
    def poll_answer(
        self, name: str, *, awaitable: Literal[False] = False
    ) -> tuple[bool, str | None] | None: ...
    @overload
    def poll_answer(
        self, name: str, *, awaitable: Literal[True]
    ) -> Awaitable[tuple[bool, str | None] | None]: ...
    def write_logs(self, entries_jsonl: str) -> None: ...
    def log_metadata(self, json: str) -> None: ...
    def complete(self, serializer: str, data: bytes) -> None: ...
    def fail(
        self, origin: str, message: str, exception_type: str | None, traceback: str | None
    ) -> None: ...
    def flow_attempt_failed(
        self,
        attempt: int,
        origin: str,
        message: str,
        exception_type: str | None,
        traceback: str | None,
    ) -> None: ...
    def suspend(self, reason: str) -> None: ...
    def release(self) -> None: ...
