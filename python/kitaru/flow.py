"""`@flow`: the durable entry point of an agent, and `FlowHandle`."""

from __future__ import annotations

import os
import sys
import time

from . import _capture, _ledger
from ._capture import log_steps
from ._context import (
    ACTIVE,
    DIVERGENCE_POLICIES,
    MESSAGE_LIMIT,
    FlowCancelled,
    FlowRun,
    WaitSuspended,
    clip,
    copy_identity,
    current_checkpoint,
    current_flow,
    failure_of,
    is_async_function,
    sanitize_name,
)
from ._steps import run_async, run_sync
from ._types import FailureRecord, StartRecord
from .errors import (
    FailureOrigin,
    KitaruCancelledError,
    KitaruContextError,
    KitaruLeaseError,
    KitaruStateError,
    KitaruTimeoutError,
    KitaruUsageError,
    execution_error_for,
    format_recovery_hint,
)

# `typing` costs more to import than the rest of kitaru: only type checkers see it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Generator
    from typing import Any, Generic, ParamSpec, Protocol, TypeVar, overload

    from ._kitaru import Runner, Store
    from ._status import ExecutionStatus
    from ._types import StoreChoice
    from ._views import ExecutionView
    from .stacks import ImageSettings

    P = ParamSpec("P")  # the flow function's parameters
    R = TypeVar("R")  # its result (awaited, for an async flow)
    Steps = Generator[tuple[Any, Any], Any, Any]

    class _FlowDecorator(Protocol):
        """What ``@flow(...)`` with options returns: ``@flow`` for one function."""

        @overload
        def __call__(
            self, func: Callable[P, Coroutine[Any, Any, R]], /
        ) -> FlowDefinition[P, R]: ...
        @overload
        def __call__(self, func: Callable[P, R], /) -> FlowDefinition[P, R]: ...
else:
    from ._context import Generic, P, R, overload

__all__ = ["FlowDefinition", "FlowHandle", "flow"]


_RESERVED = ("stack", "image", "cache", "retries", "budget_usd", "runner")


def _validate_options(stack: Any, image: Any, cache: Any, retries: Any, where: str) -> None:
    if retries is not None:
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise KitaruUsageError(f"Flow retries must be an int, got {retries!r} ({where}).")
        if retries < 0:
            raise KitaruUsageError("Flow retries must be >= 0.")
    if stack is not None and (not isinstance(stack, str) or not stack.strip()):
        raise KitaruUsageError(
            f"Flow stack must be a non-empty stack name, got {stack!r} ({where})."
        )
    if cache is not None and not isinstance(cache, bool):
        raise KitaruUsageError(f"Flow cache must be True or False, got {cache!r} ({where}).")
    if (
        image is not None
        and not isinstance(image, (str, dict))
        and not hasattr(image, "keys")
        and not hasattr(image, "model_dump")
        and type(image).__name__ != "ImageSettings"
    ):
        raise KitaruUsageError(
            f"Flow image must be an image name, a mapping of image settings or ImageSettings, got {image!r} ({where})."
        )
    if isinstance(image, str) and not image.strip():
        raise KitaruUsageError(f"Flow image must not be empty ({where}).")


def _check_runner(runner: Any, where: str) -> str | None:
    if runner is None:
        return None
    from .stacks import check_runner

    return check_runner(runner, where)


def _check_budget(budget: Any, where: str) -> float | None:
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget >= 0:
        raise KitaruUsageError(
            f"budget_usd must be a number of US dollars >= 0, got {budget!r} ({where})."
        )
    return float(budget)


def _entry_point(func: Callable[..., Any]) -> tuple[str, str, str | None]:
    """(module, qualname, script path) under which another process finds `func`."""
    module = getattr(func, "__module__", None) or "__main__"
    qualname = func.__qualname__
    script = None
    if module == "__main__":
        main = sys.modules.get("__main__")
        path = getattr(main, "__file__", None)
        script = os.path.abspath(path) if path else None
    elif module == "__kitaru_main__":
        # Re-entered from a script: keep pointing at the script.
        from . import _entry

        module, script = "__main__", _entry.loaded_script()
    return module, qualname, script


