"""The flow of bench_pydantic_ai.py, at module level (a flow must be importable)."""

from __future__ import annotations

from bench_pydantic_ai import lookup, model_fn
from kitaru import flow
from kitaru.adapters.pydantic_ai import KitaruDurability
from pydantic_ai import Agent
from pydantic_ai.models.function import FunctionModel

agent = Agent(FunctionModel(model_fn), name="kitaru_agent", tools=[lookup],
              capabilities=[KitaruDurability()])  # fmt: skip


@flow
async def research() -> str:
    return (await agent.run("go")).output


class _Unjournaled(KitaruDurability):  # type: ignore[type-arg]
    """PydanticAI's durable path (codec, operation binding) with units that journal nothing:
    what the engine surface itself costs, apart from kitaru's store."""

    def get_durable_operation_backend(self):  # type: ignore[no-untyped-def]
        backend = super().get_durable_operation_backend()

        async def execute(*, operation_id, name, body, cache_key, config):  # type: ignore[no-untyped-def]
            return await body()

        backend.execute = execute  # type: ignore[method-assign]
        return backend


bare = Agent(FunctionModel(model_fn), name="bare_agent", tools=[lookup],
             capabilities=[_Unjournaled()])  # fmt: skip


@flow
async def unjournaled() -> str:
    return (await bare.run("go")).output
