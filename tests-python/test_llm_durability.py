"""`kitaru.llm()` under crashes, with secrets, and against a budget: real processes, a real
HTTP provider on 127.0.0.1 (tests-python/fake_llm.py), SIGKILL and retry from the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import kitaru
import pytest
from conftest import cli_json, ledger, run_cli, stored_files, wait_for_line, write_script
from fake_llm import OPENAI_KEY, FakeLLM, Reply

AGENT = """
import os, sys, time
import kitaru
from kitaru import checkpoint, flow

LEDGER = os.environ["LEDGER"]

def mark(event):
    with open(LEDGER, "a") as f:
        f.write(event + "\\n")

@checkpoint
def tool(text: str) -> str:
    mark("tool " + text)
    if os.environ.get("HANG") == "tool":
        mark("hang tool")
        time.sleep(120)
    return text.upper()

@checkpoint
def summarize(text: str) -> str:
    # an inline call: recorded on this checkpoint
    return kitaru.llm("Summarize: " + text, model="fast", name="summary")

@flow(budget_usd=float(os.environ["BUDGET"]) if os.environ.get("BUDGET") else None)
def agent(topic: str) -> str:
    brief = kitaru.llm("Research: " + topic, model="fast", system="Be brief.")
    mark("got brief")
    mark("env has key: " + str("OPENAI_API_KEY" in os.environ))
    loud = tool(brief)
    second = kitaru.llm("Expand: " + loud, model="fast")
    mark("got second")
    summary = summarize(second)
    return summary

if __name__ == "__main__":
    handle = agent.run(sys.argv[1])
    print(handle.exec_id)
"""


@pytest.fixture
def provider(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> FakeLLM:
    """The fake provider, with this process's provider variables pointing at it."""
    for k, v in fake_llm.env().items():
        monkeypatch.setenv(k, v)
    return fake_llm


def _register_fast(env: dict[str, str], cwd: Path, *extra: str) -> None:
    run_cli(
        "model",
        "register",
        "fast",
        "--model",
        "openai/gpt-4o-mini",
        *extra,
        cwd=cwd,
        env=env,
        check=True,
    )


def _prompts(server: FakeLLM) -> list[str]:
    return [r.last_user_text for r in server.requests]


def _env(tmp_path: Path, server: FakeLLM, **extra: str) -> dict[str, str]:
    return {**os.environ, **server.env(), "LEDGER": str(tmp_path / "ledger.txt"), **extra}


