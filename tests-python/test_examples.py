from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import REPO


def test_quickstart_kills_and_resumes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "quickstart.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "child exit code -9 (killed)" in out
    assert "status: failed" in out
    assert "plan         reused from the killed run" in out
    assert "research     reused from the killed run" in out
    assert "research_2   ran live in the retry" in out
    assert "write        ran live in the retry" in out
    assert "status: completed" in out and "Report on durable agents" in out


def test_research_agent_against_a_provider(tmp_path: Path, fake_llm: Any) -> None:
    import json
    import os

    from conftest import run_cli
    from fake_llm import Reply

    env = {**os.environ, **fake_llm.env()}
    run_cli("model", "register", "fast", "--model", "openai/gpt-4o-mini", env=env, check=True)
    fake_llm.queue(
        Reply(tool_calls=[("search", {"query": "durable agents"})]),
        Reply(text="Agents that survive crashes."),
        Reply(text=json.dumps({"title": "Durable agents", "sections": ["Why", "How"]})),
    )
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "research_agent.py"), "durable agents"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("Durable agents\n- Why\n- How\n")
    # the second request carries the assistant's tool call and the tool's result
    second = fake_llm.requests[1].body["messages"]
    assert second[-2]["tool_calls"][0]["function"]["name"] == "search"
    assert second[-1]["role"] == "tool" and "durable agents: note 0" in second[-1]["content"]
    assert fake_llm.requests[2].body["response_format"]["json_schema"]["name"] == "Outline"
    exec_id = proc.stdout.split("kitaru executions get ")[1].split()[0]
    got = run_cli("executions", "get", exec_id, "-o", "json", env=env, check=True)
    item = json.loads(got.stdout)["item"]
    assert [c["name"] for c in item["checkpoints"]] == ["llm_1", "search", "llm_2", "llm_3"]
    assert item["llm_cost"]["calls"] == 3 and item["llm_cost"]["budget_usd"] == 0.5
