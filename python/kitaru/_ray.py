"""Flows and fan-outs on Ray (``runner="ray"``): imported only when a run asks for Ray.

Two things run on the cluster, and the store stays the one truth:

- **Checkpoint calls made with ``.submit()`` / ``.map()`` / ``.product()``** run as Ray
  tasks. Only the body travels: the flow's driver decides (is a stored result there?),
  checks the lease and the budget, and records the output the task returns, so a task
  never writes to the store and a task that runs twice (Ray retries one whose worker
  died) cannot record twice. What the body logs (`kitaru.log`) and what its `llm()`
  calls cost come back with the result and are recorded by the driver as for a local
  call; the checkpoint's metadata says where it ran (``ray``: node, pid, task).
- **The flow's driver** (`.run()`): a Ray task that loads the flow the way a retry does
  (by the entry point recorded on the execution), starts the execution and runs it, so
  `.run()` returns a handle once the execution exists. Direct (sequential) checkpoint
  calls run in that task.

A killed Ray worker costs only its unfinished task (Ray runs it again; finished calls
are in the store); a killed driver leaves an execution whose runner died, which
`kitaru worker` or `kitaru executions retry` continues (its checkpoints again on Ray:
the runner is recorded with the execution). `ImageSettings` become the tasks' runtime
environment (`runtime_env`).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from .errors import KitaruFeatureNotAvailableError, KitaruUsageError

_lock = threading.Lock()
_by_value: set[str] = set()
_job_dir: str | None = None  # the working_dir this process's Ray job was started with


def ensure(env: dict[str, Any] | None = None) -> Any:
    """The `ray` module, connected: to the running cluster when this process is a Ray
    driver or worker already, else to ``RAY_ADDRESS``, else a local cluster Ray starts.

    A local ``working_dir`` in `env` is shipped with the job (Ray uploads a directory
    only for the whole job, at ``ray.init``), so it must be given before this process
    connects; inside a Ray task the job already has it.
    """
    global _job_dir
    try:
        import ray
    except ImportError:
        raise KitaruFeatureNotAvailableError(
            "runner='ray' needs Ray: pip install 'kitaru[ray]' (or choose runner='local')."
        ) from None
    local_dir = (env or {}).get("working_dir")
    if local_dir is not None and "://" in local_dir:
        local_dir = None  # a URI (s3://..., https://...zip) goes with each task
    if not ray.is_initialized():
        with _lock:
            if not ray.is_initialized():
                job = {"working_dir": local_dir} if local_dir else None
                ray.init(
                    address=os.environ.get("RAY_ADDRESS") or None,
                    runtime_env=job,
                    ignore_reinit_error=True,
                    logging_level=30,
                )  # logging_level 30: WARNING
                _job_dir = local_dir
    if (local_dir and local_dir != _job_dir
            and ray.get_runtime_context().get_task_id() is None):  # fmt: skip
        raise KitaruUsageError(
            f"The image's build_context_root {local_dir} becomes the Ray job's working_dir, "
            "but this process joined Ray before (without it). Start the flow before calling "
            f"ray.init() yourself, or pass ray.init(runtime_env={{'working_dir': {local_dir!r}}})."
        )
    # A flow script re-entered as module `__kitaru_main__` (kitaru._entry) is importable
    # only here: its functions travel by value, as `__main__`'s do.
    main = sys.modules.get("__kitaru_main__")
    if main is not None and "__kitaru_main__" not in _by_value:
        with _lock:
            if "__kitaru_main__" not in _by_value:
                ray.cloudpickle.register_pickle_by_value(main)  # type: ignore[no-untyped-call]
                _by_value.add("__kitaru_main__")
    return ray


def check_store(location: str) -> None:
    """Refuse a store Ray's workers cannot all see: ``memory://`` always, a local
    directory when the cluster has a node on another host (unless
    ``KITARU_RAY_SHARED_STORE=1`` says the directory is on a filesystem every node mounts)."""
    if location.startswith("memory://"):
        raise KitaruUsageError(
            "runner='ray' needs a store every Ray worker can reach; memory:// lives in one "
            "process. Use a local directory (one machine) or an object store stack."
        )
    if "://" in location and not location.startswith("file://"):
        return
    if os.environ.get("KITARU_RAY_SHARED_STORE", "").strip().lower() in ("1", "true", "yes"):
        return
    ray = ensure()
    import socket

    here = {socket.gethostname()}
    try:
        here.add(ray.util.get_node_ip_address())
    except Exception:  # pragma: no cover - an older Ray
        pass
    others = [n.get("NodeManagerHostname") or n.get("NodeManagerAddress")
              for n in ray.nodes() if n.get("Alive")
              and n.get("NodeManagerHostname") not in here
              and n.get("NodeManagerAddress") not in here]  # fmt: skip
    if others:
        raise KitaruUsageError(
            f"The store is the local directory {location}, but the Ray cluster has nodes on "
            f"other machines ({', '.join(sorted(map(str, others)))}) that cannot see it. Use an "
            "object store stack (kitaru stack create NAME --artifact-store s3://...), or set "
            "KITARU_RAY_SHARED_STORE=1 if every node mounts that directory."
        )


_IGNORED = ("base_image", "dockerfile", "apt_packages", "image_tag", "target_repository",
            "user", "platform", "replicate_local_python_environment")  # fmt: skip
_warned: set[tuple[str, ...]] = set()


def runtime_env(image: Any) -> dict[str, Any] | None:
    """The Ray runtime environment of a run's image settings (an `ImageSettings`, or the
    dict recorded on an execution): ``requirements`` -> ``pip`` (kitaru itself is on the
    workers already), ``environment`` -> ``env_vars`` (a ``{{ NAME }}`` reference is read
    from this process's environment; a value the store kept as ``<redacted>`` is left
    out), ``build_context_root`` -> ``working_dir``. Container fields have no Ray
    counterpart here and are named in one warning."""
    from .errors import warn_user
    from .stacks import _requirement_name

    if image is None:
        return None
    settings = image.to_dict() if hasattr(image, "to_dict") else dict(image)
    env: dict[str, Any] = {}
    pip = [r for r in settings.get("requirements") or [] if _requirement_name(r) != "kitaru"]
    if pip:
        env["pip"] = pip
    env_vars: dict[str, str] = {}
    for key, value in (settings.get("environment") or {}).items():
        text = str(value).strip()
        if text.startswith("{{") and text.endswith("}}"):
            ref = text[2:-2].strip()
            if ref not in os.environ:
                warn_user(f"Image environment {key} names {{{{ {ref} }}}}, which is not set "
                          "here; the Ray tasks run without it.", RuntimeWarning)  # fmt: skip
                continue
            env_vars[key] = os.environ[ref]
        elif text == "<redacted>":
            warn_user(f"Image environment {key} was a literal secret, which the store does not "
                      f"keep; set it as a reference ({key}: '{{{{ {key} }}}}') so a retry can "
                      "pass it to Ray.", RuntimeWarning)  # fmt: skip
        else:
            env_vars[key] = str(value)
    if env_vars:
        env["env_vars"] = env_vars
    if settings.get("build_context_root"):
        env["working_dir"] = settings["build_context_root"]
    ignored = tuple(f for f in _IGNORED if settings.get(f))
    if ignored and ignored not in _warned:
        _warned.add(ignored)
        warn_user(f"Image settings {', '.join(ignored)} have no effect on Ray (its tasks run "
                  "in the cluster's own Python environment plus the runtime environment).",
                  RuntimeWarning)  # fmt: skip
    return env or None


def _task_env(env: dict[str, Any] | None) -> dict[str, Any] | None:
    """`env` as a task's runtime env: a local working_dir is the job's (see `ensure`)."""
    if env is None or "://" in str(env.get("working_dir", "://")):
        return env
    rest = {k: v for k, v in env.items() if k != "working_dir"}
    return rest or None


# --- checkpoint calls as Ray tasks ---------------------------------------------------


class Fanout:
    """How a run's concurrent checkpoint calls reach Ray: one task per call, waited for
    in a pool thread of the driver (threads only wait, so there are many)."""

    def __init__(self, env: dict[str, Any] | None) -> None:
        self.ray = ensure(env)
        self.env = _task_env(env)
        self._funcs: dict[int, Any] = {}
        self._remote: Any = None

    def _func_ref(self, func: Any) -> Any:
        """The body, put in Ray's object store once per run (not pickled per call)."""
        key = id(func)
        ref = self._funcs.get(key)
        if ref is None:
            with _lock:
                ref = self._funcs.get(key)
                if ref is None:
                    ref = self._funcs[key] = self.ray.put(func)
        return ref

    def call(self, call: Any, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run `func(*args, **kwargs)` as a Ray task for checkpoint call `call` (its attempt
        has begun: the scope is set); its value, with what the task logged and spent
        recorded on the driver."""
        from ._context import merge_metadata, runtime_error
        from ._steps import run_sync

        ray = self.ray
        run, scope = call.run, call.scope
        if self._remote is None:
            self._remote = ray.remote(_invoke)
        room = None if run.budget_usd is None else max(0.0, run.budget_usd - run.spent_usd)
        ctx = (scope.name, scope.call_id, scope.checkpoint_type, scope.exec_id, run.flow_name,
               room)  # fmt: skip
        opts: dict[str, Any] = {"name": f"kitaru {run.flow_name}.{call.call_id}"}
        if self.env is not None:
            opts["runtime_env"] = self.env
        ref = self._remote.options(**opts).remote(self._func_ref(func), args, kwargs, ctx)
        try:
            value, meta, spends, where = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            report = getattr(cause, "_kitaru_ray", None) or {}
            for spend in report.get("spends", ()):
                run_sync(run.spend_steps(*spend), run.runner)
            merge_metadata(scope.metadata, report.get("metadata") or {})
            if cause is not exc:
                cause.add_note(f"(raised in a Ray task; its traceback:)\n{exc.traceback_str}")
            raise cause from None
        except ray.exceptions.RayError as exc:
            # The worker or node died more often than Ray retries a task, the task could
            # not be sent (an unpicklable argument), the runtime env failed to build...
            raise runtime_error(
                f"Checkpoint {call.call_id!r} could not run on Ray: {type(exc).__name__}: {exc}",
                exc,
            ) from None
        for spend in spends:
            run_sync(run.spend_steps(*spend), run.runner)
        merge_metadata(scope.metadata, meta)
        merge_metadata(scope.metadata, {"ray": where})
        return value


class _TaskRun:
    """What a checkpoint body on a Ray worker sees as its flow: `kitaru.log()` and inline
    `llm()` calls work (collected, recorded by the driver); the budget left when the task
    was sent is enforced; anything that needs the execution itself is refused."""

    tracer = None
    runner = None

    def __init__(self, exec_id: str, flow_name: str, room: float | None) -> None:
        self.exec_id, self.flow_name, self.room = exec_id, flow_name, room
        self.spends: list[tuple[str, str | None, dict[str, Any]]] = []
        self.spent = 0.0
        self.llm_count = 0

    def spend_steps(self, call: str, checkpoint: str | None, info: dict[str, Any]) -> Any:
        self.spends.append((call, checkpoint, info))
        self.spent += info.get("cost_usd") or 0.0
        return
        yield  # a generator of no steps, like the ledger's (which yields one)

    def check_budget(self) -> None:
        if self.room is not None and self.spent > self.room:
            from .errors import FailureOrigin, KitaruBudgetExceededError

            raise KitaruBudgetExceededError(
                f"Execution {self.exec_id} of flow {self.flow_name!r} went over its budget "
                f"in a checkpoint on Ray (${self.spent:.4f} spent there, ${self.room:.4f} left "
                f"when it was sent). Retry it with a larger budget: `kitaru executions retry "
                f"{self.exec_id} --budget-usd <dollars>`.",
                exec_id=self.exec_id,
                status="failed",
                failure_origin=FailureOrigin.BUDGET,
            )

    def __getattr__(self, name: str) -> Any:
        from .errors import KitaruContextError

        raise KitaruContextError(
            f"This needs the running execution ({name}), which a checkpoint body on a Ray "
            "worker does not have; do it in the flow body, or in a checkpoint called directly "
            "(not with .submit()/.map())."
        )


def _invoke(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], ctx: tuple[Any, ...]) -> Any:
    """A checkpoint body on a Ray worker: (value, metadata, spends, where it ran)."""
    import asyncio
    import inspect
    import socket

    import ray

    from ._context import CheckpointScope, current_checkpoint, current_flow

    name, call_id, checkpoint_type, exec_id, flow_name, room = ctx
    scope = CheckpointScope(name, call_id, checkpoint_type, exec_id)
    run = _TaskRun(exec_id, flow_name, room)
    tokens = current_flow.set(run), current_checkpoint.set(scope)  # type: ignore[arg-type]
    try:
        value = func(*args, **kwargs)
        if inspect.iscoroutine(value):
            value = asyncio.run(value)
    except BaseException as exc:
        try:  # what it logged and spent still counts
            exc._kitaru_ray = {"spends": run.spends, "metadata": scope.metadata}  # type: ignore[attr-defined]
        except Exception:  # pragma: no cover - an exception without a __dict__
            pass
        raise
    finally:
        current_checkpoint.reset(tokens[1])
        current_flow.reset(tokens[0])
    rt = ray.get_runtime_context()
    where = {"node_id": rt.get_node_id(), "host": socket.gethostname(), "pid": os.getpid(),
             "task_id": rt.get_task_id()}  # fmt: skip
    return value, scope.metadata, run.spends, where


# --- the flow's driver as a Ray task ---------------------------------------------------


def submit_flow(flow: Any, store_location: str, store_options: dict[str, str], start: Any,
                retries: int, budget: float | None, env: dict[str, Any] | None,
                ttl_ms: int) -> str:  # fmt: skip
    """Start `flow`'s execution (`start`: its start record) on Ray; returns its id once
    the execution exists. The task is kept until it ends (`_submitted`)."""
    ray = ensure(env)
    check_store(store_location)
    env = _task_env(env)
    opts: dict[str, Any] = {
        "num_returns": "streaming",
        # A driver waits on its calls' tasks: it takes no CPU from them. Never run twice
        # by Ray: a driver that died is continued by retry, which knows what finished.
        "num_cpus": 0,
        "max_retries": 0,
        "name": f"kitaru flow {flow.name}",
    }
    if env is not None:
        opts["runtime_env"] = env
    task = _remote_drive(ray).options(**opts)
    gen = task.remote(
        type(flow), store_location, store_options, start, retries, budget, env, ttl_ms
    )
    try:
        exec_id: str = ray.get(next(gen))
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(exc.cause, Exception) else exc
        raise cause from None
    with _lock:
        # Kept so the driver task's outputs live until it ends; ended ones are let go.
        done = [k for k, g in _submitted.items()
                if ray.wait([g.completed()], timeout=0)[0]]  # fmt: skip
        for k in done:
            del _submitted[k]
        _submitted[exec_id] = gen
    return exec_id


_drive_fn: Any = None


def _remote_drive(ray: Any) -> Any:
    global _drive_fn
    if _drive_fn is None:
        _drive_fn = ray.remote(_drive)
    return _drive_fn


_submitted: dict[str, Any] = {}  # the driver tasks this process started, by execution


def _drive(flow_type: type, location: str, options: dict[str, str], start: Any, retries: int,
           budget: float | None, env: dict[str, Any] | None, ttl_ms: int) -> Any:  # fmt: skip
    """On a Ray worker: load the flow as a retry would, start its execution, yield its
    id, run it to its end (the store records how), yield its status. `flow_type` is
    `FlowDefinition`, passed by reference (the flow module imports this one)."""
    from . import _config, _entry, serde

    entry = {"module": start.module, "qualname": start.qualname, "script": start.script,
             "cwd": start.cwd}  # fmt: skip
    flow = _entry.load_flow(entry, flow_type)
    store = _config.get_store(location, options)
    saved = serde.loads(start.args_serializer, start.args, what=f"arguments of flow {flow.name!r}",
                        allow_pickle=flow.allow_pickle)  # fmt: skip
    runner = store.start(start, ttl_ms)
    yield runner.exec_id
    try:
        flow._execute(runner, tuple(saved["args"]), dict(saved["kwargs"]), retries, store,
                      budget, ray_env=env)  # fmt: skip
    except Exception:  # recorded on the execution; the handle reads it from the store
        pass
    yield store.inspect(runner.exec_id, full=False)["status"]
