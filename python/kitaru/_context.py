"""The state of the running flow and checkpoint, held in context variables.

`FlowRun` is one process's run of one execution (one lease claim): the Rust runner that
holds its lease (which also decides which stored result answers each call: ids, matching
by inputs, divergence), the passes over the flow body, wait names and the cost ledger.
"""

from __future__ import annotations

import _thread
import contextvars
import time

from ._ledger import Ledger
from ._lineage import Lineage
from .errors import (
    FailureOrigin,
    KitaruBackendError,
    KitaruBudgetExceededError,
    KitaruCancelledError,
    KitaruContextError,
    KitaruCorruptionError,
    KitaruDivergenceError,
    KitaruRuntimeError,
    KitaruUsageError,
)

# `typing` costs more to import than the rest of kitaru: only type checkers see it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Generator
    from typing import Any

    from ._kitaru import Runner, Store

if not TYPE_CHECKING:
    # Runtime stand-ins for the typing constructs used in class and function definitions.
    P = R = None

    class Generic:
        def __class_getitem__(cls, item: object) -> type:
            return cls

    def overload(func: object) -> object:
        return func


DIVERGENCE_POLICIES = ("reuse", "rerun", "error")  # checked by the core on each call


class CheckpointScope:
    """The checkpoint call whose body is running."""

    __slots__ = ("call_id", "checkpoint_type", "exec_id", "llm_count", "metadata", "name")

    def __init__(self, name: str, call_id: str, checkpoint_type: str | None, exec_id: str) -> None:
        self.name, self.call_id, self.checkpoint_type, self.exec_id = (
            name,
            call_id,
            checkpoint_type,
            exec_id,
        )
        self.metadata: dict[str, Any] = {}
        self.llm_count = 0


current_flow: contextvars.ContextVar[FlowRun | None] = contextvars.ContextVar(
    "kitaru_flow", default=None
)
current_checkpoint: contextvars.ContextVar[CheckpointScope | None] = contextvars.ContextVar(
    "kitaru_checkpoint", default=None
)


def copy_identity(wrapper: Any, func: Any, *, code: bool = True) -> None:
    """Make `wrapper` look like `func` to code that inspects functions (agent frameworks
    turning functions into tools or graph nodes), without importing functools or inspect.

    What functools.update_wrapper copies (name, docstring, module, annotations,
    ``__wrapped__``, so inspect.signature and typing.get_type_hints answer for `func`),
    plus its defaults and, with `code`, its ``__code__``: inspect treats an object with a
    function's attributes as a function (as it does Cython's), so
    ``inspect.iscoroutinefunction(wrapper)`` is true for an ``async def`` `func` on every
    Python version (``inspect.markcoroutinefunction`` exists only from 3.12).
    """
    attrs = ("__module__", "__name__", "__qualname__", "__doc__", "__type_params__",
             "__defaults__", "__kwdefaults__", "__annotate__")  # fmt: skip
    for attr in (*attrs, "__code__") if code else attrs:
        try:
            setattr(wrapper, attr, getattr(func, attr))
        except AttributeError:
            pass
    try:
        wrapper.__annotations__ = func.__annotations__
    except Exception:  # pragma: no cover - 3.14 evaluating a name not defined yet
        pass  # (the copied __annotate__ evaluates them when asked)
    wrapper.__dict__.update(getattr(func, "__dict__", {}))
    wrapper.__wrapped__ = func


def mark_coroutine_function(wrapper: Any) -> None:
    """``inspect.markcoroutinefunction`` (Python 3.12+) when inspect is loaded already.

    The ``__code__`` copied by `copy_identity` makes inspect see a coroutine function
    (3.11+); the mark also covers checks that look only for it. Importing inspect for it
    would slow down every module that defines a checkpoint. Python 3.10 gets asyncio's
    mark, which ``asyncio.iscoroutinefunction`` reads.
    """
    import sys

    mark = getattr(sys.modules.get("inspect"), "markcoroutinefunction", None)
    if mark is not None:
        mark(wrapper)
    if sys.version_info < (3, 11):  # pragma: no cover - CI runs 3.11+
        from asyncio import coroutines

        wrapper._is_coroutine = coroutines._is_coroutine  # type: ignore[attr-defined]


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


# Bounds on what a failure or a captured line puts into a record (records hold at most
# 64 MiB): a longer text keeps its start (a traceback its start and its end) and says how
# much was cut. Characters, not bytes; every record holds several such texts at most.
MESSAGE_LIMIT = 64 * 1024
TRACEBACK_LIMIT = 256 * 1024
LOG_LINE_LIMIT = 256 * 1024


