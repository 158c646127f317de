from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import cli_json, run_cli, write_script

FLOWS = """
import os
from kitaru import checkpoint, flow

@checkpoint(type="llm_call")
def think(x: int) -> int:
    return x + 1

@flow
def ok(x: int) -> int:
    return think(x)

@flow
def broken() -> None:
    think(1)
    raise RuntimeError("broken on purpose")

if __name__ == "__main__":
    ok.run(1)
    ok.run(2)
    broken.run()
"""


def setup(tmp_path: Path) -> None:
    script = write_script(tmp_path, "flows.py", FLOWS)
    import subprocess
    import sys

    subprocess.run([sys.executable, str(script)], cwd=tmp_path, check=True, capture_output=True)


def test_list_get_and_json_envelopes(tmp_path: Path) -> None:
    setup(tmp_path)
    listing = cli_json("executions", "list")
    assert listing["command"] == "executions.list" and listing["count"] == 3
    items = listing["items"]
    assert [i["flow_name"] for i in items] == ["broken", "ok", "ok"]  # newest first
    for item in items:
        assert {"exec_id", "flow_name", "status", "started_at", "ended_at", "checkpoints"} <= set(
            item
        )
    assert cli_json("executions", "list", "--flow", "ok", "--limit", "1")["count"] == 1
    failed = cli_json("executions", "list", "--status", "FAILED")
    assert [i["flow_name"] for i in failed["items"]] == ["broken"]

    got = cli_json("executions", "get", items[1]["exec_id"])
    assert got["command"] == "executions.get"
    assert got["item"]["status"] == "completed"
    assert [c["name"] for c in got["item"]["checkpoints"]] == ["think"]
    assert got["item"]["checkpoints"][0]["checkpoint_type"] == "llm_call"

    text = run_cli("executions", "list", check=True).stdout
    assert "EXECUTION" in text and "broken" in text and "completed" in text
    text = run_cli("executions", "get", items[0]["exec_id"], check=True).stdout
    assert "broken on purpose" in text and f"kitaru executions retry {items[0]['exec_id']}" in text


def test_errors_go_to_stderr_with_exit_1(tmp_path: Path) -> None:
    missing = "01a20900-0000-7000-8000-000000000000"
    proc = run_cli("executions", "get", missing, "-o", "json")
    assert proc.returncode == 1 and proc.stdout == ""
    err = json.loads(proc.stderr)
    assert err["command"] == "executions.get"
    assert err["error"]["type"] == "KitaruExecutionNotFoundError"
    assert (
        missing in err["error"]["message"] and "kitaru executions list" in err["error"]["message"]
    )
    proc = run_cli("executions", "get", "not-an-id")
    assert proc.returncode == 1 and proc.stderr.startswith("Error: invalid execution id")
    proc = run_cli("executions", "list", "--status", "sleeping")
    assert proc.returncode == 1 and "Unknown status" in proc.stderr
    proc = run_cli("executions", "list", "--limit", "0")
    assert proc.returncode == 1 and "positive integer" in proc.stderr


def test_retry_of_completed_and_failed_executions(tmp_path: Path) -> None:
    setup(tmp_path)
    items = cli_json("executions", "list")["items"]
    broken_id, ok_id = items[0]["exec_id"], items[1]["exec_id"]
    proc = run_cli("executions", "retry", ok_id, cwd=tmp_path)
    assert proc.returncode == 1 and "only failed executions can be retried" in proc.stderr
    # the failed one runs again (and fails again, the bug is still there): exit 1, reused checkpoint
    proc = run_cli("executions", "retry", broken_id, "-o", "json", cwd=tmp_path)
    assert proc.returncode == 1
    item = json.loads(proc.stdout)["item"]
    assert item["status"] == "failed"
    assert [a["run"] for a in item["checkpoints"][0]["attempts"]] == [1]


def test_retry_reports_code_that_fails_to_load(tmp_path: Path) -> None:
    setup(tmp_path)
    broken_id = cli_json("executions", "list", "--flow", "broken")["items"][0]["exec_id"]
    (tmp_path / "flows.py").write_text("raise KeyError('API_KEY')\n")
    proc = run_cli("executions", "retry", broken_id, cwd=tmp_path)
    assert proc.returncode == 1
    assert "Loading the flow's code from" in proc.stderr and "KeyError" in proc.stderr
    # nothing changed: still failed, still retryable
    assert cli_json("executions", "get", broken_id)["item"]["status"] == "failed"


def test_cancel(tmp_path: Path) -> None:
    setup(tmp_path)
    broken_id = cli_json("executions", "list", "--flow", "broken")["items"][0]["exec_id"]
    out = cli_json("executions", "cancel", broken_id)
    assert out["item"]["status"] == "cancelled"
    proc = run_cli("executions", "cancel", broken_id)
    assert proc.returncode == 1 and "already finished" in proc.stderr


def test_store_dump_shows_every_record_as_json(tmp_path: Path) -> None:
    setup(tmp_path)
    exec_id = cli_json("executions", "list", "--flow", "ok", "--limit", "1")["items"][0]["exec_id"]
    dump = cli_json("store", "dump", exec_id)
    kinds = sorted(r["kind"] for r in dump["items"])
    # a local store appends checkpoint records to the run's segment, sealed as the run ends
    assert kinds == ["seal", "segment", "state", "state"]
    seg = next(r for r in dump["items"] if r["kind"] == "segment")
    assert seg["tail"] is None and len(seg["records"]) == 1
    cp = seg["records"][0]
    assert cp["format_version"] == 1 and cp["record"]["call_id"] == "think"
    one = cli_json("store", "dump", seg["key"])
    assert one["items"][0]["records"][0]["record"] == cp["record"]
    info = cli_json("store", "info")["item"]
    assert info["location"] == f"file://{os.environ['KITARU_STORE']}"
    proc = run_cli("store", "dump", f"executions/{exec_id}/cp/nope")
    assert proc.returncode == 1 and "No record" in proc.stderr


def test_version_help_and_no_args() -> None:
    assert run_cli("--version", check=True).stdout.startswith("kitaru ")
    assert "executions" in run_cli(check=True).stdout
    assert "retry" in run_cli("executions", "--help", check=True).stdout
