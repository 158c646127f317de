"""Object stores through real servers on 127.0.0.1 (SeaweedFS for S3, Azurite for Azure):
several "machines" sharing a bucket, request economy, refusal of unsafe backends, and
credentials kept out of errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import kitaru
import pytest
from azserver import AzureServer
from conftest import S3Server, cli_json, ledger, run_cli, write_script
from kitaru import _config, checkpoint, flow
from kitaru._kitaru import Store

AGENT = """
import json, os, time
import kitaru
from kitaru import checkpoint, flow

MACHINE = "@MACHINE@"  # which working copy of the code ran

def mark(event):
    with open(os.environ["LEDGER"], "a") as f:
        f.write(f"{event}@{MACHINE}\\n")

@checkpoint
def draft(topic: str) -> str:
    mark("draft")
    return f"Draft about {topic}"

@checkpoint
def publish(text: str) -> str:
    mark("publish")
    time.sleep(float(os.environ.get("SLOW", "0")))
    return f"PUBLISHED {text} on {MACHINE}"

@flow
def release(topic: str) -> str:
    text = draft(topic)
    if not kitaru.wait(name="approve", schema=bool, timeout=0.2):
        return "REJECTED"
    return publish(text)

if __name__ == "__main__":
    print(json.dumps({"exec_id": release.run("v1").exec_id}))
"""


def machine(
    root: Path, name: str, server: S3Server | AzureServer, prefix: str
) -> tuple[Path, dict[str, str]]:
    """A "machine": its own HOME, kitaru config and working copy of the code, one bucket."""
    home = root / name
    (home / "home").mkdir(parents=True)
    code = home / "code"
    code.mkdir()
    write_script(code, "agent.py", AGENT.replace("@MACHINE@", name))
    env = {
        **os.environ,
        **server.env(prefix),
        "HOME": str(home / "home"),
        "KITARU_CONFIG_PATH": str(home / "config"),
        "LEDGER": str(root / "ledger.txt"),
    }
    return code, env


def start_waiting(code: Path, env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "agent.py"], cwd=code, env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout.splitlines()[-1])["exec_id"])


CLOUDS = pytest.mark.parametrize("cloud", ["s3", "azure"])


def cloud_server(request: pytest.FixtureRequest, cloud: str) -> S3Server | AzureServer:
    server: S3Server | AzureServer = request.getfixturevalue(f"{cloud}_server")
    return server


@CLOUDS
def test_three_machines_wait_answer_resume(
    tmp_path: Path, request: pytest.FixtureRequest, cloud: str, s3_prefix: str
) -> None:
    server = cloud_server(request, cloud)
    (a, env_a), (b, env_b), (c, env_c) = (
        machine(tmp_path, m, server, s3_prefix) for m in ("a", "b", "c")
    )
    exec_id = start_waiting(a, env_a)  # machine A runs until the wait and exits
    assert cli_json("executions", "get", exec_id, cwd=b, env=env_b)["item"]["status"] == "waiting"
    run_cli("executions", "input", exec_id, "--value", "true", cwd=b, env=env_b, check=True)
    shutil.rmtree(a)  # machine A is gone: C resumes from its own working copy
    run_cli("executions", "resume", exec_id, cwd=c, env=env_c, check=True)

    item = cli_json("executions", "get", exec_id, cwd=b, env=env_b)["item"]
    assert item["status"] == "completed"
    assert ledger(tmp_path / "ledger.txt") == ["draft@a", "publish@c"]
    result = subprocess.run(
        [sys.executable, "-c", "import kitaru, json, sys; "
         f"print(json.dumps(kitaru.KitaruClient().executions.result({exec_id!r})))"],
        cwd=b, env=env_b, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(result.stdout) == "PUBLISHED Draft about v1 on c"
    verified = cli_json("store", "verify", cwd=c, env=env_c)["item"]
    assert verified["findings"] == [] and verified["executions"] == 1, verified
    # nothing was written outside the bucket on B or C
    assert not (tmp_path / "b" / "config" / "store").exists()
    assert not (tmp_path / "c" / "config" / "store").exists()


def test_machines_configured_by_a_stack_not_the_environment(
    tmp_path: Path, s3_server: S3Server, s3_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's walk-through: `kitaru stack create prod --artifact-store s3://...`, then
    plain commands. Only the credentials come from the environment; the bucket, endpoint
    and region come from each machine's stack."""
    for var in ("KITARU_STORE", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)  # run_cli starts from this environment
    machines = []
    for name in ("a", "b", "c"):
        code, env = machine(tmp_path, name, s3_server, s3_prefix)
        for var in ("KITARU_STORE", "AWS_ENDPOINT_URL", "AWS_REGION"):
            env.pop(var)
        run_cli(
            "stack", "create", "prod",
            "--artifact-store", f"s3://{s3_server.bucket}/{s3_prefix}",
            "--endpoint", s3_server.endpoint, "--allow-http", "--region", "us-east-1",
            cwd=code, env=env, check=True,
        )  # fmt: skip
        machines.append((code, env))
    (a, env_a), (b, env_b), (c, env_c) = machines
    exec_id = start_waiting(a, env_a)
    run_cli("executions", "input", exec_id, "--value", "true", cwd=b, env=env_b, check=True)
    (a / "agent.py").unlink()  # machine A's code is gone: C resumes from its own copy
    run_cli("executions", "resume", exec_id, cwd=c, env=env_c, check=True)
    item = cli_json("executions", "get", exec_id, cwd=b, env=env_b)["item"]
    assert item["status"] == "completed"
    assert item["stack_name"] == "prod"
    assert ledger(tmp_path / "ledger.txt") == ["draft@a", "publish@c"]
    status = cli_json("status", cwd=c, env=env_c)["item"]
    assert status["stack"] == "prod" and status["store"].startswith("s3://")
    for m in ("a", "b", "c"):  # every machine used the bucket, none its local default store
        assert not (tmp_path / m / "config" / "store").exists()


