"""What an `llm()` call returns with ``tools=``: `LLMResponse`, its `ToolCall`s and `LLMUsage`."""

from __future__ import annotations

from ..errors import KitaruBackendError, KitaruUsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["LLMResponse", "LLMUsage", "ToolCall", "tool_name"]


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
            if tool_name(tool) == self.name:
                args = self.arguments
                if hasattr(tool, "model_validate"):
                    return tool.model_validate(args)
                if callable(tool):
                    return tool(**args)
        raise KitaruUsageError(
            f"The model called tool {self.name!r}, which is not among "
            f"{', '.join(tool_name(t) for t in tools) or 'the given tools'}."
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


def tool_name(tool: Any) -> str:
    if isinstance(tool, dict):
        fn = tool.get("function", tool)
        return str(fn.get("name", ""))
    return str(getattr(tool, "__name__", ""))