def clip(text: str, limit: int, *, keep_end: bool = False) -> str:
    """`text`, cut to about `limit` characters with a marker saying how many were cut."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    marker = f" [... {cut} characters cut by kitaru ...] "
    if keep_end:
        return text[: limit // 2] + marker + text[len(text) - limit // 2 :]
    return text[:limit] + marker


def _text(value: str) -> str:
    """A str that any record accepts: lone surrogates (which are not UTF-8) escaped."""
    value = str.__str__(value)  # a plain str (a subclass may override what follows)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _type_name(exc: BaseException) -> str:
    """``module.QualName`` of `exc`'s class, whatever its class claims to be."""
    cls = type(exc)
    module = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", None)
    if not isinstance(qualname, str):
        qualname = cls.__name__
    if not isinstance(module, str) or module == "builtins":
        return qualname if module == "builtins" else f"<unknown module>.{qualname}"
    return f"{module}.{qualname}"


def _message(exc: BaseException, type_name: str) -> str:
    """str(exc), else repr(exc), else a sentence saying neither could be made."""
    for render in (str, repr):
        try:
            text = render(exc)
        except Exception:
            continue
        if isinstance(text, str) and text:
            return text
        if render is str and isinstance(text, str):
            return type_name.rpartition(".")[2]  # an exception without a message
    return f"{type_name} (its str() and repr() raised an exception)"


def _traceback(exc: BaseException) -> str | None:
    import traceback

    try:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:
        try:  # the frames at least (a hostile __notes__, __cause__ or __module__)
            return "".join(traceback.format_tb(exc.__traceback__))
        except Exception:
            return None


def failure_of(exc: BaseException) -> tuple[str, str, str | None, str | None]:
    """(origin, message, exception type, traceback) describing `exc`.

    Never raises, whatever `exc` does when it is printed, so a failure is always recorded;
    the message and traceback are bounded (`MESSAGE_LIMIT`, `TRACEBACK_LIMIT`).
    """
    origin = FailureOrigin.USER_CODE
    try:
        if isinstance(exc, KitaruBudgetExceededError):
            origin = FailureOrigin.BUDGET
        elif isinstance(exc, KitaruDivergenceError):
            origin = FailureOrigin.DIVERGENCE
        elif isinstance(exc, (KitaruBackendError, KitaruCorruptionError)):
            origin = FailureOrigin.BACKEND
        elif isinstance(exc, KitaruRuntimeError) and getattr(exc, "kitaru_runtime", False):
            origin = FailureOrigin.RUNTIME
    except Exception:
        pass
    try:
        exc_type = _type_name(exc)
    except Exception:  # pragma: no cover - a class whose name cannot be read
        exc_type = "<unknown>"
    message = clip(_text(_message(exc, exc_type)), MESSAGE_LIMIT)
    tb = _traceback(exc)
    if tb is not None:
        tb = clip(_text(tb), TRACEBACK_LIMIT, keep_end=True)
    return str(origin), message, _text(exc_type), tb


def runtime_error(message: str, cause: BaseException | None = None) -> KitaruRuntimeError:
    """A KitaruRuntimeError marked as a failure of the runtime (not of user code)."""
    err = KitaruRuntimeError(message)
    err.kitaru_runtime = True  # type: ignore[attr-defined]
    if cause is not None:
        err.__cause__ = cause
    return err


