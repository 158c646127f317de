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
    KitaruBudgetExceededError,
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
    if isinstance(exc, KitaruBudgetExceededError):
        origin = FailureOrigin.BUDGET
    elif isinstance(exc, KitaruDivergenceError):
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
        # The LLM ledger: budget, spend (of every run so far, read when first needed),
        # and what this run got from stored calls instead of paying again.
        self.budget_usd: float | None = None
        self._spent: float | None = None
        self._earlier: list[dict[str, Any]] | None = None
        self._had_llm: bool | None = None
        self._spend_n = 0
        self.saved_usd = 0.0
        self.saved_calls = 0
        self._saved_ids: set[str] = set()
        self._saved_written = (0, 0.0)
        # Set once the budget stopped the flow: user code that catches the error cannot
        # finish a checkpoint or the flow after it.
        self.budget_error: KitaruBudgetExceededError | None = None
        self.reset()

    def reset(self) -> None:
        """Start a pass over the flow body (the first, or a flow-level retry)."""
        self.occurrences: dict[str, int] = {}
        # Every call id of this pass: an explicit id, a named `llm()` call and the
        # occurrences of a checkpoint never share one (the later one would be handed the
        # earlier one's stored output).
        self.taken: set[str] = set()
        self.wait_names: set[str] = set()
        self.wait_count = 0
        self.llm_count = 0

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
                if explicit_id in self.taken:
                    raise KitaruUsageError(
                        f"Checkpoint id {explicit_id!r} is used twice in one execution of flow "
                        f"{self.flow_name!r}; explicit ids must be unique (and differ from the "
                        "ids kitaru gives other calls: name, name_2, ...)."
                    )
                self.taken.add(explicit_id)
                return explicit_id
            n = self.occurrences.get(name, 0)
            while True:
                n += 1
                call_id = name if n == 1 else f"{name}_{n}"
                if call_id not in self.taken:
                    break
            self.occurrences[name] = n
            self.taken.add(call_id)
            return call_id

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
        if call_id not in self.done:
            self.note_reused(call_id)
        return True, value

    # --- the LLM ledger -------------------------------------------------------------

    def _earlier_metadata(self) -> list[dict[str, Any]]:
        """kitaru's own execution metadata of earlier runs (ledger, budget), read once."""
        if self._earlier is None:
            import json

            raws = self.runner.execution_metadata()
            self._earlier = [json.loads(raw) for raw in raws if "kitaru_" in raw]
        return self._earlier

    def set_budget(self, declared: float | None, override: float | None) -> None:
        """The budget of this run: `override` (recorded, so later runs keep it), else the
        last override recorded by an earlier run, else the flow's declared budget."""
        if override is not None:
            self.budget_usd = override
            self.log({"kitaru_budget_usd": override})
            return
        recorded = [
            m["kitaru_budget_usd"] for m in self._earlier_metadata() if "kitaru_budget_usd" in m
        ]
        self.budget_usd = recorded[-1] if recorded else declared

    @property
    def spent_usd(self) -> float:
        """Dollars spent on LLM calls by every run of this execution so far."""
        if self._spent is None:
            total = 0.0
            for meta in self._earlier_metadata():
                for entry in (meta.get("kitaru_llm") or {}).values():
                    total += entry.get("cost_usd") or 0.0
            with self._lock:
                if self._spent is None:
                    self._spent = total
        return self._spent

    def record_spend(self, call: str, checkpoint: str | None, info: dict[str, Any]) -> None:
        """Write a call that reached a provider to the execution's ledger, at once."""
        with self._lock:
            self._spend_n += 1
            key = f"{self.runner.claim_seq:08}.{self._spend_n:06}"
        earlier = self.spent_usd
        with self._lock:
            base = earlier if self._spent is None else self._spent
            self._spent = base + (info.get("cost_usd") or 0.0)
        entry = {"call": call, **({"checkpoint": checkpoint} if checkpoint else {}), **info}
        self.log({"kitaru_llm": {key: entry}})
        if self.budget_usd is not None and info.get("cost_usd") is None:
            import warnings

            warnings.warn(
                f"kitaru.llm() call {call!r} to {info.get('resolved_model')} has no known price, so "
                f"the budget of flow {self.flow_name!r} cannot count it; register the alias with "
                "--input-price/--output-price (USD per million tokens).",
                RuntimeWarning,
                stacklevel=4,
            )

    def check_budget(self) -> None:
        """Stop the flow when its LLM spend went over its budget."""
        if self.budget_error is not None:
            raise self.budget_error
        if self.budget_usd is None or self.spent_usd <= self.budget_usd:
            return
        self.flush_ledger()
        self.budget_error = KitaruBudgetExceededError(
            f"Execution {self.exec_id} of flow {self.flow_name!r} spent ${self.spent_usd:.4f} on "
            f"LLM calls, over its budget of ${self.budget_usd:.4f}. Retry it with a larger budget: "
            f"`kitaru executions retry {self.exec_id} --budget-usd <dollars>` (finished "
            "checkpoints and llm() calls of the flow body are reused, not paid for again).",
            exec_id=self.exec_id,
            status="failed",
            failure_origin=FailureOrigin.BUDGET,
        )
        raise self.budget_error

    def note_reused(self, call_id: str) -> None:
        """A stored checkpoint output was reused: count the LLM calls made inside it."""
        if self._had_llm is None:
            # Every model call is in the ledger before its checkpoint is recorded: with no
            # ledger entry, no stored call holds one (and resume skips the lookups).
            self._had_llm = any("kitaru_llm" in m for m in self._earlier_metadata())
        if not self._had_llm:
            return
        raw = self.runner.call_metadata(call_id)
        if raw is None or '"llm_calls"' not in raw or call_id in self._saved_ids:
            return
        self._saved_ids.add(call_id)
        import json

        calls = json.loads(raw).get("llm_calls") or {}
        if not isinstance(calls, dict):
            return
        with self._lock:
            for info in calls.values():
                self.saved_calls += 1
                self.saved_usd += (info.get("cost_usd") or 0.0) if isinstance(info, dict) else 0.0

    def flush_ledger(self) -> None:
        """Record what this run saved by reusing stored LLM calls (once per change)."""
        with self._lock:
            now = (self.saved_calls, round(self.saved_usd, 10))
            if now == self._saved_written or not self.saved_calls:
                return
            self._saved_written = now
        self.log(
            {
                "kitaru_llm_saved": {
                    f"{self.runner.claim_seq:08}": {"calls": now[0], "cost_usd": now[1]}
                }
            }
        )

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
