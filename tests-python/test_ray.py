"""Flows and fan-outs on Ray (`runner="ray"`), against a real local Ray head (2 CPUs on
127.0.0.1, started here) with the store in the SeaweedFS bucket: `.map()` calls run as
Ray tasks on Ray's workers, a Ray worker killed with SIGKILL mid-map costs only its
task, a flow driver killed mid-run is continued by `retry` without re-running what
finished, image settings become the tasks' runtime environment, and `llm()` calls in a
Ray task reach the execution's ledger."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_json, run_cli, stored_files, write_script
from s3server import S3Server

S3_ONLY = pytest.mark.parametrize("store_backend", ["s3"], indirect=True)


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[str]:
    """A Ray head with 2 CPUs on this machine for this module, with token authentication
    (a fresh token, which the drivers get in `RAY_AUTH_TOKEN`); its address. Ray binds its
    services to the machine's address, not to loopback only, hence the token. Its nodes
    hold the bucket's credentials in their environment, as a cluster's machines would."""
    import secrets

    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent))
    assert ray_bin, "the `ray` command is not installed next to this Python (make dev-deps)"
    temp = tmp_path_factory.mktemp("ray")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KITARU_", "AWS_", "RAY_"))}
    env.update({k: v for k, v in s3_server.env("").items() if k.startswith("AWS_")})
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip
    env.update(auth)
    port = _free_port()
    started = subprocess.run(
        [ray_bin, "start", "--head", "--num-cpus", "2", "--node-ip-address", "127.0.0.1",
         "--port", str(port), "--include-dashboard", "false", "--disable-usage-stats",
         "--temp-dir", str(temp)],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    if started.returncode != 0:
        pytest.fail(f"ray start failed:\n{started.stdout}\n{started.stderr}")
    saved = {k: os.environ.get(k) for k in auth}
    os.environ.update(auth)  # for the drivers this module starts
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


AGENT = """
import json, os, sys, time
import kitaru
from kitaru import ImageSettings, checkpoint, flow

HERE = os.path.dirname(os.path.abspath(__file__))
LEDGER = os.path.join(HERE, "ledger.txt")


def mark(event):
    with open(LEDGER, "a") as f:
        f.write(event + "\\n")


@checkpoint
def work(i: int) -> dict:
    mark(f"start {i} {os.getpid()}")
    if i == int(os.environ.get("HANG_ITEM", "-1")) and not os.path.exists(LEDGER + ".hung"):
        open(LEDGER + ".hung", "w").close()
        mark(f"hang {i} {os.getpid()}")
        time.sleep(300)
    time.sleep(0.05)
    kitaru.log(item=i)
    mark(f"end {i}")
    return {"i": i, "square": i * i, "pid": os.getpid()}


@checkpoint
def summarize(rows: list) -> int:
    mark(f"summarize {os.getpid()}")
    if os.environ.get("HANG_SUMMARY") and not os.path.exists(LEDGER + ".hung"):
        open(LEDGER + ".hung", "w").close()
        mark(f"hang summary {os.getpid()}")
        time.sleep(300)
    return sum(r["square"] for r in rows)


def crawl(n: int) -> dict:
    rows = [f.result() for f in work.map(range(n))]
    return {"rows": [{"i": r["i"], "square": r["square"]} for r in rows],
            "total": summarize(rows), "pids": sorted({r["pid"] for r in rows}),
            "driver": os.getpid()}


@flow(runner="ray", image=ImageSettings(environment={
    "HANG_ITEM": "{{ HANG_ITEM }}", "HANG_SUMMARY": "{{ HANG_SUMMARY }}"}))
def crawl_ray(n: int) -> dict:
    return crawl(n)


@flow(runner="local")
def crawl_local(n: int) -> dict:
    return crawl(n)


if __name__ == "__main__":
    which, n = sys.argv[1], int(sys.argv[2])
    fn = crawl_ray if which == "ray" else crawl_local
    t0 = time.monotonic()
    handle = fn.run(n)
    print(json.dumps({"exec_id": handle.exec_id, "returned_after": time.monotonic() - t0,
                      "status_then": str(handle.status), "me": os.getpid()}), flush=True)
    print(json.dumps(handle.wait(timeout=240)), flush=True)
