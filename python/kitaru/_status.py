"""`ExecutionStatus`, shared by `flow` and `client`: its own module because an enum class
costs more to create than the rest of `_types` (~0.14 ms), and `import kitaru` needs none."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover
    from .errors import StrEnum

__all__ = ["ExecutionStatus"]


class ExecutionStatus(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_successful(self) -> bool:
        return self is ExecutionStatus.COMPLETED

    @property
    def is_finished(self) -> bool:
        return self in (
            ExecutionStatus.COMPLETED,
            ExecutionStatus.FAILED,
            ExecutionStatus.CANCELLED,
        )
