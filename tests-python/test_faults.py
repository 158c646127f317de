"""The fault suite: random SIGKILLs, corruption, read-only and full stores.

`KITARU_FAULT_KILLS=200 pytest tests-python/test_faults.py -s` runs a longer kill campaign.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import kitaru
import pytest
from conftest import cli_json, run_cli, write_script
from kitaru._kitaru import Store

TWENTY = """
import os, random, sys, time
from kitaru import checkpoint, flow

def mark(event):
    with open(os.environ["LEDGER"], "a") as f:
        f.write(f"{time.time_ns() // 1000} {os.getpid()} {event}\\n")

@checkpoint
def step(i: int) -> dict:
    mark(f"start {i}")
    time.sleep(random.random() * 0.01)
    return {"i": i, "payload": "x" * (i * 1000)}  # the last ones are blobs (> 16 KiB)

@flow
def twenty() -> list:
    return [step(i)["i"] for i in range(20)]

if __name__ == "__main__":
    if sys.argv[1] == "run":
        twenty.run()
    else:
        import kitaru
        kitaru.KitaruClient().executions.retry(sys.argv[2])
"""


def _only_execution(store: Path) -> str | None:
    root = store / "executions"
    ids = sorted(p.name for p in root.iterdir()) if root.exists() else []
    if ids and (root / ids[0] / "state" / "00000000").exists():
        return ids[0]
    return None


def _check_no_rerun(view: dict, ledger: list[str]) -> None:
    """No checkpoint body started after its result was committed."""
    starts: dict[int, list[int]] = {}
    for line in ledger:
        ts, _pid, _what, i = line.split()
        starts.setdefault(int(i), []).append(int(ts))
    for cp in view["checkpoints"]:
        i = int(cp["name"].rsplit("_", 1)[1]) - 1 if "_" in cp["name"] else 0
        committed_us = cp["attempts"][-1]["ended_at"] * 1e6
        late = [ts for ts in starts.get(i, []) if ts > committed_us + 1]
        assert not late, f"checkpoint {cp['name']} ran again after it finished"


def test_random_sigkills_never_lose_or_repeat_finished_work(tmp_path: Path) -> None:
    target = int(os.environ.get("KITARU_FAULT_KILLS", "50"))
    script = write_script(tmp_path, "twenty.py", TWENTY)
    rng = random.Random(int(os.environ.get("KITARU_FAULT_SEED", "7")))
    kills = executions = 0
    started = time.monotonic()
    while kills < target:
        executions += 1
        store = tmp_path / f"store-{executions}"
        ledger_path = tmp_path / f"ledger-{executions}.txt"
        env = {**os.environ, "KITARU_STORE": str(store), "LEDGER": str(ledger_path)}
        exec_id = None
        for _round in range(200):
            args = ["run"] if exec_id is None else ["retry", exec_id]
            proc = subprocess.Popen([sys.executable, str(script), *args], cwd=tmp_path, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
            try:
                proc.wait(timeout=rng.uniform(0.1, 0.4))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
            assert proc.stderr is not None
            err = proc.stderr.read().decode()
            proc.stderr.close()
            assert proc.returncode in (0, -signal.SIGKILL), err
            exec_id = exec_id or _only_execution(store)
            if exec_id is None:
                continue  # killed before the execution existed: start again
            view = Store(str(store)).inspect(exec_id, full=True)
            if view["status"] == "completed":
                break
            assert view["status"] == "failed" and view["failure"]["origin"] == "runner_died", view
        else:
            raise AssertionError("execution never completed")
        s = Store(str(store))
        tag, data = s.result(exec_id)  # type: ignore[misc]
        assert tag == "json"
        assert json.loads(data) == list(range(20))
        _check_no_rerun(view, ledger_path.read_text().splitlines())
        report = s.verify()
        assert report["findings"] == [], report
    elapsed = time.monotonic() - started
    print(f"\n{kills} SIGKILLs over {executions} executions in {elapsed:.0f} s: no torn record, "
          "no finished checkpoint re-run, every result equal to an uninterrupted run's")  # fmt: skip


def _completed_execution(tmp_path: Path) -> tuple[str, Path]:
    script = write_script(tmp_path, "twenty.py", TWENTY)
    env = {**os.environ, "LEDGER": str(tmp_path / "ledger.txt")}
    subprocess.run([sys.executable, str(script), "run"], cwd=tmp_path, env=env, check=True)
    store = Path(os.environ["KITARU_STORE"])
    exec_id = _only_execution(store)
    assert exec_id is not None
    return exec_id, store


def test_verify_reports_flipped_bytes_and_missing_blobs(tmp_path: Path) -> None:
    exec_id, store = _completed_execution(tmp_path)
    ok = cli_json("store", "verify")["item"]
    assert ok["findings"] == [] and ok["executions"] == 1 and ok["blobs"] >= 1
    blob = next(p for p in (store / "blobs").rglob("*") if p.is_file())
    blob.unlink()
    proc = run_cli("store", "verify", "-o", "json")
    assert proc.returncode == 1
    findings = json.loads(proc.stdout)["item"]["findings"]
    assert [f["kind"] for f in findings] == ["dangling"] and blob.name in findings[0]["detail"], (
        findings
    )
    segment = store / "executions" / exec_id / "seg" / "00000000"
    data = bytearray(segment.read_bytes())
    data[40] ^= 0x10  # inside the first checkpoint record
    segment.write_bytes(bytes(data))
    proc = run_cli("store", "verify", "-o", "json")
    assert proc.returncode == 1
    findings = json.loads(proc.stdout)["item"]["findings"]
    assert any(f["kind"] == "corrupt" and f["key"].endswith("/seg/00000000") for f in findings), (
        findings
    )
    # reading the execution names the corrupt record instead of returning a wrong value
    with pytest.raises(
        kitaru.errors.KitaruCorruptionError, match=f"executions/{exec_id}/seg/00000000"
    ):
        kitaru.KitaruClient().executions.get(exec_id)


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip()})")


def test_full_store_is_a_clear_error_and_keeps_what_was_stored(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    _mount_tmpfs(mnt, "256k")
    try:
        env = {**os.environ, "KITARU_STORE": str(mnt / "store")}
        script = write_script(tmp_path, "fill.py", """
            import json, random
            from kitaru import checkpoint, flow

            @checkpoint
            def chunk(i: int) -> bytes:
                return random.Random(i).randbytes(40_000)  # incompressible: fills the disk

            @flow
            def fill(n: int) -> int:
                return sum(len(chunk(i)) for i in range(n))

            if __name__ == "__main__":
                h = fill.run(50)
                print(json.dumps({"exec_id": h.exec_id, "status": str(h.status)}))
        """)  # fmt: skip
        out = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        store = Store(str(mnt / "store"))
        exec_id = _only_execution(mnt / "store")
        assert exec_id is not None
        view = store.inspect(exec_id, full=True)
        if out.returncode == 0:  # the failure itself still fit on the disk: it is recorded
            assert view["status"] == "failed" and view["failure"]["origin"] == "backend", view[
                "failure"
            ]
            message = view["failure"]["message"]
        else:
            message = out.stderr
        assert "the disk is full" in message and "nothing stored earlier was lost" in message, (
            message
        )
        # everything stored before the disk filled up is intact and readable
        assert len(view["checkpoints"]) >= 3
        first = store.checkpoint_output(exec_id, "chunk")
        assert first is not None and first[1] == random.Random(0).randbytes(40_000)
        assert store.verify()["findings"] == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_read_only_store_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    mnt = tmp_path / "ro"
    _mount_tmpfs(mnt, "8m")
    try:
        env = {
            **os.environ,
            "KITARU_STORE": str(mnt / "store"),
            "LEDGER": str(tmp_path / "ledger.txt"),
        }
        script = write_script(tmp_path, "twenty.py", TWENTY)
        subprocess.run([sys.executable, str(script), "run"], cwd=tmp_path, env=env, check=True)
        before = sorted(str(p) for p in (mnt / "store").rglob("*"))
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        out = subprocess.run([sys.executable, str(script), "run"], cwd=tmp_path, env=env, capture_output=True,
                             text=True)  # fmt: skip
        assert out.returncode != 0
        assert "not writable" in out.stderr or "Read-only file system" in out.stderr, out.stderr
        # reading still works, and nothing changed
        listing = cli_json("executions", "list", env={"KITARU_STORE": str(mnt / "store")})
        assert listing["count"] == 1 and listing["items"][0]["status"] == "completed"
        assert sorted(str(p) for p in (mnt / "store").rglob("*")) == before
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_missing_or_unusable_store_locations(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    proc = run_cli("executions", "list", env={"KITARU_STORE": str(blocker / "store")})
    assert proc.returncode == 1 and "cannot use" in proc.stderr and str(blocker) in proc.stderr
    proc = run_cli("executions", "list", env={"KITARU_STORE": "ftp://host/prefix"})
    assert proc.returncode == 1 and "ftp://" in proc.stderr and "does not support" in proc.stderr
    assert "s3://bucket/prefix" in proc.stderr  # names what is supported
    # a store directory that does not exist yet is created on first use
    fresh = tmp_path / "new" / "store"
    assert cli_json("executions", "list", env={"KITARU_STORE": str(fresh)})["count"] == 0
    assert fresh.is_dir()
    shutil.rmtree(tmp_path / "new")


FAN = """
import contextvars, os, random, sys, threading, time
from kitaru import checkpoint, flow

