"""`kitaru-mcp` through the MCP SDK's real client: in-process (the server object) and over
stdio against the installed `kitaru-mcp` script. Flows are started by file and module
target; a flow that waits is answered, resumed, replayed and diffed through tools; logs,
memory maintenance (compaction on a mocked model), local stacks and `kitaru_info` go
through tools too; errors come back as tool errors with kitaru's message, and no result
shows a credential of a store URL."""

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


# --- kitaru_executions_run, logs, memory maintenance, stacks, info ---------------------

RUN_FLOW = """
import sys
import kitaru
from kitaru import checkpoint, flow

@checkpoint
def draft(topic: str) -> str:
    print("drafting", topic)
    return "draft about " + topic

def helper() -> None:
    pass

@flow
def publish(topic: str) -> str:
    print("flow starts")
    text = draft(topic)
    ok = kitaru.wait(schema=bool, name="approve", question="Publish it?")
    return ("published: " if ok else "held: ") + text

if __name__ == "__main__":
    open("main_block_ran", "w").close()
"""

MODULE_FLOW = """
from kitaru import checkpoint, flow

@checkpoint
def shout(text: str) -> str:
    return text.upper() + "!"

@flow
def loud(text: str, times: int = 1) -> str:
    return " ".join(shout(text) for _ in range(times))
"""


