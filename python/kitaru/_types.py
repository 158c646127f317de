"""Small types shared by modules that do not import each other: which store a run uses
(`StoreChoice`: `_config` and `stacks`), an execution's status (`ExecutionStatus`: `flow`
and `client`) and, for type checkers only, what a checkpoint call needs to know about its
checkpoint (`Step`: `checkpoint` and `_llm.call`)."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover
    from .errors import StrEnum

__all__ = ["ExecutionStatus", "StoreChoice"]

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


class StoreChoice:
    """Which store a run or command uses, and why.

    `location` and `options` are what the Rust `Store` opens; `stack` is the stack's name
    (None when `KITARU_STORE` chose); `source` says which setting chose it, for people.
    """

    __slots__ = ("location", "options", "source", "stack")

    def __init__(
        self, location: str, options: dict[str, str], stack: str | None, source: str
    ) -> None:
        self.location, self.options, self.stack, self.source = location, options, stack, source

    def __repr__(self) -> str:
        return (
            f"StoreChoice(location={self.location!r}, options={self.options!r}, "
            f"stack={self.stack!r}, source={self.source!r})"
        )


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