class FlowRun(Ledger, Lineage):
    """One process's run of one execution."""

    # @flow(allow_pickle=True): this run may store and load pickles (set by the flow)
    allow_pickle = False
    # An `async def` flow: wait() on its event loop returns an awaitable (set by the flow)
    is_async = False
    # The flow's id, `module.qualname` (set by the flow; the default scope of memory)
    flow_id = ""
    # The OpenTelemetry tracer of this run, None when spans are off (`kitaru._otel`; set
    # by the flow when the run starts)
    tracer: Any = None
    # How concurrent checkpoint calls run elsewhere: a `kitaru._ray.Fanout` on a Ray run,
    # else None (threads of this process; set by the flow when the run starts)
    remote: Any = None

    def __init__(
        self, runner: Runner, flow_name: str, divergence: str, store: Store | None = None
    ) -> None:
        self.runner = runner
        self.store = store  # the store the execution lives in (None: the resolved one)
        self.exec_id: str = runner.exec_id
        self.flow_name = flow_name
        self.divergence = divergence
        self._lock = _thread.allocate_lock()
        self.pass_no = 0
        self.init_ledger()
        self.init_lineage()
        self.reset()

    def reset(self) -> None:
        """Start a pass over the flow body (the first, or a flow-level retry)."""
        self.pass_no = self.runner.new_pass()
        self.wait_names: set[str] = set()
        self.wait_count = 0
        self.llm_count = 0
        self._sequences: dict[str, int] = {}
        # Calls whose ids come from the flow's own thread (in call order) can be compared
        # with the call at the same position in an earlier run; calls made from other
        # threads are ordered by the scheduler, so they are matched by their inputs only.
        self.flow_thread = _thread.get_ident()
        self.submitted: list[Any] = []

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

    def next_in_pass(self, key: str) -> int:
        """0, 1, 2, ... for successive calls with `key` in this pass over the flow body (a
        resumed or retried run counts again from 0, so the numbers repeat in call order).
        For adapters that need replay-stable ids (a PydanticAI run id, a wait per name)."""
        with self._lock:
            n = self._sequences.get(key, 0)
            self._sequences[key] = n + 1
        return n

    def allocate(self, name: str, explicit_id: str | None) -> str:
        """The call id of the next call of checkpoint `name` (the core numbers them)."""
        if explicit_id is not None and (not isinstance(explicit_id, str) or not explicit_id):
            raise KitaruUsageError(
                f"Checkpoint id must be a non-empty string, got {explicit_id!r}."
            )
        return self.runner.allocate_call(name, explicit_id)

    def track(self, future: Any) -> None:
        """A call submitted in this pass (`.submit()`/`.map()`): settled before the next."""
        with self._lock:
            self.submitted.append(future)

    def settle_submitted(self) -> None:
        """Wait for the calls this pass submitted: a failed pass ends before the next one
        starts (or before the failure is recorded), so no call runs in two passes."""
        with self._lock:
            pending, self.submitted = self.submitted, []
        if pending:
            import concurrent.futures

            concurrent.futures.wait(pending)

    def in_order(self) -> bool:
        """Whether a call made now gets its id in the flow's own call order."""
        return _thread.get_ident() == self.flow_thread

    def log(self, values: dict[str, Any]) -> None:
        import json

        self.runner.log_metadata(json.dumps(values, default=repr))


# The flows this process is running now (to tell "outside a flow" from "in a thread
# that does not carry the flow's context").
ACTIVE: set[FlowRun] = set()


def outside_flow_message(api: str, what: str | None = None) -> str:
    """Why `api` cannot run here, and what to do when a flow is running in this process."""
    msg = f"{api} can only run inside a @flow" + (f" ({what})." if what else ".")
    if ACTIVE:
        msg += (
            " A flow is running in this process, but this call comes from a thread that does "
            "not carry its context (a thread started with threading.Thread or a plain "
            "executor). Use checkpoint.submit()/.map(), or start the thread's work with "
            "contextvars.copy_context().run(fn, ...) so it runs inside the flow."
        )
    return msg


def current_execution_id() -> str | None:
    """The id of the execution whose flow is running in this context, else None.

    Inside a ``@flow`` body, its checkpoints and the calls they make (also from
    ``.submit()``/``.map()`` and tasks the flow starts) it is the id that
    ``kitaru executions get|logs|retry`` take; outside a flow, or in a thread that does
    not carry the flow's context, it is None.
    """
    run = current_flow.get()
    return None if run is None else run.exec_id


def require_flow(api: str) -> FlowRun:
    run = current_flow.get()
    if run is None:
        raise KitaruContextError(outside_flow_message(api))
    return run


def lease_steps(run: FlowRun) -> Generator[tuple[str, tuple[()]], Any, None]:
    """A checkpoint boundary: stop the flow if its execution was cancelled or taken over.

    Asks the store only when the heartbeat's word is not enough (`Runner.lease_ok`).
    """
    try:
        if not run.runner.lease_ok():
            yield "check_lease", ()
    except KitaruCancelledError as exc:
        raise FlowCancelled(str(exc)) from None


def check_lease(run: FlowRun) -> None:
    """`lease_steps`, blocking (for code outside the flow's steps)."""
    from ._steps import run_sync

    run_sync(lease_steps(run), run.runner)


class FlowCancelled(BaseException):
    """Unwinds a flow whose execution was cancelled by another process (or a wait abort)."""


class WaitSuspended(BaseException):
    """Unwinds a flow whose wait ran out of polling time; the execution becomes `waiting`.

    A BaseException, so `except Exception` in user code cannot swallow it.
    """

    def __init__(self, name: str, question: str | None) -> None:
        super().__init__(f"waiting for input on {name!r}" + (f": {question}" if question else ""))
        self.name = name
