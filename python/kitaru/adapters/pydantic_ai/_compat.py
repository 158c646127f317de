"""Kitaru 0.4's adapter API: `wrap(agent)`, `hitl_tool`, `CaptureConfig`, `CaptureMode`.

0.4 ran a whole agent run as one checkpoint and recorded model and tool calls as events on
it. Here `wrap()` gives the agent `KitaruDurability`, so a run in a flow body makes each
model request and tool call its own checkpoint (what 0.4 could not resume, this resumes);
outside a flow the agent runs as it would without kitaru, and inside a user checkpoint it
runs inline, its requests and tool calls listed on that checkpoint's metadata under
``pydantic_ai_events`` and its runs under ``pydantic_ai_run_summaries``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal, TypedDict

from pydantic_ai import Tool
from pydantic_ai.agent import AbstractAgent, WrapperAgent
from pydantic_ai.tools import RunContext

from ...errors import KitaruContextError, KitaruUsageError

__all__ = ["CaptureConfig", "CaptureMode", "KitaruAgent", "hitl_tool", "wrap"]

CaptureMode = Literal["full", "metadata_only", "off"]


class CaptureConfig(TypedDict, total=False):
    """What is recorded about each tool call: ``mode`` ``"full"`` (arguments, result and
    timings), ``"metadata_only"`` (timings) or ``"off"``; the booleans override the mode."""

    mode: CaptureMode
    enabled: bool
    save_args: bool
    save_result: bool
    include_timings: bool


def resolve_capture(config: CaptureConfig | None) -> dict[str, bool]:
    """The effective switches of a capture policy (0.4's rules: the mode, then booleans)."""
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise KitaruUsageError(f"A capture config must be a dict, got {type(config).__name__}.")
    unknown = set(config) - set(CaptureConfig.__annotations__)
    if unknown:
        raise KitaruUsageError(
            f"Unknown capture config key(s) {sorted(unknown)}; known: "
            f"{sorted(CaptureConfig.__annotations__)}."
        )
    mode = config.get("mode", "full")
    if mode not in ("full", "metadata_only", "off"):
        raise KitaruUsageError(
            f"Capture mode must be 'full', 'metadata_only' or 'off', got {mode!r}."
        )
    on = mode != "off"
    out = {
        "enabled": on,
        "save_args": mode == "full",
        "save_result": mode == "full",
        "include_timings": on,
    }
    for key in out:
        if key in config:
            value = config[key]  # type: ignore[literal-required]
            if not isinstance(value, bool):
                raise KitaruUsageError(f"Capture config {key!r} must be True or False.")
            out[key] = value
    if not out["enabled"]:
        out = dict.fromkeys(out, False)
    return out


# --- human input as a tool -----------------------------------------------------------------

_HITL = "_kitaru_hitl"


def hitl_tool(*, question: str | None = None, name: str | None = None, schema: Any = None) -> Any:
    """Make a tool ask a person instead of running: when the model calls it in a flow, the
    flow waits (`kitaru.wait()`, named after `name` or the tool, plus the call's id), the
    process may exit, and the answer — validated against `schema` — is the tool's result.

    Decorates a function (its parameters are what the model fills in; its body runs only
    outside a flow) or a PydanticAI `Tool`; returns a `Tool` to give the agent.
    """
    if question is not None and not isinstance(question, str):
        raise KitaruUsageError(f"hitl_tool question must be a string, got {question!r}.")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise KitaruUsageError(f"hitl_tool name must be a non-empty string, got {name!r}.")

    def decorate(target: Any) -> Tool[Any]:
        if isinstance(target, Tool):
            func, tool_name, description = target.function, target.name, target.description
        elif callable(target):
            func, tool_name, description = target, target.__name__, inspect.getdoc(target)
        else:
            raise KitaruUsageError(f"hitl_tool decorates a function or a Tool, got {target!r}.")
        wait_base = name or tool_name
        asker = _asker(func, wait_base, question, schema)
        setattr(asker, _HITL, (wait_base, question, schema))
        return Tool(
            asker,
            takes_ctx=True,
            name=tool_name,
            description=description,
            # The wait belongs to the flow body: this tool is not a checkpoint of its own.
            metadata={"kitaru": False},
        )

    return decorate


def _asker(func: Any, wait_base: str, question: str | None, schema: Any) -> Any:
    """A tool function with `func`'s parameters (after a RunContext) that waits for a person."""
    import typing

    try:
        hints = typing.get_type_hints(func)
    except Exception:
        hints = dict(getattr(func, "__annotations__", {}))
    sig = inspect.signature(func)
    params = [p for p in sig.parameters.values()]
    takes_ctx = (
        bool(params)
        and hints.get(params[0].name) is not None
        and _is_ctx(hints.get(params[0].name))
    )
    if takes_ctx:
        params = params[1:]

    async def ask(ctx: RunContext[Any], **kwargs: Any) -> Any:
        from ... import wait
        from ..._context import current_checkpoint, current_flow, sanitize_name

        if current_flow.get() is None:  # no flow: the plain function (0.4: pass-through)
            result = func(ctx, **kwargs) if takes_ctx else func(**kwargs)
            return await result if inspect.isawaitable(result) else result
        if current_checkpoint.get() is not None:
            raise KitaruContextError(
                f"hitl tool {wait_base!r} was called by an agent running inside checkpoint "
                f"{current_checkpoint.get().name!r}; a wait belongs to the flow body. Run the "  # type: ignore[union-attr]
                "agent in the flow body (its model requests and tool calls are checkpoints "
                "there) instead of inside a @checkpoint."
            )
        call_id = ctx.tool_call_id or ""
        answer = wait(
            schema=schema,
            name=sanitize_name(f"{wait_base}_{call_id}" if call_id else wait_base, "hitl"),
            question=question,
            metadata={
                "adapter": "pydantic_ai",
                "tool_name": ctx.tool_name,
                "tool_call_id": call_id,
                "tool_args": kwargs,
            },
        )
        return await answer if inspect.isawaitable(answer) else answer

    ctx_param = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]
    ask.__signature__ = sig.replace(parameters=[ctx_param, *rest])  # type: ignore[attr-defined]
    ask.__annotations__ = {
        "ctx": RunContext[Any],
        **{p.name: hints[p.name] for p in params if p.name in hints},
        "return": schema if schema is not None else Any,
    }
    ask.__doc__ = func.__doc__
    ask.__name__ = getattr(func, "__name__", "hitl_tool")
    return ask


