"""PydanticAI agents made durable by `KitaruDurability` (kitaru.adapters.pydantic_ai).

Real pydantic-ai throughout: its `FunctionModel` (deterministic, offline), its OpenAI model
class against the project's OpenAI-compatible HTTP server on 127.0.0.1, a real MCP server
over stdio. Crashes are real: SIGKILL of the process running the flow, then `kitaru
executions retry` from the CLI in a new process. Ledger files count how often the model
function, the tools and the provider were reached.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_json, ledger, run_cli, write_script
from fake_llm import OPENAI_KEY, FakeLLM, Reply

pytest.importorskip("pydantic_ai")

# An agent with two tools on a FunctionModel: search, then fetch, then a text answer
# quoting both tool results. `KILL_AT` kills the process (SIGKILL) at a named point.
AGENT = """
import asyncio, os, signal, sys
from pydantic_ai import Agent
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel
from kitaru import flow
from kitaru.adapters.pydantic_ai import KitaruDurability

LEDGER = os.environ["LEDGER"]
KILL_AT = os.environ.get("KILL_AT", "")


def mark(event):
    with open(LEDGER, "a") as f:
        f.write(event + "\\n")


def kill_at(point):
    if KILL_AT == point:
        mark("killed at " + point)
        os.kill(os.getpid(), signal.SIGKILL)


def returns(messages):
    return [p.content for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]


def model_fn(messages, info: AgentInfo):
    done = returns(messages)
    if len(done) == 2:
        kill_at("third model request")
    mark("model %d" % len(done))
    if len(done) == 0:
        return ModelResponse(parts=[ToolCallPart("search", {"q": "tides"})])
    if len(done) == 1:
        return ModelResponse(parts=[ToolCallPart("fetch", {"url": "https://tides.example"})])
    return ModelResponse(parts=[TextPart("report: " + " | ".join(done))])


async def stream_fn(messages, info: AgentInfo):
    done = returns(messages)
    if len(done) == 1:
        kill_at("second model request")
    mark("stream %d" % len(done))
    if len(done) == 0:
        yield {0: DeltaToolCall(name="search", json_args='{"q": "tides"}')}
        return
    for word in ["streamed", "report:", *done]:
        yield word + " "


def search(q: str) -> str:
    mark("search " + q)
    return "results for " + q


def fetch(url: str) -> str:
    mark("fetch " + url)
    kill_at("inside fetch")
    return "page " + url


async def on_events(ctx, events):
    async for event in events:
        mark("event " + type(event).__name__)


agent = Agent(FunctionModel(model_fn, stream_function=stream_fn), name="researcher",
              tools=[search, fetch], capabilities=[KitaruDurability()])


@flow
async def research(topic: str) -> str:
    result = await agent.run("Research " + topic)
    mark("agent done")
    return result.output


@flow
def research_sync(topic: str) -> str:
    return agent.run_sync("Research " + topic).output


@flow
async def research_streamed(topic: str) -> str:
    result = await agent.run("Research " + topic, event_stream_handler=on_events)
    return result.output


FLOWS = {"async": research, "sync": research_sync, "streamed": research_streamed}

if __name__ == "__main__":
    handle = FLOWS[sys.argv[1]].run(sys.argv[2])
    print(handle.exec_id, flush=True)
    print(handle.wait(), flush=True)
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "LEDGER": str(tmp_path / "ledger.txt"), **extra}


def _run(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "agent.py"
    if not script.exists():
        write_script(tmp_path, "agent.py", AGENT)
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        env=_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _latest(tmp_path: Path) -> str:
    return str(cli_json("executions", "list", cwd=tmp_path)["items"][0]["exec_id"])


def _counts(lines: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in lines:
        out[line] = out.get(line, 0) + 1
    return out


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_sigkill_between_tool_calls_and_model_request_resumes_without_repeating_work(
    tmp_path: Path, mode: str
) -> None:
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    clean = _run(clean_dir, mode, "tides")
    assert clean.returncode == 0, clean.stderr
    expected = clean.stdout.splitlines()[1]
    assert expected == "report: results for tides | page https://tides.example"
    uninterrupted = _counts(ledger(clean_dir / "ledger.txt"))

    crashed = _run(tmp_path, mode, "tides", KILL_AT="third model request")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    exec_id = _latest(tmp_path)
    got = cli_json("executions", "get", exec_id, cwd=tmp_path)["item"]
    assert got["status"] == "failed"
    assert [c["name"] for c in got["checkpoints"]] == [
        "researcher__model.request",
        "researcher__function_toolset__agent.call_tool.search",
        "researcher__model.request_2",
        "researcher__function_toolset__agent.call_tool.fetch",
    ]

    retried = run_cli("executions", "retry", exec_id, cwd=tmp_path, env=_env(tmp_path))
    assert retried.returncode == 0, retried.stdout + retried.stderr
    got = cli_json("executions", "get", exec_id, cwd=tmp_path)["item"]
    assert got["status"] == "completed"
    calls = got["checkpoints"]
    assert len(calls) == 5
    assert [c["checkpoint_type"] for c in calls] == [
        "llm_call", "tool_call", "llm_call", "tool_call", "llm_call"
    ]  # fmt: skip
    # Every model request and tool call happened exactly as often as without the crash.
    lines = ledger(tmp_path / "ledger.txt")
    assert lines.count("killed at third model request") == 1
    lines.remove("killed at third model request")
    assert _counts(lines) == uninterrupted
    # The result is the uninterrupted run's.
    from kitaru import KitaruClient

    assert KitaruClient().executions.result(exec_id) == expected