@CLOUDS
def test_racing_resumers_on_two_machines_run_once(
    tmp_path: Path, request: pytest.FixtureRequest, cloud: str, s3_prefix: str
) -> None:
    server = cloud_server(request, cloud)
    (a, env_a), (b, env_b), (c, env_c) = (
        machine(tmp_path, m, server, s3_prefix) for m in ("a", "b", "c")
    )
    exec_id = start_waiting(a, env_a)
    run_cli("executions", "input", exec_id, "--value", "true", cwd=a, env=env_a, check=True)
    shutil.rmtree(a)  # B and C each resume from their own working copy
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "kitaru.cli", "executions", "resume", exec_id],
            cwd=code,
            env={**env, "SLOW": "0.5"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for code, env in ((b, env_b), (c, env_c))
    ]
    outcomes = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    winners = [o for o in outcomes if o[0] == 0]
    assert len(winners) == 1, outcomes
    loser = next(o for o in outcomes if o[0] != 0)
    assert loser[0] == 1
    assert any(s in loser[2] for s in ("already being run by pid", "only waiting executions")), (
        loser[2]
    )
    marks = ledger(tmp_path / "ledger.txt")
    assert marks[0] == "draft@a" and len(marks) == 2 and marks[1] in ("publish@b", "publish@c")
    item = cli_json("executions", "get", exec_id, cwd=b, env=env_b)["item"]
    assert item["status"] == "completed"


# --- request economy -----------------------------------------------------------------


@checkpoint
def small(i: int) -> dict[str, int]:
    return {"i": i}


@checkpoint
def medium(i: int) -> str:
    return f"{i}:" + os.urandom(12_000).hex()  # 24 KB: a blob, not inline


@flow
def measured(n: int, big: bool) -> dict[str, int]:
    store = _config.get_store()
    store.reset_request_counts()
    for i in range(n):
        medium(i) if big else small(i)
    return store.request_counts()


@flow
def fails_after(n: int) -> None:
    for i in range(n):
        small(i)
    raise RuntimeError("stop here")