def _text(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


def _session(server: Any, body: Any) -> Any:
    async def go() -> Any:
        async with Client(server) as c:
            return await body(c)

    return asyncio.run(go())


def test_flows_are_run_by_file_and_module_target_then_answered_and_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kitaru import KitaruClient

    monkeypatch.setenv("KITARU_WAIT_TIMEOUT", "0")
    monkeypatch.chdir(tmp_path)
    write_script(tmp_path, "publisher.py", RUN_FLOW)
    module = f"mcp_flows_{os.getpid()}"
    write_script(tmp_path, f"{module}.py", MODULE_FLOW)

    async def body(c: Any) -> dict[str, Any]:
        assert "kitaru_executions_run" in {t.name for t in (await c.list_tools()).tools}
        ran = _json(
            await c.call_tool(
                "kitaru_executions_run",
                {"target": "publisher.py:publish", "args": {"topic": "tides"}},
            )
        )
        waiting = ran["execution"]
        assert ran["target"] == "publisher.py:publish" and ran["exec_id"] == waiting["exec_id"]
        assert waiting["status"] == "waiting" and waiting["pending_wait"]["name"] == "approve"
        assert "kitaru_executions_input" in ran["warning"] and "approve" in ran["warning"]
        exec_id = ran["exec_id"]
        _json(await c.call_tool("kitaru_executions_input", {"exec_id": exec_id, "value": True}))
        done = _json(await c.call_tool("kitaru_executions_resume", {"exec_id": exec_id}))
        assert done["item"]["status"] == "completed"
        by_module = _json(
            await c.call_tool(
                "kitaru_executions_run",
                {"target": f"{module}:loud", "args": {"text": "hi", "times": 2}},
            )
        )
        assert by_module["execution"]["status"] == "completed" and by_module["warning"] is None
        return {"file": exec_id, "module": by_module["exec_id"]}

    ids = _session(build_server(), body)
    client = KitaruClient()
    assert client.executions.result(ids["file"]) == "published: draft about tides"
    assert client.executions.result(ids["module"]) == "HI! HI!"
    # the script was imported as a module: its `if __name__ == "__main__":` block did not run
    assert not (tmp_path / "main_block_ran").exists()
    assert client.executions.get(ids["file"]).entry["script"] == str(tmp_path / "publisher.py")


def test_a_failing_run_returns_the_failed_execution_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_script(
        tmp_path,
        "boom.py",
        """
        from kitaru import flow

        @flow
        def boom(n: int) -> int:
            raise RuntimeError(f"no luck with {n}")
    """,
    )
    ran = _json(
        _call(build_server(), "kitaru_executions_run", target="boom.py:boom", args={"n": 3})
    )
    assert ran["execution"]["status"] == "failed"
    assert "no luck with 3" in ran["warning"] and "kitaru_executions_retry" in ran["warning"]


def test_bad_run_targets_are_tool_errors_that_say_what_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_script(tmp_path, "publisher.py", RUN_FLOW)
    write_script(tmp_path, "broken.py", "import kitaru\nraise ImportError('needs torch')\n")
    write_script(tmp_path, "exits.py", "import sys\nsys.exit(3)\n")
    cases = {
        "publisher.py": "<module_or_file.py>:<flow>",
        "missing.py:publish": f"No such file {tmp_path / 'missing.py'}",
        "flows/none.py:publish": "Give the path of the .py file",
        "publisher.py:nope": "has no attribute 'nope'",
        "publisher.py:helper": "is a function, not a kitaru flow",
        "publisher.py:kitaru": "is a module, not a kitaru flow",
        "no_such_module_here:publish": "No module named 'no_such_module_here'",
        "broken.py:f": "ImportError: needs torch",
        "exits.py:f": "called sys.exit(3)",
    }

    async def body(c: Any) -> dict[str, str]:
        out = {}
        for target in cases:
            r = await c.call_tool("kitaru_executions_run", {"target": target})
            assert r.is_error, target
            out[target] = _text(r)
        bad_args = await c.call_tool(
            "kitaru_executions_run", {"target": "publisher.py:publish", "args": {"subject": "x"}}
        )
        out["args"] = _text(bad_args)
        reserved = await c.call_tool(
            "kitaru_executions_run",
            {"target": "publisher.py:publish", "args": {"topic": "x", "retries": 2}},
        )
        out["reserved"] = _text(reserved)
        listed = _json(await c.call_tool("kitaru_executions_list", {}))
        out["count"] = str(listed["count"])
        return out

    got = _session(build_server(), body)
    for target, needle in cases.items():
        assert needle in got[target], (target, got[target])
    assert "Its flows: publish" in got["publisher.py:nope"]
    assert "Bad arguments for flow 'publish'" in got["args"]
    assert "retries" in got["reserved"] and "option" in got["reserved"]
    assert got["count"] == "0"  # nothing was started


def test_get_execution_logs_tags_lines_with_their_checkpoint_and_filters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_WAIT_TIMEOUT", "0")
    monkeypatch.chdir(tmp_path)
    write_script(tmp_path, "publisher.py", RUN_FLOW)

    async def body(c: Any) -> dict[str, str]:
        ran = _json(
            await c.call_tool(
                "kitaru_executions_run",
                {"target": "publisher.py:publish", "args": {"topic": "tides"}},
            )
        )
        exec_id, out = ran["exec_id"], {}
        for name, extra in {
            "all": {},
            "draft": {"checkpoint": "draft"},
            "runner": {"source": "runner"},
            "none": {"checkpoint": "nope"},
            "first": {"limit": 1},
        }.items():
            out[name] = _text(
                await c.call_tool("get_execution_logs", {"exec_id": exec_id, **extra})
            )
        bad = await c.call_tool("get_execution_logs", {"exec_id": exec_id, "source": "pod"})
        out["bad"] = _text(bad) if bad.is_error else ""
        return out

    got = _session(build_server(), body)
    lines = got["all"].splitlines()
    assert any(" [draft] drafting tides" in line for line in lines), got["all"]
    assert any(" [flow] flow starts" in line for line in lines), got["all"]
    assert "drafting tides" in got["draft"] and "flow starts" not in got["draft"]
    assert "flow starts" in got["runner"] and "drafting" not in got["runner"]
    assert got["none"] == "No log entries found."
    assert got["first"].splitlines() == [lines[0]]
    assert "source must be 'step' or 'runner'" in got["bad"]


def test_memory_purge_compaction_and_the_log_through_tools(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KITARU_LLM_MOCK_RESPONSE", "- tests: pytest\n- env: uv")

    async def body(c: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for value in ("one", "two", "three"):
            await c.call_tool(
                "kitaru_memory_set", {"key": "notes", "value": value, "scope": "repo"}
            )
        await c.call_tool("kitaru_memory_set", {"key": "old", "value": 1, "scope": "repo"})
        await c.call_tool("kitaru_memory_delete", {"key": "old", "scope": "repo"})
        out["purge"] = _json(
            await c.call_tool("kitaru_memory_purge", {"key": "notes", "scope": "repo", "keep": 1})
        )
        out["history"] = _json(
            await c.call_tool("kitaru_memory_history", {"key": "notes", "scope": "repo"})
        )
        bad = await c.call_tool(
            "kitaru_memory_purge", {"key": "notes", "scope": "repo", "keep": -1}
        )
        out["bad_keep"] = _text(bad) if bad.is_error else ""
        out["compact"] = _json(
            await c.call_tool(
                "kitaru_memory_compact",
                {
                    "scope": "repo",
                    "key": "notes",
                    "target_key": "summary",
                    "instruction": "Summarize.",
                    "model": "openai/gpt-4o-mini",
                },
            )
        )
        out["summary"] = _json(
            await c.call_tool("kitaru_memory_get", {"key": "summary", "scope": "repo"})
        )
        multi = await c.call_tool("kitaru_memory_compact", {"scope": "repo", "keys": ["a", "b"]})
        out["multi"] = _text(multi) if multi.is_error else ""
        out["scope"] = _json(
            await c.call_tool(
                "kitaru_memory_purge_scope", {"scope": "repo", "include_deleted": True}
            )
        )
        out["log"] = _json(await c.call_tool("kitaru_memory_compaction_log", {"scope": "repo"}))
        out["reindex"] = _json(await c.call_tool("kitaru_memory_reindex", {}))
        return out

    got = _session(build_server(), body)
    assert got["purge"]["command"] == "memory.purge"
    assert got["purge"]["item"] == {
        "versions_deleted": 2,
        "keys_affected": 1,
        "scope": "repo",
        "scope_type": "namespace",
    }
    assert [e["version"] for e in got["history"]["items"]] == [3]
    assert "keep" in got["bad_keep"]
    compact = got["compact"]["item"]
    assert got["compact"]["command"] == "memory.compact" and compact["sources_read"] == 1
    assert compact["entry"]["key"] == "summary" and compact["entry"]["version"] == 1
    assert compact["compaction_record"]["source_versions"] == [3]
    assert got["summary"]["item"]["value"] == "- tests: pytest\n- env: uv"
    assert "requires `target_key`" in got["multi"]
    # notes v3 + summary v1 + old v1 and its tombstone
    assert got["scope"]["item"]["versions_deleted"] == 4
    assert got["log"]["command"] == "memory.compaction-log"
    assert [r["operation"] for r in got["log"]["items"]] == ["purge", "compact", "purge"]
    assert got["log"]["items"][1]["target_key"] == "summary"
    assert got["reindex"]["item"]["dry_run"] is True
    assert got["reindex"]["item"]["versions_scanned"] >= 3  # the compaction log's versions


def test_manage_stack_creates_and_deletes_local_stacks_and_refuses_remote_fields(
    tmp_path: Path,
) -> None:
    from kitaru import stacks

    async def body(c: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["create"] = _json(
            await c.call_tool(
                "manage_stack",
                {
                    "action": "create",
                    "name": "scratch",
                    "artifact_store": str(tmp_path / "s"),
                    "activate": False,
                },
            )
        )
        out["listed"] = _json(await c.call_tool("kitaru_stacks_list", {}))
        out["active"] = _json(
            await c.call_tool("manage_stack", {"action": "create", "name": "team"})
        )
        for field, value in {
            "cluster": "gke-1",
            "credentials": "key.json",
            "namespace": "ml",
            "extra": {"orchestrator.x": 1},
            "async_mode": True,
            "stack_type": "kubernetes",
            "action": "update",
        }.items():
            args = {"action": "create", "name": "remote", field: value}
            r = await c.call_tool("manage_stack", args)
            out[field] = _text(r) if r.is_error else ""
        r = await c.call_tool("manage_stack", {"action": "delete", "name": "team"})
        out["active_delete"] = _text(r) if r.is_error else ""
        out["delete"] = _json(
            await c.call_tool("manage_stack", {"action": "delete", "name": "scratch"})
        )
        out["forced"] = _json(
            await c.call_tool("manage_stack", {"action": "delete", "name": "team", "force": True})
        )
        return out

    got = _session(build_server(), body)
    created = got["create"]["item"]
    assert got["create"]["command"] == "stack.create"
    assert created["name"] == "scratch" and created["location"] == str(tmp_path / "s")
    assert created["is_active"] is False and created["previous_active_stack"] == "default"
    assert [s["name"] for s in got["listed"]["items"]] == ["default", "scratch"]
    assert got["active"]["item"]["is_active"] is True
    for field in ("cluster", "credentials", "namespace", "extra", "async_mode", "stack_type"):
        assert f"manage_stack: {field}" in got[field], (field, got[field])
    assert "action must be 'create' or 'delete'" in got["action"]
    assert "is the active stack" in got["active_delete"]
    assert got["delete"]["command"] == "stack.delete"
    assert got["delete"]["item"]["deleted_stack"] == "scratch"
    assert got["forced"]["item"]["new_active_stack"] == "default"
    assert [s.name for s in stacks.list_stacks()] == ["default"]


def test_kitaru_info_is_the_cli_payload_with_package_versions(isolated_store: Path) -> None:
    from importlib import metadata

    from conftest import cli_json
    from kitaru._kitaru import VERSION

    async def body(c: Any) -> list[Any]:
        return [
            _json(await c.call_tool("kitaru_info", {})),
            _json(await c.call_tool("kitaru_info", {"packages": ["mcp", "no-such-dist-xyz"]})),
            _json(await c.call_tool("kitaru_info", {"all": True})),
            _json(await c.call_tool("kitaru_info", {"all_packages": True})),
        ]

    plain, named, deps, every = _session(build_server(), body)
    cli = cli_json("info")["item"]
    assert plain["command"] == "info" and plain["item"]["kitaru"] == VERSION
    assert plain["item"] == cli and plain["item"]["store"] == str(isolated_store)
    assert "packages" not in plain["item"]
    assert named["item"]["packages"] == {"mcp": metadata.version("mcp"), "no-such-dist-xyz": None}
    assert deps["item"]["packages"]["jsonschema"] == metadata.version("jsonschema")
    assert "pytest" in deps["item"]["packages"] and "kitaru" not in deps["item"]["packages"]
    assert every["item"]["packages"]["kitaru"] == metadata.version("kitaru")


def test_no_tool_result_shows_a_credential_of_a_store_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = ("AKIAUSERNAME", "PASSWORDSECRET", "SIGNATURESECRET", "QUERYSECRET")
    monkeypatch.setenv(
        "KITARU_STORE", "s3://AKIAUSERNAME:PASSWORDSECRET@bucket/p?X-Amz-Signature=SIGNATURESECRET"
    )
    server = build_server()
    tools = ("kitaru_status", "kitaru_info", "kitaru_stacks_list", "kitaru_executions_list")

    async def every_tool(c: Any) -> dict[str, Any]:
        return {t: await c.call_tool(t, {}) for t in tools}

    from_env = _session(server, every_tool)
    status = _json(from_env["kitaru_status"])["item"]
    assert status["store"] == "s3://<redacted>@bucket/p?<redacted>" and status["store_error"]
    assert _json(from_env["kitaru_info"])["item"]["store"] == status["store"]
    assert from_env["kitaru_executions_list"].is_error  # the core refuses such a URL
    # Stacks refuse credentials in s3:// URLs, but a file:// URL may carry a query.
    monkeypatch.delenv("KITARU_STORE")
    leaky = f"file://{tmp_path}/s?access=QUERYSECRET"

    async def with_stack(c: Any) -> dict[str, Any]:
        created = await c.call_tool(
            "manage_stack", {"action": "create", "name": "leaky", "artifact_store": leaky}
        )
        return {"create": created, **(await every_tool(c))}

    from_stack = _session(server, with_stack)
    assert _json(from_stack["kitaru_status"])["item"]["stack"] == "leaky"
    listed = _json(from_stack["kitaru_stacks_list"])["items"]
    assert listed[1]["location"] == f"file://{tmp_path}/s?<redacted>"
    for name, result in [*from_env.items(), *from_stack.items()]:
        text = _text(result)
        assert not any(s in text for s in secrets), (name, text)


def test_kitaru_mcp_runs_a_flow_by_target_over_stdio(tmp_path: Path) -> None:
    """The installed script: a flow that prints (stdout is the protocol's pipe) and waits
    returns its waiting execution at once (kitaru-mcp's wait timeout is 0 unless set), and
    is answered and resumed through tools."""
    from kitaru import KitaruClient

    write_script(tmp_path, "publisher.py", RUN_FLOW)
    script = Path(sys.executable).with_name("kitaru-mcp")
    env = {k: v for k, v in os.environ.items() if k != "KITARU_WAIT_TIMEOUT"}
    params = StdioServerParameters(command=str(script), args=[], env=env, cwd=str(tmp_path))

    async def session() -> list[Any]:
        async with Client(params) as c:
            ran = _json(
                await c.call_tool(
                    "kitaru_executions_run",
                    {"target": "publisher.py:publish", "args": {"topic": "tides"}},
                )
            )
            exec_id = ran["exec_id"]
            bad = await c.call_tool("kitaru_executions_run", {"target": "publisher.py:nope"})
            _json(await c.call_tool("kitaru_executions_input", {"exec_id": exec_id, "value": True}))
            done = _json(await c.call_tool("kitaru_executions_resume", {"exec_id": exec_id}))
            logs = await c.call_tool(
                "get_execution_logs", {"exec_id": exec_id, "checkpoint": "draft"}
            )
            return [ran, bad, done, _text(logs)]

    ran, bad, done, logs = asyncio.run(session())
    assert ran["execution"]["status"] == "waiting" and ran["warning"]
    assert bad.is_error and "has no attribute 'nope'" in _text(bad)
    assert done["item"]["status"] == "completed"
    assert "[draft] drafting tides" in logs
    result = KitaruClient().executions.result(ran["exec_id"])
    assert result == "published: draft about tides"
    assert not (tmp_path / "main_block_ran").exists()


def test_the_local_server_tools_start_and_stop_the_dashboard(tmp_path: Path) -> None:
    import httpx

    write_script(tmp_path, "publish.py", FLOW)
    env = {**os.environ, "KITARU_WAIT_TIMEOUT": "0"}
    proc = subprocess.run([sys.executable, "publish.py", "tides"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    exec_id = proc.stdout.split()[-1]
    server = build_server()

    async def session() -> tuple[dict[str, Any], ...]:
        async with Client(server) as c:
            started = _json(await c.call_tool("kitaru_start_local_server", {}))["item"]
            again = _json(await c.call_tool("kitaru_start_local_server", {}))["item"]
            with httpx.Client() as h:
                page = h.get(started["url"], follow_redirects=True)
                assert page.status_code == 200 and exec_id in page.text
            refused = httpx.get(started["url"].split("?", 1)[0])  # no token, no cookie
            stopped = _json(await c.call_tool("kitaru_stop_local_server", {}))["item"]
            bad = await c.call_tool("kitaru_start_local_server", {"port": 70000})
            return started, again, stopped, {"refused": refused.status_code,
                                             "bad": bad.content[0].text}  # fmt: skip

    started, again, stopped, rest = asyncio.run(session())
    assert started["mode"] == "local" and started["action"] == "started"
    assert started["url"].startswith("http://127.0.0.1:") and "?token=" in started["url"]
    assert again == {**started, "action": "already_running"}
    assert stopped == {"stopped": True, "url": started["url"].split("?", 1)[0]}
    assert "KitaruUsageError: port must be 0..65535, got 70000" in rest["bad"]
    assert rest["refused"] == 403  # the link's token is what lets one in
    with pytest.raises(httpx.ConnectError):
        httpx.get(started["url"], timeout=5)
