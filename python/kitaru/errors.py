"""The kitaru exception hierarchy (the names and bases of Kitaru 0.4, plus a few more).

Every error says what went wrong and, where the user can act, how to fix it.
"""

from __future__ import annotations

import enum
import os
import sys

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10

    class StrEnum(str, enum.Enum):
        def __str__(self) -> str:
            return str(self.value)


__all__ = [
    "FailureOrigin",
    "KitaruBackendError",
    "KitaruBudgetExceededError",
    "KitaruCancelledError",
    "KitaruContextError",
    "KitaruCorruptionError",
    "KitaruDivergenceError",
    "KitaruError",
    "KitaruExecutionError",
    "KitaruExecutionNotFoundError",
    "KitaruFeatureNotAvailableError",
    "KitaruLeaseError",
    "KitaruLogRetrievalError",
    "KitaruRuntimeError",
    "KitaruStateError",
    "KitaruTimeoutError",
    "KitaruUsageError",
    "KitaruUserCodeError",
    "KitaruWaitValidationError",
    "build_recovery_command",
    "format_recovery_hint",
]


class FailureOrigin(StrEnum):
    """Where the failure of an execution came from."""

    USER_CODE = "user_code"
    RUNTIME = "runtime"
    BACKEND = "backend"
    DIVERGENCE = "divergence"
    RUNNER_DIED = "runner_died"
    BUDGET = "budget"
    UNKNOWN = "unknown"


class KitaruError(Exception):
    """Root of every kitaru error."""


class KitaruUsageError(KitaruError, ValueError):
    """Invalid input: a bad argument, option, name or environment value."""


class KitaruContextError(KitaruError, RuntimeError):
    """An API used where it cannot run (a checkpoint outside a flow, nested checkpoints...)."""


class KitaruStateError(KitaruError, RuntimeError):
    """The execution's state forbids the operation (retry of a completed run, get() while running...)."""

    @property
    def cancelled(self) -> bool:
        """True for a :class:`KitaruCancelledError` (the attribute older releases set);
        prefer ``isinstance`` in new code."""
        return isinstance(self, KitaruCancelledError)


class KitaruRuntimeError(KitaruError, RuntimeError):
    """A failure of the runtime itself: serialization, result loading, missing credentials."""


class KitaruExecutionError(KitaruRuntimeError):
    """An execution finished unsuccessfully."""

    def __init__(
        self,
        message: str,
        *,
        exec_id: str | None = None,
        status: str | None = None,
        failure_origin: FailureOrigin | None = None,
    ) -> None:
        super().__init__(message)
        self.exec_id = exec_id
        self.status = status
        self.failure_origin = failure_origin


class KitaruUserCodeError(KitaruExecutionError):
    """An execution failed because user code raised."""


class KitaruDivergenceError(KitaruExecutionError):
    """A finished checkpoint was called again with different inputs under the `error` policy."""


class KitaruDivergenceWarning(UserWarning):
    """A stored checkpoint output was reused for a call with different inputs, because the
    flow's divergence policy is ``"reuse"``."""


class KitaruBudgetExceededError(KitaruExecutionError):
    """The execution spent more on LLM calls than its `budget_usd`.

    Retry it with a larger budget (``kitaru executions retry <id> --budget-usd N``):
    finished checkpoints and LLM calls are reused, not paid for again.
    """


class KitaruBackendError(KitaruRuntimeError):
    """The store (or another backend) failed."""


class KitaruLogRetrievalError(KitaruBackendError):
    """Logs could not be read."""


class KitaruCorruptionError(KitaruRuntimeError):
    """Stored data does not match its checksum or hash; it was not used."""


class KitaruLeaseError(KitaruStateError):
    """Another process holds (or took over) the execution's lease."""


class KitaruCancelledError(KitaruStateError):
    """The execution was cancelled (``kitaru executions cancel``, an aborted wait) while
    this process ran it. A KitaruStateError, as Kitaru raised it before it had a class."""


class KitaruExecutionNotFoundError(KitaruUsageError, LookupError):
    """No execution with that id in the store."""


class KitaruTimeoutError(KitaruError, TimeoutError):
    """Waiting for an execution ran out of time."""


class KitaruWaitValidationError(KitaruUsageError):
    """Input for a wait does not match its schema."""


class KitaruFeatureNotAvailableError(KitaruError, NotImplementedError):
    """A feature that needs an optional dependency or a later release."""


def build_recovery_command(exec_id: str, status: object) -> str | None:
    """The CLI command that recovers an execution in `status`, if any."""
    if str(status) == "failed":
        return f"kitaru executions retry {exec_id}"
    return None


def format_recovery_hint(exec_id: str, status: object) -> str | None:
    command = build_recovery_command(exec_id, status)
    return f"To retry this failed execution, run: {command}" if command else None


_ORIGIN_CLASSES: dict[str, type[KitaruExecutionError]] = {
    FailureOrigin.USER_CODE: KitaruUserCodeError,
    FailureOrigin.DIVERGENCE: KitaruDivergenceError,
    FailureOrigin.BUDGET: KitaruBudgetExceededError,
}


def execution_error_for(origin: str | None) -> type[KitaruExecutionError]:
    """The error class that reports a failure of `origin`."""
    return _ORIGIN_CLASSES.get(origin or "", KitaruExecutionError)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_user(message: str, category: type[Warning]) -> None:
    """`warnings.warn` pointing at the first frame outside kitaru (the user's call of a
    checkpoint or `llm()`, whichever path of steps led here, sync or async)."""
    import sys
    import warnings

    level, frame = 1, sys._getframe(0)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    warnings.warn(message, category, stacklevel=level)