"""


def _env(ray_head: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "RAY_ADDRESS": ray_head, "KITARU_LEASE_TTL": "4", "KITARU_CACHE": "0",
            "HANG_ITEM": "-1", "HANG_SUMMARY": "", **extra}  # fmt: skip


def _run(tmp_path: Path, env: dict[str, str], *argv: str) -> tuple[dict[str, Any], Any]:
    proc = subprocess.run([sys.executable, "agent.py", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith(("{", "["))]
    return lines[0], lines[1]


@S3_ONLY
def test_map_runs_as_ray_tasks_and_equals_a_local_run(tmp_path: Path, ray_head: str) -> None:
    write_script(tmp_path, "agent.py", AGENT)
    env = _env(ray_head)
    info, result = _run(tmp_path, env, "ray", "50")
    _, local = _run(tmp_path, env, "local", "50")
    assert result["rows"] == local["rows"] and result["total"] == local["total"] == 40425
    # .run() came back with the execution started on the cluster, not finished
    assert info["status_then"] in ("running", "completed")
    # the driver and the tasks ran in Ray's worker processes, not in the caller
    assert info["me"] != result["driver"] and info["me"] not in result["pids"]
    assert result["driver"] not in result["pids"]
    view = cli_json("executions", "get", info["exec_id"], cwd=tmp_path, env=env)["item"]
    assert view["status"] == "completed"
    works = [c for c in view["checkpoints"] if c["name"].startswith("work")]
    assert len(works) == 50
    where = [c["metadata"]["ray"] for c in works]
    assert {w["pid"] for w in where} == set(result["pids"])
    assert len({w["node_id"] for w in where}) == 1 and all(w["task_id"] for w in where)
    assert sorted(c["metadata"]["item"] for c in works) == list(range(50))  # kitaru.log() in a task
    # the local run's calls have no Ray metadata and ran in the caller
    local_view = cli_json("executions", "list", "--flow", "crawl_local", cwd=tmp_path, env=env)
    local_id = local_view["items"][0]["exec_id"]
    local_get = cli_json("executions", "get", local_id, cwd=tmp_path, env=env)["item"]
    assert not [c for c in local_get["checkpoints"] if "ray" in (c["metadata"] or {})]
    assert local_get["frozen_execution_spec"]["runner"] == "local"
    assert view["frozen_execution_spec"]["runner"] == "ray"


@S3_ONLY
def test_a_killed_ray_worker_costs_only_its_task(tmp_path: Path, ray_head: str) -> None:
    write_script(tmp_path, "agent.py", AGENT)
    env = _env(ray_head, HANG_ITEM="30")
    proc = subprocess.Popen([sys.executable, "agent.py", "ray", "50"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    ledger = tmp_path / "ledger.txt"
    try:
        wait_for_line_prefix(ledger, "hang 30 ", proc)
        victim = int(
            next(line for line in _lines(ledger) if line.startswith("hang 30 ")).split()[2]
        )
        ended_before = {int(line.split()[1]) for line in _lines(ledger) if line.startswith("end ")}
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    result = json.loads(out.splitlines()[-1])
    assert result["total"] == 40425
    lines = _lines(ledger)
    starts = Counter(int(line.split()[1]) for line in lines if line.startswith("start "))
    ends = Counter(int(line.split()[1]) for line in lines if line.startswith("end "))
    assert ends == Counter(range(50))  # every item finished exactly once
    assert starts[30] == 2  # the killed task ran again, on another worker
    # no item that had finished before the kill ran again
    assert ended_before and all(starts[i] == 1 for i in ended_before)
    assert all(starts[i] == 1 for i in range(50) if i != 30)
    exec_id = json.loads(out.splitlines()[0])["exec_id"]
    view = cli_json("executions", "get", exec_id, cwd=tmp_path, env=env)["item"]
    assert view["status"] == "completed"
    assert not [e for e in view["events"] if e["event"] in ("retried", "resumed")]
    item30 = next(c for c in view["checkpoints"] if (c["metadata"] or {}).get("item") == 30)
    assert item30["metadata"]["ray"]["pid"] != victim  # its second run, on another worker
    assert len(item30["attempts"]) == 1  # Ray's re-run of a lost task is not a failed attempt


@S3_ONLY
def test_a_killed_flow_driver_is_continued_by_retry(tmp_path: Path, ray_head: str) -> None:
    write_script(tmp_path, "agent.py", AGENT)
    env = _env(ray_head, HANG_SUMMARY="1")
    proc = subprocess.Popen([sys.executable, "agent.py", "ray", "12"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    ledger = tmp_path / "ledger.txt"
    try:
        wait_for_line_prefix(ledger, "hang summary ", proc)
        driver = int(next(x for x in _lines(ledger) if x.startswith("hang summary ")).split()[2])
        os.kill(driver, signal.SIGKILL)  # the flow's driver: a Ray worker process
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0  # its handle's wait() saw the execution fail
    exec_id = cli_json("executions", "list", cwd=tmp_path, env=env)["items"][0]["exec_id"]
    view = cli_json("executions", "get", exec_id, cwd=tmp_path, env=env)["item"]
    assert view["status"] == "failed" and "runner_died" in json.dumps(view["failure"])
    # `retry` runs the driver here; the execution's recorded runner sends its calls to Ray
    retried = run_cli("executions", "retry", exec_id, cwd=tmp_path, env=env, check=True)
    assert "completed" in retried.stdout
    starts = Counter(int(x.split()[1]) for x in _lines(ledger) if x.startswith("start "))
    assert starts == Counter(range(12))  # the map's finished calls were not run again
    assert sum(1 for x in _lines(ledger) if x.startswith("summarize ")) == 2
    view = cli_json("executions", "get", exec_id, cwd=tmp_path, env=env)["item"]
    assert view["status"] == "completed"


def wait_for_line_prefix(path: Path, prefix: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not any(line.startswith(prefix) for line in _lines(path)):
        if proc.poll() is not None:
            raise AssertionError(f"the run ended first: {proc.communicate()}")
        assert time.monotonic() < deadline, _lines(path)
        time.sleep(0.05)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


ENV_AGENT = """
import os, sys
from kitaru import ImageSettings, checkpoint, flow
import kitaru


