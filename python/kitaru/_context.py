"""The state of the running flow and checkpoint, held in context variables.

`FlowRun` is one process's run of one execution (one lease claim). It allocates call ids
(``fetch``, ``fetch_2``, ... or an explicit ``id=``), answers "is this call already done?"
from the journal, and records new results through the Rust runner.
"""

from __future__ import annotations

import _thread
import contextvars
import time

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

# `typing` costs more to import than the rest of kitaru: only type checkers see it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._kitaru import Runner, Store

if not TYPE_CHECKING:
    # Runtime stand-ins for the typing constructs used in class and function definitions.
    R = None

    class Generic:
        def __class_getitem__(cls, item: object) -> type:
            return cls

    def overload(func: object) -> object:
        return func


DIVERGENCE_POLICIES = ("reuse", "rerun", "error")


class CheckpointScope:
    """The checkpoint call whose body is running."""

    __slots__ = ("call_id", "checkpoint_type", "exec_id", "metadata", "name")

    def __init__(self, name: str, call_id: str, checkpoint_type: str | None, exec_id: str) -> None:
        self.name, self.call_id, self.checkpoint_type, self.exec_id = (
            name,
            call_id,
            checkpoint_type,
            exec_id,
        )
        self.metadata: dict[str, Any] = {}


current_flow: contextvars.ContextVar[FlowRun | None] = contextvars.ContextVar(
    "kitaru_flow", default=None
)
current_checkpoint: contextvars.ContextVar[CheckpointScope | None] = contextvars.ContextVar(
    "kitaru_checkpoint", default=None
)


def copy_identity(wrapper: Any, func: Any) -> None:
    """What functools.update_wrapper does, without importing functools at import time."""
    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        try:
            setattr(wrapper, attr, getattr(func, attr))
        except AttributeError:
            pass
    wrapper.__dict__.update(getattr(func, "__dict__", {}))
    wrapper.__wrapped__ = func


def is_async_function(func: Any) -> bool:
    """inspect.iscoroutinefunction without importing inspect (CO_COROUTINE flag)."""
    code = getattr(func, "__code__", None)
    if code is None:
        code = getattr(type(func).__call__, "__code__", None)
    return bool(code is not None and code.co_flags & 0x0080)


def sanitize_name(raw: str, fallback: str) -> str:
    """Kitaru's names: runs of non-word characters become `_`, a leading digit gets a prefix."""
    out: list[str] = []
    for ch in raw or "":
        if ch.isalnum() or ch == "_":
            out.append(ch)
        elif not out or out[-1] != "_":
            out.append("_")
    name = "".join(out).strip("_")
    if not name:
        return fallback
    if name[0].isdigit():
        name = f"{fallback}_{name}"
    return name


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
    import traceback

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

    def __init__(
        self, runner: Runner, flow_name: str, divergence: str, store: Store | None = None
    ) -> None:
        self.runner = runner
        self.store = store  # the store the execution lives in (None: the resolved one)
        self.exec_id: str = runner.exec_id
        self.flow_name = flow_name
        self.divergence = divergence
        self.finished = set(runner.finished_calls())
        # results recorded by this process (reused by a flow-level retry)
        self.done: dict[str, tuple[str, bytes, bytes | None]] = {}
        self._lock = _thread.allocate_lock()
        self.reset()

    def reset(self) -> None:
        """Start a pass over the flow body (the first, or a flow-level retry)."""
        self.occurrences: dict[str, int] = {}
        self.explicit: set[str] = set()
        self.wait_names: set[str] = set()
        self.wait_count = 0

    def allocate_wait(self, name: str | None) -> str:
        """The name of the next wait: `name`, or `wait_1`, `wait_2`, ... in call order."""
        with self._lock:
            if name is not None:
                if not isinstance(name, str) or not name.strip():
                    raise KitaruUsageError(f"wait() name must be a non-empty string, got {name!r}.")
                if name in self.wait_names:
                    raise KitaruUsageError(
                        f"wait() name {name!r} is used twice in one execution of flow {self.flow_name!r}; "
                        "wait names must be unique."
                    )
            else:
                while True:
                    self.wait_count += 1
                    name = f"wait_{self.wait_count}"
                    if name not in self.wait_names:
                        break
            self.wait_names.add(name)
            return name

    def allocate(self, name: str, explicit_id: str | None) -> str:
        """The call id of the next call of checkpoint `name`."""
        with self._lock:
            if explicit_id is not None:
                if not isinstance(explicit_id, str) or not explicit_id:
                    raise KitaruUsageError(
                        f"Checkpoint id must be a non-empty string, got {explicit_id!r}."
                    )
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
        from . import serde

        value = serde.loads(tag, data, what=f"stored output of checkpoint {call_id!r}")
        return True, value

    def remember(self, call_id: str, tag: str, data: bytes, digest: bytes | None) -> None:
        self.done[call_id] = (tag, data, digest)

    def log(self, values: dict[str, Any]) -> None:
        import json

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
    """Unwinds a flow whose execution was cancelled by another process (or a wait abort)."""


class WaitSuspended(BaseException):
    """Unwinds a flow whose wait ran out of polling time; the execution becomes `waiting`.

    A BaseException, so `except Exception` in user code cannot swallow it.
    """

    def __init__(self, name: str, question: str | None) -> None:
        super().__init__(f"waiting for input on {name!r}" + (f": {question}" if question else ""))
        self.name = name
