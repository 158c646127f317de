"""`kitaru.llm()`: a durable, recorded, budgeted model call.

In a flow body a call is its own checkpoint (type ``llm_call``, ids ``llm_1``, ``llm_2``...
or ``name=``): once it finished, a resumed flow gets the stored response and the provider
is not called again. Inside a checkpoint the call runs inline and is recorded on that
checkpoint. Every call that reaches a provider writes a ledger entry (tokens, latency,
cost) to the execution at once, so money spent before a crash is still counted.
"""

from __future__ import annotations

import os
import time

from ._context import (
    CheckpointScope,
    FlowRun,
    current_checkpoint,
    current_flow,
    merge_metadata,
    sanitize_name,
)
from .errors import KitaruBackendError, KitaruContextError, KitaruUsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence
    from typing import Any

    from ._models import ResolvedModel

__all__ = ["LLMResponse", "LLMUsage", "ToolCall", "allm", "llm"]

_ROLES = ("system", "user", "assistant", "tool")
_TOOL_CHOICES = ("auto", "required", "none")


# --- what a call returns -----------------------------------------------------------------


class LLMUsage:
    """Tokens of one call (None when the provider did not say)."""

    __slots__ = ("input_tokens", "output_tokens", "total_tokens")

    def __init__(self, data: dict[str, Any]) -> None:
        self.input_tokens: int | None = data.get("input_tokens")
        self.output_tokens: int | None = data.get("output_tokens")
        self.total_tokens: int | None = data.get("total_tokens")

    def __repr__(self) -> str:
        return (
            f"LLMUsage(input_tokens={self.input_tokens}, output_tokens={self.output_tokens}, "
            f"total_tokens={self.total_tokens})"
        )


class ToolCall:
    """A tool the model asked to call."""

    __slots__ = ("arguments_json", "id", "name")

    def __init__(self, data: dict[str, Any]) -> None:
        self.id: str = data["id"]
        self.name: str = data["name"]
        self.arguments_json: str = data["arguments"]

    def __repr__(self) -> str:
        return f"ToolCall(id={self.id!r}, name={self.name!r}, arguments={self.arguments_json})"

    @property
    def arguments(self) -> dict[str, Any]:
        """The arguments as a dict (the model's JSON, decoded)."""
        import json

        try:
            value = json.loads(self.arguments_json or "{}")
        except ValueError:
            raise KitaruBackendError(
                f"The model called tool {self.name!r} with arguments that are not JSON: "
                f"{self.arguments_json[:200]!r}"
            ) from None
        if not isinstance(value, dict):
            raise KitaruBackendError(
                f"The model called tool {self.name!r} with arguments that are not an object: {value!r}"
            )
        return value

    def invoke(self, tools: Sequence[Any]) -> Any:
        """Run the matching tool of `tools` (a function: called with the arguments; a
        pydantic model: validated into an instance) and return its result."""
        for tool in tools:
            if _tool_name(tool) == self.name:
                args = self.arguments
                if hasattr(tool, "model_validate"):
                    return tool.model_validate(args)
                if callable(tool):
                    return tool(**args)
        raise KitaruUsageError(
            f"The model called tool {self.name!r}, which is not among "
            f"{', '.join(_tool_name(t) for t in tools) or 'the given tools'}."
        )

    def result(self, content: Any) -> dict[str, Any]:
        """The message that gives this call's result back to the model."""
        import json

        text = content if isinstance(content, str) else json.dumps(content, default=str)
        return {"role": "tool", "tool_call_id": self.id, "content": text}


