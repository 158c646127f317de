"""kitaru.wait(): suspension across processes, input, resume, abort, races and crashes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import kitaru
import pydantic
import pytest
from conftest import cli_json, ledger, race_cli, run_cli, write_script
from kitaru import KitaruClient, checkpoint, flow

RELEASE = """
import json, os, sys
import pydantic
import kitaru
from kitaru import checkpoint, flow

def mark(event):
    with open(os.environ["LEDGER"], "a") as f:
        f.write(event + "\\n")

class ReleaseDetails(pydantic.BaseModel):
    notes: str
    major_version: int

@checkpoint
def write_draft(topic: str) -> str:
    mark("write_draft")
    return f"Draft about {topic}."

@checkpoint
def publish(draft: str, details: ReleaseDetails) -> str:
    mark("publish")
    return f"PUBLISHED v{details.major_version}: {draft}\\nNotes: {details.notes}"

@flow
def release(topic: str) -> str:
    draft = write_draft(topic)
    timeout = float(os.environ.get("WAIT_TIMEOUT", "0"))
    approved = kitaru.wait(name="approve_draft", question="Approve draft?", schema=bool,
                           timeout=timeout, metadata={"topic": topic})
    if not approved:
        return "REJECTED"
    mark("approved")
    details = kitaru.wait(name="release_details", schema=ReleaseDetails, timeout=timeout)
    return publish(draft, details)

if __name__ == "__main__":
    handle = release.run("v1.0")
    print(json.dumps({"exec_id": handle.exec_id, "status": str(handle.status)}))