def mark(event):
    with open(os.environ["LEDGER"], "a") as f:
        f.write(f"{time.time_ns() // 1000} {os.getpid()} {event}\\n")

@checkpoint
def tool(i: int) -> dict:
    mark(f"start {i}")
    time.sleep(random.random() * 0.12)
    return {"i": i, "payload": f"result of {i} " * (i * 150)}  # the last ones are blobs

@flow
def fan() -> list:
    # Agent-style: tools run in threads the framework starts (with the flow's context),
    # in an order that changes from run to run.
    out = {}
    def worker(ids):
        for i in ids:
            r = tool(i)
            assert r["i"] == i, f"call {i} got the result of call {r['i']}"
            out[i] = r["i"]
    ids = list(range(16))
    random.shuffle(ids)
    threads = [threading.Thread(target=contextvars.copy_context().run, args=(worker, ids[k::4]))
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [out[i] for i in range(16)]

if __name__ == "__main__":
    if sys.argv[1] == "run":
        fan.run()
    else:
        import kitaru
        kitaru.KitaruClient().executions.retry(sys.argv[2])
"""


def test_kills_and_stalls_past_the_lease_with_thread_fan_out(tmp_path: Path) -> None:
    """SIGKILLs and SIGSTOP/SIGCONT stalls longer than the lease, while another process
    takes over, over flows whose checkpoints run in threads: every result right, nothing
    a stalled runner wrote after the takeover counted, the store verifies clean.
    `KITARU_FAULT_EVENTS=100` runs a longer campaign."""
    target = int(os.environ.get("KITARU_FAULT_EVENTS", "10"))
    script = write_script(tmp_path, "fan.py", FAN)
    rng = random.Random(int(os.environ.get("KITARU_FAULT_SEED", "11")))
    kills = stalls = executions = 0
    started = time.monotonic()

    def spawn(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, str(script), *args], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    while kills + stalls < target:
        executions += 1
        store = tmp_path / f"fan-{executions}"
        ledger_path = tmp_path / f"fan-ledger-{executions}.txt"
        env = {**os.environ, "KITARU_STORE": str(store), "LEDGER": str(ledger_path),
               "KITARU_LEASE_TTL": "1"}  # fmt: skip
        exec_id = None
        stalled: list[subprocess.Popen[bytes]] = []
        woken: list[subprocess.Popen[bytes]] = []
        for _round in range(100):
            proc = spawn(env, *(["run"] if exec_id is None else ["retry", exec_id]))
            try:
                proc.wait(timeout=rng.uniform(0.2, 0.6))
            except subprocess.TimeoutExpired:
                if rng.random() < 0.5:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                else:
                    # A stall past the lease: another process takes over meanwhile, then
                    # the stalled one wakes up (and must stop without counting anything).
                    proc.send_signal(signal.SIGSTOP)
                    time.sleep(1.3)
                    stalls += 1
                    stalled.append(proc)
            exec_id = exec_id or _only_execution(store)
            if exec_id is None:
                continue
            if stalled and rng.random() < 0.7:
                waking = stalled.pop(0)
                waking.send_signal(signal.SIGCONT)
                woken.append(waking)
            view = Store(str(store)).inspect(exec_id, full=True)
            if view["status"] == "completed":
                break
            if view["status"] == "running":
                time.sleep(1.1)  # a stalled runner's lease lapses
                continue
            assert view["status"] == "failed", view
            assert view["failure"]["origin"] in ("runner_died", "runtime"), view["failure"]
        else:
            raise AssertionError("execution never completed")
        for p in stalled:
            p.send_signal(signal.SIGCONT)
        for p in stalled + woken:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        s = Store(str(store))
        _tag, data = s.result(exec_id)  # type: ignore[misc]
        assert json.loads(data) == list(range(16))
        report = s.verify()
        assert report["findings"] == [], report
        # Every counted output is the one computed for its call.
        for cp in s.inspect(exec_id, full=True)["checkpoints"]:
            out = s.checkpoint_output(exec_id, cp["call_id"])
            assert out is not None
            value = json.loads(out[1])
            assert value["payload"] == f"result of {value['i']} " * (value["i"] * 150)
    elapsed = time.monotonic() - started
    print(f"\n{kills} SIGKILLs and {stalls} stalls past the lease over {executions} executions "
          f"with threaded checkpoints in {elapsed:.0f} s: every result right, store clean")  # fmt: skip


def test_a_frozen_object_store_fails_within_the_stated_timeout() -> None:
    """A server that accepts connections and never answers: the command fails with an
    error naming the timeout setting, after about KITARU_STORE_TIMEOUT seconds (not the
    minutes of object_store's own retry defaults)."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)  # never answered
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    port = server.getsockname()[1]
    env = {
        "KITARU_STORE": "s3://frozen/prefix",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_REGION": "us-east-1",
        "KITARU_STORE_TIMEOUT": "3",
    }
    try:
        began = time.monotonic()
        proc = run_cli("executions", "list", env=env)
        elapsed = time.monotonic() - began
    finally:
        stop.set()
        t.join(5)
        for c in held:
            c.close()
        server.close()
    assert proc.returncode == 1, proc.stdout
    assert "KITARU_STORE_TIMEOUT" in proc.stderr, proc.stderr
    assert elapsed < 60, f"took {elapsed:.0f} s"


def test_a_start_on_a_full_disk_leaves_nothing_behind(tmp_path: Path) -> None:
    mnt = tmp_path / "tiny"
    _mount_tmpfs(mnt, "1m")
    try:
        env = {**os.environ, "KITARU_STORE": str(mnt / "store")}
        script = write_script(tmp_path, "start.py", """
            from kitaru import checkpoint, flow

            @flow
            def starts(x: int) -> int:
                return x

            if __name__ == "__main__":
                starts.run(1)
        """)  # fmt: skip
        assert (
            cli_json("executions", "list", env={"KITARU_STORE": str(mnt / "store")})["count"] == 0
        )
        filler = mnt / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"x" * 4096):
                pass
        except OSError:
            pass  # the disk is full now
        finally:
            os.close(fd)
        out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                             capture_output=True, text=True)  # fmt: skip
        assert out.returncode != 0 and "the disk is full" in out.stderr, out.stderr
        filler.unlink()
        report = Store(str(mnt / "store")).verify()
        assert report["findings"] == [] and report["executions"] == 0, report
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_uploads_a_killed_process_left_are_swept(tmp_path: Path) -> None:
    store_dir = tmp_path / "swept"
    Store(str(store_dir))
    staging = store_dir / "blobs" / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = staging / f"{dead.pid}-00aa#1"
    live = staging / f"{os.getpid()}-00bb#1"
    for p in (left, live):
        p.write_bytes(b"partial upload")
        os.utime(p, (time.time() - 3600, time.time() - 3600))
    Store(str(store_dir))  # opening the store sweeps
    assert not left.exists() and live.exists()