def test_crash_after_llm_call_retry_does_not_call_the_model_again(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    script = write_script(tmp_path, "agent.py", AGENT)
    env = _env(tmp_path, fake_llm, HANG="tool")
    _register_fast(env, tmp_path)
    proc = subprocess.Popen(
        [sys.executable, str(script), "tides"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_line(tmp_path / "ledger.txt", "hang tool")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert _prompts(fake_llm) == ["Research: tides"]

    exec_id = cli_json("executions", "list", cwd=tmp_path)["items"][0]["exec_id"]
    env.pop("HANG")
    retried = run_cli("executions", "retry", exec_id, cwd=tmp_path, env=env)
    assert retried.returncode == 0, retried.stdout + retried.stderr

    # The finished call came from the store: the provider saw it once, then only new calls.
    assert _prompts(fake_llm) == [
        "Research: tides",
        "Expand: ECHO: RESEARCH: TIDES",
        "Summarize: echo: Expand: ECHO: RESEARCH: TIDES",
    ]
    assert ledger(tmp_path / "ledger.txt").count("got brief") == 2  # the flow body ran twice

    got = cli_json("executions", "get", exec_id, cwd=tmp_path)["item"]
    assert got["status"] == "completed"
    calls = {c["name"]: c for c in got["checkpoints"]}
    assert calls["llm_1"]["checkpoint_type"] == "llm_call"
    assert calls["llm_2"]["checkpoint_type"] == "llm_call"
    assert (
        calls["summarize"]["metadata"]["llm_calls"]["summary"]["resolved_model"]
        == "openai/gpt-4o-mini"
    )
    # the ledger: three calls reached the provider, one (llm_1) was reused by the retry
    cost = got["llm_cost"]
    assert cost["calls"] == 3
    assert cost["saved_calls"] == 1
    assert cost["cost_usd"] > 0
    first = got["llm_calls"][0]
    assert (first["call"], first["run"], first["model"]) == ("llm_1", 1, "openai/gpt-4o-mini")
    assert [c["run"] for c in got["llm_calls"]] == [1, 2, 2]
    assert got["llm_calls"][2]["checkpoint"] == "summarize"
    expected_first = (first["tokens_input"] * 0.15 + first["tokens_output"] * 0.60) / 1e6
    assert abs(first["cost_usd"] - expected_first) < 1e-9
    assert abs(cost["saved_usd"] - first["cost_usd"]) < 1e-9

    text = run_cli("executions", "get", exec_id, cwd=tmp_path, env=env, check=True).stdout
    assert "LLM cost" in text and "spent on 3 calls" in text
    assert "by reusing 1 stored call on resume" in text


def _all_bytes(root: Path) -> list[tuple[Path, bytes]]:
    return stored_files(root)


def test_secrets_never_reach_the_store_logs_or_errors(
    tmp_path: Path, fake_llm: FakeLLM, isolated_store: Path
) -> None:
    script = write_script(tmp_path, "agent.py", AGENT)
    env = _env(tmp_path, fake_llm)
    env.pop("OPENAI_API_KEY")
    # The key goes through stdin (`--OPENAI_API_KEY` alone), not the command line.
    created = subprocess.run(
        [sys.executable, "-m", "kitaru.cli", "secrets", "set", "openai", "--OPENAI_API_KEY"],
        input=OPENAI_KEY + "\n",
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert created.returncode == 0, created.stderr
    assert OPENAI_KEY not in created.stdout + created.stderr
    _register_fast(env, tmp_path, "--secret", "openai")
    config = Path(env["KITARU_CONFIG_PATH"])
    secret_file = config / "secrets" / "openai.json"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert (config / "secrets").stat().st_mode & 0o777 == 0o700

    ok = subprocess.run(
        [sys.executable, str(script), "tides"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert fake_llm.requests[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    exec_ok = ok.stdout.strip()
    got = cli_json("executions", "get", exec_ok, cwd=tmp_path, env=env)["item"]
    assert got["status"] == "completed"
    assert got["checkpoints"][0]["metadata"]["llm_calls"]["llm_1"]["credential_source"] == "secret"

    # A rejected key: the failure names the alias and the variable, never the key.
    fake_llm.openai_key = "sk-the-right-one-is-different-000"
    bad = subprocess.run(
        [sys.executable, str(script), "reefs"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    exec_bad = bad.stdout.strip()
    failed = cli_json("executions", "get", exec_bad, cwd=tmp_path, env=env)["item"]
    assert failed["status"] == "failed"
    assert failed["failure"]["origin"] == "backend"
    message = failed["failure"]["message"]
    assert "alias 'fast'" in message and "OPENAI_API_KEY" in message and "401" in message
    masked_fragment = OPENAI_KEY[:6] + "***" + OPENAI_KEY[-4:]
    assert masked_fragment not in message and OPENAI_KEY[-4:] + "." not in message
    logs = run_cli("executions", "logs", exec_bad, cwd=tmp_path, env=env)

    # Grep everything kitaru wrote: the store, every CLI output, the script's output.
    needles = [OPENAI_KEY.encode(), OPENAI_KEY[6:-4].encode(), OPENAI_KEY[-10:].encode()]
    for path, data in _all_bytes(isolated_store):
        for needle in needles:
            assert needle not in data, f"secret material in {path}"
    dumps = run_cli("store", "dump", exec_bad, cwd=tmp_path, env=env, check=True).stdout
    outputs = [ok.stdout, ok.stderr, bad.stdout, bad.stderr, logs.stdout, logs.stderr, dumps]
    for text in outputs:
        for needle in needles:
            assert needle.decode() not in text
    # ...and the key was never exported to the environment of the flow's process.
    assert ledger(tmp_path / "ledger.txt").count("env has key: False") == 1
    assert secret_file.read_text().count(OPENAI_KEY) == 1  # only in the secret file itself


def test_budget_stops_the_flow_and_a_larger_budget_resumes_it(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    script = write_script(tmp_path, "agent.py", AGENT)
    # $1 per million tokens each way; every call here costs 100 in + 50 out = $0.00015.
    env = _env(tmp_path, fake_llm, BUDGET="0.0002")
    _register_fast(env, tmp_path, "--input-price", "1", "--output-price", "1")
    fake_llm.queue(*(Reply(usage=(100, 50)) for _ in range(5)))

    first = subprocess.run(
        [sys.executable, str(script), "tides"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    exec_id = first.stdout.strip()
    got = cli_json("executions", "get", exec_id, cwd=tmp_path, env=env)["item"]
    # llm_1 ($0.00015) and llm_2 ($0.0003 in total) ran; the next checkpoint boundary stopped it.
    assert _prompts(fake_llm)[:2] == ["Research: tides", "Expand: ECHO: RESEARCH: TIDES"]
    assert len(fake_llm.requests) == 2
    assert got["status"] == "failed"
    assert got["failure"]["origin"] == "budget"
    assert "over its budget of $0.0002" in got["failure"]["message"]
    assert f"kitaru executions retry {exec_id} --budget-usd" in got["failure"]["message"]
    assert got["llm_cost"]["calls"] == 2
    assert abs(got["llm_cost"]["cost_usd"] - 0.0003) < 1e-9
    assert "summarize" not in [c["name"] for c in got["checkpoints"] if c["status"] == "completed"]

    # The same budget again: stopped before anything new is paid for.
    again = run_cli("executions", "retry", exec_id, cwd=tmp_path, env=env)
    assert again.returncode == 1
    assert len(fake_llm.requests) == 2

    raised = run_cli("executions", "retry", exec_id, "--budget-usd", "1", cwd=tmp_path, env=env)
    assert raised.returncode == 0, raised.stdout + raised.stderr
    # only the unfinished call went to the provider
    assert len(fake_llm.requests) == 3
    assert fake_llm.requests[2].last_user_text.startswith("Summarize: ")
    done = cli_json("executions", "get", exec_id, cwd=tmp_path, env=env)["item"]
    assert done["status"] == "completed"
    assert done["llm_cost"]["budget_usd"] == 1.0
    assert done["llm_cost"]["calls"] == 3
    assert done["llm_cost"]["saved_calls"] == 2 + 2  # llm_1 and llm_2, reused by both retries


@kitaru.flow(budget_usd=0.5)
def spender() -> list[str]:
    return [kitaru.llm(f"q{i}", model="cheap") for i in range(5)]


def test_budget_error_in_process(tmp_path: Path, provider: FakeLLM) -> None:
    kitaru.register_model_alias(
        "cheap", model="openai/gpt-4o-mini", input_price=1000, output_price=0
    )
    provider.queue(Reply(usage=(1000, 1)), Reply(usage=(1000, 1)))

    handle = spender.run()
    try:
        handle.wait()
    except kitaru.KitaruBudgetExceededError as exc:
        assert exc.failure_origin == "budget"
        assert exc.exec_id == handle.exec_id
    else:
        raise AssertionError("the budget did not stop the flow")
    # $1 per call: the first call spends $1 > $0.50, so the second never starts
    assert len(provider.requests) == 1


FAIL_AFTER_CALL = {"on": True}


@kitaru.flow
def asks_once(q: str) -> str:
    answer = kitaru.llm(q, model="fast")
    if FAIL_AFTER_CALL["on"]:
        raise RuntimeError("boom after the call")
    return answer


def test_a_retry_without_the_alias_reuses_finished_calls(provider: FakeLLM) -> None:
    from kitaru._llm import models as _models

    kitaru.register_model_alias("fast", model="openai/gpt-4o-mini")
    FAIL_AFTER_CALL["on"] = True
    handle = asks_once.run("hello")
    assert handle.status == "failed"
    # Another machine: no such alias there. The finished call needs none.
    _models.remove_model_alias("fast")
    FAIL_AFTER_CALL["on"] = False
    done = kitaru.KitaruClient().executions.retry(handle.exec_id)
    assert done.status == "completed"
    assert handle.get() == "echo: hello"
    assert len(provider.requests) == 1
    # ...while a call that has to reach a provider names the missing alias.
    fresh = asks_once.run("again")
    try:
        fresh.wait()
    except kitaru.KitaruExecutionError as exc:
        assert "'fast'" in str(exc) and "kitaru model register" in str(exc)
    else:
        raise AssertionError("an unknown alias did not fail the call")
    assert len(provider.requests) == 1


@kitaru.checkpoint
def inline_summary(text: str) -> str:
    return kitaru.llm("Summarize: " + text, model="fast", name="summary")


@kitaru.flow
def two_calls(q: str) -> str:
    first = kitaru.llm(q, model="fast", system="Be brief.")
    return inline_summary(first)


def test_prompts_and_responses_are_artifacts_of_the_calls(provider: FakeLLM) -> None:
    kitaru.register_model_alias("fast", model="openai/gpt-4o-mini")
    handle = two_calls.run("tides")
    assert handle.wait() == "echo: Summarize: echo: tides"
    ex = kitaru.KitaruClient().executions.get(handle.exec_id)
    refs = {a.name: a for a in ex.artifacts if a.save_type.startswith("llm_")}
    assert sorted(refs) == ["llm_1_prompt", "llm_1_response", "summary_prompt", "summary_response"]
    # every checkpoint's output is an artifact too (Kitaru 0.4's step outputs)
    outputs = sorted(a.name for a in ex.artifacts if a.save_type == "step_output")
    assert outputs == ["inline_summary", "llm_1"]
    assert refs["llm_1_prompt"].load() == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "tides"},
    ]
    assert refs["llm_1_response"].load() == "echo: tides"
    assert (refs["llm_1_prompt"].kind, refs["llm_1_prompt"].save_type) == ("prompt", "llm_call")
    assert refs["summary_prompt"].load() == [{"role": "user", "content": "Summarize: echo: tides"}]
    assert refs["summary_response"].load() == "echo: Summarize: echo: tides"
    assert (refs["summary_response"].producing_call, refs["summary_response"].save_type) == (
        "inline_summary",
        "llm_inline",
    )
    by_call = {c.name: [a.name for a in c.artifacts] for c in ex.checkpoints}
    assert by_call == {
        "llm_1": ["llm_1", "llm_1_prompt", "llm_1_response"],
        "inline_summary": ["inline_summary", "summary_prompt", "summary_response"],
    }


FLAGS: dict[str, Any] = {}


@kitaru.flow
async def asks_in_any_order(n: int) -> list[str]:
    calls = [kitaru.allm(f"question {i}", model="fast") for i in range(n)]
    answers = [await c for c in reversed(calls)][::-1]  # awaited last-made first
    if FLAGS.get("fail"):
        raise RuntimeError("crash after the calls")
    return answers


def test_allm_takes_its_id_when_called_so_a_retry_gets_each_prompt_its_own_answer(
    provider: FakeLLM,
) -> None:
    kitaru.register_model_alias("fast", model="openai/gpt-4o-mini")
    FLAGS["fail"] = True
    handle = asks_in_any_order.run(5)
    assert handle.status == "failed"
    FLAGS["fail"] = False
    kitaru.KitaruClient().executions.retry(handle.exec_id)
    assert handle.get() == [f"echo: question {i}" for i in range(5)]
    assert len(provider.requests) == 5  # the retry asked nothing again
    ex = kitaru.KitaruClient().executions.get(handle.exec_id)
    prompt_of = {c.name: next(a for a in c.artifacts if a.kind == "prompt") for c in ex.checkpoints}
    prompts = {name: a.load()[-1]["content"] for name, a in prompt_of.items()}
    assert prompts == {f"llm_{i + 1}": f"question {i}" for i in range(5)}


@kitaru.checkpoint
def llm(x: str) -> str:  # a user checkpoint that happens to be called `llm`
    return x


@kitaru.flow
def colliding_names() -> list[str]:
    return [
        kitaru.llm("alpha", model="fast", name="llm"),
        kitaru.llm("beta", model="fast", name="llm"),
        llm("plain"),
        kitaru.llm("gamma", model="fast"),
        kitaru.llm("delta", model="fast"),
    ]


def test_call_ids_never_collide(provider: FakeLLM) -> None:
    kitaru.register_model_alias("fast", model="openai/gpt-4o-mini")
    handle = colliding_names.run()
    assert handle.wait() == ["echo: alpha", "echo: beta", "plain", "echo: gamma", "echo: delta"]
    assert [r.last_user_text for r in provider.requests] == ["alpha", "beta", "gamma", "delta"]
    names = [c.name for c in kitaru.KitaruClient().executions.get(handle.exec_id).checkpoints]
    assert sorted(names) == sorted(["llm", "llm_2", "llm_3", "llm_1", "llm_2_2"])


@kitaru.checkpoint
def stubborn_step(i: int) -> str:
    try:
        return kitaru.llm(f"step {i}", model="pricey")
    except Exception as exc:
        return f"fallback: {type(exc).__name__}"


@kitaru.flow(budget_usd=0.5)
def swallows_budget() -> list[str]:
    out = []
    for i in range(3):
        try:
            out.append(kitaru.llm(f"q{i}", model="pricey"))
        except Exception as exc:
            out.append(f"fallback: {type(exc).__name__}")
    out.append(stubborn_step(0))
    return out


def test_user_code_cannot_swallow_a_budget_stop(provider: FakeLLM) -> None:
    kitaru.register_model_alias("pricey", model="openai/x", input_price=1000, output_price=0)
    provider.queue(Reply(usage=(1000, 1)))
    handle = swallows_budget.run()
    got = kitaru.KitaruClient().executions.get(handle.exec_id)
    assert got.status == "failed"
    assert got.failure is not None and got.failure.origin == "budget"
    assert len(provider.requests) == 1
    # the checkpoint that caught the stop did not store its fallback as its output
    assert [c.name for c in got.checkpoints if c.status.value == "completed"] == ["llm_1"]


@kitaru.flow(retries=2)
def flaky_after_calls() -> str:
    a = kitaru.llm("one", model="fast")
    b = kitaru.llm("two", model="fast")
    FLAGS["passes"] = FLAGS.get("passes", 0) + 1
    if FLAGS.get("fail") or FLAGS["passes"] < 3:
        raise RuntimeError("flaky")
    return a + b


def test_saved_calls_are_counted_once_per_run_despite_flow_retries(provider: FakeLLM) -> None:
    kitaru.register_model_alias("fast", model="openai/gpt-4o-mini", input_price=1, output_price=1)
    FLAGS.clear()
    FLAGS["fail"] = True
    handle = flaky_after_calls.run()  # 3 passes, all fail: the calls are made once
    assert handle.status == "failed"
    FLAGS.clear()
    kitaru.KitaruClient().executions.retry(handle.exec_id)  # passes 1 and 2 fail, 3 completes
    cost = kitaru.KitaruClient().executions.get(handle.exec_id).llm_cost
    assert cost is not None
    assert cost.calls == 2 and len(provider.requests) == 2
    assert cost.saved_calls == 2  # llm_1 and llm_2, once each, in the retry run
    assert abs(cost.saved_usd - cost.cost_usd) < 1e-9


@kitaru.flow
def filtered() -> str:
    return kitaru.llm("something the filter blocks", model="fast")


def test_a_billed_answer_that_cannot_be_used_is_still_in_the_ledger(provider: FakeLLM) -> None:
    import json

    kitaru.register_model_alias("fast", model="openai/gpt-4o-mini", input_price=1, output_price=1)
    # a content filter's answer: no choices, but the prompt was billed
    blocked = {
        "model": "gpt-4o-mini",
        "choices": [],
        "usage": {"prompt_tokens": 40, "completion_tokens": 0},
    }
    provider.queue(Reply(body=json.dumps(blocked)))
    handle = filtered.run()
    ex = kitaru.KitaruClient().executions.get(handle.exec_id)
    assert ex.status == "failed" and ex.failure is not None and ex.failure.origin == "backend"
    assert ex.llm_cost is not None and ex.llm_cost.calls == 1
    assert ex.llm_calls[0].tokens_input == 40
    assert abs((ex.llm_cost.cost_usd or 0) - 40 / 1e6) < 1e-12
