"""Adapters that make agent frameworks durable in kitaru flows.

Each lives in its own subpackage and imports its framework only when imported itself
(``import kitaru`` imports none of them):

- `kitaru.adapters.pydantic_ai` — `KitaruDurability` (PydanticAI's durable-execution
  engine surface) and Kitaru 0.4's `wrap()` / `hitl_tool()`.
"""
