"""An `llm()` request, checked and normalized: messages, sampling settings, tools and the
structured-output schema (`Prepared`), and what the caller gets from an answer."""

from __future__ import annotations

import os

from ..errors import KitaruBackendError, KitaruUsageError
from .response import LLMResponse, tool_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from .models import ResolvedModel

_ROLES = ("system", "user", "assistant", "tool")


_TOOL_CHOICES = ("auto", "required", "none")


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


class Prepared:
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
            names = {tool_name(t) for t in self.tools}
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
    from . import models as _models

    if mock:
        # Mocked calls need no provider: any model name (or none) is fine.
        try:
            return _models.resolve_model_selection(model)
        except KitaruUsageError:
            name = (model or "mock").strip() if isinstance(model, str) else "mock"
            return _models.ResolvedModel(name, "mock", name, None)
    return _models.resolve_model_selection(model)