@pytest.mark.all_stores
@pytest.mark.parametrize("cache", [False, True], ids=["no-cache", "cache"])
def test_checkpoint_hot_path_costs_one_put_per_small_output(
    store_backend: str, cache: bool
) -> None:
    counts = measured.run(10, False, cache=cache).wait()
    # On a local disk each checkpoint boundary looks for a cancel or a takeover (one open
    # of a file that does not exist), so a cancel stops the flow before its next body;
    # object stores leave that to the heartbeat.
    gets = 10 if store_backend == "local" else 0
    if not cache:
        assert counts == {"put": 10, "get": gets, "head": 0, "list": 0, "delete": 0}
        return
    # With the cross-execution cache on, a call first looks for its entry (one GET, a miss
    # here; on a local disk a read of the flow's cache log) and leaves one once it finished
    # (one PUT: an append on a local disk; on an object store sent in the background, so
    # some may still be in flight when the body returns; the run's end waits for them).
    assert counts["get"] == gets + 10, counts
    assert 10 <= counts["put"] <= 20 and counts["head"] == counts["list"] == 0, counts
    if store_backend == "local":
        assert counts["put"] == 20, counts
    assert len(_config.get_store().cache_entries("measured")) == 10


@pytest.mark.both_stores
@pytest.mark.parametrize("cache", [False, True], ids=["no-cache", "cache"])
def test_blob_outputs_cost_two_puts_and_no_lookups(store_backend: str, cache: bool) -> None:
    counts = measured.run(5, True, cache=cache).wait()
    gets = 5 if store_backend == "local" else 0  # the boundary checks, as above
    if not cache:
        assert counts == {"put": 10, "get": gets, "head": 0, "list": 0, "delete": 0}
        return
    # the cache lookups and entries, as above
    assert counts["get"] == gets + 5 and 10 <= counts["put"] <= 15, counts
    assert counts["head"] == counts["list"] == counts["delete"] == 0, counts
    assert len(_config.get_store().cache_entries("measured")) == 5


@pytest.mark.all_stores
def test_resume_and_summary_list_the_execution_once(store_backend: str) -> None:
    flow_handle = fails_after.run(30)
    with pytest.raises(kitaru.KitaruExecutionError):
        flow_handle.wait()
    store = _config.get_store()

    store.reset_request_counts()
    store.inspect(flow_handle.exec_id, full=False)
    assert store.request_counts()["list"] == 1

    store.reset_request_counts()
    runner = store.claim(flow_handle.exec_id, "retry", 60_000)
    counts = store.request_counts()
    runner.release()
    # the claim's journal holds every finished call: each is answered from it
    ids = ["small"] + [f"small_{i}" for i in range(2, 31)]
    runner.new_pass()
    found = [runner.begin_call(i, "small", None, ordered=True, explicit=False, policy="rerun")
             for i in ids]  # fmt: skip
    assert [d.call_id for d in found if d.reuse] == ids
    # one listing, the records read concurrently, one put (the claim); then the index
    # entry moves from failed to running (one put, one delete)
    assert counts["list"] == 1 and counts["head"] == 0, counts
    assert counts["put"] == 2 and counts["delete"] == 1, counts
    if store_backend != "local":
        # the run ended, so its journal was packed: one GET instead of one per record
        assert counts["get"] == 1, counts


# --- safety and secrets --------------------------------------------------------------


def test_backend_without_conditional_writes_is_refused(s3_server: S3Server, s3_prefix: str) -> None:
    options = {**s3_server.options(), "conditional_put": "disabled"}
    with pytest.raises(kitaru.KitaruBackendError) as err:
        Store(f"s3://{s3_server.bucket}/{s3_prefix}", options=options)
    message = str(err.value)
    assert f"s3://{s3_server.bucket}/{s3_prefix}" in message
    assert "conditional writes" in message and "two processes" in message


