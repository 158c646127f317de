"""`KitaruDurability`: PydanticAI's durable-execution engine surface on kitaru's store.

Built the way PydanticAI's guide for new engines asks (`pydantic_ai/durable_exec/AGENTS.md`):
a `BaseDurabilityCapability` subclass with a `JournalCallableOperationBackend`. PydanticAI
owns the model, toolset, event and capability machinery; this module only says what one
durable unit is here — a checkpoint call of the running flow (`kitaru._units`) — and gives
the run what replay needs to be deterministic: a run id and start time that a resumed run
gets again, and a waiter that turns `wait_for_external_event` into `kitaru.wait()`.

Inside a flow body every model request, tool call, tool discovery and event-handler call is
its own checkpoint (`<agent>__model.request`, `<agent>__function_toolset__<id>.call_tool.<tool>`,
…), stored as JSON by PydanticAI's own codec. Outside a flow, and inside a `@checkpoint`
(where the checkpoint already is the durable unit), the agent runs as it would without
kitaru.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic_ai.durable_exec import (
    JSON_CODEC,
    BaseDurabilityCapability,
    DurabilityEngineSpec,
    DurableOperationId,
    ExternalEventError,
    ExternalEventWaiter,
    JournalCallableOperationBackend,
    ModelRequestId,
    RoleBasedOperationConfig,
    conversation_id_from_run_id,
    external_event_scope,
    record_durable_unit,
    replay_scope,
)
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import ModelRequest, ModelResponse
from pydantic_ai.tools import AgentDepsT, RunContext
from pydantic_ai.toolsets import ToolsetTool
from pydantic_core import to_json, to_jsonable_python

from ..._context import FlowRun, current_checkpoint, current_flow, merge_metadata, now_us
from ..._steps import run_async
from ..._units import Unit, arun_unit, flow_body
from ._events import FAILURE_KEY

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator, Mapping

    from pydantic import JsonValue
    from pydantic_ai.agent import EventStreamHandler
    from pydantic_ai.capabilities.abstract import WrapRunHandler
    from pydantic_ai.models import Model
    from pydantic_ai.run import AgentRunResult

    from ...checkpoint import _Call

__all__ = ["KitaruDurability", "UnitConfig"]

# Part of every unit's cache identity: bump when what a unit stores changes meaning.
_ADAPTER_VERSION = b"kitaru.adapters.pydantic_ai v1"


class UnitConfig(dict[str, Any]):
    """The configuration of one kind of durable unit (a plain dict works as well):
    ``retries`` — extra attempts after a failure (each recorded), default 0;
    ``cache`` — whether a finished unit of an earlier execution of the flow with the same
    inputs may answer it (the cross-execution cache), default False: a model's answer and a
    tool's effect usually belong to one execution.

    Per tool: ``@agent.tool(metadata={"kitaru": {"retries": 2}})``, or
    ``metadata={"kitaru": False}`` to run the tool in the flow body, not as a checkpoint (a
    tool that calls `kitaru.wait()` or is cheap and pure)."""


_KEYS = {"retries", "cache"}


def _checked(config: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    out = dict(config or {})
    unknown = set(out) - _KEYS
    if unknown:
        raise UserError(
            f"{what}: unknown kitaru unit setting(s) {sorted(unknown)}; the settings are "
            "'retries' (an int >= 0) and 'cache' (True or False)."
        )
    retries = out.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise UserError(f"{what}: 'retries' must be an int >= 0, got {retries!r}.")
    if not isinstance(out.get("cache", False), bool):
        raise UserError(f"{what}: 'cache' must be True or False, got {out['cache']!r}.")
    return out


# --- the identity of a unit's inputs ------------------------------------------------------


def _opaque(value: Any) -> str:
    """A value the digest cannot see into (a client, a lock): stands for its type."""
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def _project(part: Any) -> Any:
    """What of one element of PydanticAI's cache identity decides the unit's output."""
    if isinstance(part, RunContext):
        # Live run machinery (model objects, tracer, usage counters) is left out; what a
        # tool or a request can read and that a resumed run rebuilds the same is kept.
        return {
            "deps": part.deps,
            "tool_name": part.tool_name,
            "tool_call_id": part.tool_call_id,
            "retry": part.retry,
            "run_step": part.run_step,
            "tool_call_approved": part.tool_call_approved,
        }
    if isinstance(part, ToolsetTool):
        return part.tool_def
    if isinstance(part, list) and part and isinstance(part[0], (ModelRequest, ModelResponse)):
        return [_message_digest(m) for m in part]
    return part


# Digests of message objects by identity: a request's history is the previous request's
# plus a few messages, so each message is hashed once per run, not once per request.
_MESSAGE_DIGESTS: dict[int, tuple[weakref.ref[Any], str]] = {}


def _message_digest(msg: Any) -> str:
    key = id(msg)
    hit = _MESSAGE_DIGESTS.get(key)
    if hit is not None and hit[0]() is msg:
        return hit[1]
    digest = _digest_hex(msg)
    try:
        # Dropped when the message is: its id may then name another object.
        ref = weakref.ref(msg, lambda _r: _MESSAGE_DIGESTS.pop(key, None))
    except TypeError:
        return digest
    _MESSAGE_DIGESTS[key] = (ref, digest)
    return digest


# Keys that hold a user's data inside PydanticAI's messages and events: not walked.
_USER_DATA = frozenset({"args", "content", "tool_args", "deps", "metadata"})


def _strip_clock(value: Any) -> Any:
    """PydanticAI's messages, parts and events without their `timestamp` fields (when a
    part was made in this process: a resumed run makes them anew, so they are not an
    input). Only PydanticAI's own objects lose it — a dict with `part_kind`, `event_kind`,
    or a request's/response's `kind` —, never a user's data (tool arguments, contents)."""
    if isinstance(value, list):
        return [_strip_clock(v) for v in value]
    if not isinstance(value, dict):
        return value
    ours = (
        "part_kind" in value
        or "event_kind" in value
        or (value.get("kind") in ("request", "response") and "parts" in value)
    )
    return {
        k: (v if k in _USER_DATA else _strip_clock(v))
        for k, v in value.items()
        if not (ours and k == "timestamp")
    }


