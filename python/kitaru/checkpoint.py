"""`@checkpoint`: a step whose finished result is stored and reused on resume."""

from __future__ import annotations

import _thread
import contextvars

from ._capture import log_steps
from ._context import (
    CheckpointScope,
    FlowRun,
    copy_identity,
    current_checkpoint,
    current_flow,
    failure_of,
    is_async_function,
    lease_steps,
    mark_coroutine_function,
    now_us,
    outside_flow_message,
    runtime_error,
    sanitize_name,
)
from ._steps import run_async, run_sync
from ._types import AttemptRecord, CallRecord, FailureRecord
from .errors import FailureOrigin, KitaruContextError, KitaruUsageError

# `typing` costs more to import than the rest of kitaru: only type checkers see it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import concurrent.futures
    import inspect
    from collections.abc import Callable, Coroutine, Generator, Iterable
    from concurrent.futures import Future
    from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

    from ._types import Step

    P = ParamSpec("P")  # the checkpoint function's parameters
    Q = ParamSpec("Q")  # a method's parameters after `self`
    R = TypeVar("R")  # what the function returns (a coroutine, for an async one)
    S = TypeVar("S")  # the instance a method checkpoint is bound to
    T = TypeVar("T")  # what a call's future holds
else:
    from ._context import Generic, P, R, overload

__all__ = ["Checkpoint", "checkpoint"]


