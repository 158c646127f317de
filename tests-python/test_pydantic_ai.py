"""PydanticAI agents made durable by `KitaruDurability` (kitaru.adapters.pydantic_ai).

Real pydantic-ai throughout: its `FunctionModel` (deterministic, offline), its OpenAI model
class against the project's OpenAI-compatible HTTP server on 127.0.0.1, a real MCP server
over stdio. Crashes are real: SIGKILL of the process running the flow, then `kitaru
executions retry` from the CLI in a new process. Ledger files count how often the model
function, the tools and the provider were reached.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_json, ledger, run_cli, stored_files, write_script
from fake_llm import OPENAI_KEY, FakeLLM, Reply

pytest.importorskip("pydantic_ai")

# What every agent script below starts with: imports, and `mark` (a line in the ledger file).
PREAMBLE = """
import asyncio, os, signal, sys
from pydantic_ai import Agent, Tool
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel
from kitaru import flow
from kitaru.adapters.pydantic_ai import KitaruDurability

LEDGER = os.environ["LEDGER"]


def mark(event):
    with open(LEDGER, "a") as f:
        f.write(event + "\\n")


def returns(messages):
    return [p.content for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
"""

# An agent with two tools on a FunctionModel: search, then fetch, then a text answer
# quoting both tool results. `KILL_AT` kills the process (SIGKILL) at a named point.
AGENT = (
    PREAMBLE
    + """
KILL_AT = os.environ.get("KILL_AT", "")


def mark(event):
    with open(LEDGER, "a") as f:
        f.write(event + "\\n")


def kill_at(point):
    if KILL_AT == point:
        mark("killed at " + point)
        os.kill(os.getpid(), signal.SIGKILL)


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


# The event handler given to the capability: model events are delivered live inside the
# model request's checkpoint, tool events each through a checkpoint of their own.
streamer = Agent(FunctionModel(model_fn, stream_function=stream_fn), name="streamer",
                 tools=[search, fetch],
                 capabilities=[KitaruDurability(event_stream_handler=on_events)])


@flow
async def research_streamed(topic: str) -> str:
    result = await streamer.run("Research " + topic)
    return result.output


FLOWS = {"async": research, "sync": research_sync, "streamed": research_streamed}

if __name__ == "__main__":
    handle = FLOWS[sys.argv[1]].run(sys.argv[2])
    print(handle.exec_id, flush=True)
    print(handle.wait(), flush=True)
"""
)


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


@pytest.mark.both_stores
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


# The same kind of agent on PydanticAI's own OpenAI model class, talking HTTP to the
# project's fake OpenAI-compatible server.
OPENAI_AGENT = (
    PREAMBLE
    + """
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider


def search(q: str) -> str:
    mark("search " + q)
    return "results for " + q


def fetch(url: str) -> str:
    mark("fetch " + url)
    if os.environ.get("KILL_AT") == "inside fetch":
        os.kill(os.getpid(), signal.SIGKILL)
    return "page " + url


model = OpenAIChatModel(
    "gpt-4o-mini",
    provider=OpenAIProvider(base_url=os.environ["FAKE_BASE"], api_key=os.environ["FAKE_KEY"]),
)
agent = Agent(model, name="researcher", tools=[search, fetch], capabilities=[KitaruDurability()])
budget = float(os.environ["BUDGET"]) if os.environ.get("BUDGET") else None


@flow(budget_usd=budget)
async def research(topic: str) -> str:
    return (await agent.run("Research " + topic)).output


if __name__ == "__main__":
    handle = research.run(sys.argv[1])
    print(handle.exec_id, flush=True)
    print(handle.wait(), flush=True)
"""
)


def _openai_env(tmp_path: Path, fake: FakeLLM, **extra: str) -> dict[str, str]:
    return _env(tmp_path, FAKE_BASE=fake.openai_base, FAKE_KEY=OPENAI_KEY, **extra)


def _queue_research(fake: FakeLLM) -> None:
    fake.queue(
        Reply(tool_calls=[("search", {"q": "tides"})], usage=(1000, 50)),
        Reply(tool_calls=[("fetch", {"url": "https://tides.example"})], usage=(1200, 40)),
        Reply(text="Tides are caused by the moon.", usage=(1500, 200)),
    )


def test_openai_model_over_http_no_request_repeated_after_a_crash(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    write_script(tmp_path, "agent.py", OPENAI_AGENT)
    _queue_research(fake_llm)
    env = _openai_env(tmp_path, fake_llm, KILL_AT="inside fetch")
    crashed = subprocess.run(
        [sys.executable, "agent.py", "tides"], cwd=tmp_path, env=env, capture_output=True
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert len(fake_llm.requests) == 2  # the second request asked for fetch
    exec_id = _latest(tmp_path)

    env.pop("KILL_AT")
    retried = run_cli("executions", "retry", exec_id, cwd=tmp_path, env=env)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    # One more request after the crash (the final answer); the two before it were reused.
    assert len(fake_llm.requests) == 3
    bodies = [r.body for r in fake_llm.requests]
    assert all(b["model"] == "gpt-4o-mini" for b in bodies)
    # fetch was interrupted before its result was recorded, so it ran again (at least once)
    assert ledger(tmp_path / "ledger.txt") == [
        "search tides",
        "fetch https://tides.example",
        "fetch https://tides.example",
    ]

    from kitaru import KitaruClient

    assert KitaruClient().executions.result(exec_id) == "Tides are caused by the moon."
    got = cli_json("executions", "get", exec_id, cwd=tmp_path)["item"]
    cost = got["llm_cost"]
    assert cost["calls"] == 3
    assert cost["saved_calls"] == 2  # the two requests the retry reused
    spent = [(c["tokens_input"], c["tokens_output"], c["run"]) for c in got["llm_calls"]]
    assert spent == [(1000, 50, 1), (1200, 40, 1), (1500, 200, 2)]
    expected = sum(i * 0.15 + o * 0.60 for i, o, _ in spent) / 1e6
    assert abs(cost["cost_usd"] - expected) < 1e-9
    assert got["llm_calls"][0]["model"] == "openai/gpt-4o-mini"
    text = run_cli("executions", "get", exec_id, cwd=tmp_path, env=env, check=True).stdout
    assert "researcher__model.request" in text and "spent on 3 calls" in text
    # the API key never reached the store
    for path, data in stored_files(tmp_path / "store"):
        assert OPENAI_KEY.encode() not in data, path


def test_budget_stops_the_agent_at_its_next_durable_unit(tmp_path: Path, fake_llm: FakeLLM) -> None:
    write_script(tmp_path, "agent.py", OPENAI_AGENT)
    _queue_research(fake_llm)
    # The first request costs 1000*0.15/1e6 + 50*0.6/1e6 = $0.00018: over a $0.0001 budget.
    env = _openai_env(tmp_path, fake_llm, BUDGET="0.0001")
    proc = subprocess.run(
        [sys.executable, "agent.py", "tides"], cwd=tmp_path, env=env, capture_output=True,
        text=True,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "KitaruBudgetExceededError" in proc.stderr, proc.stderr
    assert len(fake_llm.requests) == 1  # stopped before the tool call's checkpoint
    assert ledger(tmp_path / "ledger.txt") == []
    exec_id = _latest(tmp_path)
    got = cli_json("executions", "get", exec_id, cwd=tmp_path)["item"]
    assert got["status"] == "failed"
    assert got["failure"]["origin"] == "budget"
    # A larger budget continues from the stored request.
    retried = run_cli("executions", "retry", exec_id, "--budget-usd", "1", cwd=tmp_path, env=env)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert len(fake_llm.requests) == 3
    assert cli_json("executions", "get", exec_id, cwd=tmp_path)["item"]["status"] == "completed"


def test_streamed_run_with_an_event_handler_resumes_after_sigkill(tmp_path: Path) -> None:
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    clean = _run(clean_dir, "streamed", "tides")
    assert clean.returncode == 0, clean.stderr
    expected = clean.stdout.splitlines()[1]
    assert expected == "streamed report: results for tides "
    uninterrupted = _counts(ledger(clean_dir / "ledger.txt"))
    assert uninterrupted["stream 0"] == uninterrupted["stream 1"] == 1
    assert uninterrupted["event PartStartEvent"] == 2  # the handler saw each model stream live
    assert uninterrupted["event FunctionToolResultEvent"] == 1

    crashed = _run(tmp_path, "streamed", "tides", KILL_AT="second model request")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    exec_id = _latest(tmp_path)
    names = [
        c["name"]
        for c in cli_json("executions", "get", exec_id, cwd=tmp_path)["item"]["checkpoints"]
    ]
    assert names[0] == "streamer__model.request_stream"
    assert "streamer__event_stream_handler" in names

    retried = run_cli("executions", "retry", exec_id, cwd=tmp_path, env=_env(tmp_path))
    assert retried.returncode == 0, retried.stdout + retried.stderr
    from kitaru import KitaruClient

    assert KitaruClient().executions.result(exec_id) == expected
    lines = ledger(tmp_path / "ledger.txt")
    lines.remove("killed at second model request")
    # The stream function ran once per request, the tool once, and the handler got each
    # event once: replayed requests and handler calls come from the store.
    assert _counts(lines) == uninterrupted


HITL_AGENT = (
    PREAMBLE
    + """
from pydantic_ai.capabilities import RequestInput
from kitaru.adapters.pydantic_ai import hitl_tool


def model_fn(messages, info: AgentInfo):
    done = returns(messages)
    mark("model %d" % len(done))
    if not done:
        return ModelResponse(parts=[ToolCallPart(os.environ["TOOL"], {"amount": 40})])
    return ModelResponse(parts=[TextPart("outcome: %s" % done[0])])


@hitl_tool(question="Approve the refund?", schema=bool)
def approve_refund(amount: int) -> bool:
    "Ask a person whether a refund of `amount` dollars may go out."
    mark("body ran")
    return False


def refund(amount: int) -> str:
    mark("refund %d" % amount)
    return "refunded %d" % amount


async def ask(ctx, requests, token):
    mark("token " + token)
    mark("pending " + ",".join(c.tool_name for c in requests.approvals))
    return None  # a person answers later, through the token


hitl_agent = Agent(FunctionModel(model_fn), name="support", tools=[approve_refund],
                   capabilities=[KitaruDurability()])
approval_agent = Agent(FunctionModel(model_fn), name="support",
                       tools=[Tool(refund, requires_approval=True)],
                       capabilities=[KitaruDurability(), RequestInput(ask, name="refund_approval")])


@flow
async def support(kind: str) -> str:
    agent = hitl_agent if kind == "hitl" else approval_agent
    return (await agent.run("A customer wants $40 back")).output


if __name__ == "__main__":
    handle = support.run(sys.argv[1])
    print(handle.exec_id, flush=True)
"""
)


def _suspend(tmp_path: Path, kind: str, tool: str) -> tuple[str, dict[str, str]]:
    write_script(tmp_path, "support.py", HITL_AGENT)
    env = _env(tmp_path, TOOL=tool, KITARU_WAIT_TIMEOUT="0")
    proc = subprocess.run(
        [sys.executable, "support.py", kind], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    exec_id = proc.stdout.split()[0]
    got = cli_json("executions", "get", exec_id, cwd=tmp_path)["item"]
    assert got["status"] == "waiting", got
    return exec_id, env


def test_hitl_tool_suspends_the_flow_and_an_answer_from_other_processes_finishes_it(
    tmp_path: Path,
) -> None:
    exec_id, env = _suspend(tmp_path, "hitl", "approve_refund")
    got = cli_json("executions", "get", exec_id, cwd=tmp_path)["item"]
    wait = got["pending_wait"]
    assert wait["question"] == "Approve the refund?"
    assert wait["name"].startswith("approve_refund_")
    assert wait["metadata"]["tool_args"] == {"amount": 40}
    assert ledger(tmp_path / "ledger.txt") == ["model 0"]

    bad = run_cli("executions", "input", exec_id, "--value", '"maybe"', cwd=tmp_path, env=env)
    assert bad.returncode != 0 and "schema" in (bad.stdout + bad.stderr).lower()
    run_cli("executions", "input", exec_id, "--value", "true", cwd=tmp_path, env=env, check=True)
    run_cli("executions", "resume", exec_id, cwd=tmp_path, env=env, check=True)
    got = cli_json("executions", "get", exec_id, cwd=tmp_path)["item"]
    assert got["status"] == "completed"
    from kitaru import KitaruClient

    assert KitaruClient().executions.result(exec_id) == "outcome: True"
    # The first model request came from the store; the tool's body never ran.
    assert ledger(tmp_path / "ledger.txt") == ["model 0", "model 1"]


def test_request_input_waits_durably_and_resolve_event_answers_it(tmp_path: Path) -> None:
    exec_id, env = _suspend(tmp_path, "approval", "refund")
    lines = ledger(tmp_path / "ledger.txt")
    token = next(line.split(" ", 1)[1] for line in lines if line.startswith("token "))
    assert token.startswith(f"kitaru:{exec_id}:")
    assert "pending refund" in lines
    assert not any(line.startswith("refund ") for line in lines)

    # An approval endpoint in another process answers with PydanticAI's own type.
    approve = (
        "import sys\n"
        "from pydantic_ai.tools import DeferredToolResults\n"
        "from kitaru.adapters.pydantic_ai import resolve_event\n"
        "resolve_event(sys.argv[1], DeferredToolResults(approvals={sys.argv[2]: True}))\n"
    )
    write_script(tmp_path, "approve.py", approve)
    from kitaru import KitaruClient

    history = KitaruClient().executions.get(exec_id)
    assert history.status.value == "waiting"
    call_id = _pending_tool_call_id(exec_id)
    subprocess.run(
        [sys.executable, "approve.py", token, call_id], cwd=tmp_path, env=env, check=True
    )
    run_cli("executions", "resume", exec_id, cwd=tmp_path, env=env, check=True)
    assert KitaruClient().executions.result(exec_id) == "outcome: refunded 40"
    lines = ledger(tmp_path / "ledger.txt")
    assert lines.count("refund 40") == 1
    assert lines.count("model 0") == 1  # the first request came from the store
    assert sum(line.startswith("token ") for line in lines) == 1  # ask ran once


def _pending_tool_call_id(exec_id: str) -> str:
    """The id of the tool call waiting for approval, from the stored model response."""
    from kitaru import KitaruClient

    client = KitaruClient()
    calls = client.executions.get(exec_id).checkpoints
    first = next(c for c in calls if c.name.startswith("support__model.request"))
    stored: Any = client.artifacts.get(first.call_id).load()
    return str(next(p["tool_call_id"] for p in stored["parts"] if p["part_kind"] == "tool-call"))


MCP_SERVER = """
import sys
from mcp.server.mcpserver import MCPServer

LEDGER = sys.argv[1]
server = MCPServer("tides")


@server.tool()
def tide_height(port: str) -> str:
    "The height of the next high tide at a port."
    with open(LEDGER, "a") as f:
        f.write("mcp tide_height " + port + "\\n")
    return port + ": 2.1m"


if __name__ == "__main__":
    server.run()
"""

MCP_AGENT = (
    PREAMBLE
    + """
from fastmcp.client.transports import PythonStdioTransport
from pydantic_ai.mcp import MCPToolset


def model_fn(messages, info: AgentInfo):
    done = returns(messages)
    if len(done) == 2 and os.environ.get("KILL"):
        os.kill(os.getpid(), signal.SIGKILL)
    mark("model %d tools=%s" % (len(done), ",".join(sorted(t.name for t in info.function_tools))))
    if len(done) < 2:
        port = ["Brest", "Dover"][len(done)]
        return ModelResponse(parts=[ToolCallPart("tide_height", {"port": port})])
    return ModelResponse(parts=[TextPart(" / ".join(str(d) for d in done))])


tides = MCPToolset(PythonStdioTransport(os.environ["SERVER"], args=[LEDGER]), id="tides")
agent = Agent(FunctionModel(model_fn), name="sailor", toolsets=[tides],
              capabilities=[KitaruDurability()])


@flow
async def plan() -> str:
    return (await agent.run("When can we sail?")).output


if __name__ == "__main__":
    handle = plan.run()
    print(handle.exec_id, flush=True)
"""
)


def test_mcp_tools_over_stdio_are_checkpointed_and_not_called_again_on_retry(
    tmp_path: Path,
) -> None:
    server = write_script(tmp_path, "tides_server.py", MCP_SERVER)
    write_script(tmp_path, "sailor.py", MCP_AGENT)
    env = _env(tmp_path, SERVER=str(server), KILL="1")
    proc = subprocess.run(
        [sys.executable, "sailor.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    exec_id = _latest(tmp_path)
    names = [
        c["name"]
        for c in cli_json("executions", "get", exec_id, cwd=tmp_path)["item"]["checkpoints"]
    ]
    # discovery (tools listed by the server), then each call, as checkpoints
    assert "sailor__mcp_server__tides.get_tools" in names
    assert names.count("sailor__mcp_server__tides.call_tool") == 1
    assert "sailor__mcp_server__tides.call_tool_2" in names

    env.pop("KILL")
    retried = run_cli("executions", "retry", exec_id, cwd=tmp_path, env=env)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    from kitaru import KitaruClient

    assert KitaruClient().executions.result(exec_id) == "Brest: 2.1m / Dover: 2.1m"
    lines = ledger(tmp_path / "ledger.txt")
    # The server's tool ran once per port, and the model saw the server's tool each time.
    assert lines.count("mcp tide_height Brest") == 1
    assert lines.count("mcp tide_height Dover") == 1
    assert lines == [
        "model 0 tools=tide_height",
        "mcp tide_height Brest",
        "model 1 tools=tide_height",
        "mcp tide_height Dover",
        "model 2 tools=tide_height",
    ]


# --- in-process: Kitaru 0.4's wrap(), configuration, errors ------------------------------

from kitaru import checkpoint, flow  # noqa: E402
from kitaru.adapters.pydantic_ai import KitaruDurability, hitl_tool, wrap  # noqa: E402
from kitaru.errors import KitaruUsageError  # noqa: E402
from pydantic_ai import Agent  # noqa: E402
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart  # noqa: E402
from pydantic_ai.models.function import AgentInfo, FunctionModel  # noqa: E402

SEEN: list[str] = []


def _fan_out_model(messages: list[Any], info: AgentInfo) -> ModelResponse:
    done = [p.content for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
    SEEN.append(f"model {len(done)}")
    if not done:  # two calls of one tool in one response: run concurrently
        return ModelResponse(
            parts=[
                ToolCallPart("weigh", {"item": "apples"}),
                ToolCallPart("weigh", {"item": "pears"}),
            ]
        )
    return ModelResponse(parts=[TextPart(" + ".join(sorted(str(d) for d in done)))])


def weigh(item: str) -> str:
    SEEN.append(f"weigh {item}")
    if item == "pears" and os.environ.get("PEARS_FAIL"):
        raise RuntimeError("scale broke")
    return f"{item}=1kg"


fan_out = Agent(FunctionModel(_fan_out_model), name="grocer", tools=[weigh],
                capabilities=[KitaruDurability()])  # fmt: skip
wrapped = wrap(Agent(FunctionModel(_fan_out_model), name="grocer 2", tools=[weigh]))


@flow
async def shop() -> str:
    return (await fan_out.run("weigh the fruit")).output


@flow
def shop_wrapped() -> str:
    return wrapped.run_sync("weigh the fruit").output


@checkpoint
def shop_inline() -> str:
    return wrapped.run_sync("weigh the fruit").output


@flow
def shop_in_checkpoint() -> str:
    return shop_inline()


def test_concurrent_tool_calls_are_matched_to_their_own_results_on_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kitaru import KitaruClient

    SEEN.clear()
    monkeypatch.setenv("PEARS_FAIL", "1")
    handle = shop.run()
    with pytest.raises(Exception, match="scale broke"):
        handle.wait()
    assert sorted(SEEN) == ["model 0", "weigh apples", "weigh pears"]
    monkeypatch.delenv("PEARS_FAIL")
    SEEN.clear()
    KitaruClient().executions.retry(handle.exec_id)
    # apples came from the store, pears ran again, the first request was not repeated
    assert SEEN == ["weigh pears", "model 2"]
    assert KitaruClient().executions.result(handle.exec_id) == "apples=1kg + pears=1kg"


def test_wrap_in_a_flow_body_makes_each_call_a_checkpoint() -> None:
    from kitaru import KitaruClient

    handle = shop_wrapped.run()
    assert handle.wait() == "apples=1kg + pears=1kg"
    names = [c.name for c in KitaruClient().executions.get(handle.exec_id).checkpoints]
    assert names[0] == "grocer_2__model.request"
    assert sorted(names[1:3]) == [
        "grocer_2__function_toolset__agent.call_tool.weigh",
        "grocer_2__function_toolset__agent.call_tool.weigh_2",
    ]


def test_wrap_inside_a_checkpoint_records_events_with_the_capture_policy() -> None:
    from kitaru import KitaruClient

    agent = wrap(
        Agent(FunctionModel(_fan_out_model), name="grocer 3", tools=[weigh]),
        tool_capture_config={"mode": "metadata_only"},
    )
    assert agent.tool_capture == {
        "enabled": True, "save_args": False, "save_result": False, "include_timings": True
    }  # fmt: skip
    off = wrap(
        Agent(FunctionModel(_fan_out_model), tools=[weigh]),
        tool_capture_config_by_name={"weigh": None},
    )
    assert off.tool_capture_by_name["weigh"]["enabled"] is False
    assert off.kitaru_name == "agent"

    handle = shop_in_checkpoint.run()
    assert handle.wait() == "apples=1kg + pears=1kg"
    (call,) = KitaruClient().executions.get(handle.exec_id).checkpoints
    events = call.metadata["pydantic_ai_events"]
    tools = [e for e in events.values() if e["type"] == "tool_call"]
    assert sorted(e["tool_name"] for e in tools) == ["weigh", "weigh"]
    assert all(e["status"] == "completed" and len(e["artifacts"]) == 2 for e in tools)
    llm = [e for e in events.values() if e["type"] == "llm_call"]
    assert len(llm) == 2 and llm[1]["fan_in_from"]  # the second request follows the tools


def test_outside_a_flow_the_agent_runs_plainly() -> None:
    SEEN.clear()
    assert wrapped.run_sync("weigh").output == "apples=1kg + pears=1kg"
    assert fan_out.run_sync("weigh").output == "apples=1kg + pears=1kg"
    assert SEEN.count("model 0") == 2

    @hitl_tool(question="ok?", schema=bool)
    def confirm(amount: int) -> bool:
        return amount < 10

    def ask_once(messages: list[Any], info: AgentInfo) -> ModelResponse:
        done = [p.content for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
        if not done:
            return ModelResponse(parts=[ToolCallPart("confirm", {"amount": 3})])
        return ModelResponse(parts=[TextPart(f"confirmed: {done[0]}")])

    # outside a flow a hitl tool's own body answers
    asker = Agent(FunctionModel(ask_once), name="asker", tools=[confirm],
                  capabilities=[KitaruDurability()])  # fmt: skip
    assert asker.run_sync("go").output == "confirmed: True"


def test_bad_configuration_is_refused_with_a_clear_message() -> None:
    with pytest.raises(KitaruUsageError, match="needs an agent with a model"):
        wrap(Agent(None, name="x"))
    with pytest.raises(KitaruUsageError, match="Capture mode"):
        wrap(Agent(FunctionModel(_fan_out_model)), tool_capture_config={"mode": "all"})  # type: ignore[typeddict-item]
    from pydantic_ai.exceptions import UserError

    with pytest.raises(UserError, match="unknown kitaru unit setting"):
        KitaruDurability(tool_config={"retry": 2})
    with pytest.raises(UserError, match="'retries' must be an int"):
        KitaruDurability(model_config={"retries": -1})


def test_fail_event_denies_the_pending_calls_and_the_run_goes_on(tmp_path: Path) -> None:
    exec_id, env = _suspend(tmp_path, "approval", "refund")
    token = next(
        line.split(" ", 1)[1]
        for line in ledger(tmp_path / "ledger.txt")
        if line.startswith("token ")
    )
    deny = (
        "import sys\n"
        "from kitaru.adapters.pydantic_ai import fail_event\n"
        "fail_event(sys.argv[1], 'the manager said no')\n"
    )
    write_script(tmp_path, "deny.py", deny)
    subprocess.run([sys.executable, "deny.py", token], cwd=tmp_path, env=env, check=True)
    run_cli("executions", "resume", exec_id, cwd=tmp_path, env=env, check=True)
    from kitaru import KitaruClient

    outcome = KitaruClient().executions.result(exec_id)
    assert outcome.startswith("outcome: ") and "the manager said no" in outcome
    assert not any(line.startswith("refund ") for line in ledger(tmp_path / "ledger.txt"))


def test_a_token_kitaru_did_not_make_is_refused() -> None:
    from kitaru.adapters.pydantic_ai import resolve_event

    with pytest.raises(KitaruUsageError, match="not a token kitaru handed out"):
        resolve_event("lambda-callback-123", True)


def _retrying_model(messages: list[Any], info: AgentInfo) -> ModelResponse:
    done = [p.content for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
    SEEN.append(f"model {len(done)}")
    if not done:
        return ModelResponse(parts=[ToolCallPart("picky", {"word": "tide"})])
    if os.environ.get("FINAL_FAILS"):
        raise RuntimeError("model down")
    return ModelResponse(parts=[TextPart(f"done: {done[-1]}")])


def picky(word: str) -> str:
    from pydantic_ai import ModelRetry

    SEEN.append(f"picky {word}")
    if SEEN.count(f"picky {word}") == 1:
        raise ModelRetry("say it twice")  # a control-flow exception, recorded as such
    return word * 2


retrier = Agent(FunctionModel(_retrying_model), name="retrier", tools=[picky],
                capabilities=[KitaruDurability()])  # fmt: skip


@flow
async def retrying() -> str:
    return (await retrier.run("go")).output


def test_a_model_retry_from_a_tool_is_recorded_and_replayed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kitaru import KitaruClient

    SEEN.clear()
    monkeypatch.setenv("FINAL_FAILS", "1")
    handle = retrying.run()
    with pytest.raises(Exception, match="model down"):
        handle.wait()
    assert SEEN == ["model 0", "picky tide", "model 1"]  # the tool raised ModelRetry
    monkeypatch.delenv("FINAL_FAILS")
    SEEN.clear()
    KitaruClient().executions.retry(handle.exec_id)
    # The ModelRetry came from the store as what the model was told: the tool did not run
    # again (a second call would have answered "tidetide"), only the failed request did.
    assert SEEN == ["model 1"]
    assert KitaruClient().executions.result(handle.exec_id) == "done: say it twice"


def test_the_input_digest_ignores_message_clocks_but_not_a_users_timestamps() -> None:
    from datetime import datetime

    from kitaru.adapters.pydantic_ai._durability import input_digest
    from pydantic_ai.messages import ModelRequest, ToolCallPart, UserPromptPart

    def request(text: str, day: int) -> list[Any]:
        return [ModelRequest(parts=[UserPromptPart(text, timestamp=datetime(2026, 1, day))])]

    # when a message was made is not an input: a resumed run makes it anew
    assert input_digest(("m", request("hi", 1))) == input_digest(("m", request("hi", 2)))
    assert input_digest(("m", request("hi", 1))) != input_digest(("m", request("bye", 1)))
    # a tool argument named `timestamp` is the user's data: it counts
    assert input_digest(("book", {"timestamp": "2026-01-01"})) != input_digest(
        ("book", {"timestamp": "2026-01-02"})
    )
    call = [ModelResponse(parts=[ToolCallPart("book", {"timestamp": "2026-01-01"}, "c1")])]
    moved = [ModelResponse(parts=[ToolCallPart("book", {"timestamp": "2026-01-02"}, "c1")])]
    assert input_digest(("m", call)) != input_digest(("m", moved))