"""

FINAL = "PUBLISHED v2: Draft about v1.0.\nNotes: Bug fixes"
DETAILS = '{"notes": "Bug fixes", "major_version": 2}'


def start(tmp_path: Path, timeout: str = "0.2") -> tuple[dict[str, str], Path]:
    write_script(tmp_path, "release.py", RELEASE)
    env = {**os.environ, "LEDGER": str(tmp_path / "ledger.txt"), "WAIT_TIMEOUT": timeout}
    return env, tmp_path / "ledger.txt"


def run_release(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run([sys.executable, "release.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def status(exec_id: str, tmp_path: Path) -> dict:
    return cli_json("executions", "get", exec_id, cwd=tmp_path)["item"]


def result(exec_id: str, tmp_path: Path, env: dict[str, str]) -> object:
    code = f"import kitaru, json; print(json.dumps(kitaru.KitaruClient().executions.result({exec_id!r})))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.both_stores
def test_two_wait_release_flow_each_step_in_a_new_process(tmp_path: Path) -> None:
    env, ledger_path = start(tmp_path)
    first = run_release(tmp_path, env)
    exec_id = first["exec_id"]
    assert first["status"] == "waiting"

    listing = cli_json("executions", "list", cwd=tmp_path)
    assert listing["items"][0]["status"] == "waiting"
    assert listing["items"][0]["pending_wait"]["question"] == "Approve draft?"
    assert listing["items"][0]["pending_wait"]["metadata"] == {"topic": "v1.0"}
    text = run_cli("executions", "list", cwd=tmp_path, check=True).stdout
    assert "approve_draft: Approve draft?" in text

    bad = run_cli("executions", "input", exec_id, "--value", '"yes please"', cwd=tmp_path, env=env)
    assert bad.returncode == 1 and "expected boolean" in bad.stderr
    bad_json = run_cli(
        "executions", "input", exec_id, "--value", "{not json", cwd=tmp_path, env=env
    )
    assert bad_json.returncode == 1 and "--value must be JSON" in bad_json.stderr
    assert status(exec_id, tmp_path)["status"] == "waiting"  # nothing lost

    early = run_cli("executions", "resume", exec_id, cwd=tmp_path, env=env)
    assert (
        early.returncode == 1
        and "approve_draft" in early.stderr
        and "kitaru executions input" in early.stderr
    )

    run_cli("executions", "input", exec_id, "--value", "true", cwd=tmp_path, env=env, check=True)
    resumed = run_cli("executions", "resume", exec_id, cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    item = status(exec_id, tmp_path)
    assert item["status"] == "waiting"
    assert [w["name"] for w in item["pending_waits"]] == ["release_details"]

    bad = run_cli(
        "executions", "input", exec_id, "--value", '{"notes": "x"}', cwd=tmp_path, env=env
    )
    assert bad.returncode == 1 and "major_version" in bad.stderr
    run_cli("executions", "input", exec_id, "--value", DETAILS, cwd=tmp_path, env=env, check=True)
    run_cli("executions", "resume", exec_id, cwd=tmp_path, env=env, check=True)

    item = status(exec_id, tmp_path)
    assert item["status"] == "completed"
    assert result(exec_id, tmp_path, env) == FINAL
    # checkpoint bodies ran once; the flow body (which marks "approved") re-runs on each resume
    assert ledger(ledger_path) == ["write_draft", "approved", "approved", "publish"]
    answers = {w["name"]: w["status"] for w in item["waits"]}
    assert answers == {"approve_draft": "answered", "release_details": "answered"}


@pytest.mark.both_stores
def test_answer_while_polling_continues_in_the_same_process(tmp_path: Path) -> None:
    env, ledger_path = start(tmp_path, timeout="60")
    proc = subprocess.Popen(
        [sys.executable, "release.py"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        exec_id = _wait_for_status(tmp_path, "waiting")
        assert (
            status(exec_id, tmp_path)["holder"] == f"pid {proc.pid} on host {os.uname().nodename}"
        )
        client = KitaruClient()
        told = run_cli("executions", "input", exec_id, "--wait", "approve_draft",
                       "--value", "true", cwd=tmp_path, env=env, check=True).stdout  # fmt: skip
        # the polling process continues by itself: `resume` would be refused (it holds the lease)
        assert "continues it" in told and "resume" not in told, told
        _wait_for(
            lambda: (
                [w["name"] for w in status(exec_id, tmp_path)["pending_waits"]]
                == ["release_details"]
            )
        )
        client.executions.input(exec_id, value={"notes": "Bug fixes", "major_version": 2})
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert json.loads(out.strip().splitlines()[-1])["status"] == "completed"
    assert result(exec_id, tmp_path, env) == FINAL
    assert ledger(ledger_path) == ["write_draft", "approved", "publish"]
    # one run, one process: no resume was needed
    assert [e["event"] for e in status(exec_id, tmp_path)["events"]] == ["started", "completed"]


@pytest.mark.both_stores
def test_abort_cancels_and_resume_of_a_non_waiting_execution_is_refused(tmp_path: Path) -> None:
    env, ledger_path = start(tmp_path)
    exec_id = run_release(tmp_path, env)["exec_id"]
    out = cli_json("executions", "input", exec_id, "--abort", cwd=tmp_path)
    assert out["item"]["status"] == "cancelled"
    refused = run_cli("executions", "resume", exec_id, cwd=tmp_path, env=env)
    assert refused.returncode == 1 and "cancelled" in refused.stderr
    with pytest.raises(kitaru.KitaruStateError, match="only waiting executions can be resumed"):
        KitaruClient().executions.resume(exec_id)
    with pytest.raises(kitaru.KitaruStateError, match="no pending wait"):
        KitaruClient().executions.input(exec_id, value=True)
    assert ledger(ledger_path) == ["write_draft"]


@pytest.mark.both_stores
def test_racing_resumers_run_the_execution_once(tmp_path: Path) -> None:
    env, ledger_path = start(tmp_path)
    exec_id = run_release(tmp_path, env)["exec_id"]
    run_cli("executions", "input", exec_id, "--value", "true", cwd=tmp_path, env=env, check=True)
    env["WAIT_TIMEOUT"] = "1.5"  # the winner holds the lease while it polls the second wait
    outcomes = race_cli(6, "executions", "resume", exec_id, cwd=tmp_path, env=env)
    winners = [o for o in outcomes if o[0] == 0]
    assert len(winners) == 1, outcomes
    for code, _out, err in outcomes:
        if code != 0:
            assert code == 1
            assert any(
                s in err
                for s in ("already being run by pid", "waiting for input on release_details")
            ), err
    assert ledger(ledger_path) == ["write_draft", "approved"]
    assert status(exec_id, tmp_path)["status"] == "waiting"


@pytest.mark.both_stores
def test_sigkill_while_polling_then_input_and_resume(tmp_path: Path) -> None:
    env, ledger_path = start(tmp_path, timeout="60")
    proc = subprocess.Popen(
        [sys.executable, "release.py"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL
    )
    try:
        exec_id = _wait_for_status(tmp_path, "waiting")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    item = status(exec_id, tmp_path)
    assert item["status"] == "waiting" and item["pending_waits"][0]["name"] == "approve_draft"
    refused = run_cli("executions", "retry", exec_id, cwd=tmp_path, env=env)
    assert refused.returncode == 1 and "waiting for input on approve_draft" in refused.stderr
    told = run_cli("executions", "input", exec_id, "--value", "true", cwd=tmp_path, env=env,
                   check=True).stdout  # fmt: skip
    assert f"kitaru executions resume {exec_id}" in told, told  # no runner left: resume it
    env["WAIT_TIMEOUT"] = "0.2"
    run_cli("executions", "resume", exec_id, cwd=tmp_path, env=env, check=True)
    run_cli("executions", "input", exec_id, "--value", DETAILS, cwd=tmp_path, env=env, check=True)
    run_cli("executions", "resume", exec_id, cwd=tmp_path, env=env, check=True)
    assert status(exec_id, tmp_path)["status"] == "completed"
    assert result(exec_id, tmp_path, env) == FINAL
    assert ledger(ledger_path) == ["write_draft", "approved", "approved", "publish"]


def _wait_for(pred: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition never became true")


def _wait_for_status(tmp_path: Path, wanted: str) -> str:
    found: list[str] = []

    def ready() -> bool:
        items = cli_json("executions", "list", cwd=tmp_path)["items"]
        if items and items[0]["status"] == wanted:
            found.append(items[0]["exec_id"])
            return True
        return False

    _wait_for(ready)
    return found[0]


# --- in-process API ------------------------------------------------------------------


class Choice(pydantic.BaseModel):
    option: str
    weight: float = 1.0


@checkpoint
def inner_wait() -> object:
    return kitaru.wait(schema=bool)


@flow
def wait_in_checkpoint() -> object:
    return inner_wait()


@flow
def gate_then_typed() -> object:
    kitaru.wait(timeout=0)  # a continue/abort gate: wait_1
    choice = kitaru.wait(schema=Choice, question="Which?", timeout=0)  # wait_2
    return choice


@flow
def duplicate_names() -> None:
    kitaru.wait(name="same", timeout=0)


def test_wait_outside_a_flow_or_in_a_checkpoint_is_a_context_error() -> None:
    with pytest.raises(kitaru.KitaruContextError, match="inside a @flow"):
        kitaru.wait()
    with pytest.raises(kitaru.KitaruExecutionError, match="cannot be called inside a @checkpoint"):
        wait_in_checkpoint.run().wait()


@pytest.mark.both_stores
def test_default_names_gate_and_typed_answer_in_process() -> None:
    handle = gate_then_typed.run()
    assert handle.status == "waiting"
    with pytest.raises(kitaru.KitaruStateError, match=f"kitaru executions input {handle.exec_id}"):
        handle.wait()
    client = KitaruClient()
    assert [w.name for w in client.executions.pending_waits(handle.exec_id)] == ["wait_1"]
    with pytest.raises(kitaru.KitaruWaitValidationError, match="continue/abort gate"):
        client.executions.input(handle.exec_id, value=True)
    client.executions.input(handle.exec_id, wait="wait_1", value=None)
    client.executions.resume(handle.exec_id)
    pending = client.executions.pending_waits(handle.exec_id)
    assert [(w.name, w.question) for w in pending] == [("wait_2", "Which?")]
    assert pending[0].schema is not None and pending[0].schema["required"] == ["option"]
    with pytest.raises(kitaru.KitaruWaitValidationError):
        client.executions.input(
            handle.exec_id, wait=pending[0].wait_id, value={"option": "a", "weight": "heavy"}
        )
    client.executions.input(handle.exec_id, wait=pending[0].wait_id, value={"option": "a"})
    with pytest.raises(kitaru.KitaruStateError, match="no pending wait"):
        client.executions.input(handle.exec_id, wait="wait_2", value={"option": "b"})
    client.executions.resume(handle.exec_id)
    assert handle.wait() == Choice(option="a", weight=1.0)


def test_logs_are_captured_per_checkpoint_and_flow_body() -> None:
    handle = chatty.run()
    assert handle.wait() == 3
    logs = KitaruClient().executions.logs(handle.exec_id)
    got = [(e.checkpoint_name, e.source, e.message) for e in logs]
    assert (None, "stdout", "starting") in got
    assert ("talk", "stdout", "hello from talk") in got
    assert ("talk", "stderr", "a warning line") in got
    assert ("talk", "logging", "logged 3") in got
    only = KitaruClient().executions.logs(handle.exec_id, checkpoint="talk")
    assert all(e.checkpoint_name == "talk" for e in only) and len(only) == 3
    runner = KitaruClient().executions.logs(handle.exec_id, source="runner")
    assert [e.message for e in runner] == ["starting", "done"]
    cli = run_cli("executions", "logs", handle.exec_id, "--checkpoint", "talk", check=True).stdout
    assert "[talk] hello from talk" in cli


@checkpoint
def talk(n: int) -> int:
    import logging

    print("hello from talk")
    print("a warning line", file=sys.stderr)
    logging.getLogger("agent").warning("logged %d", n)
    return n


@flow
def chatty() -> int:
    print("starting")
    n = talk(3)
    print("done")
    return n


def test_duplicate_and_bad_wait_names() -> None:
    assert duplicate_names.run().status == "waiting"

    @flow
    def twice() -> None: ...

    with pytest.raises(kitaru.KitaruUsageError, match="timeout"):
        _call_wait_with(timeout=-1)


def _call_wait_with(**kwargs: object) -> None:
    from kitaru._context import FlowRun, current_flow

    class FakeRunner:
        exec_id = "x"

        def new_pass(self) -> int:
            return 1

    token = current_flow.set(FlowRun(FakeRunner(), "f", "reuse"))  # type: ignore[arg-type]
    try:
        kitaru.wait(**kwargs)  # type: ignore[arg-type]
    finally:
        current_flow.reset(token)


@pytest.mark.both_stores
def test_abort_while_polling_stops_the_runner(tmp_path: Path) -> None:
    env, ledger_path = start(tmp_path, timeout="60")
    proc = subprocess.Popen(
        [sys.executable, "release.py"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        exec_id = _wait_for_status(tmp_path, "waiting")
        run_cli("executions", "input", exec_id, "--abort", cwd=tmp_path, env=env, check=True)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert json.loads(out.strip().splitlines()[-1])["status"] == "cancelled"
    item = status(exec_id, tmp_path)
    assert item["status"] == "cancelled" and item["waits"][0]["status"] == "aborted"
    assert ledger(ledger_path) == ["write_draft"]


def test_suspension_releases_the_lease(tmp_path: Path) -> None:
    env, _ = start(tmp_path)
    exec_id = run_release(tmp_path, env)["exec_id"]
    item = status(exec_id, tmp_path)
    assert item["holder"] is None
    assert [e["event"] for e in item["events"]] == ["started", "suspended"]
    assert not list((tmp_path / "store" / "executions" / exec_id).glob("lease/*"))


def test_prompt_on_a_terminal_answers_in_place(tmp_path: Path) -> None:
    import pty

    env, ledger_path = start(tmp_path, timeout="60")
    env.pop("CI", None)
    env["KITARU_STORE"] = str(tmp_path / "store")
    main, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "release.py"], cwd=tmp_path, env=env, stdin=secondary,
                            stdout=secondary, stderr=subprocess.PIPE)  # fmt: skip
    os.close(secondary)
    seen = b""

    def read_until(needle: bytes) -> None:
        """Read until `needle` appears after what earlier calls consumed."""
        nonlocal seen
        deadline = time.monotonic() + 60
        while needle not in seen:
            assert time.monotonic() < deadline, seen
            seen += os.read(main, 4096)
        seen = seen[seen.index(needle) + len(needle) :]

    try:
        read_until(b"Approve draft?")
        read_until(b"> ")
        os.write(main, b"not-a-bool\n")
        read_until(b"does not match its schema")
        os.write(main, b"true\n")
        read_until(b"major_version")
        read_until(b"> ")
        os.write(main, b'{"notes": "Bug fixes", "major_version": 2}\n')
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
        read_until(b'"status": "completed"')
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        os.close(main)
    assert ledger(ledger_path) == ["write_draft", "approved", "publish"]


@pytest.mark.both_stores
def test_cancel_while_polling_stops_the_runner_quietly(tmp_path: Path) -> None:
    env, ledger_path = start(tmp_path, timeout="60")
    env["KITARU_LEASE_TTL"] = "0.6"  # the runner notices within a heartbeat (0.2 s)
    proc = subprocess.Popen([sys.executable, "release.py"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        exec_id = _wait_for_status(tmp_path, "waiting")
        run_cli("executions", "cancel", exec_id, cwd=tmp_path, env=env, check=True)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["status"] == "cancelled"
    assert ledger(ledger_path) == ["write_draft"]


# --- async flows: the wait is awaited, the event loop keeps running ------------------

TICKS: list[float] = []


@kitaru.flow
async def async_approval() -> tuple[bool, int]:
    async def ticker() -> None:
        while True:
            TICKS.append(time.monotonic())
            await asyncio.sleep(0.05)

    task = asyncio.create_task(ticker())
    try:
        approved = await kitaru.wait(name="approve", schema=bool, timeout=30)
    finally:
        task.cancel()
    return approved, len(TICKS)


def test_an_async_flow_awaits_its_wait_and_other_tasks_keep_running() -> None:
    TICKS.clear()
    answered_at: list[float] = []

    def answer_later() -> None:
        client = kitaru.KitaruClient()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            waiting = client.executions.list(status="running") + client.executions.list(
                status="waiting"
            )
            if waiting and waiting[0].pending_wait is not None:
                time.sleep(0.5)  # the flow is polling now: give the loop time to tick
                answered_at.append(time.monotonic())
                client.executions.input(waiting[0].exec_id, wait="approve", value=True)
                return
            time.sleep(0.05)

    helper = threading.Thread(target=answer_later)
    helper.start()
    handle = async_approval.run()
    helper.join(30)
    approved, _ticks = handle.wait()
    assert approved is True
    # The ticker ran all the while the flow waited (a blocking wait would freeze it).
    assert answered_at and sum(1 for t in TICKS if t < answered_at[0]) >= 5, TICKS


@kitaru.flow
async def async_gate() -> str:
    await kitaru.wait(name="go", timeout=0)
    return "went"


def test_an_async_flow_suspends_on_a_wait_and_resumes() -> None:
    handle = async_gate.run()
    assert handle.status == "waiting"
    client = kitaru.KitaruClient()
    client.executions.input(handle.exec_id, wait="go", value=None)
    client.executions.resume(handle.exec_id)
    assert handle.wait() == "went"


def test_a_json_schema_dict_is_checked_when_the_wait_is_made() -> None:
    from kitaru.errors import KitaruUsageError
    from kitaru.wait import describe_schema

    assert describe_schema({"type": "boolean"}) == ('{"type": "boolean"}', None)
    with pytest.raises(KitaruUsageError, match="not a usable JSON Schema"):
        describe_schema({"type": "nonsense"})