class FlowDefinition(Generic[P, R]):
    """A function decorated with `@flow`. Start it with :meth:`run`.

    Typed by the function's parameters `P` and its result `R` (for an ``async def`` flow,
    what the coroutine returns): ``.run()`` checks its arguments against `P` and returns a
    ``FlowHandle[R]``.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        stack: str | None,
        image: Any,
        cache: bool | None,
        retries: int | None,
        divergence: str,
        budget_usd: float | None = None,
        allow_pickle: bool = False,
        runner: str | None = None,
    ) -> None:
        # Not its __code__: calling a flow directly is an error, not a coroutine function.
        copy_identity(self, func, code=False)
        self.budget_usd = budget_usd
        self.allow_pickle = allow_pickle
        self.runner = runner  # None: configure(runner=), the stack's, else "local"
        self._func = func
        self.name = sanitize_name(getattr(func, "__name__", ""), "flow")
        self.stack, self.image, self.cache = stack, image, cache
        self._retries = retries
        self.divergence = divergence
        self.is_async = is_async_function(func)
        code = getattr(func, "__code__", None)
        params = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount] if code else ()
        clash = [p for p in _RESERVED if p in params]
        if clash:
            raise KitaruUsageError(
                f"Flow {self.name!r} has a parameter named {clash[0]!r}, which .run() reserves "
                f"({', '.join(_RESERVED)}); rename the parameter."
            )

    def __repr__(self) -> str:
        return f"<kitaru flow {self.name!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise KitaruUsageError(
            f"Direct flow calls are not supported. Use handle = {self.name}.run(...) to start an "
            "execution, then handle.wait() for its result."
        )

    # --- starting -----------------------------------------------------------------

    @property
    def retries(self) -> int:
        """Flow-level retries: ``@flow(retries=)``, else ``kitaru.configure(retries=)``, else 0."""
        if self._retries is not None:
            return self._retries
        from .stacks import execution_defaults

        return execution_defaults().retries or 0

    def _image_settings(self, image: Any = None) -> ImageSettings | None:
        """The run's image settings: `.run()`'s over ``@flow``'s over
        ``kitaru.configure()``'s, field by field (the flow's win)."""
        from .stacks import ImageSettings, execution_defaults

        defaults = execution_defaults()
        chosen = image if image is not None else self.image
        settings = ImageSettings.coerce(chosen, "image") if chosen is not None else None
        if defaults.image is not None:
            settings = defaults.image if settings is None else defaults.image.merged(settings)
        return settings

    def _runner_for(self, runner: str | None, choice: StoreChoice) -> str:
        """Where the run goes: `.run(runner=)` > ``@flow(runner=)`` >
        ``kitaru.configure(runner=)`` > the stack's runner > ``"local"``."""
        from .stacks import execution_defaults

        for value in (runner, self.runner, execution_defaults().runner, choice.runner):
            if value is not None:
                return value
        return "local"

    def _options_json(self, retries: int, stack: str | None, image: Any = None,
                      cache: bool | None = None, replay: dict[str, Any] | None = None,
                      runner: str = "local") -> str:  # fmt: skip
        """The options recorded on an execution: `.run()`'s over ``@flow``'s over
        ``kitaru.configure()``'s (image settings field by field: the flow's win)."""
        import json

        from .stacks import execution_defaults

        defaults = execution_defaults()
        settings = self._image_settings(image)
        if cache is None:
            cache = self.cache if self.cache is not None else defaults.cache
        opts = {
            "retries": retries,
            "divergence": self.divergence,
            "budget_usd": self.budget_usd,
            "stack": stack,
            "cache": True if cache is None else cache,
            "image": settings.recorded() if settings is not None else None,
            "runner": runner,
        }
        if replay is not None:
            opts["replay"] = replay
        return json.dumps(opts)

    def _start(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retries: int,
        stack: str | None,
        image: Any = None,
        cache: bool | None = None,
        replay: dict[str, Any] | None = None,
        runner: str | None = None,
    ) -> tuple[Store, StartRecord, StoreChoice, str]:
        """The store this run uses, what the new execution starts with, which stack chose
        the store, and the runner."""
        import inspect

        from . import _config, _kitaru, serde

        if current_flow.get() is not None or current_checkpoint.get() is not None:
            raise KitaruContextError(
                f"Flow {self.name!r} was started inside another flow; run flows from plain code."
            )
        try:
            inspect.signature(self._func).bind(*args, **kwargs)
        except TypeError as exc:
            raise KitaruUsageError(f"Bad arguments for flow {self.name!r}: {exc}") from exc
        try:
            tag, data = serde.dumps(
                {"args": list(args), "kwargs": kwargs},
                what=f"arguments of flow {self.name!r}",
                allow_pickle=self.allow_pickle,
            )
        except Exception as exc:
            raise KitaruUsageError(
                f"The arguments of flow {self.name!r} cannot be stored, so the execution could not be "
                f"resumed: {exc}"
            ) from exc
        module, qualname, script = _entry_point(self._func)
        if "<locals>" in qualname:
            raise KitaruUsageError(
                f"Flow {self.name!r} is defined inside a function ({qualname}); define flows at "
                "module level so another process can import them to resume."
            )
        if stack is not None:
            choice = _config.resolve_store(stack, ".run(stack=...)")
        else:
            choice = _config.resolve_store(self.stack, "@flow(stack=...)")
        store = _config.get_store(choice.location, choice.options)
        runner = self._runner_for(runner, choice)
        start = StartRecord(
            flow_name=self.name,
            module=module,
            qualname=qualname,
            script=script,
            cwd=os.getcwd(),
            args_serializer=tag,
            args=data,
            kitaru_version=_kitaru.VERSION,
            options_json=self._options_json(retries, choice.stack, image, cache, replay, runner),
        )
        return store, start, choice, runner

    # A ParamSpec cannot take extra keyword-only parameters: a call without options is
    # checked against the flow's parameters; one with an option (each overload below
    # requires one) checks that option's type, and the arguments are checked when the
    # execution starts. No flow parameter may share an option's name (see _RESERVED).
    @overload
    def run(self, *args: P.args, **kwargs: P.kwargs) -> FlowHandle[R]: ...
    @overload
    def run(self, *args: Any, stack: str | None, **kwargs: Any) -> FlowHandle[R]: ...
    @overload
    def run(self, *args: Any, image: Any, **kwargs: Any) -> FlowHandle[R]: ...
    @overload
    def run(self, *args: Any, cache: bool | None, **kwargs: Any) -> FlowHandle[R]: ...
    @overload
    def run(self, *args: Any, retries: int | None, **kwargs: Any) -> FlowHandle[R]: ...
    @overload
    def run(self, *args: Any, budget_usd: float | None, **kwargs: Any) -> FlowHandle[R]: ...
    @overload
    def run(self, *args: Any, runner: str | None, **kwargs: Any) -> FlowHandle[R]: ...

    def run(  # type: ignore[misc]  # P.kwargs may not name an option: checked at runtime
        self,
        *args: Any,
        stack: str | None = None,
        image: Any = None,
        cache: bool | None = None,
        retries: int | None = None,
        budget_usd: float | None = None,
        runner: str | None = None,
        **kwargs: Any,
    ) -> FlowHandle[R]:
        """Start a new execution and run it in this process; returns its handle when it ends.

        ``budget_usd`` overrides the flow's budget for this execution (and its retries).
        ``stack`` names the stack whose store holds the execution (over ``@flow(stack=)``;
        ``KITARU_STORE`` and ``kitaru.configure(stack=)`` beat both). ``cache`` turns the
        cross-execution cache on or off for this run. ``runner="ray"`` (over
        ``@flow(runner=)``, ``kitaru.configure(runner=)`` and the stack's) runs the flow on
        a Ray cluster instead and returns the handle as soon as the execution exists (see
        the README, "Ray"); ``image`` settings become its Ray runtime environment.

        Type checkers check the arguments against the flow's parameters when no option is
        given; with an option, the arguments are checked when the execution starts.
        """
        store, start, n, budget, where = self._begin(".run()", args, kwargs, stack, image,
                                                     cache, retries, budget_usd, runner)  # fmt: skip
        if where is not None:
            return self._submit_to_ray(store, start, n, budget, image, where)
        held = store.start(start, _lease_ttl_ms())
        self._execute(held, args, kwargs, n, store, budget)
        return FlowHandle(held.exec_id, store, allow_pickle=self.allow_pickle)

    def _begin(
        self,
        api: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        stack: str | None,
        image: Any,
        cache: bool | None,
        retries: int | None,
        budget_usd: float | None,
        runner: str | None = None,
    ) -> tuple[Store, StartRecord, int, float | None, StoreChoice | None]:
        """Check `.run()`/`.arun()`'s options and prepare the execution's start: (store,
        start record, flow retries, budget override, and the store's stack when the run
        goes to Ray, else None)."""
        from . import _entry

        _validate_options(stack, image, cache, retries, api)
        budget = _check_budget(budget_usd, api)
        runner = _check_runner(runner, api)
        if _entry.loading_script() is not None:
            raise KitaruUsageError(
                f"Flow {self.name!r} was started while its script "
                f"{_entry.loading_script()} was being loaded to resume an execution; start "
                'flows under `if __name__ == "__main__":` so loading the script only defines them.'
            )
        n = self.retries if retries is None else retries
        store, start, choice, chosen = self._start(args, kwargs, n, stack, image, cache,
                                                   runner=runner)  # fmt: skip
        return store, start, n, budget, (choice if chosen == "ray" else None)

    def _submit_to_ray(self, store: Store, start: StartRecord, retries: int,
                       budget: float | None, image: Any, choice: StoreChoice) -> FlowHandle[R]:  # fmt: skip
        """`.run()` on Ray: the driver is a Ray task; the handle comes back once the
        execution exists."""
        from . import _ray

        env = _ray.runtime_env(self._image_settings(image))
        exec_id = _ray.submit_flow(self, choice.location, choice.options, start, retries,
                                   budget, env, _lease_ttl_ms())  # fmt: skip
        return FlowHandle(exec_id, store, allow_pickle=self.allow_pickle)

    @overload
    async def arun(self, *args: P.args, **kwargs: P.kwargs) -> FlowHandle[R]: ...
    @overload
    async def arun(self, *args: Any, stack: str | None, **kwargs: Any) -> FlowHandle[R]: ...
    @overload
    async def arun(self, *args: Any, image: Any, **kwargs: Any) -> FlowHandle[R]: ...
    @overload
    async def arun(self, *args: Any, cache: bool | None, **kwargs: Any) -> FlowHandle[R]: ...
    @overload
    async def arun(self, *args: Any, retries: int | None, **kwargs: Any) -> FlowHandle[R]: ...
    @overload
    async def arun(self, *args: Any, budget_usd: float | None, **kwargs: Any) -> FlowHandle[R]: ...
    @overload
    async def arun(self, *args: Any, runner: str | None, **kwargs: Any) -> FlowHandle[R]: ...

    async def arun(  # type: ignore[misc]  # as run()
        self,
        *args: Any,
        stack: str | None = None,
        image: Any = None,
        cache: bool | None = None,
        retries: int | None = None,
        budget_usd: float | None = None,
        runner: str | None = None,
        **kwargs: Any,
    ) -> FlowHandle[R]:
        """:meth:`run` for code already inside an event loop (``await flow.arun(...)``)."""
        store, start, n, budget, where = self._begin(".arun()", args, kwargs, stack, image,
                                                     cache, retries, budget_usd, runner)  # fmt: skip
        if where is not None:
            import asyncio

            return await asyncio.to_thread(self._submit_to_ray, store, start, n, budget, image,
                                           where)  # fmt: skip
        held = await store.start(start, _lease_ttl_ms(), awaitable=True)
        await self._drive_async(held, args, kwargs, n, store, budget)
        return FlowHandle(held.exec_id, store, allow_pickle=self.allow_pickle)

    def replay(
        self,
        exec_id: str,
        *,
        from_: str,
        overrides: dict[str, Any] | None = None,
        stack: str | None = None,
        image: Any = None,
        cache: bool | None = None,
        retries: int | None = None,
        budget_usd: float | None = None,
        **flow_inputs: Any,
    ) -> FlowHandle[R]:
        """Run a new execution of this flow that takes over the results of execution
        `exec_id` before the checkpoint `from_` and runs the rest live, in this process.

        `from_` is a checkpoint's call id (``write_draft``, ``fetch_2``) or a name only one
        call has. `overrides` maps ``"checkpoint.<call id or name>"`` to a value that
        replaces that checkpoint's output as the replay sees it (the replay then runs live
        from the earliest of `from_` and the overridden checkpoints). `flow_inputs` replace
        the source's arguments by parameter name. The replay is linked to its source
        (`Execution.original_exec_id`) and counts what reusing its model calls saved.
        Calls from the frontier on run live: the cross-execution cache is off in a replay
        unless `cache=True` is passed.
        """
        from . import _config

        _validate_options(stack, image, cache, retries, ".replay()")
        budget = _check_budget(budget_usd, ".replay()")
        n = self.retries if retries is None else retries
        choice = _config.resolve_store(stack if stack is not None else self.stack,
                                       ".replay(stack=...)")  # fmt: skip
        store = _config.get_store(choice.location, choice.options)
        return self._replay(store, exec_id, from_, overrides, flow_inputs, n, budget, stack,
                            image, cache)  # fmt: skip

    def _replay(
        self,
        store: Store,
        exec_id: str,
        from_: str,
        overrides: dict[str, Any] | None,
        flow_inputs: dict[str, Any],
        retries: int,
        budget: float | None,
        stack: str | None = None,
        image: Any = None,
        cache: bool | None = None,
    ) -> FlowHandle[R]:
        from . import serde

        if overrides is not None and not isinstance(overrides, dict):
            raise KitaruUsageError(
                f"replay overrides must be a dict of 'checkpoint.<name>' keys, got {overrides!r}."
            )
        overrides = overrides or {}
        bad = [k for k in overrides if not isinstance(k, str)]
        if bad:
            raise KitaruUsageError(f"replay override keys are strings, got {bad[0]!r}.")
        if not isinstance(from_, str):
            raise KitaruUsageError(f"replay from_ must be a checkpoint name, got {from_!r}.")
        plan = store.replay_plan(exec_id, from_, list(overrides))
        if plan["flow_name"] != self.name:
            raise KitaruUsageError(
                f"Execution {exec_id} ran flow {plan['flow_name']!r}, not {self.name!r}; "
                f"replay it with that flow's .replay() or `kitaru executions replay {exec_id}`."
            )
        _, tag, data = store.start_record(exec_id)
        saved = serde.loads(tag, data, what=f"arguments of execution {exec_id}",
                            allow_pickle=self.allow_pickle)  # fmt: skip
        args, kwargs = self._replay_arguments(tuple(saved["args"]), dict(saved["kwargs"]),
                                              flow_inputs)  # fmt: skip
        # The plan goes into the start record (override values as blobs, stored first), so
        # the execution is a replay from its first write on: if this process dies before
        # the seeding below is marked done, the retry seeds it.
        values = {}
        for key, call_id in plan["overrides"]:
            tag, data = self._override_value(key, overrides[key])
            values[call_id] = {"serializer": tag, "blob": store.put_blob(data)}
        note = {"source": exec_id, "from": from_, "frontier": plan["frontier"],
                "reused": plan["reuse"], "overridden": list(values), "override_values": values}  # fmt: skip
        # From the frontier on a replay runs live: the cache answers nothing unless asked to.
        cache = False if cache is None else cache
        _, start, _, _ = self._start(args, kwargs, retries, stack, image, cache, replay=note)
        runner = store.start(start, _lease_ttl_ms())
        try:
            _seed(runner, store, note)
        except BaseException:
            runner.fail(FailureRecord(str(FailureOrigin.RUNTIME),
                                      "the replay could not take over its source's results",
                                      None, None))  # fmt: skip
            raise
        self._execute(runner, args, kwargs, retries, store, budget)
        return FlowHandle(runner.exec_id, store, allow_pickle=self.allow_pickle)

    def _override_value(self, key: str, value: Any) -> tuple[str, bytes]:
        from . import serde

        try:
            return serde.dumps(value, what=f"replay override {key!r}",
                               allow_pickle=self.allow_pickle)  # fmt: skip
        except Exception as exc:
            raise KitaruUsageError(str(exc)) from None

    def _replay_arguments(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], flow_inputs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The source's arguments with `flow_inputs` replacing them by parameter name."""
        if not flow_inputs:
            return args, kwargs
        import inspect

        signature = inspect.signature(self._func)
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise KitaruUsageError(
                f"The recorded arguments of the source execution no longer fit flow "
                f"{self.name!r}: {exc}"
            ) from None
        unknown = [k for k in flow_inputs if k not in signature.parameters]
        if unknown:
            raise KitaruUsageError(
                f"Flow {self.name!r} has no parameter {unknown[0]!r}; replay flow inputs "
                f"replace its arguments by name ({', '.join(signature.parameters)})."
            )
        bound.arguments.update(flow_inputs)
        return bound.args, bound.kwargs

    def resume_execution(
        self,
        runner: Runner,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        store: Store | None = None,
        budget_usd: float | None = None,
    ) -> None:
        """Run an execution claimed by retry/resume from the top (used by the client).

        It continues in `store`, the store it was claimed from, whatever this flow's stack.
        A replay whose first run died before it took over its source's results takes them
        over now.
        """
        import json

        options = json.loads(runner.options_json or "{}")
        replay = options.get("replay")
        seeded = any(_ledger.REPLAY_SEEDED in m for m in runner.execution_metadata())
        if isinstance(replay, dict) and not seeded:
            from . import _config

            try:
                _seed(runner, store if store is not None else _config.get_store(), replay)
            except BaseException:
                runner.fail(FailureRecord(str(FailureOrigin.RUNTIME),
                                          "the replay could not take over its source's results",
                                          None, None))  # fmt: skip
                raise
        # The flow retries recorded when it started (they may come from its configure()).
        retries = options.get("retries")
        if isinstance(retries, bool) or not isinstance(retries, int):
            retries = self.retries
        self._execute(runner, args, kwargs, retries, store, budget_usd)

    # --- driving ------------------------------------------------------------------

    def _execute(
        self,
        runner: Runner,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retries: int,
        store: Store | None,
        budget: float | None,
        ray_env: dict[str, Any] | None = None,
    ) -> None:
        """Run the body (with flow-level retries) to its end, blocking this thread.
        `ray_env`: the Ray runtime environment of a run submitted by `.run()` (a retry
        makes it from the recorded image settings)."""
        if self.is_async:
            _no_running_loop(self.name)
            import asyncio

            asyncio.run(self._drive_async(runner, args, kwargs, retries, store, budget, ray_env))
        else:
            self._drive(runner, args, kwargs, retries, store, budget, ray_env)

    def _new_run(self, runner: Runner, store: Store | None, budget: float | None,
                 ray_env: dict[str, Any] | None = None) -> FlowRun:  # fmt: skip
        run = FlowRun(runner, self.name, self.divergence, store)
        if '"runner": "ray"' in (runner.options_json or ""):
            run.remote = _fanout(runner, ray_env)
        run.allow_pickle = self.allow_pickle
        module, qualname, _ = _entry_point(self._func)
        run.flow_id = f"{module}.{qualname}"  # the flow's id, as `Execution.flow_id`
        if '"replay"' in (runner.options_json or ""):
            # its reused calls carry their source's model calls: count what they saved
            run._had_llm = True
        if "opentelemetry.trace" in sys.modules:  # imported by whoever set up OpenTelemetry
            from . import _otel

            run.tracer = _otel.tracer()
        try:
            run.set_budget(self.budget_usd, budget)
        except BaseException:
            runner.release()
            raise
        return run

    # The passes over the body and the end of the run, written once (`kitaru._steps`):
    # `_passes` yields (_BODY, None) when the body is to run and receives its result, or
    # has its exception thrown in, and yields runner steps to record how the run ends;
    # `_drive` runs the body blocking, `_drive_async` awaits it (and every store write)
    # and ends the tasks a failed pass started (asyncio.gather does not cancel the others
    # when one fails), so a body never runs twice at once.

    def _passes(self, run: FlowRun, retries: int) -> Steps:
        for attempt in range(retries + 1):
            run.reset()
            token = current_flow.set(run)
            try:
                result = yield _BODY, None
            except BaseException as exc:
                run.settle_submitted()
                again = yield from self._on_error(run, exc, attempt, retries)
                if again:
                    continue
                return
            finally:
                current_flow.reset(token)
            yield from self._complete(run, result)
            return

    def _drive(
        self,
        runner: Runner,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retries: int,
        store: Store | None,
        budget: float | None,
        ray_env: dict[str, Any] | None = None,
    ) -> None:
        run = self._new_run(runner, store, budget, ray_env)
        _begin(run)
        try:
            run_sync(
                _traced(run, self._passes(run, retries)),
                runner,
                lambda _op, _arg: self._func(*args, **kwargs),
            )
        finally:
            _end(run)

    async def _drive_async(
        self,
        runner: Runner,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retries: int,
        store: Store | None,
        budget: float | None,
        ray_env: dict[str, Any] | None = None,
    ) -> None:
        import asyncio

        run = self._new_run(runner, store, budget, ray_env)
        run.is_async = True  # wait() in its body is awaited, not blocking the loop

        async def body(_op: object, _arg: None) -> Any:
            before = asyncio.all_tasks()
            try:
                return await self._func(*args, **kwargs)
            except BaseException:
                await _cancel_tasks(asyncio.all_tasks() - before)
                raise

        _begin(run)
        try:
            await run_async(_traced(run, self._passes(run, retries)), runner, body)
        finally:
            _end(run)

    def _on_error(self, run: FlowRun, exc: BaseException, attempt: int, retries: int) -> Steps:
        """Record a failed pass of the body; returns True when the body should run again.

        Whatever `exc` does when printed and whatever the store refuses, the execution
        ends `failed` (or its lease is released): it never stays `running` while this
        process lives on.
        """
        yield from _quietly(log_steps(run))
        yield from _quietly(run.ledger_steps())
        if isinstance(exc, WaitSuspended):
            yield "suspend", (clip(str(exc), MESSAGE_LIMIT),)
            return False
        if isinstance(exc, (FlowCancelled, KitaruCancelledError)):
            # Cancelled by another process, which already recorded it.
            yield "release", ()
            return False
        if isinstance(exc, KitaruLeaseError):
            # Another process runs this execution now; it owns the state from here.
            yield "release", ()
            raise exc
        failure = FailureRecord(*failure_of(exc))
        fatal = isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit))
        if not fatal and attempt < retries and failure.origin == FailureOrigin.USER_CODE:
            # False: recorded as the execution's failure instead
            return (yield from _record_failure(run, failure, attempt=attempt + 1))
        yield from _record_failure(run, failure)
        if fatal or not isinstance(exc, Exception):
            raise exc
        return False

    def _complete(self, run: FlowRun, result: Any) -> Steps:
        from . import serde

        try:
            yield from log_steps(run)
        except Exception as exc:  # the store refused the body's output: the run fails
            yield from _record_failure(run, FailureRecord(*failure_of(exc)))
            return
        yield from _quietly(run.ledger_steps())
        if run.budget_error is not None:
            # The body caught the budget stop and returned: the execution still stops there.
            yield from _record_failure(run, FailureRecord(*failure_of(run.budget_error)))
            return
        try:
            tag, data = serde.dumps(
                result, what=f"return value of flow {self.name!r}", allow_pickle=self.allow_pickle
            )
        except Exception as exc:
            _, message, exc_type, tb = failure_of(exc)
            failure = FailureRecord(str(FailureOrigin.RUNTIME), message, exc_type, tb)
            yield from _record_failure(run, failure)
            return
        try:
            yield "complete", (tag, data)
        except KitaruCancelledError:
            # Cancelled after the body's last checkpoint: the canceller recorded it, and the
            # run ends as one cancelled at a checkpoint boundary does (quietly).
            yield "release", ()
        except KitaruLeaseError:
            yield "release", ()
            raise
        except Exception as exc:
            yield from _record_failure(run, FailureRecord(*failure_of(exc)))
            raise


