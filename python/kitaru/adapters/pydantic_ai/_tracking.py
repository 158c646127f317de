"""Kitaru 0.4's record of an agent run made inside a user checkpoint.

In a flow body each model request and tool call is a checkpoint of its own; inside a
``@checkpoint`` the checkpoint is the durable unit and the agent runs inline. For agents
made with `wrap()`, such a run is listed on the checkpoint's metadata as 0.4 did:
``pydantic_ai_events`` (one entry per model request and tool call, in order, with usage,
timings and — by the tool capture policy — arguments and results saved as artifacts of the
checkpoint) and ``pydantic_ai_run_summaries`` (one per agent run).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.capabilities import AbstractCapability
from pydantic_core import to_jsonable_python

from ..._context import CheckpointScope, current_checkpoint, current_flow, merge_metadata

__all__ = ["InlineTracking"]


@dataclass
class _Run:
    """One agent run inside a checkpoint: its label and the events so far."""

    label: str
    started: float
    events: list[str] = field(default_factory=list)
    models: int = 0
    tools: int = 0
    last_model: str | None = None
    finished_tools: list[str] = field(default_factory=list)


def _scope() -> CheckpointScope | None:
    return current_checkpoint.get() if current_flow.get() is not None else None


@dataclass
class InlineTracking(AbstractCapability[Any]):
    """Records a `wrap()`ped agent's requests and tool calls on the enclosing checkpoint."""

    agent_name: str
    capture: dict[str, bool]
    capture_by_name: dict[str, dict[str, bool]]
    _runs: dict[Any, _Run] = field(default_factory=dict, repr=False)

    def _run(self, ctx: Any) -> _Run | None:
        return self._runs.get(ctx.run_id) if ctx.run_id is not None else None

    def _event(self, scope: CheckpointScope, run: _Run, kind: str, data: dict[str, Any]) -> str:
        """Adds the event (`data` is the dict recorded: later changes to it are recorded too)."""
        n = (run.models if kind == "llm_call" else run.tools) + 1
        event_id = f"{self.agent_name}_{run.label}_{kind}_{n}"
        if kind == "llm_call":
            run.models = n
        else:
            run.tools = n
        data.update(type=kind, sequence_index=len(run.events), turn_index=run.models)
        run.events.append(event_id)
        merge_metadata(scope.metadata, {"pydantic_ai_events": {event_id: data}})
        return event_id

    async def wrap_run(self, ctx: Any, *, handler: Any) -> Any:
        scope = _scope()
        if scope is None:
            return await handler()
        import secrets

        run = _Run(label=secrets.token_hex(4), started=time.perf_counter())
        key = ctx.run_id
        self._runs[key] = run
        status, error = "completed", None
        try:
            return await handler()
        except BaseException as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._runs.pop(key, None)
            summary = {
                "agent_name": self.agent_name,
                "run_label": run.label,
                "status": status,
                "model_call_count": run.models,
                "tool_call_count": run.tools,
                "total_events": len(run.events),
                "turn_count": run.models,
                "event_ids_in_order": run.events,
                "duration_ms": round((time.perf_counter() - run.started) * 1000, 3),
                **({"error": error} if error else {}),
            }
            merge_metadata(scope.metadata, {"pydantic_ai_run_summaries": {run.label: summary}})

    async def wrap_model_request(self, ctx: Any, *, request_context: Any, handler: Any) -> Any:
        scope, run = _scope(), self._run(ctx)
        if scope is None or run is None:
            return await handler(request_context)
        t0 = time.perf_counter()
        data: dict[str, Any] = {"parent_event_ids": [], "fan_in_from": list(run.finished_tools)}
        try:
            response = await handler(request_context)
        except Exception as exc:
            data.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            data["duration_ms"] = round((time.perf_counter() - t0) * 1000, 3)
            self._event(scope, run, "llm_call", data)
            raise
        usage = response.usage
        data.update(
            status="completed",
            duration_ms=round((time.perf_counter() - t0) * 1000, 3),
            model_name=response.model_name,
            usage={
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "total_tokens": usage.input_tokens + usage.output_tokens,
            },
        )
        run.last_model = self._event(scope, run, "llm_call", data)
        run.finished_tools = []
        return response

    async def wrap_tool_execute(
        self, ctx: Any, *, call: Any, tool_def: Any, args: Any, handler: Any
    ) -> Any:
        scope, run = _scope(), self._run(ctx)
        if scope is None or run is None:
            return await handler(args)
        name = call.tool_name
        capture = self.capture_by_name.get(name, self.capture)
        if not capture["enabled"]:
            return await handler(args)
        parent = [run.last_model] if run.last_model else []
        data: dict[str, Any] = {
            "tool_name": name,
            "toolset_kind": tool_def.kind if hasattr(tool_def, "kind") else "function",
            "hitl": False,
            "capture_mode": "full" if capture["save_args"] else "metadata_only",
            "parent_event_ids": parent,
            "fan_out_from": run.last_model,
            "artifacts": [],
        }
        t0 = time.perf_counter()
        try:
            result = await handler(args)
        except Exception as exc:
            data.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            self._finish_tool(scope, run, data, capture, t0, args, None)
            raise
        data["status"] = "completed"
        self._finish_tool(scope, run, data, capture, t0, args, result)
        return result

    def _finish_tool(
        self,
        scope: CheckpointScope,
        run: _Run,
        data: dict[str, Any],
        capture: dict[str, bool],
        t0: float,
        args: Any,
        result: Any,
    ) -> None:
        from ...artifacts import save

        if capture["include_timings"]:
            data["duration_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        event_id = self._event(scope, run, "tool_call", data)
        saved = []
        if capture["save_args"]:
            saved.append(f"{event_id}_args")
            save(f"{event_id}_args", to_jsonable_python(args, fallback=repr), type="input")
        if capture["save_result"] and data["status"] == "completed":
            saved.append(f"{event_id}_result")
            save(f"{event_id}_result", to_jsonable_python(result, fallback=repr), type="output")
        data["artifacts"] = saved
        run.finished_tools.append(event_id)