def _digest_hex(value: Any) -> str:
    """A message's or an event's digest, its clock left out."""
    from ..._kitaru import blake3_digest

    plain = to_jsonable_python(value, fallback=_opaque, bytes_mode="base64")
    return bytes(blake3_digest(to_json(_strip_clock(plain)))).hex()


def input_digest(parts: tuple[Any, ...]) -> bytes:
    """The input digest of a unit, from PydanticAI's cache identity of the operation.

    A resumed run asks for the same unit with the same digest, so it gets the stored
    result; changed inputs (another prompt, other tool arguments, other deps) give another
    digest, and the unit runs again instead of answering with a stale result. Messages and
    events are hashed without their clocks; everything else as it is."""
    from ..._kitaru import blake3_digest

    projected = [_digest_hex(p) if hasattr(p, "event_kind") else _project(p) for p in parts]
    return bytes(blake3_digest(to_json(projected, fallback=_opaque, bytes_mode="base64")))


# --- the cost ledger ---------------------------------------------------------------------


def _usage_info(payload: Any, started_us: int, model_id: str | None) -> dict[str, Any]:
    """A model response's ledger entry: model, tokens, latency, cost (genai-prices)."""
    from ..._llm.models import cost_of

    resp = payload if isinstance(payload, dict) else {}
    usage = resp.get("usage") or {}
    tin, tout = usage.get("input_tokens"), usage.get("output_tokens")
    provider = resp.get("provider_name") or ""
    model = resp.get("model_name") or ""
    cost = cost_of(provider, model, None, tin, tout) if model else None
    info = {
        "requested_model": model_id or "default",
        "resolved_model": f"{provider}/{model}" if provider else model or None,
        "latency_ms": round((now_us() - started_us) / 1000, 3),
        "tokens_input": tin,
        "tokens_output": tout,
        "total_tokens": (tin or 0) + (tout or 0) if tin is not None or tout is not None else None,
        "cost_usd": cost,
        "adapter": "pydantic_ai",
    }
    return {k: v for k, v in info.items() if v is not None}


def _ledger(
    run: FlowRun, model_id: str | None
) -> Callable[[Any, _Call], Generator[Any, Any, None]]:
    """Steps after a model request answered: its ledger entry (written at once, as an
    `llm()` call's is), and the same entry on the unit's record, so a resumed run counts the
    call as saved."""

    def after(payload: Any, call: _Call) -> Generator[Any, Any, None]:
        info = _usage_info(payload, call.started, model_id)
        yield from run.spend_steps(call.call_id, None, info)
        merge_metadata(call.scope.metadata, {"llm_calls": {call.call_id: info}})

    return after


# --- the engine ---------------------------------------------------------------------------


