"""Small types shared by modules that do not import each other: which store a run uses
(`StoreChoice`: `_config` and `stacks`), for type checkers only what a checkpoint call
needs to know about its checkpoint (`Step`: `checkpoint` and `_llm.call`), and the records
that cross to the core
(`CallRecord`, `AttemptRecord`, `FailureRecord`, `WaitRequest`, `StartRecord`), read
attribute by attribute by the Rust bindings (`src/py/records.rs`)."""

from __future__ import annotations

__all__ = [
    "AttemptRecord",
    "CallRecord",
    "FailureRecord",
    "StartRecord",
    "StoreChoice",
    "WaitRequest",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class Step(Protocol):
        """The checkpoint a `checkpoint._Call` belongs to: a `Checkpoint`, or the
        synthetic ``llm_call`` checkpoint of an `llm()` call in a flow body."""

        @property
        def name(self) -> str: ...

        @property
        def checkpoint_type(self) -> str | None: ...

        @property
        def retries(self) -> int: ...

        @property
        def allow_pickle(self) -> bool: ...

        @property
        def cache(self) -> bool | None: ...

        def code_identity(self) -> bytes | None: ...


class StoreChoice:
    """Which store a run or command uses, and why.

    `location` and `options` are what the Rust `Store` opens; `stack` is the stack's name
    (None when `KITARU_STORE` chose); `source` says which setting chose it, for people.
    """

    __slots__ = ("location", "options", "runner", "source", "stack")

    def __init__(
        self,
        location: str,
        options: dict[str, str],
        stack: str | None,
        source: str,
        runner: str | None = None,
    ) -> None:
        self.location, self.options, self.stack, self.source = location, options, stack, source
        self.runner = runner  # the stack's runner (`kitaru stack create --runner`), if set

    def __repr__(self) -> str:
        return (
            f"StoreChoice(location={self.location!r}, options={self.options!r}, "
            f"stack={self.stack!r}, source={self.source!r})"
        )


class CallRecord:
    """A finished checkpoint call as it crosses to the core (`Runner.record_checkpoint`,
    read attribute by attribute into the Rust `CallRecord`)."""

    __slots__ = ("call_id", "checkpoint_type", "data", "ended_us", "explicit_id",
                 "input_digest", "metadata_json", "name", "serializer", "started_us")  # fmt: skip

    def __init__(
        self,
        *,
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
    ) -> None:
        self.call_id, self.name, self.explicit_id = call_id, name, explicit_id
        self.checkpoint_type, self.input_digest = checkpoint_type, input_digest
        self.serializer, self.data = serializer, data
        self.started_us, self.ended_us, self.metadata_json = started_us, ended_us, metadata_json


class FailureRecord:
    """What went wrong, as the core stores it (`Runner.fail`, `flow_attempt_failed`, and
    inside an `AttemptRecord`): where it came from, the message, the exception's type and
    its traceback."""

    __slots__ = ("exception_type", "message", "origin", "traceback")

    def __init__(
        self, origin: str, message: str, exception_type: str | None, traceback: str | None
    ) -> None:
        self.origin, self.message = origin, message
        self.exception_type, self.traceback = exception_type, traceback


class AttemptRecord:
    """A failed attempt of a checkpoint call (`Runner.record_failed_attempt`)."""

    __slots__ = ("call_id", "checkpoint_type", "ended_us", "failure", "input_digest", "name",
                 "started_us")  # fmt: skip

    def __init__(
        self,
        *,
        call_id: str,
        name: str,
        checkpoint_type: str | None,
        input_digest: bytes | None,
        started_us: int,
        ended_us: int,
        failure: FailureRecord,
    ) -> None:
        self.call_id, self.name, self.checkpoint_type = call_id, name, checkpoint_type
        self.input_digest, self.started_us, self.ended_us = input_digest, started_us, ended_us
        self.failure = failure


class WaitRequest:
    """A wait the flow reached (`Runner.open_wait`; the core adds when and by which run)."""

    __slots__ = ("metadata_json", "name", "question", "schema_json", "schema_type")

    def __init__(
        self,
        *,
        name: str,
        question: str | None,
        schema_json: str | None,
        schema_type: str | None,
        metadata_json: str,
    ) -> None:
        self.name, self.question = name, question
        self.schema_json, self.schema_type = schema_json, schema_type
        self.metadata_json = metadata_json


class StartRecord:
    """What a new execution starts with (`Store.start`): the flow, its entry point (for a
    process that resumes it) and its arguments, which the core stores."""

    __slots__ = ("args", "args_serializer", "cwd", "flow_name", "kitaru_version", "module",
                 "options_json", "qualname", "script")  # fmt: skip

    def __init__(
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
    ) -> None:
        self.flow_name, self.module, self.qualname = flow_name, module, qualname
        self.script, self.cwd = script, cwd
        self.args_serializer, self.args = args_serializer, args
        self.kitaru_version, self.options_json = kitaru_version, options_json