@checkpoint
def probe(i: int) -> dict:
    import shipped  # a module of the working directory shipped to the cluster
    return {"i": i, "greeting": os.environ.get("GREETING"), "shipped": shipped.VALUE,
            "token_set": bool(os.environ.get("API_TOKEN")), "pid": os.getpid()}


@checkpoint
def ask(topic: str) -> str:
    return kitaru.llm(f"Say something about {topic}", model="openai/gpt-4o-mini", name="say")


@flow(runner="ray", image=ImageSettings(
    environment={"GREETING": "hello from the image", "API_TOKEN": "{{ MY_TOKEN }}",
                 "OPENAI_API_KEY": "{{ OPENAI_API_KEY }}", "OPENAI_BASE_URL": "{{ OPENAI_BASE_URL }}"},
    build_context_root=os.path.join(os.path.dirname(os.path.abspath(__file__)), "ship")))
def shipped_flow(n: int) -> dict:
    probes = [f.result() for f in probe.map(range(n))]
    said = [f.result() for f in ask.map(["tides", "moons"])]
    return {"probes": probes, "said": said}


if __name__ == "__main__":
    h = shipped_flow.run(int(sys.argv[1]))
    print(h.exec_id)
    import json
    print(json.dumps(h.wait(timeout=240)))
"""


def test_image_settings_become_the_runtime_env_and_llm_costs_reach_the_ledger(
    tmp_path: Path, ray_head: str, fake_llm: Any
) -> None:
    write_script(tmp_path, "agent.py", ENV_AGENT)
    (tmp_path / "ship").mkdir()
    (tmp_path / "ship" / "shipped.py").write_text("VALUE = 'from the working dir'\n")
    secret = fake_llm.env()["OPENAI_API_KEY"]  # the server answers only with this key
    env = {**os.environ, "RAY_ADDRESS": ray_head, "MY_TOKEN": "tok-abc-secret-987",
           "OPENAI_API_KEY": secret, "OPENAI_BASE_URL": fake_llm.openai_base}  # fmt: skip
    proc = subprocess.run([sys.executable, "agent.py", "3"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    exec_id, result = proc.stdout.splitlines()[0], json.loads(proc.stdout.splitlines()[-1])
    assert [p["greeting"] for p in result["probes"]] == ["hello from the image"] * 3
    assert all(p["shipped"] == "from the working dir" and p["token_set"] for p in result["probes"])
    assert len(result["said"]) == 2 and all(isinstance(s, str) and s for s in result["said"])
    view = cli_json("executions", "get", exec_id, cwd=tmp_path, env=env)["item"]
    asks = [c for c in view["checkpoints"] if c["name"].startswith("ask")]
    assert len(asks) == 2 and all("say" in c["metadata"]["llm_calls"] for c in asks)
    # the model calls made on Ray are in the execution's ledger, with their cost
    assert len(view["llm_calls"]) == 2
    assert all(c.get("cost_usd") for c in view["llm_calls"]) and view["llm_cost"]["cost_usd"] > 0
    # the secrets passed by reference reached the tasks but never the store
    stored = b"".join(data for _, data in stored_files(tmp_path / "store"))
    assert secret.encode() not in stored and b"tok-abc-secret-987" not in stored
    assert b"{{ MY_TOKEN }}" in stored  # the reference is what the execution records


def test_runner_choice_is_recorded_and_checked(tmp_path: Path) -> None:
    import kitaru
    from kitaru import flow
    from kitaru.errors import KitaruUsageError

    with pytest.raises(KitaruUsageError, match=r"Unknown runner 'spark'.*local, ray"):
        flow(runner="spark")
    with pytest.raises(KitaruUsageError, match="Unknown runner"):
        kitaru.configure(runner="dask")
    with pytest.raises(KitaruUsageError, match="renamed"):
        os.environ["KITARU_RUNNER"] = "ray"  # Kitaru 0.4's old name of the stack stays refused
        try:
            kitaru.configure(cache=None)
            from kitaru.stacks import execution_defaults

            execution_defaults()
        finally:
            del os.environ["KITARU_RUNNER"]
    proc = run_cli("stack", "create", "cluster", "--artifact-store", str(tmp_path / "s"),
                   "--runner", "ray", "--no-activate", "-o", "json", check=True)  # fmt: skip
    assert json.loads(proc.stdout)["item"]["runner"] == "ray"
    bad = run_cli("stack", "create", "c2", "--runner", "spark")
    assert bad.returncode != 0 and "invalid choice" in bad.stderr


RECORDED = """
import json, sys
import kitaru
from kitaru import flow, KitaruClient