class _Backend(JournalCallableOperationBackend[dict[str, Any]]):
    """Runs each PydanticAI operation as one checkpoint call of the flow body."""

    async def execute(
        self,
        *,
        operation_id: DurableOperationId,
        name: str,
        body: Callable[[], Awaitable[object]],
        cache_key: tuple[object, ...],
        config: dict[str, Any],
    ) -> object:
        run = flow_body()
        if run is None:  # a unit's own calls, or no flow: nothing to journal
            return await body()
        kind = "llm_call" if isinstance(operation_id, ModelRequestId) else "tool_call"
        unit = Unit(
            name,
            kind,
            retries=config.get("retries", 0),
            cache=config.get("cache", False),
            code=_ADAPTER_VERSION + b"\0" + name.encode(),
        )
        after = None
        if isinstance(operation_id, ModelRequestId):
            after = _ledger(run, operation_id.model_id)
        reused, value = await arun_unit(run, unit, input_digest(cache_key), body, after)
        record_durable_unit(executed=not reused)
        return value


class _Waiter(ExternalEventWaiter):
    """`wait_for_external_event` in a flow: `ask` runs once as a checkpoint, then the flow
    waits with `kitaru.wait()` — the process may exit, and a resumed run gets the answer.

    The token handed to `ask` is ``kitaru:<execution id>:<wait name>``; resolve it with
    `kitaru.adapters.pydantic_ai.resolve_event`, or answer the wait with ``kitaru
    executions input <id> --wait <name> --value '<json>'``."""

    def __init__(self, agent_name: str) -> None:
        self.agent_name = agent_name

    async def wait(
        self,
        name: str,
        *,
        ask: Callable[[str], Awaitable[JsonValue]],
        timeout: timedelta | None,
    ) -> JsonValue:
        import inspect

        from ... import wait as kitaru_wait
        from ..._context import sanitize_name

        run = flow_body()
        if run is None:
            raise UserError(
                "kitaru cannot wait for an external event here: the wait must be made by the "
                "flow body, not from inside a checkpoint or a thread without the flow's context."
            )
        if timeout is not None:
            raise UserError(
                f"A wait for {name!r} was given timeout={timeout}, but kitaru's waits do not "
                "expire: the flow stays waiting until the wait is answered (kitaru executions "
                "input) or aborted (kitaru executions input --abort). Leave timeout unset."
            )
        base = f"{self.agent_name}__external_event.{name}"
        n = run.next_in_pass(f"pydantic_ai.wait:{base}")
        wait_name = sanitize_name(base if n == 0 else f"{base}_{n + 1}", "wait")
        token = f"kitaru:{run.exec_id}:{wait_name}"

        async def asked() -> Any:
            return await ask(token)

        unit = Unit(f"{base}.ask", "wait", cache=False)
        _, answer = await arun_unit(run, unit, input_digest((name, wait_name)), asked)
        if answer is not None:
            return answer  # type: ignore[no-any-return]
        result = kitaru_wait(
            schema=Any,
            name=wait_name,
            question=f"PydanticAI agent {self.agent_name!r} is waiting for {name!r}",
            metadata={"adapter": "pydantic_ai", "agent": self.agent_name, "event": name,
                      "token": token},
        )  # fmt: skip
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, dict) and set(result) == {FAILURE_KEY}:
            raise ExternalEventError(str(result[FAILURE_KEY]))
        return result  # type: ignore[no-any-return]


