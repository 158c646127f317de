"""Durable PydanticAI agents in kitaru flows.

```python
from pydantic_ai import Agent
from kitaru.adapters.pydantic_ai import KitaruDurability

agent = Agent("openai:gpt-4o-mini", name="researcher", tools=[search],
              capabilities=[KitaruDurability()])

@flow
async def research(topic: str) -> str:
    return (await agent.run(f"Research {topic}")).output
```

In a flow body each model request and each tool call is a checkpoint: a resumed execution
gets the finished ones from the store (no request reaches the provider, no tool runs
twice) and continues live. A wait for an external event (PydanticAI's `RequestInput`, or a
tool made with `hitl_tool`) is a `kitaru.wait()`: the process may exit, and the execution
continues after ``kitaru executions input`` and ``resume``. Model spend goes to the
execution's cost ledger, so ``@flow(budget_usd=)`` stops an agent that overspends.

Kitaru 0.4's API is here too: `wrap(agent)` returns a `KitaruAgent` with the same
behaviour, and `hitl_tool`, `CaptureConfig`, `CaptureMode`.
"""

from __future__ import annotations

try:
    import pydantic_ai as _pydantic_ai  # noqa: F401
except ImportError as _exc:  # pragma: no cover - exercised without the extra installed
    from ...errors import KitaruFeatureNotAvailableError

    raise KitaruFeatureNotAvailableError(
        "kitaru.adapters.pydantic_ai needs PydanticAI: pip install 'kitaru[pydantic-ai]' "
        "(pydantic-ai-slim >= 2.68)."
    ) from _exc

from ._compat import CaptureConfig, CaptureMode, KitaruAgent, hitl_tool, wrap
from ._durability import KitaruDurability, UnitConfig
from ._events import fail_event, resolve_event

__all__ = [
    "CaptureConfig",
    "CaptureMode",
    "KitaruAgent",
    "KitaruDurability",
    "UnitConfig",
    "fail_event",
    "hitl_tool",
    "resolve_event",
    "wrap",
]