@flow
def plain(x: int) -> int:
    return x

@flow(runner="local")
def pinned(x: int) -> int:
    return x

if __name__ == "__main__":
    out = {}
    kitaru.configure(runner=None)
    out["default"] = plain.run(1).exec_id
    kitaru.configure(runner="local")
    out["configured"] = plain.run(1).exec_id
    out["flow_wins"] = pinned.run(1).exec_id
    print(json.dumps({k: KitaruClient().executions.get(v).frozen_execution_spec.get("runner")
                      for k, v in out.items()}))
    print("ray" in sys.modules)
"""


def test_local_runs_record_their_runner_and_never_import_ray(tmp_path: Path) -> None:
    write_script(tmp_path, "rec.py", RECORDED)
    proc = subprocess.run([sys.executable, "rec.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()[:2]
    assert json.loads(first) == {"default": "local", "configured": "local", "flow_wins": "local"}
    assert second == "False"


def test_runtime_env_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    from kitaru import ImageSettings
    from kitaru._ray import runtime_env

    monkeypatch.setenv("SOURCE_TOKEN", "abc")
    settings = ImageSettings(requirements=["httpx>=0.27", "kitaru[ray]"],
                             environment={"MODE": "batch", "API_TOKEN": "{{ SOURCE_TOKEN }}"},
                             build_context_root="/srv/app")  # fmt: skip
    assert runtime_env(settings) == {"pip": ["httpx>=0.27"],
                                     "env_vars": {"MODE": "batch", "API_TOKEN": "abc"},
                                     "working_dir": "/srv/app"}  # fmt: skip
    # what a retry has: the recorded settings, where a literal secret became <redacted>
    recorded = ImageSettings(environment={"API_KEY": "literal", "MODE": "x"}).recorded()
    with pytest.warns(RuntimeWarning, match="API_KEY was a literal secret"):
        assert runtime_env(recorded) == {"env_vars": {"MODE": "x"}}
    with pytest.warns(RuntimeWarning, match="base_image.*no effect on Ray"):
        assert runtime_env(ImageSettings(base_image="python:3.12")) is None
    assert runtime_env(None) is None


def test_memory_store_is_refused_for_ray() -> None:
    from kitaru._ray import check_store
    from kitaru.errors import KitaruUsageError

    with pytest.raises(KitaruUsageError, match="memory:// lives in one process"):
        check_store("memory://x")


LOADED = """
from kitaru import flow

@flow
def f() -> int:
    return 1

f.run()  # at the top level: loading this script to resume would start another execution
"""


def test_a_script_that_starts_flows_when_loaded_is_refused_with_how_to_fix(tmp_path: Path) -> None:
    from kitaru import _entry
    from kitaru.errors import KitaruStateError
    from kitaru.flow import FlowDefinition

    path = write_script(tmp_path, "toplevel.py", LOADED)
    with pytest.raises(KitaruStateError, match='if __name__ == "__main__"'):
        _entry.load_flow({"module": "__main__", "qualname": "f", "script": str(path),
                          "cwd": str(tmp_path)}, FlowDefinition)  # fmt: skip
    assert _entry.loading_script() is None