def _fanout(runner: Runner, env: dict[str, Any] | None) -> Any:
    """How a Ray run's concurrent checkpoint calls reach the cluster (`kitaru._ray`):
    `env` as given, else the runtime environment of the recorded image settings."""
    from . import _ray

    if env is None:
        import json

        env = _ray.runtime_env(json.loads(runner.options_json or "{}").get("image"))
    return _ray.Fanout(env)


def _seed(runner: Runner, store: Store, note: dict[str, Any]) -> None:
    """Takes over a replay's results from its source as `note` (its recorded plan) says,
    then marks the seeding done."""
    import json

    values = note.get("override_values") or {}
    replaced = [(call_id, v["serializer"], store.get_blob(v["blob"], runner.exec_id))
                for call_id, v in values.items()]  # fmt: skip
    runner.seed_from(note["source"], note["reused"], replaced)
    runner.log_metadata(json.dumps({_ledger.REPLAY_SEEDED: True}))


# The step of a pass that runs the flow body (`FlowDefinition._passes`).
_BODY = object()


def _record_failure(run: FlowRun, failure: FailureRecord, *, attempt: int | None = None) -> Steps:
    """Record the execution's failure (or, with `attempt`, a failed pass before a retry).

    Returns False when the store refused that record and the execution's failure was
    recorded instead, with the reason; when even that fails, the lease is released (so
    the execution shows its runner gone and can be retried) and the store's error raised.
    """
    try:
        if attempt is None:
            yield "fail", (failure,)
        else:
            yield "flow_attempt_failed", (attempt, failure)
        return True
    except KitaruLeaseError:
        yield "release", ()
        raise
    except Exception as refused:
        _, why, _, _ = failure_of(refused)
        message = clip(f"{failure.message} (kitaru could not record this failure in full: {why})",
                       MESSAGE_LIMIT)  # fmt: skip
        try:
            yield "fail", (FailureRecord(failure.origin, message, failure.exception_type, None),)
            return False
        except Exception:
            yield from _quietly(_release())
            raise refused from None


