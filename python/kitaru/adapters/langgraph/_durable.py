"""`durable(graph)`: a compiled LangGraph graph run durably inside a kitaru flow.

Built on LangGraph's own durability: the graph runs with a `KitaruSaver` in the flow's
store, on a thread named after the execution (``kitaru-<execution id>-<graph>-<n>``), with
``durability="sync"`` (unless you pass another): LangGraph stores each finished task's
writes and a checkpoint after every step before it goes on (its default, ``"async"``,
stores them while the next step runs, so a crash can lose a finished node). When the
flow runs again (a retry after a crash, a resume after a wait) the same call finds the
thread: a graph that finished returns its stored result without running a node, one that
was cut short continues from its last step — LangGraph runs only the tasks that had not
finished (their writes are stored) — and one stopped by `interrupt()` waits.

`interrupt(value)` in a node becomes a `kitaru.wait()` of the flow: the process may exit,
``kitaru executions input <id> --value ...`` answers, and the resumed flow hands the answer
to the graph as ``Command(resume=...)``. A ``value`` that is a dict with ``question`` (and
``response_schema``, a JSON Schema such as ``{"type": "boolean"}``) is asked as that
question with that schema; any other value is the question's text.

Each node that finished is also a checkpoint call of the flow (``<graph>.<node>``, type
``graph_node``, its output the channels it wrote), so ``kitaru executions get`` shows the
graph's progress, and the lease, a cancel and the budget are checked between nodes.
`kitaru.llm()` calls inside nodes are checkpoints of their own, as anywhere in a flow.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Generator, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import Command

from ..._context import FlowRun, sanitize_name
from ..._steps import run_async, run_sync
from ..._units import Unit, arun_unit, flow_body, run_unit
from ._saver import KitaruSaver

__all__ = ["DurableGraph", "durable"]

# The steps of a durable run that its `do` functions carry out (`DurableGraph._steps`).
_STATE, _INVOKE, _WAIT = object(), object(), object()
_SPECIAL = frozenset({"__error__", "__interrupt__", "__scheduled__", "__resume__"})


def _node_of(task_path: str) -> str | None:
    """What a task ran, from LangGraph's task path: the node (a pulled task's path ends
    with it), ``task`` for a functional-API task (a pushed call), None for the input."""
    parts = [p.strip() for p in task_path.split(",")] if task_path else []
    if not parts:
        return None
    if parts[0] == "~__pregel_push":
        return "task"
    node = parts[-1]
    return None if not node or node.startswith("__") else node


class _FlowSaver(KitaruSaver):
    """`KitaruSaver` that also records each finished node as a checkpoint call of the flow."""

    def __init__(self, store: Any, run: FlowRun, graph: str) -> None:
        super().__init__(store)
        self._run, self._graph = run, graph
        self._cond = threading.Condition()
        self._inflight: dict[str, int] = {}

    def _unit(self, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str) -> Any:
        node = _node_of(task_path)
        channels = [c for c, _ in writes]
        if node is None or not channels or any(c in _SPECIAL for c in channels):
            return None
        from ..._kitaru import blake3_digest

        unit = Unit(f"{self._graph}.{node}", "graph_node")
        digest = bytes(blake3_digest(f"{task_id}\0{task_path}".encode()))
        out = {"task_id": task_id, "node": node, "channels": channels}
        return unit, digest, out

    # A step's checkpoint waits for the writes calls of that step that are under way (and
    # their records in the flow): LangGraph submits a task's writes when the task ends and
    # the checkpoint when the step does, both to background threads, and with durability
    # "sync" it waits for the checkpoint before the next step. (Which of the two background
    # threads starts first is the scheduler's; if the checkpoint wins, a crash right after
    # can lose a node's record in the flow, never its result: the checkpoint holds it.)

    def _begin(self, config: RunnableConfig) -> str:
        cid = str(config["configurable"].get("checkpoint_id"))
        with self._cond:
            self._inflight[cid] = self._inflight.get(cid, 0) + 1
        return cid

    def _end(self, cid: str) -> None:
        with self._cond:
            self._inflight[cid] -= 1
            if not self._inflight[cid]:
                del self._inflight[cid]
                self._cond.notify_all()

    def _settled(self, config: RunnableConfig) -> bool:
        return str(config["configurable"].get("checkpoint_id")) not in self._inflight

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        cid = self._begin(config)
        try:
            super().put_writes(config, writes, task_id, task_path)
            made = self._unit(writes, task_id, task_path)
            if made is not None:
                unit, digest, out = made
                run_unit(self._run, unit, digest, lambda: out)
        finally:
            self._end(cid)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        cid = self._begin(config)
        try:
            await super().aput_writes(config, writes, task_id, task_path)
            made = self._unit(writes, task_id, task_path)
            if made is not None:
                unit, digest, out = made

                async def body() -> Any:
                    return out

                await arun_unit(self._run, unit, digest, body)
        finally:
            self._end(cid)

    def put(self, config: RunnableConfig, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        with self._cond:
            self._cond.wait_for(lambda: self._settled(config))
        return super().put(config, checkpoint, metadata, new_versions)

    async def aput(
        self, config: RunnableConfig, checkpoint: Any, metadata: Any, new_versions: Any
    ) -> Any:
        import asyncio

        while not self._settled(config):
            await asyncio.sleep(0.001)
        return await super().aput(config, checkpoint, metadata, new_versions)


def _ask(interrupt: Any) -> tuple[str, Any, dict[str, Any]]:
    """(question, schema, metadata) of the wait for an interrupt: a value that is a dict
    with ``question`` is asked as that question, with ``response_schema`` (a JSON Schema)
    as the answer's schema; any other value is the question's text (any JSON answer)."""
    value = interrupt.value
    schema: Any = {}
    if isinstance(value, dict) and isinstance(value.get("question"), str):
        question = value["question"]
        if isinstance(value.get("response_schema"), dict):
            schema = value["response_schema"]
    else:
        question = value if isinstance(value, str) else repr(value)
    from pydantic_core import to_jsonable_python

    shown = to_jsonable_python(value, fallback=repr)
    return question, schema, {"adapter": "langgraph", "interrupt_id": interrupt.id, "value": shown}


class DurableGraph:
    """A compiled graph that runs durably in a flow body (see `durable`)."""

    def __init__(self, graph: Any, *, name: str | None = None) -> None:
        self.graph = graph
        raw = name or getattr(graph, "name", None) or "graph"
        nodes = [n for n in getattr(graph, "nodes", {}) if not str(n).startswith("__")]
        if name is None and raw == "LangGraph" and len(nodes) == 1:
            raw = nodes[0]  # an @entrypoint: its function's name
        self.name = sanitize_name(str(raw), "graph")

    def _setup(self, config: RunnableConfig | None) -> tuple[FlowRun, Any, RunnableConfig] | None:
        run = flow_body()
        if run is None:
            return None
        from ... import _config

        store = run.store if run.store is not None else _config.get_store()
        graph = self.graph.copy(update={"checkpointer": _FlowSaver(store, run, self.name)})
        n = run.next_in_pass(f"langgraph:{self.name}")
        thread = f"kitaru-{run.exec_id}-{self.name}-{n}"
        cfg: RunnableConfig = dict(config or {})  # type: ignore[assignment]
        cfg["configurable"] = {**cfg.get("configurable", {}), "thread_id": thread}
        return run, graph, cfg

    def _wait_names(self, interrupts: Sequence[Any]) -> list[str]:
        return [
            sanitize_name(f"{self.name}_interrupt_{i.id[:16]}", "interrupt") for i in interrupts
        ]

    def _steps(self, input: Any) -> Generator[tuple[object, Any], Any, Any]:
        """One durable run of the graph on its thread (see `kitaru._steps`): start it, or
        go on from where an earlier run of the flow left it, and turn each interrupt into
        a wait of the flow."""
        state = yield _STATE, None
        if state.interrupts:
            out = state.values  # waiting since an earlier run
        elif state.created_at is None:
            out = yield _INVOKE, input  # a first run
        else:
            # The thread exists: go on from its last step (LangGraph runs only the tasks
            # whose writes are not stored; on a finished thread, nothing).
            out = yield _INVOKE, None
        while True:
            state = yield _STATE, None
            if not state.interrupts:
                return out
            answers = {}
            names = self._wait_names(state.interrupts)
            for interrupt, wait_name in zip(state.interrupts, names, strict=True):
                question, schema, meta = _ask(interrupt)
                answers[interrupt.id] = yield _WAIT, (schema, wait_name, question, meta)
            out = yield _INVOKE, Command(resume=answers)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """`graph.invoke`, durable in a flow body (outside one, the graph's own invoke)."""
        setup = self._setup(config)
        if setup is None:
            return self.graph.invoke(input, config, **kwargs)
        _run, graph, cfg = setup
        from ... import wait

        kwargs.setdefault("durability", "sync")

        def do(op: object, arg: Any) -> Any:
            if op is _STATE:
                return graph.get_state(cfg)
            if op is _INVOKE:
                return graph.invoke(arg, cfg, **kwargs)
            schema, name, question, meta = arg
            return wait(schema=schema, name=name, question=question, metadata=meta)

        return run_sync(self._steps(input), None, do)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """`graph.ainvoke`, durable in a flow body (outside one, the graph's own)."""
        setup = self._setup(config)
        if setup is None:
            return await self.graph.ainvoke(input, config, **kwargs)
        _run, graph, cfg = setup
        from ... import wait

        kwargs.setdefault("durability", "sync")

        async def do(op: object, arg: Any) -> Any:
            if op is _STATE:
                return await graph.aget_state(cfg)
            if op is _INVOKE:
                return await graph.ainvoke(arg, cfg, **kwargs)
            schema, name, question, meta = arg
            got = wait(schema=schema, name=name, question=question, metadata=meta)
            return await got if inspect.isawaitable(got) else got

        return await run_async(self._steps(input), None, do)


def durable(graph: Any, *, name: str | None = None) -> DurableGraph:
    """Run a compiled LangGraph graph (a `StateGraph`'s or an `@entrypoint`) durably when
    called in a flow body: ``durable(graph).invoke(input)`` (or ``await .ainvoke(...)``).
    `name` names its checkpoints and thread (default: the graph's name)."""
    if not hasattr(graph, "copy") or not hasattr(graph, "get_state"):
        from ...errors import KitaruUsageError

        raise KitaruUsageError(
            f"durable() takes a compiled LangGraph graph (builder.compile() or an "
            f"@entrypoint), got {type(graph).__name__}."
        )
    return DurableGraph(graph, name=name)