def _is_ctx(hint: Any) -> bool:
    import typing

    return hint is RunContext or typing.get_origin(hint) is RunContext


# --- wrap() --------------------------------------------------------------------------------


def _agent_name(agent: AbstractAgent[Any, Any], name: str | None) -> str:
    raw = name if name is not None else (agent.name or "agent")
    if not isinstance(raw, str) or not raw.strip():
        raise KitaruUsageError(f"wrap() name must be a non-empty string, got {name!r}.")
    return re.sub(r"\W+", "_", raw).strip("_") or "agent"


class KitaruAgent(WrapperAgent[Any, Any]):
    """A PydanticAI agent made durable by `wrap()` (Kitaru 0.4's API)."""

    def __init__(
        self,
        wrapped: AbstractAgent[Any, Any],
        *,
        name: str | None = None,
        tool_capture_config: CaptureConfig | None = None,
        tool_capture_config_by_name: dict[str, CaptureConfig | None] | None = None,
    ) -> None:
        from pydantic_ai import Agent

        if not isinstance(wrapped, Agent):
            raise KitaruUsageError(
                f"wrap() takes a pydantic_ai.Agent, got {type(wrapped).__name__}."
            )
        if wrapped.model is None:
            raise KitaruUsageError(
                "wrap() needs an agent with a model (Agent('openai:gpt-4o-mini', ...) or a "
                "Model instance): the model is part of what its checkpoints are named after."
            )
        self.kitaru_name = _agent_name(wrapped, name)
        self.tool_capture = resolve_capture(tool_capture_config)
        self.tool_capture_by_name = {
            k: resolve_capture(v if v is not None else {"mode": "off"})
            for k, v in (tool_capture_config_by_name or {}).items()
        }
        super().__init__(wrapped)
        from ._durability import KitaruDurability
        from ._tracking import InlineTracking

        self._kitaru_capabilities = [
            KitaruDurability(name=self.kitaru_name),
            InlineTracking(self.kitaru_name, self.tool_capture, self.tool_capture_by_name),
        ]

    @asynccontextmanager
    async def iter(self, *args: Any, capabilities: Any = None, **kwargs: Any) -> AsyncIterator[Any]:
        """The wrapped agent's `iter` (which `run`, `run_sync` and `run_stream` use), with
        kitaru's capabilities added to the run."""
        caps = [*(capabilities or ()), *self._kitaru_capabilities]
        async with super().iter(*args, capabilities=caps, **kwargs) as run:
            yield run


def wrap(
    agent: Any,
    *,
    name: str | None = None,
    tool_capture_config: CaptureConfig | None = None,
    tool_capture_config_by_name: dict[str, CaptureConfig | None] | None = None,
) -> KitaruAgent:
    """Make a PydanticAI agent durable (Kitaru 0.4's entry point; `KitaruDurability` is the
    same thing as a capability). In a flow body each model request and tool call is a
    checkpoint; inside a checkpoint the agent runs inline and its calls are listed on that
    checkpoint's metadata (with the tool capture policy); outside a flow it runs plainly."""
    return KitaruAgent(
        agent,
        name=name,
        tool_capture_config=tool_capture_config,
        tool_capture_config_by_name=tool_capture_config_by_name,
    )