@dataclass(init=False, kw_only=True)
class KitaruDurability(BaseDurabilityCapability[AgentDepsT]):
    """Makes a PydanticAI agent durable in a kitaru flow: each model request and tool call
    is a checkpoint, human input waits with `kitaru.wait()`, spend goes to the cost ledger.

    ``Agent(..., name="researcher", capabilities=[KitaruDurability()])``, then run the agent
    in a ``@flow``. The agent needs a `name` (or pass ``name=``): it names the checkpoints,
    and a resumed run finds its stored results by those names.
    """

    engine_spec = DurabilityEngineSpec(
        engine_name="kitaru",
        durable_unit_noun="checkpoint",
        durable_container_noun="flow",
        # Units store JSON (kitaru's store never needs pickle for them).
        codec=JSON_CODEC,
        wrapped_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        # Units run in the flow's own process, so one MCP session serves the whole run.
        toolset_lifecycles={
            "function": "enter-always",
            "mcp": "enter-in-durable-unit",
            "dynamic": "enter-never",
        },
        journal_discovery=True,
        # Calls are matched to stored results by name and inputs, not by position alone,
        # so tools may run concurrently.
        sequential_tools_in_durable_context=False,
        unsupported_runtime_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        tool_config_key="kitaru",
    )

    def __init__(
        self,
        *,
        models: Mapping[str, Model] | None = None,
        event_stream_handler: EventStreamHandler[AgentDepsT] | None = None,
        name: str | None = None,
        model_config: Mapping[str, Any] | None = None,
        tool_config: Mapping[str, Any] | None = None,
        event_config: Mapping[str, Any] | None = None,
    ) -> None:
        """Args:
        models: further models by id, for runs that switch model (``agent.run(model=...)``).
        event_stream_handler: called with the run's events; model events live inside the
            model request's checkpoint, tool events each in a checkpoint of its own.
        name: names the agent's checkpoints (default: the agent's `name`).
        model_config, tool_config, event_config: `UnitConfig` for model requests, tool
            calls (and discovery), and event-handler calls.
        """
        super().__init__(models=models, event_stream_handler=event_stream_handler, name=name)
        self._model_config = _checked(model_config, "KitaruDurability(model_config=)")
        self._tool_config = _checked(tool_config, "KitaruDurability(tool_config=)")
        self._event_config = _checked(event_config, "KitaruDurability(event_config=)")

    # --- where we are ---

    @property
    def in_durable_context(self) -> bool:
        return flow_body() is not None

    def get_default_run_id(self) -> str | None:
        run = flow_body()
        if run is None:
            return None
        return f"{run.exec_id}:{self.name}:{run.next_in_pass(f'pydantic_ai.run:{self.name}')}"

    def get_default_conversation_id(self, run_id: str) -> str | None:
        return conversation_id_from_run_id(run_id) if self.in_durable_context else None

    async def get_run_start_time(self, run_id: str) -> datetime | None:
        run = flow_body()
        if run is None:
            return None

        async def now() -> str:
            from pydantic_ai._utils import now_utc

            return now_utc().isoformat()

        unit = Unit(f"{self.name}__run_start_time", "tool_call", cache=False)
        _, stamp = await arun_unit(run, unit, input_digest((run_id,)), now)
        return datetime.fromisoformat(stamp)

    async def wrap_run(
        self, ctx: RunContext[AgentDepsT], *, handler: WrapRunHandler
    ) -> AgentRunResult[Any]:
        if not self.in_durable_context:
            return await handler()
        with replay_scope(), external_event_scope(_Waiter(self.name)):
            return await super().wrap_run(ctx, handler=handler)

    async def wrap_model_request(
        self, ctx: RunContext[AgentDepsT], *, request_context: Any, handler: Any
    ) -> Any:
        scope = current_checkpoint.get()
        run = current_flow.get()
        if scope is None or run is None:  # a flow body (the unit records it) or no flow
            return await super().wrap_model_request(
                ctx, request_context=request_context, handler=handler
            )
        # Inside a user checkpoint the agent runs inline: each request still goes to the
        # ledger and onto the checkpoint's record (so a resume counts it as saved), and the
        # budget is checked before it.
        run.check_budget()
        started = now_us()
        response = await super().wrap_model_request(
            ctx, request_context=request_context, handler=handler
        )
        info = _usage_info(to_jsonable_python(response), started, None)
        prefix = f"{self.name}__model.request_"
        n = 1 + sum(k.startswith(prefix) for k in scope.metadata.get("llm_calls") or {})
        name = f"{prefix}{n}"
        await run_async(run.spend_steps(name, scope.call_id, info), run.runner)
        merge_metadata(scope.metadata, {"llm_calls": {name: info}})
        return response

    # --- units ---

    def get_durable_operation_backend(self) -> _Backend:
        def per_tool(
            operation_id: DurableOperationId, tool: object | None, tool_name: str
        ) -> dict[str, Any] | Literal[False]:
            resolved = self._build_resolve_tool_config(self._tool_config)(
                tool if isinstance(tool, ToolsetTool) else None, tool_name
            )
            if resolved is False:
                return False
            return _checked(resolved, f"tool {tool_name!r} metadata 'kitaru'")

        config = RoleBasedOperationConfig(
            model=self._model_config,
            event=self._event_config,
            capability=self._tool_config,
            tool=self._tool_config,
            resolve_tool=per_tool,
        )
        return _Backend(agent_name=self.name, default_model_id=self.default_model_id, config=config)

    def _toolset_base_config(self, kind: Any) -> Any:
        return self._tool_config
