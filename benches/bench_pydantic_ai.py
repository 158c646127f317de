"""The cost of durability for a PydanticAI agent: `KitaruDurability` vs PydanticAI's
`DBOSDurability` (DBOS on SQLite), side by side in one run.

The agent: PydanticAI's `FunctionModel` (no network) calling one tool 20 times, one call per
model response, then answering — 21 model requests and 20 tool calls, 41 durable units.
Each engine makes each of them a durable unit (kitaru: a checkpoint; DBOS: a step — the
tool is a `@DBOS.step`, as DBOS asks for durable tools). The same agent without any
capability is the baseline; per-unit overhead = (durable run - plain run) / 41, each the
median of `--runs` runs after a warm-up.

    make bench-pydantic-ai           # release build, installs dbos, writes the table below
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TOOL_CALLS = 20
UNITS = 2 * TOOL_CALLS + 1


def model_fn(messages: list[Any], info: Any) -> Any:
    from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart

    done = sum(isinstance(p, ToolReturnPart) for m in messages for p in m.parts)
    if done < TOOL_CALLS:
        return ModelResponse(parts=[ToolCallPart("lookup", {"n": done})])
    return ModelResponse(parts=[TextPart(f"looked up {done} things")])


def lookup(n: int) -> str:
    return f"item {n}: " + "x" * 80


def _medians_ms(fns: dict[str, Any], runs: int) -> dict[str, float]:
    """Median run time of each function; the functions take turns, so a noisy moment of
    the machine is spread over all of them."""
    for fn in fns.values():
        fn()  # warm-up (imports, first store writes, DBOS registration)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1000)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kitaru-bench-pai-"))
    os.environ["KITARU_STORE"] = str(tmp / "store")
    os.environ["KITARU_CONFIG_PATH"] = str(tmp / "config")

    from pydantic_ai import Agent
    from pydantic_ai.models.function import FunctionModel

    # --- plain ---
    plain = Agent(FunctionModel(model_fn), name="plain", tools=[lookup])

    def run_plain() -> None:
        out = asyncio.run(plain.run("go")).output
        assert out == f"looked up {TOOL_CALLS} things", out

    # --- kitaru ---
    import kitaru_bench_flows as kb  # module-level flows (a flow must be importable)

    def run_kitaru() -> None:
        out = kb.research.run().wait()
        assert out == f"looked up {TOOL_CALLS} things", out

    def run_unjournaled() -> None:
        out = kb.unjournaled.run().wait()
        assert out == f"looked up {TOOL_CALLS} things", out

    # --- DBOS (SQLite) ---
    from dbos import DBOS
    from pydantic_ai.durable_exec.dbos import DBOSDurability

    DBOS(config={"name": "kitaru_bench", "system_database_url": f"sqlite:///{tmp}/dbos.sqlite"})

    @DBOS.step()
    def lookup_step(n: int) -> str:
        return lookup(n)

    def lookup_dbos(n: int) -> str:
        return lookup_step(n)  # type: ignore[no-any-return]

    lookup_dbos.__name__ = "lookup"
    dbos_agent = Agent(FunctionModel(model_fn), name="dbos_agent", tools=[lookup_dbos],
                       capabilities=[DBOSDurability()])  # fmt: skip

    @DBOS.workflow()
    async def dbos_research() -> str:
        return (await dbos_agent.run("go")).output

    DBOS.launch()

    def run_dbos() -> None:
        out = asyncio.run(dbos_research())
        assert out == f"looked up {TOOL_CALLS} things", out

    m = _medians_ms(
        {"plain": run_plain, "path": run_unjournaled, "kitaru": run_kitaru, "dbos": run_dbos},
        args.runs,
    )
    DBOS.destroy()
    base = m["plain"]

    def per(name: str) -> str:
        return f"{(m[name] - base) / UNITS:.3f}"

    print(f"one agent run: {TOOL_CALLS} tool calls, {UNITS} durable units; median of {args.runs}")
    print("| engine | run (ms) | overhead per durable unit (ms) |")
    print("|---|---:|---:|")
    print(f"| no durability | {base:.1f} | — |")
    print(
        f"| PydanticAI's durable path in a kitaru flow, units not journaled | {m['path']:.1f} | {per('path')} |"
    )
    print(f"| kitaru (local store) | {m['kitaru']:.1f} | {per('kitaru')} |")
    print(f"| DBOS (SQLite) | {m['dbos']:.1f} | {per('dbos')} |")
    own = (m["kitaru"] - m["path"]) / UNITS
    print(f"kitaru's own part (journal, store) per unit: {own:.3f} ms")
    ratio = (m["dbos"] - base) / max(m["kitaru"] - base, 1e-9)
    print(f"DBOS / kitaru per-unit overhead: {ratio:.1f}x")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