class LLMResponse:
    """The full answer of a call with ``tools=``: text, tool calls, usage and cost."""

    __slots__ = (
        "call_id",
        "cost_usd",
        "finish_reason",
        "latency_ms",
        "model",
        "reused",
        "text",
        "tool_calls",
        "usage",
    )

    def __init__(self, out: dict[str, Any], call_id: str, reused: bool) -> None:
        resp, info = out["response"], out["call"]
        self.text: str | None = resp.get("text")
        self.tool_calls = [ToolCall(tc) for tc in resp.get("tool_calls") or ()]
        self.usage = LLMUsage(resp.get("usage") or {})
        self.finish_reason: str | None = resp.get("finish_reason")
        self.cost_usd: float | None = info.get("cost_usd")
        self.latency_ms: float | None = info.get("latency_ms")
        self.model: str = info.get("resolved_model", "")
        self.call_id = call_id
        self.reused = reused

    def __repr__(self) -> str:
        return (
            f"LLMResponse(text={self.text!r}, tool_calls={self.tool_calls!r}, "
            f"usage={self.usage!r}, cost_usd={self.cost_usd})"
        )

    def __str__(self) -> str:
        return self.text or ""

    @property
    def message(self) -> dict[str, Any]:
        """This answer as an assistant message, to append to the conversation."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.text}
        if self.tool_calls:
            msg["tool_calls"] = [
                {
                    "id": tc.id,
                    "type": "function",
                    "function": {"name": tc.name, "arguments": tc.arguments_json},
                }
                for tc in self.tool_calls
            ]
        return msg


# --- preparing a call --------------------------------------------------------------------


def _tool_name(tool: Any) -> str:
    if isinstance(tool, dict):
        fn = tool.get("function", tool)
        return str(fn.get("name", ""))
    return str(getattr(tool, "__name__", ""))


def _doc(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.split("\n\n", 1)[0].strip()


def _tool_def(tool: Any, i: int) -> dict[str, Any]:
    """{name, description, parameters} of a function, pydantic model or tool dict."""
    if isinstance(tool, dict):
        fn = tool.get("function", tool)
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise KitaruUsageError(f"tools[{i}] is a dict without a 'name'.")
        params = (
            fn.get("parameters") or fn.get("input_schema") or {"type": "object", "properties": {}}
        )
        return {"name": fn["name"], "description": fn.get("description", ""), "parameters": params}
    if isinstance(tool, type) and hasattr(tool, "model_json_schema"):
        schema = tool.model_json_schema()
        schema.pop("title", None)
        schema.pop("description", None)
        return {"name": tool.__name__, "description": _doc(tool), "parameters": schema}
    if callable(tool) and getattr(tool, "__name__", None):
        import inspect
        import typing

        from pydantic import create_model

        func = getattr(tool, "__wrapped__", tool)
        try:
            sig = inspect.signature(func)
            hints = typing.get_type_hints(func)
        except (TypeError, ValueError, NameError) as exc:
            raise KitaruUsageError(f"Cannot read the signature of tool {tool!r}: {exc}") from None
        fields: dict[str, Any] = {}
        for pname, p in sig.parameters.items():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise KitaruUsageError(
                    f"Tool {func.__name__!r} takes *{pname}; tools need named parameters the model can fill."
                )
            annotation = hints.get(pname, typing.Any)
            fields[pname] = (annotation, ... if p.default is p.empty else p.default)
        model = create_model(func.__name__, **fields)
        schema = model.model_json_schema()
        schema.pop("title", None)
        return {"name": func.__name__, "description": _doc(func), "parameters": schema}
    raise KitaruUsageError(
        f"tools[{i}] is {tool!r}; give functions, pydantic model classes or tool dicts."
    )


def _normalize_messages(prompt: Any, system: str | None) -> list[dict[str, Any]]:
    import json

    if isinstance(prompt, str):
        text = prompt.strip()
        if not text:
            raise KitaruUsageError("Prompt cannot be empty.")
        messages: list[dict[str, Any]] = [{"role": "user", "content": text}]
    elif isinstance(prompt, (list, tuple)):
        if not prompt:
            raise KitaruUsageError("Prompt message list cannot be empty.")
        messages = []
        for i, m in enumerate(prompt):
            if isinstance(m, LLMResponse):
                m = m.message
            if not isinstance(m, dict) or "role" not in m:
                raise KitaruUsageError(
                    f"Prompt message {i} must be a dict with 'role' and 'content', got {m!r}."
                )
            role = m["role"]
            if role not in _ROLES:
                raise KitaruUsageError(
                    f"Prompt message {i} has role {role!r}; use one of {', '.join(_ROLES)}."
                )
            content = m.get("content")
            if "content" not in m and not (role == "assistant" and m.get("tool_calls")):
                raise KitaruUsageError(f"Prompt message {i} ({role}) has no 'content'.")
            if not (content is None or isinstance(content, (str, list))):
                raise KitaruUsageError(
                    f"Prompt message {i} content must be a string or a list of content parts, "
                    f"got {type(content).__name__}."
                )
            if role == "tool" and not m.get("tool_call_id"):
                raise KitaruUsageError(f"Prompt message {i} (tool) needs a 'tool_call_id'.")
            messages.append(json.loads(json.dumps(m, default=str)))
    else:
        raise KitaruUsageError(
            f"Prompt must be a string or a list of {{'role', 'content'}} messages, got {type(prompt).__name__}."
        )
    if system is not None:
        if not isinstance(system, str) or not system.strip():
            raise KitaruUsageError("system must be a non-empty string.")
        messages.insert(0, {"role": "system", "content": system.strip()})
    return messages


class _Prepared:
    """A validated call: the request, the model it goes to and how to read the answer."""

    __slots__ = (
        "identity",
        "mock",
        "model",
        "req",
        "resolved",
        "schema",
        "timeout",
        "tools",
        "wrapped",
    )

    def __init__(
        self,
        prompt: Any,
        model: str | None,
        system: str | None,
        temperature: float | None,
        max_tokens: int | None,
        schema: Any,
        tools: Sequence[Any] | None,
        tool_choice: str | None,
        timeout: float | None,
    ) -> None:
        if temperature is not None and (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float))
            or not 0 <= temperature <= 2
        ):
            raise KitaruUsageError(
                f"temperature must be a number between 0 and 2, got {temperature!r}."
            )
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise KitaruUsageError(f"max_tokens must be a positive integer, got {max_tokens!r}.")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
        ):
            raise KitaruUsageError(
                f"timeout must be a positive number of seconds, got {timeout!r}."
            )
        if schema is not None and tools:
            raise KitaruUsageError(
                "schema= and tools= cannot be combined in one call: call with tools= until the "
                "model stops calling tools, then once more with schema= for the final answer."
            )
        messages = _normalize_messages(prompt, system)
        self.tools = list(tools or ())
        tool_defs = [_tool_def(t, i) for i, t in enumerate(self.tools)]
        names = [t["name"] for t in tool_defs]
        if len(set(names)) != len(names):
            raise KitaruUsageError(f"Tool names must be unique, got {names}.")
        if tool_choice is not None:
            if not tool_defs:
                raise KitaruUsageError("tool_choice needs tools=.")
            if tool_choice not in _TOOL_CHOICES and tool_choice not in names:
                raise KitaruUsageError(
                    f"tool_choice must be one of {', '.join(_TOOL_CHOICES)} or a tool name "
                    f"({', '.join(names)}), got {tool_choice!r}."
                )
        self.schema = schema
        self.wrapped = False
        schema_req = None
        if schema is not None:
            schema_req = self._schema_request(schema)
        self.timeout = timeout
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise KitaruUsageError(f"model must be an alias or 'provider/model', got {model!r}.")
        self.mock = "KITARU_LLM_MOCK_RESPONSE" in os.environ
        self.model = model
        self.req: dict[str, Any] = {
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "tools": tool_defs or None,
            "tool_choice": tool_choice,
            "schema": schema_req,
        }
        # What makes two calls "the same call": a change of any of it is a divergence. The
        # model as asked for (an alias stays an alias), so a resume needs no registry.
        self.identity = {"model": model.strip() if isinstance(model, str) else None, **self.req}

    def live(self) -> None:
        """The call is about to reach a provider: resolve its model now. A reused call needs
        no registry (a machine without the alias can resume), so only live calls read it."""
        self.resolved = _resolve(self.model, self.mock)

    def _schema_request(self, schema: Any) -> dict[str, Any]:
        from pydantic import TypeAdapter

        try:
            json_schema = TypeAdapter(schema).json_schema()
        except Exception as exc:
            raise KitaruUsageError(
                f"schema={schema!r} has no JSON Schema ({exc}); use a pydantic model, a dataclass, "
                "a TypedDict or a type such as list[str]."
            ) from None
        import re

        # Providers take [A-Za-z0-9_-] in schema and tool names.
        raw = getattr(schema, "__name__", "") or "answer"
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", raw).strip("_")[:64] or "answer"
        if json_schema.get("type") != "object":
            # Providers want an object at the top: wrap the value in one.
            self.wrapped = True
            defs = json_schema.pop("$defs", None)
            json_schema = {
                "type": "object",
                "properties": {"value": json_schema},
                "required": ["value"],
            }
            if defs:
                json_schema["$defs"] = defs
        return {"name": name, "json": json_schema}

    def finish(self, out: dict[str, Any], call_id: str, reused: bool) -> Any:
        """What the caller gets from a stored or fresh answer."""
        resp = out["response"]
        if self.tools:
            response = LLMResponse(out, call_id, reused)
            names = {_tool_name(t) for t in self.tools}
            for tc in response.tool_calls:
                # An answer the caller cannot act on is not final: not stored, asked again.
                if tc.name not in names:
                    raise KitaruBackendError(
                        f"kitaru.llm() call {call_id!r}: the model called tool {tc.name!r}, "
                        f"which is not among the tools given ({', '.join(sorted(names))})."
                    )
                tc.arguments  # noqa: B018 - raises KitaruBackendError unless a JSON object
            return response
        text = resp.get("text")
        if self.schema is not None:
            return self._validate(text, call_id, reused)
        if text is None:
            raise KitaruBackendError(
                f"kitaru.llm() call {call_id!r}: the model answered without text "
                f"(finish reason {resp.get('finish_reason')!r}"
                + (f", refusal {resp['refusal']!r}" if resp.get("refusal") else "")
                + "). Pass tools= to receive tool calls."
            )
        return text

    def _validate(self, text: str | None, call_id: str, reused: bool) -> Any:
        import json

        from pydantic import TypeAdapter, ValidationError

        name = getattr(self.schema, "__name__", repr(self.schema))
        try:
            data = json.loads(text or "")
            if self.wrapped:
                if not isinstance(data, dict) or "value" not in data:
                    raise ValueError("expected an object with a 'value' key")
                data = data["value"]
            return TypeAdapter(self.schema).validate_python(data)
        except (ValueError, ValidationError) as exc:
            hint = (
                " The answer was stored by an earlier run; if the schema changed, run the flow with "
                "@flow(divergence='rerun') to ask again."
                if reused
                else ""
            )
            raise KitaruBackendError(
                f"kitaru.llm() call {call_id!r}: the model's answer does not match schema {name}: "
                f"{str(exc)[:800]}. Answer: {(text or '')[:300]!r}.{hint}"
            ) from None


def _resolve(model: str | None, mock: bool) -> ResolvedModel:
    from . import _models

    if mock:
        # Mocked calls need no provider: any model name (or none) is fine.
        try:
            return _models.resolve_model_selection(model)
        except KitaruUsageError:
            name = (model or "mock").strip() if isinstance(model, str) else "mock"
            return _models.ResolvedModel(name, "mock", name, None)
    return _models.resolve_model_selection(model)


# --- calling -----------------------------------------------------------------------------


def _mock(prep: _Prepared) -> dict[str, Any]:
    return {
        "text": os.environ.get("KITARU_LLM_MOCK_RESPONSE", ""),
        "tool_calls": [],
        "finish_reason": "stop",
        "refusal": None,
        "model": prep.resolved.model,
        "usage": {"input_tokens": None, "output_tokens": None, "total_tokens": None},
        "provider_cost_usd": None,
    }


def _cost(prep: _Prepared, resp: dict[str, Any]) -> float | None:
    """The call's cost: the alias's own prices, else the provider's reported cost
    (OpenRouter), else the price table."""
    if prep.mock:
        return 0.0
    alias = prep.resolved.alias
    explicit = alias is not None and alias.input_price is not None
    if not explicit and resp.get("provider_cost_usd") is not None:
        return float(resp["provider_cost_usd"])
    usage = resp.get("usage") or {}
    tin, tout = usage.get("input_tokens"), usage.get("output_tokens")
    prices = prep.resolved.prices
    if prices is None or tin is None or tout is None:
        return None
    return round((int(tin) * prices[0] + int(tout) * prices[1]) / 1_000_000, 10)


def _info(
    prep: _Prepared, resp: dict[str, Any], latency_ms: float, source: str | None
) -> dict[str, Any]:
    r = prep.resolved
    usage = resp.get("usage") or {}
    info = {
        "requested_model": r.requested,
        "alias": r.alias.alias if r.alias else None,
        "resolved_model": r.target,
        "credential_source": source,
        "latency_ms": round(latency_ms, 3),
        "tokens_input": usage.get("input_tokens"),
        "tokens_output": usage.get("output_tokens"),
        "total_tokens": usage.get("total_tokens"),
        "cost_usd": _cost(prep, resp),
    }
    return {k: v for k, v in info.items() if v is not None}


def _call_sync(prep: _Prepared, call: str) -> tuple[dict[str, Any], float, str | None]:
    if prep.mock:
        return _mock(prep), 0.0, None
    from . import _providers

    ep = _providers.endpoint_for(prep.resolved, call)
    body = _providers.build(prep.resolved, prep.req, ep)
    t0 = time.perf_counter()
    data = _providers.send(ep, body, prep.timeout or _providers.default_timeout())
    latency = (time.perf_counter() - t0) * 1000
    return _providers.parse(ep, data, prep.req), latency, ep.credential_source


async def _call_async(prep: _Prepared, call: str) -> tuple[dict[str, Any], float, str | None]:
    if prep.mock:
        return _mock(prep), 0.0, None
    from . import _providers

    ep = _providers.endpoint_for(prep.resolved, call)
    body = _providers.build(prep.resolved, prep.req, ep)
    t0 = time.perf_counter()
    data = await _providers.send_async(ep, body, prep.timeout or _providers.default_timeout())
    latency = (time.perf_counter() - t0) * 1000
    return _providers.parse(ep, data, prep.req), latency, ep.credential_source


class _Step:
    """What `_Call` needs to know about the synthetic checkpoint of an `llm()` call."""

    __slots__ = ("checkpoint_type", "name", "retries")

    def __init__(self, name: str) -> None:
        self.name, self.checkpoint_type, self.retries = name, "llm_call", 0


def _enter(name: str | None) -> tuple[FlowRun, CheckpointScope | None]:
    run = current_flow.get()
    if run is None:
        raise KitaruContextError("kitaru.llm() can only be called inside a @flow.")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise KitaruUsageError(f"LLM call name must be a non-empty string, got {name!r}.")
    return run, current_checkpoint.get()


def _names(run: FlowRun, scope: CheckpointScope | None, name: str | None) -> tuple[str, str]:
    """(checkpoint name, call name) of the next call in this scope."""
    if name is not None:
        if not any(ch.isalnum() for ch in name):
            raise KitaruUsageError(
                f"LLM call name {name!r} has no letters or digits; use a name such as 'summary'."
            )
        cp_name = call = sanitize_name(name, "llm")
    else:
        owner: Any = scope if scope is not None else run
        owner.llm_count += 1
        cp_name, call = "llm", f"llm_{owner.llm_count}"
    if scope is not None:
        # Inline calls are keyed by name in the checkpoint's metadata: the same name twice
        # becomes summary, summary_2, ... (flow-body calls get this from `allocate`).
        taken = scope.metadata.get("llm_calls") or {}
        base, n = call, 1
        while call in taken:
            n += 1
            call = f"{base}_{n}"
    return cp_name, call


class _Run:
    """One `llm()` call in its scope: a durable checkpoint in a flow body, inline in a
    checkpoint. The sync and async entry points differ only in how they wait for I/O."""

    __slots__ = ("call", "call_name", "cp_name", "found", "out", "prep", "run", "scope", "stored")

    def __init__(
        self, prep: _Prepared, name: str | None, run: FlowRun, scope: CheckpointScope | None
    ) -> None:
        self.prep, self.run, self.scope = prep, run, scope
        self.cp_name, self.call_name = _names(run, scope, name)
        self.call: Any = None
        self.found, self.stored = False, None
        if scope is None:
            from . import serde
            from .checkpoint import _Call

            call_id = run.allocate(self.call_name, None)
            call = _Call(_Step(self.cp_name), run, call_id, False, run.in_order())  # type: ignore[arg-type]
            self.call = call
            self.found, self.stored = call.decide(serde.digest(prep.identity))
            self.call_name = call.call_id

    def reused(self) -> Any:
        return self.prep.finish(self.stored, self.call_name, reused=True)  # type: ignore[arg-type]

    def begin(self) -> None:
        """The call is about to reach a provider: last checks, and the checkpoint starts."""
        self.prep.live()
        if self.call is not None:
            self.call.begin()  # checks the budget and the lease
        else:
            self.run.check_budget()

    def answered(self, resp: dict[str, Any], latency: float, source: str | None) -> Any:
        """Ledger first (the money is spent), then the checked value."""
        info = _info(self.prep, resp, latency, source)
        checkpoint = self.scope.call_id if self.scope is not None else None
        self.run.record_spend(self.call_name, checkpoint, info)
        self.out = out = {"messages": self.prep.req["messages"], "response": resp, "call": info}
        value = self.prep.finish(out, self.call_name, reused=False)
        if self.call is not None:
            merge_metadata(self.call.scope.metadata, {"llm_calls": {self.call_name: info}})
        else:
            entry = dict(info)
            entry["prompt"] = out["messages"]
            entry["response"] = {k: resp.get(k) for k in ("text", "tool_calls", "finish_reason")}
            merge_metadata(self.scope.metadata, {"llm_calls": {self.call_name: entry}})  # type: ignore[union-attr]
        return value

    def failed(self, exc: Exception) -> None:
        billed = getattr(exc, "billed_usage", None)
        if billed is not None:  # an unusable answer the provider still charges for
            info = _info(self.prep, billed, 0.0, None)
            checkpoint = self.scope.call_id if self.scope is not None else None
            self.run.record_spend(self.call_name, checkpoint, info)
        if self.call is not None:
            self.call.failed(exc, 0)  # records the attempt, re-raises

    def end(self) -> None:
        if self.call is not None:
            self.call.end()

    def record_args(self) -> tuple[Any, ...] | None:
        """The arguments of `Runner.record_checkpoint`, for a flow-body call."""
        return None if self.call is None else self.call.record(self.out)

    def done(self) -> None:
        if self.call is not None:
            self.call.done(self.out)


def llm(
    prompt: str | list[dict[str, Any]],
    *,
    model: str | None = None,
    system: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    name: str | None = None,
    schema: Any = None,
    tools: Sequence[Callable[..., Any] | type | dict[str, Any]] | None = None,
    tool_choice: str | None = None,
    timeout: float | None = None,
) -> Any:
    """Call a model and record the call (durable in a flow body, inline in a checkpoint).

    Args:
        prompt: a string, or a list of ``{"role", "content"}`` messages (roles system,
            user, assistant, tool; an `LLMResponse` may stand for its assistant message).
        model: a registered alias or ``provider/model`` (openai, anthropic, ollama,
            openrouter); default: ``KITARU_DEFAULT_MODEL``, then the default alias.
        system: a system prompt put before the messages.
        name: the call's name (default ``llm_1``, ``llm_2``, ... in call order).
        schema: a type (pydantic model, dataclass, ``list[str]``...): the answer is asked
            for as JSON of that schema and returned validated.
        tools: functions, pydantic models or tool dicts the model may call; the call then
            returns an `LLMResponse` (text, tool calls, usage, cost).
        tool_choice: ``"auto"``, ``"required"``, ``"none"`` or a tool's name.
        timeout: seconds per HTTP attempt (default ``KITARU_LLM_TIMEOUT``, 120).

    Returns:
        The answer's text; the validated value with ``schema=``; an `LLMResponse` with ``tools=``.
    """
    run, scope = _enter(name)
    prep = _Prepared(
        prompt, model, system, temperature, max_tokens, schema, tools, tool_choice, timeout
    )
    c = _Run(prep, name, run, scope)
    if c.found:
        return c.reused()
    c.begin()
    try:
        value = c.answered(*_call_sync(prep, c.call_name))
    except Exception as exc:
        c.failed(exc)
        raise
    finally:
        c.end()
    args = c.record_args()
    if args is not None:
        run.runner.record_checkpoint(*args)
    c.done()
    return value


def allm(
    prompt: str | list[dict[str, Any]],
    *,
    model: str | None = None,
    system: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    name: str | None = None,
    schema: Any = None,
    tools: Sequence[Callable[..., Any] | type | dict[str, Any]] | None = None,
    tool_choice: str | None = None,
    timeout: float | None = None,
) -> Coroutine[Any, Any, Any]:
    """`llm()` for async flows and checkpoints: the event loop runs while the call is out.

    Like an async checkpoint, the call takes its id when it is made, not when it is
    awaited, so ``asyncio.gather(allm(a), allm(b))`` numbers ``a`` then ``b`` every time.
    """
    run, scope = _enter(name)
    prep = _Prepared(
        prompt, model, system, temperature, max_tokens, schema, tools, tool_choice, timeout
    )
    return _allm(run, prep, _Run(prep, name, run, scope))


async def _allm(run: FlowRun, prep: _Prepared, c: _Run) -> Any:
    if c.found:
        return c.reused()
    c.begin()
    try:
        value = c.answered(*await _call_async(prep, c.call_name))
    except Exception as exc:
        c.failed(exc)
        raise
    finally:
        c.end()
    args = c.record_args()
    if args is not None:
        await run.runner.record_checkpoint_async(*args)
    c.done()
    return value
