"""The state of the running flow and checkpoint, held in context variables.

`FlowRun` is one process's run of one execution (one lease claim). It allocates call ids
(``fetch``, ``fetch_2``, ... or an explicit ``id=``), answers "is this call already done?"
from the journal, and records new results through the Rust runner.
"""

from __future__ import annotations

import contextvars
import json
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import serde
from .errors import (
    FailureOrigin,
    KitaruBackendError,
    KitaruContextError,
    KitaruCorruptionError,
    KitaruDivergenceError,
    KitaruLeaseError,
    KitaruRuntimeError,
    KitaruStateError,
    KitaruUsageError,
)

if TYPE_CHECKING:
    from ._kitaru import Runner

DIVERGENCE_POLICIES = ("reuse", "rerun", "error")


@dataclass
class CheckpointScope:
    """The checkpoint call whose body is running."""

    name: str
    call_id: str
    checkpoint_type: str | None
    exec_id: str
    metadata: dict[str, Any] = field(default_factory=dict)


current_flow: contextvars.ContextVar[FlowRun | None] = contextvars.ContextVar("kitaru_flow", default=None)
current_checkpoint: contextvars.ContextVar[CheckpointScope | None] = contextvars.ContextVar(
    "kitaru_checkpoint", default=None
)


def now_us() -> int:
    return time.time_ns() // 1000


def merge_metadata(into: dict[str, Any], new: dict[str, Any]) -> None:
    """Kitaru's log() merge: dict values merge key-wise, other values replace."""
    for key, value in new.items():
        old = into.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            merged = dict(old)
            merged.update(value)
            into[key] = merged
        else:
            into[key] = value


def failure_of(exc: BaseException) -> tuple[str, str, str | None, str | None]:
    """(origin, message, exception type, traceback) describing `exc`."""
    if isinstance(exc, KitaruDivergenceError):
        origin = FailureOrigin.DIVERGENCE
    elif isinstance(exc, (KitaruBackendError, KitaruCorruptionError)):
        origin = FailureOrigin.BACKEND
    elif isinstance(exc, KitaruRuntimeError) and getattr(exc, "kitaru_runtime", False):
        origin = FailureOrigin.RUNTIME
    else:
        origin = FailureOrigin.USER_CODE
    exc_type = f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins.")
    message = str(exc) or type(exc).__name__
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return str(origin), message, exc_type, tb[-20_000:]


def runtime_error(message: str, cause: BaseException | None = None) -> KitaruRuntimeError:
    """A KitaruRuntimeError marked as a failure of the runtime (not of user code)."""
    err = KitaruRuntimeError(message)
    err.kitaru_runtime = True  # type: ignore[attr-defined]
    if cause is not None:
        err.__cause__ = cause
    return err


class FlowRun:
    """One process's run of one execution."""

    def __init__(self, runner: Runner, flow_name: str, divergence: str) -> None:
        self.runner = runner
        self.exec_id: str = runner.exec_id
        self.flow_name = flow_name
        self.divergence = divergence
        self.finished = set(runner.finished_calls())
        # results recorded by this process (reused by a flow-level retry)
        self.done: dict[str, tuple[str, bytes, bytes | None]] = {}
        self.reused: list[str] = []
        self.executed: list[str] = []
        self.thread = threading.get_ident()
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Start a pass over the flow body (the first, or a flow-level retry)."""
        self.occurrences: dict[str, int] = {}
        self.explicit: set[str] = set()

    def allocate(self, name: str, explicit_id: str | None) -> str:
        """The call id of the next call of checkpoint `name`."""
        with self._lock:
            if explicit_id is not None:
                if not isinstance(explicit_id, str) or not explicit_id:
                    raise KitaruUsageError(f"Checkpoint id must be a non-empty string, got {explicit_id!r}.")
                if explicit_id in self.explicit:
                    raise KitaruUsageError(
                        f"Checkpoint id {explicit_id!r} is used twice in one execution of flow "
                        f"{self.flow_name!r}; explicit ids must be unique."
                    )
                self.explicit.add(explicit_id)
                return explicit_id
            n = self.occurrences.get(name, 0) + 1
            self.occurrences[name] = n
            return name if n == 1 else f"{name}_{n}"

    def lookup(self, call_id: str) -> tuple[str, bytes, bytes | None] | None:
        hit = self.done.get(call_id)
        if hit is not None or call_id not in self.finished:
            return hit
        return self.runner.lookup(call_id)

    def stored_result(self, call_id: str, digest: bytes | None) -> tuple[bool, Any]:
        """(True, value) when the call finished before and its result is to be reused."""
        hit = self.lookup(call_id)
        if hit is None:
            return False, None
        tag, data, stored_digest = hit
        if digest is not None and stored_digest is not None and digest != stored_digest:
            self.runner.record_divergence(call_id, stored_digest, digest, self.divergence)
            if self.divergence == "error":
                raise KitaruDivergenceError(
                    f"Checkpoint {call_id!r} of execution {self.exec_id} finished earlier with different "
                    "inputs than this call. The flow's divergence policy is 'error'; use "
                    "@flow(divergence='reuse') to keep the stored output or 'rerun' to run it again.",
                    exec_id=self.exec_id,
                    status="failed",
                    failure_origin=FailureOrigin.DIVERGENCE,
                )
            if self.divergence == "rerun":
                return False, None
        value = serde.loads(tag, data, what=f"stored output of checkpoint {call_id!r}")
        self.reused.append(call_id)
        return True, value

    def remember(self, call_id: str, tag: str, data: bytes, digest: bytes | None) -> None:
        self.done[call_id] = (tag, data, digest)
        self.executed.append(call_id)

    def log(self, values: dict[str, Any]) -> None:
        self.runner.log_metadata(json.dumps(values, default=repr))


def require_flow(api: str) -> FlowRun:
    run = current_flow.get()
    if run is None:
        raise KitaruContextError(f"{api} can only run inside a @flow.")
    return run


def check_lease(run: FlowRun) -> None:
    try:
        run.runner.check_lease()
    except KitaruLeaseError:
        raise
    except KitaruStateError as exc:
        if getattr(exc, "cancelled", False):
            raise FlowCancelled(str(exc)) from None
        raise


class FlowCancelled(BaseException):
    """Unwinds a flow whose execution was cancelled by another process."""


def is_interactive_main() -> bool:
    main = sys.modules.get("__main__")
    return main is None or not getattr(main, "__file__", None)
