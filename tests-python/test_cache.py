"""The cross-execution cache (Kitaru 0.4's ``cache=True``): a finished call of an earlier
execution of the same flow answers a call with the same checkpoint source and inputs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import kitaru
import pytest
from conftest import cli_json, run_cli
from kitaru import KitaruClient, checkpoint, flow, serde

RAN: list[str] = []


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    RAN.clear()
    monkeypatch.delenv("KITARU_CACHE", raising=False)


@checkpoint
def research(topic: str) -> str:
    RAN.append(f"research {topic}")
    return f"notes about {topic}"


@checkpoint(cache=False)
def send(text: str) -> str:
    RAN.append(f"send {text}")
    return f"sent {text}"


@checkpoint
def grow(turns: int) -> list[str]:
    RAN.append(f"grow {turns}")
    return [f"turn {i}: " + "x" * 2000 for i in range(turns)]


@flow
def pipeline(topic: str) -> str:
    return send(research(topic))


@flow
def conversation(n: int) -> int:
    # Outputs of one checkpoint that extend each other are stored as deltas.
    return sum(len(grow(t)) for t in range(1, n + 1))


@flow(cache=False)
def uncached(topic: str) -> str:
    return research(topic)


@flow
def other(topic: str) -> str:
    return research(topic)


FAIL: dict[str, bool] = {}


@checkpoint
def step(x: int) -> int:
    RAN.append(f"step {x}")
    return x * 10


@flow
def flaky(x: int) -> int:
    a = step(x)
    if FAIL.get("fail"):
        raise RuntimeError("crash after the cached call")
    return a + 1


@checkpoint(cache=True)
def always(x: int) -> int:
    RAN.append(f"always {x}")
    return x


@flow(cache=False)
def off(x: int) -> int:
    return always(x) + len(research("q"))


@checkpoint
def ask(q: str) -> str:
    return kitaru.llm(q, model="openai/gpt-4o-mini")


@flow
def asker(q: str) -> str:
    return ask(q) + "|" + kitaru.llm(q + "?", model="openai/gpt-4o-mini")


@flow
def one(q: str) -> str:
    return kitaru.llm(q, model="openai/gpt-4o-mini")


def _checkpoints(exec_id: str) -> dict[str, Any]:
    return {c.name: c for c in KitaruClient().executions.get(exec_id).checkpoints}


def test_a_second_run_with_equal_inputs_runs_no_cached_body() -> None:
    first = pipeline.run("rust")
    assert first.wait() == "sent notes about rust"
    assert RAN == ["research rust", "send notes about rust"]
    RAN.clear()
    second = pipeline.run("rust")
    assert second.wait() == "sent notes about rust"
    # research came from the first execution; send opted out and ran again
    assert RAN == ["send notes about rust"]
    cps = _checkpoints(second.exec_id)
    assert cps["research"].cached_from == f"{first.exec_id}/research"
    assert cps["research"].original_call_id == f"{first.exec_id}/research"
    assert cps["send"].cached_from is None
    # recorded in the second execution itself: its own output, readable like any other
    store = kitaru._kitaru.Store(os.environ["KITARU_STORE"])
    out = store.checkpoint_output(second.exec_id, "research")
    assert out is not None and serde.loads(out[0], out[1]) == "notes about rust"
    # the CLI says where it came from
    text = run_cli("executions", "get", second.exec_id, check=True).stdout
    assert f"Cached      research from {first.exec_id}/research" in text
    assert "cached" in text.split("research", 1)[1].splitlines()[0]


def test_changed_inputs_miss_and_cache_false_runs_everything() -> None:
    pipeline.run("rust").wait()
    RAN.clear()
    pipeline.run("python").wait()
    assert RAN == ["research python", "send notes about python"]
    RAN.clear()
    pipeline.run("rust", cache=False).wait()
    assert RAN == ["research rust", "send notes about rust"]
    RAN.clear()
    uncached.run("rust").wait()  # @flow(cache=False)
    assert RAN == ["research rust"]
    RAN.clear()
    kitaru.configure(cache=False)
    try:
        pipeline.run("rust").wait()
    finally:
        kitaru.configure(cache=None)
    assert RAN == ["research rust", "send notes about rust"]


def test_cache_env_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline.run("go").wait()
    RAN.clear()
    monkeypatch.setenv("KITARU_CACHE", "false")
    pipeline.run("go").wait()
    assert RAN == ["research go", "send notes about go"]


def test_another_flow_with_the_same_checkpoint_does_not_share_entries() -> None:
    pipeline.run("zig").wait()
    RAN.clear()
    other.run("zig").wait()
    assert RAN == ["research zig"]


def test_a_cached_execution_resumes_from_its_own_journal() -> None:
    """The cached call is recorded in the execution that used it: deleting every cache
    entry afterwards changes nothing for a retry of that execution."""
    FAIL["fail"] = False
    assert flaky.run(4).wait() == 41
    FAIL["fail"] = True
    second = flaky.run(4)
    with pytest.raises(kitaru.KitaruExecutionError):
        second.wait()
    assert RAN == ["step 4"]  # the second execution's call was answered by the cache
    assert cli_json("cache", "clear")["item"]["deleted"] >= 1
    FAIL["fail"] = False
    KitaruClient().executions.retry(second.exec_id)
    assert second.wait() == 41
    assert RAN == ["step 4"]
    assert _checkpoints(second.exec_id)["step"].cached_from is not None


def test_large_delta_outputs_are_read_back_through_their_execution() -> None:
    first = conversation.run(4)
    assert first.wait() == 10
    RAN.clear()
    second = conversation.run(4)
    assert second.wait() == 10
    assert RAN == []
    assert {c.cached_from for c in _checkpoints(second.exec_id).values()} == {
        f"{first.exec_id}/grow",
        f"{first.exec_id}/grow_2",
        f"{first.exec_id}/grow_3",
        f"{first.exec_id}/grow_4",
    }


def test_a_damaged_entry_is_reported_skipped_and_replaced(isolated_store: Path) -> None:
    """On a local disk a flow's entries are one append-only file: a damaged entry is
    skipped (the call runs), reported by `store verify` and `cache list`, and the entry
    the live call appends answers the next run. (An entry under another key, and damage on
    object stores: tests-rust/cache.rs.)"""
    pipeline.run("c").wait()
    (entry,) = cli_json("cache", "list")["items"]
    assert entry["key"].endswith(".log") and entry["flow_name"] == "pipeline"
    path = isolated_store / entry["key"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert run_cli("store", "verify").returncode == 1
    listed = cli_json("cache", "list")["items"]
    assert listed[0]["damaged"] and "checksum" in listed[0]["damaged"]
    RAN.clear()
    assert pipeline.run("c").wait() == "sent notes about c"
    assert RAN == ["research c", "send notes about c"]
    RAN.clear()
    assert pipeline.run("c").wait() == "sent notes about c"
    assert RAN == ["send notes about c"]


def test_a_replay_runs_live_from_its_frontier_unless_asked() -> None:
    src = pipeline.run("nim")
    src.wait()
    RAN.clear()
    pipeline.replay(src.exec_id, from_="research").wait()
    assert RAN == ["research nim", "send notes about nim"]
    RAN.clear()
    pipeline.replay(src.exec_id, from_="research", cache=True).wait()
    assert RAN == ["send notes about nim"]


def test_cache_list_and_clear_by_flow() -> None:
    pipeline.run("x").wait()
    conversation.run(2).wait()
    names = {e["flow_name"] for e in cli_json("cache", "list")["items"]}
    assert names == {"pipeline", "conversation"}
    assert cli_json("cache", "clear", "--flow", "conversation")["item"]["deleted"] == 2
    assert {e["flow_name"] for e in cli_json("cache", "list")["items"]} == {"pipeline"}
    RAN.clear()
    conversation.run(2).wait()
    assert RAN == ["grow 1", "grow 2"]


def test_checkpoint_cache_setting_is_checked() -> None:
    with pytest.raises(kitaru.KitaruUsageError, match="cache must be True, False or None"):
        checkpoint(cache="yes")  # type: ignore[arg-type]


def test_a_checkpoint_can_opt_in_when_the_flow_is_off() -> None:
    off.run(1).wait()
    off.run(1).wait()
    assert RAN == ["always 1", "research q", "research q"]


def test_model_calls_answered_by_the_cache_count_as_saved() -> None:
    os.environ["KITARU_LLM_MOCK_RESPONSE"] = "mocked answer"
    try:
        first = asker.run("why")
        assert first.wait() == "mocked answer|mocked answer"
        second = asker.run("why")
        assert second.wait() == "mocked answer|mocked answer"
    finally:
        del os.environ["KITARU_LLM_MOCK_RESPONSE"]
    e = KitaruClient().executions.get(second.exec_id)
    assert {c.name for c in e.checkpoints if c.cached_from} == {"ask", "llm_1"}
    assert e.llm_cost is not None and e.llm_cost.saved_calls == 2


def test_a_mocked_model_answer_never_answers_a_real_call(fake_llm: Any) -> None:
    """The model a call resolves to (and a mock's answer) is part of an llm() call's key."""
    from fake_llm import Reply

    os.environ["KITARU_LLM_MOCK_RESPONSE"] = "mocked"
    try:
        assert one.run("hi").wait() == "mocked"
    finally:
        del os.environ["KITARU_LLM_MOCK_RESPONSE"]
    for k, v in fake_llm.env().items():
        os.environ[k] = v
    try:
        fake_llm.queue(Reply(text="real"))
        assert one.run("hi").wait() == "real"
        assert one.run("hi").wait() == "real"  # now cached: no second request
        assert len(fake_llm.requests) == 1
    finally:
        for k in fake_llm.env():
            os.environ.pop(k, None)


# --- across processes: changed code busts the cache ------------------------------------

MODULE = textwrap.dedent(
    """
    import os
    from kitaru import checkpoint, flow

    @checkpoint
    def summarize(text: str) -> str:
        with open(os.environ["LEDGER"], "a") as f:
            f.write("summarize\\n")
        return BODY

    @flow
    def summarizer(text: str) -> str:
        return summarize(text)

    if __name__ == "__main__":
        print(summarizer.run("a long text").wait())
    """
)


def _run_module(tmp_path: Path, body: str) -> str:
    script = tmp_path / "summarizer.py"
    script.write_text(MODULE.replace("BODY", body))
    env = {**os.environ, "LEDGER": str(tmp_path / "ledger")}
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _ledger(tmp_path: Path) -> int:
    path = tmp_path / "ledger"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.both_stores
def test_across_processes_equal_code_hits_and_changed_code_misses(tmp_path: Path) -> None:
    assert _run_module(tmp_path, '"v1: " + text') == "v1: a long text"
    assert _ledger(tmp_path) == 1
    assert _run_module(tmp_path, '"v1: " + text') == "v1: a long text"
    assert _ledger(tmp_path) == 1  # answered by the cache: the body did not run
    assert _run_module(tmp_path, '"v2: " + text.upper()') == "v2: A LONG TEXT"
    assert _ledger(tmp_path) == 2  # the source changed: the body ran
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        entries = cli_json("cache", "list")["items"]
    assert len(entries) == 2 and all(e["damaged"] is None for e in entries)