def test_bad_secret_never_appears_in_errors(s3_server: S3Server, s3_prefix: str) -> None:
    secret = "WRONG-secret-Zq83xY"
    location = f"s3://{s3_server.bucket}/{s3_prefix}"
    with pytest.raises(kitaru.KitaruBackendError) as err:
        Store(location, options={**s3_server.options(), "secret_access_key": secret})
    message = str(err.value)
    assert location in message and ("403" in message or "Forbidden" in message), message
    assert secret not in message and secret not in repr(err.value)

    # an option that fails to parse does not echo its value either
    with pytest.raises(kitaru.KitaruUsageError) as err:
        Store(location, options={**s3_server.options(), "disable_bulk_delete": secret})
    assert "bool" in str(err.value), err.value
    assert secret not in str(err.value)

    # nor does a location that carries a signature or credentials
    for bad in (f"{location}?X-Amz-Signature={secret}", f"s3://key:{secret}@bucket/p"):
        with pytest.raises(kitaru.KitaruUsageError) as err:
            Store(bad)
        assert secret not in str(err.value)

    # the CLI, with the secret in the environment
    env = {**s3_server.env(s3_prefix), "AWS_SECRET_ACCESS_KEY": secret}
    proc = run_cli("executions", "list", env=env)
    assert proc.returncode == 1 and location in proc.stderr, proc.stderr
    assert secret not in proc.stderr + proc.stdout


def test_explicit_options_reach_the_bucket(s3_server: S3Server, s3_prefix: str) -> None:
    store = Store(f"s3://{s3_server.bucket}/{s3_prefix}", options=s3_server.options())
    assert store.url == f"s3://{s3_server.bucket}/{s3_prefix}"
    # a new store: read the marker (missing), create it, probe create-only (refused)
    assert store.request_counts() == {"get": 1, "put": 2, "head": 0, "list": 0, "delete": 0}
    assert store.keys("") == ["kitaru-store.json"]
    assert store.usage()[0] == 1  # only this prefix, not the whole (shared) bucket
    # the probe ran once in this process: opening again only reads the marker
    again = Store(f"s3://{s3_server.bucket}/{s3_prefix}", options=s3_server.options())
    assert again.request_counts() == {"get": 1, "put": 0, "head": 0, "list": 0, "delete": 0}


def test_kitaru_forks_with_an_s3_store(s3_server: S3Server, s3_prefix: str) -> None:
    """A store handle opened and used in the parent works in a forked child (which builds
    its own client and runtime) and in the parent afterwards. Runs in a fresh interpreter:
    the child must not inherit pytest's threads."""
    code = (
        "import os, sys, json\n"
        "from kitaru._kitaru import Store\n"
        f"s = Store({f's3://{s3_server.bucket}/{s3_prefix}'!r}, options={s3_server.options()!r})\n"
        "s.keys('')\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    ok = s.keys('') == ['kitaru-store.json']\n"
        "    os._exit(0 if ok else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "assert os.waitstatus_to_exitcode(status) == 0, status\n"
        "assert s.keys('') == ['kitaru-store.json']\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# --- content-defined chunking ------------------------------------------------------

BIG = os.urandom(400_000).hex()  # 800 KB of text


@checkpoint
def big_doc(extra: str) -> str:
    return BIG + extra


@flow
def save_doc(extra: str) -> int:
    return len(big_doc(extra))


@pytest.mark.parametrize("store_backend", ["s3", "azure"], indirect=True)
def test_large_values_share_chunks_across_executions(store_backend: str) -> None:
    store = _config.get_store()
    first = save_doc.run("")
    assert first.wait() == len(BIG)
    _, before = store.usage()
    second = save_doc.run("an edit at the end " * 200)
    assert second.wait() == len(BIG) + 3800
    _, after = store.usage()
    # the second value shares all but its last chunk or two with the first
    assert after - before < len(BIG) // 2, (before, after)
    # and reads back whole (chunks reassembled and verified), from a fresh handle
    fresh = Store(os.environ["KITARU_STORE"])
    _tag, data = fresh.checkpoint_output(second.exec_id, "big_doc") or ("", b"")
    assert len(data) >= len(BIG) + 3800 and BIG.encode() in data


def test_status_and_info_never_show_credentials_in_a_store_url() -> None:
    env = {"KITARU_STORE": "s3://AKIAEXAMPLE:sekr1t-Value-77@bucket/p?X-Amz-Signature=sig-88x"}
    for command in ("status", "info"):
        proc = run_cli(command, "-o", "json", env=env)
        shown = proc.stdout + proc.stderr
        assert "sekr1t-Value-77" not in shown and "sig-88x" not in shown, shown
        assert "bucket/p" in shown, shown
