"""`kitaru-mcp` through the MCP SDK's real client: in-process (the server object) and over
stdio against the installed `kitaru-mcp` script. A flow that waits is answered, resumed,
replayed and diffed through tools; errors come back as tool errors with kitaru's message."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import write_script

pytest.importorskip("mcp")

from kitaru.mcp import build_server
from mcp import Client, StdioServerParameters

FLOW = """
import sys
import kitaru
from kitaru import checkpoint, flow

@checkpoint
def draft(topic: str) -> str:
    kitaru.save("notes", {"topic": topic})
    print("drafting", topic)
    return "draft about " + topic

@flow
def publish(topic: str) -> str:
    text = draft(topic)
    ok = kitaru.wait(schema=bool, name="approve", question="Publish it?")
    return ("published: " if ok else "held: ") + text

if __name__ == "__main__":
    print(publish.run(sys.argv[1]).exec_id)
"""


def _call(client: Any, tool: str, **args: Any) -> Any:
    async def go() -> Any:
        async with Client(client) as c:
            return await c.call_tool(tool, args)

    return asyncio.run(go())


def _json(result: Any) -> Any:
    assert not result.is_error, result.content[0].text
    return json.loads(result.content[0].text)


def test_a_waiting_flow_is_answered_resumed_replayed_and_diffed_through_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_WAIT_TIMEOUT", "0")  # a replay's wait suspends at once
    write_script(tmp_path, "publish.py", FLOW)
    env = {**os.environ, "KITARU_WAIT_TIMEOUT": "0"}
    proc = subprocess.run([sys.executable, "publish.py", "tides"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    exec_id = proc.stdout.split()[-1]
    server = build_server()

    async def session() -> None:
        async with Client(server) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert {
                "kitaru_executions_list", "kitaru_executions_get", "kitaru_executions_input",
                "kitaru_executions_resume", "kitaru_executions_replay", "kitaru_executions_diff",
                "kitaru_memory_set", "kitaru_artifacts_get", "get_execution_logs",
            } <= names  # fmt: skip
            listed = _json(await c.call_tool("kitaru_executions_list", {}))
            assert listed["command"] == "executions.list" and listed["count"] == 1
            got = _json(await c.call_tool("kitaru_executions_get", {"exec_id": exec_id}))["item"]
            assert got["status"] == "waiting" and got["pending_wait"]["question"] == "Publish it?"

            bad = await c.call_tool("kitaru_executions_input", {"exec_id": exec_id, "value": "y"})
            assert bad.is_error and "schema" in bad.content[0].text
            _json(await c.call_tool("kitaru_executions_input", {"exec_id": exec_id, "value": True}))
            done = _json(await c.call_tool("kitaru_executions_resume", {"exec_id": exec_id}))
            assert done["item"]["status"] == "completed"

            logs = await c.call_tool("get_execution_logs", {"exec_id": exec_id})
            assert "drafting tides" in logs.content[0].text
            arts = _json(await c.call_tool("kitaru_artifacts_list", {"exec_id": exec_id}))
            notes = next(a for a in arts["items"] if a["name"] == "notes")
            art = _json(
                await c.call_tool("kitaru_artifacts_get", {"artifact_id": notes["artifact_id"]})
            )
            assert art["item"]["value"] == {"topic": "tides"}

            replay = _json(await c.call_tool("kitaru_executions_replay", {
                "exec_id": exec_id, "from_": "draft", "overrides": {"checkpoint.draft": "a new draft"},
            }))  # fmt: skip
            assert replay["operation"] == "replay"
            assert replay["execution"]["status"] == "waiting"  # its wait is asked again
            new_id = replay["execution"]["exec_id"]
            diff = _json(
                await c.call_tool("kitaru_executions_diff", {"exec_a": exec_id, "exec_b": new_id})
            )
            assert diff["command"] == "executions.diff" and diff["item"]

            _json(
                await c.call_tool("kitaru_memory_set", {"key": "k", "value": [1, 2], "scope": "s"})
            )
            mem = _json(await c.call_tool("kitaru_memory_get", {"key": "k", "scope": "s"}))
            assert mem["item"]["value"] == [1, 2] and mem["item"]["version"] == 1
            status = _json(await c.call_tool("kitaru_status", {}))
            assert status["item"]["executions"]["completed"] >= 1

            missing = await c.call_tool("kitaru_executions_get", {"exec_id": "nope"})
            assert missing.is_error and "invalid execution id" in missing.content[0].text

    asyncio.run(session())
    from kitaru import KitaruClient

    assert KitaruClient().executions.result(exec_id) == "published: draft about tides"


def test_the_installed_kitaru_mcp_script_serves_over_stdio() -> None:
    script = Path(sys.executable).with_name("kitaru-mcp")
    assert script.exists(), f"{script} is installed with the package (console script)"
    params = StdioServerParameters(command=str(script), args=[], env=dict(os.environ))

    async def session() -> tuple[set[str], Any]:
        async with Client(params) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            return names, await c.call_tool("kitaru_executions_list", {})

    names, listed = asyncio.run(session())
    assert "kitaru_executions_resume" in names and "kitaru_memory_get" in names
    assert _json(listed)["items"] == []


def test_importing_kitaru_does_not_import_mcp() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import kitaru, sys; print('mcp' in sys.modules)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "False"