class Checkpoint(Generic[P, R]):
    """A function decorated with `@checkpoint`.

    Typed by the function's parameters `P` and return type `R`: a call returns `R` (a
    coroutine for an ``async def`` checkpoint, to await), ``.submit()`` a future of the
    (awaited) result and ``.map()`` a list of them.
    """

    def __init__(
        self,
        func: Callable[P, R],
        *,
        retries: int,
        type: str | None,
        allow_pickle: bool = False,
        cache: bool | None = None,
    ) -> None:
        copy_identity(self, func)
        self._func = func
        self.name = sanitize_name(getattr(func, "__name__", ""), "checkpoint")
        self.retries = retries
        self.checkpoint_type = type
        self.allow_pickle = allow_pickle
        self.cache = cache
        self._code: bytes | bool | None = False  # not made yet
        self.is_async = is_async_function(func)
        if self.is_async:
            mark_coroutine_function(self)
        self._signature: inspect.Signature | None = None
        self._fast_params = _simple_params(func)
        # Every parameter in order, for the commonest call: all given by position.
        fast = self._fast_params
        self._param_names = None if fast is None else (*fast[0], *fast[1])

    def __repr__(self) -> str:
        return f"<kitaru checkpoint {self.name!r}>"

    def code_identity(self) -> bytes | None:
        """The digest of what else than its inputs decides this checkpoint's output, for
        the cross-execution cache: the function's source (decorator lines included, so its
        configuration too), its type and what it is called. None when there is no source
        to read (the checkpoint is then never answered from the cache). Made once."""
        if self._code is False:
            self._code = _code_identity(self._func, self.name, self.checkpoint_type)
        return self._code  # type: ignore[return-value]

    @overload
    def __get__(self, obj: None, objtype: Any = None) -> Checkpoint[P, R]: ...
    @overload
    def __get__(
        self: Checkpoint[Concatenate[S, Q], R], obj: S, objtype: Any = None
    ) -> Callable[Q, R]: ...

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        # Methods: bind like a function would (a bound method that inspect and frameworks
        # see through: its signature drops `self`, iscoroutinefunction still holds).
        if obj is None:
            return self
        import types

        return types.MethodType(self, obj)

    # --- calling -------------------------------------------------------------------

    def _enter(self, explicit_id: str | None, api: str = "Checkpoints") -> _Call:
        """The call being made now: its id taken here, in call order."""
        run = current_flow.get()
        if run is None:
            raise KitaruContextError(outside_flow_message(api, f"checkpoint {self.name!r}"))
        if current_checkpoint.get() is not None:
            raise KitaruContextError(
                f"Nested checkpoint calls are not supported: {self.name!r} was called inside "
                f"checkpoint {current_checkpoint.get().name!r}. Call it from the flow body instead."  # type: ignore[union-attr]
            )
        call_id = run.allocate(self.name, explicit_id)
        return _Call(self, run, call_id, explicit_id is not None, run.in_order())

    # A ParamSpec cannot take an extra keyword-only parameter: a call with ``id=`` is
    # checked against the function's parameters at runtime only.
    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def __call__(self, *args: Any, id: str | None, **kwargs: Any) -> R: ...

    def __call__(self, *args: Any, id: str | None = None, **kwargs: Any) -> Any:  # type: ignore[misc]
        call = self._enter(id)
        if self.is_async:
            # The id is taken now, at the call, so asyncio.gather(...) numbers calls in
            # argument order whatever order they are awaited in.
            return self._run_async(call, args, kwargs)
        return self._run_sync(call, args, kwargs)

    # An async checkpoint's future holds what its coroutine returns (it runs in a thread).
    @overload
    def submit(
        self: Checkpoint[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> Future[T]: ...
    @overload
    def submit(self: Checkpoint[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]: ...
    # With `id=` or `after=` (keyword-only, so a ParamSpec cannot carry them) the
    # arguments are checked at runtime only.
    @overload
    def submit(
        self: Checkpoint[P, Coroutine[Any, Any, T]],
        *args: Any,
        id: str | None,
        after: Any = None,
        **kwargs: Any,
    ) -> Future[T]: ...
    @overload
    def submit(
        self: Checkpoint[P, T], *args: Any, id: str | None, after: Any = None, **kwargs: Any
    ) -> Future[T]: ...
    @overload
    def submit(
        self: Checkpoint[P, Coroutine[Any, Any, T]], *args: Any, after: Any, **kwargs: Any
    ) -> Future[T]: ...
    @overload
    def submit(self: Checkpoint[P, T], *args: Any, after: Any, **kwargs: Any) -> Future[T]: ...

    def submit(  # type: ignore[misc]  # P.kwargs may not name `id` or `after`
        self, *args: Any, id: str | None = None, after: Any = None, **kwargs: Any
    ) -> Future[Any]:
        """Run the call concurrently; returns a future (``.result()`` or, as in Kitaru 0.4,
        ``.load()`` gives the output). `after`: a future or futures (of other calls) this
        call waits for; if one of them failed, this call does not run and its future
        holds the failure."""
        call = self._enter(id, "Concurrent checkpoint execution")  # ids in submission order
        ctx = contextvars.copy_context()
        remote = call.run.remote
        if remote is not None:  # the body runs as a Ray task (kitaru._ray); this thread waits
            func = self._func
            fn: Callable[[], Any] = lambda: run_sync(
                call.traced(self._steps(call, args, kwargs)),
                call.run.runner,
                lambda _op, _arg: remote.call(call, func, args, kwargs),
            )
        elif self.is_async:
            import asyncio

            fn = lambda: asyncio.run(self._run_async(call, args, kwargs))
        else:
            fn = lambda: self._run_sync(call, args, kwargs)
        deps = _futures_in(after)
        pool = _executor(remote is not None)
        future = pool.submit(ctx.run, fn) if not deps else _after(deps, ctx, fn, call, pool)
        future.load = future.result  # type: ignore[attr-defined]
        call.run.track(future)
        return future

    @overload
    def map(
        self: Checkpoint[P, Coroutine[Any, Any, T]], *iterables: Iterable[Any], **kwargs: Any
    ) -> list[Future[T]]: ...
    @overload
    def map(
        self: Checkpoint[P, T], *iterables: Iterable[Any], **kwargs: Any
    ) -> list[Future[T]]: ...

    def map(self, *iterables: Iterable[Any], **kwargs: Any) -> list[Future[Any]]:
        """One concurrent call per element (of the zipped iterables); returns the futures.
        Keyword arguments (also ``after=``) go to every call."""
        return [self.submit(*items, **kwargs) for items in zip(*iterables, strict=False)]

    @overload
    def product(
        self: Checkpoint[P, Coroutine[Any, Any, T]], *iterables: Iterable[Any], **kwargs: Any
    ) -> list[Future[T]]: ...
    @overload
    def product(
        self: Checkpoint[P, T], *iterables: Iterable[Any], **kwargs: Any
    ) -> list[Future[T]]: ...

    def product(self, *iterables: Iterable[Any], **kwargs: Any) -> list[Future[Any]]:
        """One concurrent call per combination of the iterables' elements (their cartesian
        product, in order); returns the futures."""
        import itertools

        return [self.submit(*items, **kwargs) for items in itertools.product(*iterables)]

    # --- one call ------------------------------------------------------------------

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The call's arguments by parameter name, defaults filled in (f(1) == f(x=1))."""
        every = self._param_names
        if every is not None and not kwargs and len(args) == len(every):
            return dict(zip(every, args, strict=True))
        fast = self._fast_params
        if fast is not None:
            names, defaults = fast
            if len(args) <= len(names) and all(k in defaults or k in names for k in kwargs):
                bound = dict(zip(names, args, strict=False))
                for k, v in kwargs.items():
                    if k in bound:
                        break  # given twice: let inspect raise the proper error
                    bound[k] = v
                else:
                    missing = [n for n in (*names, *defaults) if n not in bound]
                    if all(n in defaults for n in missing):
                        for n in missing:
                            bound[n] = defaults[n]
                        return {n: bound[n] for n in (*names, *defaults) if n in bound}
        return self._slow_bind(args, kwargs)

    def _slow_bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._signature is None:
            import inspect

            try:
                self._signature = inspect.signature(self._func)
            except (TypeError, ValueError):
                return (args, kwargs)
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise KitaruUsageError(f"Bad arguments for checkpoint {self.name!r}: {exc}") from exc
        bound.apply_defaults()
        return bound.arguments

    # One call, written once (`kitaru._steps`): it yields (_BODY, None) when the body is to
    # run and runner steps (decide, record, failed attempts, logs) on the way, and returns
    # the call's value; `_run_sync` / `_run_async` only say how the body runs.

    def _steps(
        self, call: _Call, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Generator[tuple[Any, Any], Any, Any]:
        bound = self._bind(args, kwargs)
        found, value = yield from call.decide(_serde().digest(bound))
        run = call.run
        if found:
            run.note_output(value, call.call_id, *call.stored)
            return value
        call.parents = run.parents_of(bound.values())
        value, rec = yield from call.attempts()
        run.note_output(value, call.call_id, rec.serializer, rec.data)
        yield from call.done()
        return value

    def _run_sync(self, call: _Call, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return run_sync(
            call.traced(self._steps(call, args, kwargs)),
            call.run.runner,
            lambda _op, _arg: self._func(*args, **kwargs),
        )

    async def _run_async(self, call: _Call, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        async def body(_op: object, _arg: None) -> Any:
            return await self._func(*args, **kwargs)  # type: ignore[misc]

        steps = call.traced(self._steps(call, args, kwargs))
        return await run_async(steps, call.run.runner, body)


# The step of a call that runs its body (`Checkpoint._steps`).
_BODY = object()

if TYPE_CHECKING:
    Steps = Generator[tuple[Any, Any], Any, Any]


class _Call:
    """One call of a checkpoint: its id, input digest and the attempt in progress. Its
    methods that talk to the store are steps (`kitaru._steps`), run blocking or awaited."""

    __slots__ = (
        "call_id",
        "cp",
        "decision",
        "digest",
        "explicit",
        "ordered",
        "parents",
        "pass_no",
        "run",
        "scope",
        "started",
        "stored",
        "token",
    )

    def __init__(self, cp: Step, run: FlowRun, call_id: str, explicit: bool, ordered: bool) -> None:
        self.cp, self.run, self.call_id, self.explicit = cp, run, call_id, explicit
        self.ordered = ordered
        self.pass_no = run.pass_no
        self.digest: bytes | None = None
        self.parents: list[str] = []
        self.stored: tuple[str, bytes] = ("", b"")

    def traced(self, steps: Steps) -> Steps:
        """`steps` of this call, inside a ``checkpoint <name>`` span when the run exports
        OpenTelemetry spans (`kitaru._otel`)."""
        if self.run.tracer is None:
            return steps
        from . import _otel

        return _otel.call_steps(self, steps)

    def decide(self, digest: bytes | None) -> Steps:
        """(True, stored value) when a stored result answers this call, else (False, None).

        The core decides (`Runner.begin_call`): the call's id may change (another stored
        call with the same inputs, or a fresh id for new inputs), and a decision that needs
        the store (a divergence to record, an output to read) is settled as a step.
        """
        self.digest = digest
        run = self.run
        cp = self.cp
        cache = cp.cache
        code = None if cache is False or digest is None else cp.code_identity()
        d = run.runner.begin_call(self.call_id, cp.name, digest, ordered=self.ordered,
                                  explicit=self.explicit, policy=run.divergence, code=code,
                                  cache=cache)  # fmt: skip
        if d.pending:
            d = yield "settle_call", (d,)
        self.call_id = d.call_id
        self.decision = d
        if d.notice is not None:
            _warn(d.notice, d.notice_kind)
        if not d.reuse:
            return False, None
        tag, data = self.stored = d.value  # type: ignore[misc,assignment]
        with _serde().pickle_allowed(self._allow_pickle()):
            value = _serde().loads(tag, data, what=f"stored output of checkpoint {d.call_id!r}")
        if d.cached_from is not None:
            run.note_reused(d.call_id, d.cached_metadata or "{}")
        elif d.earlier_run:
            run.note_reused(d.call_id)
        return True, value

    def _allow_pickle(self) -> bool:
        """@checkpoint(allow_pickle=True) or @flow(allow_pickle=True)."""
        return self.cp.allow_pickle or self.run.allow_pickle

    def begin(self) -> Steps:
        """An attempt starts: the budget and the lease are checked, the scope entered."""
        self.run.check_budget()
        yield from lease_steps(self.run)
        self.scope = CheckpointScope(
            self.cp.name, self.call_id, self.cp.checkpoint_type, self.run.exec_id
        )
        self.token = current_checkpoint.set(self.scope)
        self.started = now_us()

    def end(self) -> None:
        current_checkpoint.reset(self.token)

    def failed(self, exc: Exception, attempt: int) -> Steps:
        """Record a failed attempt; re-raise it when it was the last one."""
        yield from log_steps(self.run)
        origin, message, exc_type, tb = failure_of(exc)
        if origin == FailureOrigin.BUDGET:
            attempt = self.cp.retries  # no point in trying again: the budget is spent
        record = AttemptRecord(
            call_id=self.call_id,
            name=self.cp.name,
            checkpoint_type=self.cp.checkpoint_type,
            input_digest=self.digest,
            started_us=self.started,
            ended_us=now_us(),
            failure=FailureRecord(origin, message, exc_type, tb),
        )
        yield "record_failed_attempt", (record,)
        if attempt == self.cp.retries:
            raise exc

    def record(self, value: Any) -> CallRecord:
        """What `Runner.record_checkpoint` stores for a successful attempt."""
        if self.run.budget_error is not None:
            # The body caught the budget stop and returned anyway: its output is not final.
            raise self.run.budget_error
        if self.run.pass_no != self.pass_no:
            raise runtime_error(
                f"Checkpoint {self.call_id!r} finished after the pass of the flow body that "
                "called it had ended (the flow failed or was retried meanwhile); its output is "
                "not recorded. Wait for calls started in threads before the flow body returns."
            )
        ended = now_us()
        try:
            tag, data = _serde().dumps(
                value,
                what=f"output of checkpoint {self.call_id!r}",
                allow_pickle=self._allow_pickle(),
            )
        except Exception as exc:
            raise runtime_error(str(exc), exc) from None
        return CallRecord(
            call_id=self.call_id,
            name=self.cp.name,
            explicit_id=self.explicit,
            checkpoint_type=self.cp.checkpoint_type,
            input_digest=self.digest,
            serializer=tag,
            data=data,
            started_us=self.started,
            ended_us=ended,
            metadata_json=_meta_json(self.scope, self.parents),
        )

    def attempts(
        self, after: Any = None
    ) -> Generator[tuple[Any, Any], Any, tuple[Any, CallRecord]]:
        """Runs the body (step ``(_BODY, None)``) until an attempt succeeds or the retries
        are spent, and records the result: (value, record). `after(value, call)`: steps
        that belong to the attempt once the body returned (a ledger entry)."""
        for attempt in range(self.cp.retries + 1):
            yield from self.begin()
            try:
                value = yield _BODY, None
                if after is not None:
                    yield from after(value, self)
            except Exception as exc:
                yield from self.failed(exc, attempt)
                continue
            finally:
                self.end()
            rec = self.record(value)
            yield "record_checkpoint", (rec,)
            return value, rec
        raise AssertionError("unreachable")  # pragma: no cover

    def done(self) -> Steps:
        """The call is recorded: what it printed goes to the store."""
        yield from log_steps(self.run)


def _code_identity(func: Any, name: str, checkpoint_type: str | None) -> bytes | None:
    """See `Checkpoint.code_identity`."""
    import hashlib
    import inspect

    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        return None
    h = hashlib.sha256(b"kitaru-checkpoint-v1\0")
    for part in (name, checkpoint_type or "", source):
        data = part.encode()
        h.update(len(data).to_bytes(8, "little") + data)
    return h.digest()


def _warn(notice: str, kind: str | None) -> None:
    """A notice of the core's decision as a warning: a stored output reused for other
    inputs (`KitaruDivergenceWarning`) or a damaged one run again (`RuntimeWarning`)."""
    from .errors import KitaruDivergenceWarning, warn_user

    warn_user(notice, KitaruDivergenceWarning if kind == "diverged" else RuntimeWarning)


def _simple_params(func: Any) -> tuple[tuple[str, ...], dict[str, Any]] | None:
    """(positional parameter names, defaults by name) for a plain function without
    positional-only, *args, **kwargs or keyword-only parameters, else None (use inspect)."""
    code = getattr(func, "__code__", None)
    if code is None or code.co_flags & 0x0C or code.co_posonlyargcount or code.co_kwonlyargcount:
        return None
    names = code.co_varnames[: code.co_argcount]
    values = getattr(func, "__defaults__", None) or ()
    defaults = dict(zip(names[len(names) - len(values) :], values, strict=True)) if values else {}
    required = names[: len(names) - len(values)]
    return required, defaults


_serde_module: Any = None


def _serde() -> Any:
    """kitaru.serde, imported on first use (not at `import kitaru`)."""
    global _serde_module
    if _serde_module is None:
        from . import serde

        _serde_module = serde
    return _serde_module


def _meta_json(scope: CheckpointScope, parents: list[str] | None = None) -> str | None:
    """The call's metadata as recorded: what was logged inside it, and the calls whose
    outputs it was given (`kitaru_parents`, see `_lineage`)."""
    meta = scope.metadata
    if parents:
        meta = {**meta, "kitaru_parents": parents}
    if not meta:
        return None
    import json

    return json.dumps(meta, default=repr)


def _futures_in(after: Any) -> list[Future[Any]]:
    """The futures among `after` (one, or an iterable; other values are ready already)."""
    import concurrent.futures

    if isinstance(after, concurrent.futures.Future):
        return [after]
    if after is None or isinstance(after, (str, bytes, dict)) or not hasattr(after, "__iter__"):
        return []  # a value (an output already at hand) orders nothing
    return [f for item in after for f in _futures_in(item)]  # lists of .map() results too


def _after(deps: list[Future[Any]], ctx: Any, fn: Callable[[], Any], call: _Call,
           pool: concurrent.futures.ThreadPoolExecutor) -> Future[Any]:  # fmt: skip
    """A future of `fn`, started in the pool once every one of `deps` is done (no pool
    thread waits for another, so ordering cannot starve the pool)."""
    import concurrent.futures
    import threading

    future: Future[Any] = concurrent.futures.Future()
    future.set_running_or_notify_cancel()  # it is scheduled: cancel() cannot stop it
    left = [len(deps)]
    lock = threading.Lock()

    def start(_: Future[Any]) -> None:
        with lock:
            left[0] -= 1
            if left[0]:
                return
        try:
            launch()
        except BaseException as exc:  # e.g. the pool shut down: fail the call, never hang
            if not future.done():
                future.set_exception(exc)

    def launch() -> None:
        for dep in deps:
            failure = dep.exception() if not dep.cancelled() else RuntimeError("cancelled")
            if failure is not None:
                err = runtime_error(
                    f"Checkpoint {call.call_id!r} did not run: a call it was ordered after "
                    f"(after=) failed: {failure}",
                    failure,
                )
                future.set_exception(err)
                return
        inner = pool.submit(ctx.run, fn)

        def copy(done: Future[Any]) -> None:
            failure = RuntimeError("cancelled") if done.cancelled() else done.exception()
            if failure is None:
                future.set_result(done.result())
            else:
                future.set_exception(failure)

        inner.add_done_callback(copy)

    for dep in deps:
        dep.add_done_callback(start)
    return future


_pools: dict[bool, concurrent.futures.ThreadPoolExecutor] = {}
_pool_lock = _thread.allocate_lock()


def _executor(remote: bool = False) -> concurrent.futures.ThreadPoolExecutor:
    """The threads concurrent calls run in: 16 that run bodies here, or (`remote`) 256
    that only wait for Ray tasks, so the cluster, not this process, bounds the fan-out."""
    pool = _pools.get(remote)
    if pool is None:
        import concurrent.futures

        with _pool_lock:  # also created from `after=` callbacks, in any thread
            pool = _pools.get(remote)
            if pool is None:
                pool = _pools[remote] = concurrent.futures.ThreadPoolExecutor(
                    max_workers=256 if remote else 16,
                    thread_name_prefix="kitaru-ray-call" if remote else "kitaru-checkpoint",
                )
    return pool


@overload
def checkpoint(func: Callable[P, R], /) -> Checkpoint[P, R]: ...
@overload
def checkpoint(
    *,
    retries: int = 0,
    type: str | None = None,
    runtime: str | None = None,
    allow_pickle: bool = False,
    cache: bool | None = None,
) -> Callable[[Callable[P, R]], Checkpoint[P, R]]: ...


def checkpoint(
    func: Callable[..., Any] | None = None,
    /,
    *,
    retries: int = 0,
    type: str | None = None,
    runtime: str | None = None,
    allow_pickle: bool = False,
    cache: bool | None = None,
) -> Any:
    """Mark a function (sync or ``async def``) as a durable step of a flow.

    Args:
        retries: extra attempts after a failure (each attempt is recorded).
        type: a free label shown in the UI and CLI, e.g. ``"llm_call"`` or ``"tool_call"``.
        allow_pickle: store outputs that have no typed serializer as pickles, and load such
            stored outputs when the flow runs again. Off by default: loading a pickle runs
            code chosen by whoever wrote it, so opt in only if you trust everyone who can
            write to the store.
        runtime: accepted for Kitaru compatibility (``"inline"`` or ``"isolated"``); every
            checkpoint runs inline in the flow's process.
        cache: whether a finished call of an earlier execution of the flow may answer a
            call with the same inputs (the cross-execution cache, see the README). None
            (the default) follows the flow's ``cache``; False for a checkpoint whose effect
            matters, not just its output (sending a message, reading the clock).
    """
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise KitaruUsageError(f"Checkpoint retries must be an int, got {retries!r}.")
    if retries < 0:
        raise KitaruUsageError("Checkpoint retries must be >= 0.")
    if type is not None and not isinstance(type, str):
        raise KitaruUsageError(f"Checkpoint type must be a string, got {type!r}.")
    if not isinstance(allow_pickle, bool):
        raise KitaruUsageError(
            f"Checkpoint allow_pickle must be True or False, got {allow_pickle!r}."
        )
    if cache is not None and not isinstance(cache, bool):
        raise KitaruUsageError(f"Checkpoint cache must be True, False or None, got {cache!r}.")
    if runtime is not None and str(getattr(runtime, "value", runtime)).lower() not in (
        "inline",
        "isolated",
    ):
        raise KitaruUsageError(
            f"Unsupported checkpoint runtime {runtime!r}. Expected one of: inline, isolated."
        )

    def wrap(f: Callable[..., Any]) -> Checkpoint[Any, Any]:
        if not callable(f):
            raise KitaruUsageError(f"@checkpoint decorates a function, got {f!r}.")
        return Checkpoint(f, retries=retries, type=type, allow_pickle=allow_pickle, cache=cache)

    return wrap(func) if func is not None else wrap