def _release() -> Steps:
    yield "release", ()


def _quietly(steps: Steps) -> Steps:
    """`steps`, their failure ignored: what is recorded after them matters more."""
    try:
        yield from steps
    except Exception:
        pass


def _traced(run: FlowRun, steps: Steps) -> Steps:
    """`steps` of a run, inside a ``flow <name>`` span when the run exports spans."""
    if run.tracer is None:
        return steps
    from . import _otel

    return _otel.flow_steps(run, steps)


def _begin(run: FlowRun) -> None:
    _capture.install()
    ACTIVE.add(run)


def _end(run: FlowRun) -> None:
    ACTIVE.discard(run)
    _capture.uninstall()


async def _cancel_tasks(tasks: set[Any]) -> None:
    import asyncio

    tasks.discard(asyncio.current_task())
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def _lease_ttl_ms() -> int:
    from . import _config

    return _config.lease_ttl_ms()


def _no_running_loop(name: str) -> None:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise KitaruUsageError(
        f"Flow {name!r} is async and an event loop is already running; use "
        f"`handle = await {name}.arun(...)` instead of .run()."
    )


class FlowHandle(Generic[R]):
    """A started execution: its id, status and result, read from the store that holds it."""

    def __init__(
        self, exec_id: str, store: Store | None = None, *, allow_pickle: bool = False
    ) -> None:
        self.exec_id = exec_id
        self._store = store
        self._allow_pickle = allow_pickle  # the result of a @flow(allow_pickle=True) run

    def __repr__(self) -> str:
        return f"FlowHandle(exec_id={self.exec_id!r})"

    @property
    def _st(self) -> Store:
        if self._store is None:
            from . import _config

            self._store = _config.get_store()
        return self._store

    def _summary(self) -> ExecutionView:
        return self._st.inspect(self.exec_id, full=False)

    @property
    def status(self) -> ExecutionStatus:
        """The execution's status, read from the store at each access."""
        from ._status import ExecutionStatus

        return ExecutionStatus(self._summary()["status"])

    def get(self) -> R:
        """The result if the execution completed; a typed error if it did not (no waiting)."""
        summary = self._summary()
        status = summary["status"]
        if status == "completed":
            return self._result()
        if status in ("running", "waiting"):
            raise KitaruStateError(
                f"Execution {self.exec_id} is still {status} (status: {status})."
            )
        raise self._error(summary)

    def wait(self, timeout: float | None = None) -> R:
        """Block until the execution ends; its result, or a typed error.

        Raises:
            KitaruTimeoutError: `timeout` seconds passed first.
            KitaruExecutionError: (or a subclass by origin) the execution failed or was cancelled.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.05
        while True:
            summary = self._summary()
            status = summary["status"]
            if status == "completed":
                return self._result()
            if status in ("failed", "cancelled"):
                raise self._error(summary)
            if status == "waiting":
                raise KitaruStateError(
                    f"Execution {self.exec_id} is waiting for input. Give it with "
                    f"`kitaru executions input {self.exec_id} --value <json>`, then run "
                    f"`kitaru executions resume {self.exec_id}`."
                )
            if deadline is not None and time.monotonic() >= deadline:
                raise KitaruTimeoutError(
                    f"Execution {self.exec_id} is still {status} after {timeout} s."
                )
            time.sleep(
                delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic()))
            )
            delay = min(delay * 2, 1.0)

    def _result(self) -> R:
        from . import serde

        # The core reads the whole execution first, as `executions get` does: a result is
        # never handed out of an execution whose records are damaged.
        found = self._st.result(self.exec_id)
        if found is None:  # pragma: no cover - completed executions always store a result
            raise KitaruStateError(f"Execution {self.exec_id} completed without a stored result.")
        tag, data = found
        return serde.loads(  # type: ignore[no-any-return]
            tag, data, what=f"result of execution {self.exec_id}", allow_pickle=self._allow_pickle
        )

    def _error(self, summary: ExecutionView) -> Exception:
        status = summary["status"]
        failure = summary["failure"]
        origin = failure["origin"] if failure else ("unknown" if status == "failed" else None)
        reason = (failure["message"] if failure else None) or status
        parts = [
            f"Execution {self.exec_id} of flow {summary.get('flow_name')!r} {status}: {reason}"
        ]
        hint = format_recovery_hint(self.exec_id, status)
        if hint:
            parts.append(hint)
        cls = execution_error_for(origin)
        try:
            fo: FailureOrigin | None = FailureOrigin(origin) if origin else None
        except ValueError:
            fo = FailureOrigin.UNKNOWN
        return cls("\n".join(parts), exec_id=self.exec_id, status=status, failure_origin=fo)


@overload
def flow(func: Callable[P, Coroutine[Any, Any, R]], /) -> FlowDefinition[P, R]: ...
@overload
def flow(func: Callable[P, R], /) -> FlowDefinition[P, R]: ...
@overload
def flow(
    *,
    stack: str | None = None,
    image: Any = None,
    cache: bool | None = None,
    retries: int | None = None,
    divergence: str = "rerun",
    budget_usd: float | None = None,
    allow_pickle: bool = False,
    runner: str | None = None,
) -> _FlowDecorator: ...


def flow(
    func: Callable[..., Any] | None = None,
    /,
    *,
    stack: str | None = None,
    image: Any = None,
    cache: bool | None = None,
    retries: int | None = None,
    divergence: str = "rerun",
    budget_usd: float | None = None,
    allow_pickle: bool = False,
    runner: str | None = None,
) -> Any:
    """Mark the function that drives an agent as a durable flow (sync or ``async def``).

    Args:
        retries: times the whole body runs again after a failure; finished checkpoints are
            reused, so only unfinished work repeats.
        divergence: what to do when a finished checkpoint is called again with different
            inputs: ``"rerun"`` it (default), ``"reuse"`` its stored output anyway (with a
            ``KitaruDivergenceWarning``), or ``"error"`` (raise ``KitaruDivergenceError``).
            Every divergence is recorded on the execution. A stored output is never handed
            to a call with different inputs while another stored call of the same
            checkpoint has the call's inputs.
        budget_usd: the most the execution may spend on ``kitaru.llm()`` calls; once its
            spend exceeds it, the next LLM call or checkpoint stops the flow with
            ``KitaruBudgetExceededError`` (retry with ``--budget-usd`` to continue).
        stack: the stack whose store holds this flow's executions, unless ``.run(stack=)``,
            ``kitaru.configure(stack=)`` or ``KITARU_STORE`` say otherwise. Without it,
            pyproject.toml's ``[tool.kitaru] stack`` or the active stack decides.
        allow_pickle: store values of this flow's executions that have no typed serializer
            (arguments, checkpoint outputs, the result) as pickles, and load them when it
            runs again and in its handle's ``wait()``. Off by default: loading a pickle runs
            code chosen by whoever wrote it, so opt in only if you trust everyone who can
            write to the store.
        runner: ``"local"`` (the calling process; its ``.submit()``/``.map()`` calls in
            threads) or ``"ray"``: ``.run()`` sends the flow to a Ray cluster
            (``RAY_ADDRESS``, else a local one) and its ``.submit()``/``.map()``/
            ``.product()`` calls run as Ray tasks; the store must be one every Ray
            worker reaches. Default: ``kitaru.configure(runner=)``, then the stack's.
        image: image settings; on Ray they become the tasks' runtime environment
            (requirements, environment variables, working directory), elsewhere they are
            recorded. cache: the cross-execution cache default of this flow.
    """
    if not isinstance(allow_pickle, bool):
        raise KitaruUsageError(f"Flow allow_pickle must be True or False, got {allow_pickle!r}.")
    _validate_options(stack, image, cache, retries, "@flow")
    budget = _check_budget(budget_usd, "@flow")
    chosen_runner = _check_runner(runner, "@flow")
    if divergence not in DIVERGENCE_POLICIES:
        raise KitaruUsageError(
            f"Flow divergence policy must be one of {', '.join(DIVERGENCE_POLICIES)}, got {divergence!r}."
        )

    def wrap(f: Callable[..., Any]) -> FlowDefinition[Any, Any]:
        if not callable(f):
            raise KitaruUsageError(f"@flow decorates a function, got {f!r}.")
        return FlowDefinition(
            f,
            stack=stack,
            image=image,
            cache=cache,
            retries=retries,
            divergence=divergence,
            budget_usd=budget,
            allow_pickle=allow_pickle,
            runner=chosen_runner,
        )

    return wrap(func) if func is not None else wrap
