"""OpenTelemetry spans (kitaru._otel): an SDK tracer provider with an in-memory exporter sees
the spans of flow runs, checkpoint calls (live and reused), waits and `llm()` requests
against the fake provider (tests-python/fake_llm.py); without an SDK nothing is imported."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kitaru
import pytest
from fake_llm import OPENAI_KEY, FakeLLM, Reply
from kitaru import KitaruClient, checkpoint, flow
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

MINI = "openai/gpt-4o-mini"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """An SDK tracer provider exporting to memory, as the process's provider for one test.

    `trace.set_tracer_provider` can be called once per process, so the test's provider
    stands in for the global one and is gone afterwards: other tests run with spans off."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    assert trace.get_tracer_provider() is provider
    yield exporter
    provider.shutdown()


@pytest.fixture
def llm(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> FakeLLM:
    for key, value in fake_llm.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KITARU_LLM_MAX_RETRIES", "0")
    return fake_llm


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def one(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    [span] = named(exporter, name)
    return span


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def is_child(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.parent is not None and parent.context is not None and child.context is not None
    return (
        child.parent.span_id == parent.context.span_id
        and child.context.trace_id == parent.context.trace_id
    )


# --- a flow with a checkpoint ---------------------------------------------------------------


@checkpoint(type="tool_call")
def shout(text: str) -> str:
    return text.upper()


@flow
def greet(name: str) -> str:
    return shout(f"hello {name}") + shout("again")


def test_a_flow_and_its_checkpoints_are_spans_under_the_callers_span(
    spans: InMemorySpanExporter,
) -> None:
    with trace.get_tracer("test").start_as_current_span("outer") as outer:
        handle = greet.run("ada")
    assert handle.wait() == "HELLO ADAAGAIN"
    flow_span = one(spans, "flow greet")
    assert (
        flow_span.parent is not None
        and flow_span.parent.span_id == outer.get_span_context().span_id
    )
    assert attrs(flow_span) == {
        "kitaru.execution.id": handle.exec_id,
        "kitaru.flow.name": "greet",
        "kitaru.flow.intent": "start",
        "kitaru.flow.passes": 1,
        "kitaru.execution.status": "completed",
    }
    assert flow_span.status.status_code == StatusCode.UNSET
    calls = named(spans, "checkpoint shout")
    assert [attrs(c)["kitaru.checkpoint.call_id"] for c in calls] == ["shout", "shout_2"]
    for call in calls:
        assert is_child(call, flow_span)
        assert call.kind == SpanKind.INTERNAL
        assert attrs(call) == {
            "kitaru.execution.id": handle.exec_id,
            "kitaru.checkpoint.name": "shout",
            "kitaru.checkpoint.type": "tool_call",
            "kitaru.checkpoint.call_id": attrs(call)["kitaru.checkpoint.call_id"],
            "kitaru.checkpoint.attempts": 1,
            "kitaru.checkpoint.reused": False,
        }
    assert [s.name for s in spans.get_finished_spans()] == [
        "checkpoint shout", "checkpoint shout", "flow greet", "outer"
    ]  # fmt: skip


def test_a_replay_marks_the_calls_it_takes_over_as_reused(spans: InMemorySpanExporter) -> None:
    source = greet.run("ada")
    spans.clear()
    replay = greet.replay(source.exec_id, from_="shout_2")
    assert replay.wait() == "HELLO ADAAGAIN"
    flow_span = one(spans, "flow greet")
    assert attrs(flow_span)["kitaru.flow.intent"] == "replay"
    assert attrs(flow_span)["kitaru.execution.id"] == replay.exec_id != source.exec_id
    taken, live = named(spans, "checkpoint shout")
    assert attrs(taken)["kitaru.checkpoint.call_id"] == "shout"
    assert attrs(taken)["kitaru.reused"] is True and attrs(taken)["kitaru.checkpoint.attempts"] == 0
    assert attrs(live)["kitaru.checkpoint.call_id"] == "shout_2"
    assert attrs(live)["kitaru.checkpoint.reused"] is False


# --- a crash, then a retry that reuses the finished checkpoint -------------------------------

_FAILURES = {"left": 0}


@checkpoint
def prepare(n: int) -> int:
    return n + 1


@checkpoint(retries=1)
def flaky(n: int) -> int:
    if _FAILURES["left"] > 0:
        _FAILURES["left"] -= 1
        raise RuntimeError(f"flaky failure, {_FAILURES['left']} left")
    return n * 10


@flow
def crashy(n: int) -> int:
    return flaky(prepare(n))


def test_a_retry_marks_the_finished_checkpoint_reused_and_the_rerun_one_live(
    spans: InMemorySpanExporter,
) -> None:
    _FAILURES["left"] = 2  # both attempts of the first run fail
    handle = crashy.run(4)
    assert handle.status == "failed"
    first = one(spans, "flow crashy")
    assert attrs(first)["kitaru.flow.intent"] == "start"
    assert attrs(first)["kitaru.execution.status"] == "failed"
    assert first.status.status_code == StatusCode.ERROR
    assert "flaky failure, 0 left" in (first.status.description or "")
    failed = one(spans, "checkpoint flaky")
    assert failed.status.status_code == StatusCode.ERROR
    assert attrs(failed)["kitaru.checkpoint.attempts"] == 2
    assert attrs(failed)["kitaru.checkpoint.reused"] is False
    assert [e.name for e in failed.events] == ["exception", "exception"]
    assert [e.attributes["exception.message"] for e in failed.events if e.attributes] == [
        "flaky failure, 1 left", "flaky failure, 0 left"
    ]  # fmt: skip
    assert attrs(one(spans, "checkpoint prepare"))["kitaru.checkpoint.reused"] is False

    spans.clear()
    KitaruClient().executions.retry(handle.exec_id)
    assert handle.wait() == 50
    second = one(spans, "flow crashy")
    assert attrs(second)["kitaru.execution.id"] == handle.exec_id
    assert attrs(second)["kitaru.flow.intent"] == "retry"
    assert attrs(second)["kitaru.execution.status"] == "completed"
    reused = one(spans, "checkpoint prepare")
    live = one(spans, "checkpoint flaky")
    assert is_child(reused, second) and is_child(live, second)
    assert attrs(reused)["kitaru.checkpoint.reused"] is True
    assert attrs(reused)["kitaru.reused"] is True
    assert attrs(reused)["kitaru.checkpoint.attempts"] == 0
    assert attrs(live)["kitaru.checkpoint.reused"] is False
    assert "kitaru.reused" not in attrs(live)
    assert attrs(live)["kitaru.checkpoint.attempts"] == 1
    assert live.status.status_code == StatusCode.UNSET and not live.events


@flow(cache=True)
def cached_flow(n: int) -> int:
    return prepare(n)


def test_a_call_answered_by_the_cross_execution_cache_names_its_source(
    spans: InMemorySpanExporter,
) -> None:
    source = cached_flow.run(1)
    spans.clear()
    again = cached_flow.run(1)
    assert again.wait() == 2
    span = attrs(one(spans, "checkpoint prepare"))
    assert span["kitaru.checkpoint.reused"] is True and span["kitaru.reused"] is True
    assert span["kitaru.checkpoint.cached_from"] == source.exec_id
    assert span["kitaru.checkpoint.cached_call_id"] == "prepare"


# --- llm() against the fake provider ---------------------------------------------------------


@checkpoint
def summarize(text: str) -> str:
    return kitaru.llm(f"Summarize: {text}", model="fast", name="summary")


@flow
def chatty(topic: str) -> str:
    answer = kitaru.llm(f"Tell me about {topic}", model=MINI, temperature=0.2, max_tokens=50)
    return summarize(answer)


def test_llm_calls_are_genai_chat_spans_with_usage_and_cost(
    spans: InMemorySpanExporter, llm: FakeLLM
) -> None:
    kitaru.register_model_alias("fast", model=MINI)
    llm.queue(Reply(text="Octopuses have three hearts.", usage=(12, 5)),
              Reply(text="Three hearts.", usage=(30, 3)))  # fmt: skip
    handle = chatty.run("octopuses")
    assert handle.wait() == "Three hearts."
    flow_span = one(spans, "flow chatty")
    body_call = one(spans, "checkpoint llm")
    assert is_child(body_call, flow_span)
    assert attrs(body_call)["kitaru.checkpoint.type"] == "llm_call"
    assert attrs(body_call)["kitaru.checkpoint.call_id"] == "llm_1"
    assert attrs(body_call)["kitaru.checkpoint.reused"] is False
    first, second = named(spans, "chat gpt-4o-mini")
    assert is_child(first, body_call)
    assert is_child(second, one(spans, "checkpoint summarize"))
    assert first.kind == SpanKind.CLIENT
    assert attrs(first) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.response.model": "gpt-4o-mini",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 5,
        "kitaru.llm.cost_usd": pytest.approx((12 * 0.15 + 5 * 0.60) / 1_000_000),
        "kitaru.execution.id": handle.exec_id,
        "kitaru.llm.call": "llm_1",
    }
    assert attrs(second)["kitaru.llm.alias"] == "fast"
    assert attrs(second)["kitaru.llm.call"] == "summary"
    assert attrs(second)["gen_ai.usage.input_tokens"] == 30
    assert attrs(second)["gen_ai.usage.output_tokens"] == 3
    # no prompt, answer or credential in any attribute
    for span in spans.get_finished_spans():
        text = json.dumps(attrs(span), default=str)
        for secret in ("octopuses", "Octopuses", "hearts", OPENAI_KEY, "Bearer"):
            assert secret not in text, (span.name, secret)


def test_a_failed_provider_request_is_an_error_chat_span(
    spans: InMemorySpanExporter, llm: FakeLLM
) -> None:
    llm.queue(Reply(status=400, error="bad request"))
    handle = chatty.run("squid")
    assert handle.status == "failed"
    chat = one(spans, "chat gpt-4o-mini")
    assert chat.status.status_code == StatusCode.ERROR
    assert "gen_ai.usage.input_tokens" not in attrs(chat)
    assert [e.name for e in chat.events] == ["exception"]
    assert one(spans, "checkpoint llm").status.status_code == StatusCode.ERROR


_STOP = {"after_llm": False}


@checkpoint
def after_answer(answer: str) -> str:
    if _STOP["after_llm"]:
        _STOP["after_llm"] = False
        raise RuntimeError("crash after the model answered")
    return answer.upper()


@flow
def ask_then_crash() -> str:
    return after_answer(kitaru.llm("Name a colour", model=MINI))


def test_a_reused_llm_call_is_not_a_new_genai_operation(
    spans: InMemorySpanExporter, llm: FakeLLM
) -> None:
    llm.queue(Reply(text="teal", usage=(8, 1)))
    _STOP["after_llm"] = True
    handle = ask_then_crash.run()
    assert handle.status == "failed"
    assert attrs(one(spans, "chat gpt-4o-mini"))["gen_ai.usage.output_tokens"] == 1

    spans.clear()
    KitaruClient().executions.retry(handle.exec_id)
    assert handle.wait() == "TEAL"
    assert len(llm.requests) == 1  # the stored answer, not a second request
    reused = one(spans, "checkpoint llm")
    assert attrs(reused)["kitaru.checkpoint.reused"] is True
    assert attrs(reused)["kitaru.reused"] is True
    assert attrs(reused)["kitaru.checkpoint.attempts"] == 0
    assert not named(spans, "chat gpt-4o-mini")
    for span in spans.get_finished_spans():
        assert not any(key.startswith("gen_ai.") for key in attrs(span)), span.name
    assert attrs(one(spans, "checkpoint after_answer"))["kitaru.checkpoint.reused"] is False


# --- threads and async flows ------------------------------------------------------------------


@checkpoint
def square(n: int) -> int:
    return n * n


@checkpoint
async def acube(n: int) -> int:
    await asyncio.sleep(0)
    return n**3


@flow
def fan_out(ns: list[int]) -> int:
    futures = square.map(ns)
    cubed = acube.submit(2)  # an async checkpoint on a pool thread, in its own event loop
    return sum(f.result() for f in futures) + cubed.result()


@flow
async def afan_out(ns: list[int]) -> int:
    results = await asyncio.gather(*(acube(n) for n in ns))
    return sum(results) + square.submit(3).result()


def test_map_and_submit_calls_on_other_threads_nest_under_the_flow_span(
    spans: InMemorySpanExporter,
) -> None:
    assert fan_out.run([1, 2, 3]).wait() == 14 + 8
    flow_span = one(spans, "flow fan_out")
    calls = [*named(spans, "checkpoint square"), *named(spans, "checkpoint acube")]
    assert len(calls) == 4
    assert all(is_child(c, flow_span) for c in calls)
    ids = sorted(attrs(c)["kitaru.checkpoint.call_id"] for c in calls)
    assert ids == ["acube", "square", "square_2", "square_3"]


def test_calls_of_an_async_flow_nest_under_its_span(spans: InMemorySpanExporter) -> None:
    assert afan_out.run([1, 2]).wait() == 9 + 9
    flow_span = one(spans, "flow afan_out")
    calls = [*named(spans, "checkpoint acube"), *named(spans, "checkpoint square")]
    assert len(calls) == 3
    assert all(is_child(c, flow_span) for c in calls)


# --- waits --------------------------------------------------------------------------------------


@flow
def approval(n: int) -> int:
    doubled = prepare(n)
    if kitaru.wait(schema=bool, name="approve", question="Ship it?", timeout=0):
        return doubled
    return 0


def test_a_wait_that_suspends_then_is_answered_from_the_store_on_resume(
    spans: InMemorySpanExporter,
) -> None:
    handle = approval.run(1)
    assert handle.status == "waiting"
    flow_span = one(spans, "flow approval")
    assert attrs(flow_span)["kitaru.execution.status"] == "waiting"
    assert attrs(flow_span)["kitaru.wait.name"] == "approve"
    assert flow_span.status.status_code == StatusCode.UNSET
    wait_span = one(spans, "wait approve")
    assert is_child(wait_span, flow_span)
    assert attrs(wait_span) == {
        "kitaru.execution.id": handle.exec_id,
        "kitaru.wait.name": "approve",
        "kitaru.wait.outcome": "suspended",
    }

    spans.clear()
    client = KitaruClient()
    client.executions.input(handle.exec_id, wait="approve", value=True)
    client.executions.resume(handle.exec_id)
    assert handle.wait() == 2
    resumed = one(spans, "flow approval")
    assert attrs(resumed)["kitaru.flow.intent"] == "resume"
    assert attrs(resumed)["kitaru.execution.status"] == "completed"
    assert attrs(one(spans, "wait approve"))["kitaru.wait.outcome"] == "stored"
    assert attrs(one(spans, "checkpoint prepare"))["kitaru.reused"] is True


@flow
def gated() -> None:
    kitaru.wait(name="gate", timeout=60)


def test_a_wait_aborted_while_it_polls_cancels_the_run(spans: InMemorySpanExporter) -> None:
    client = KitaruClient()

    def abort_when_pending() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = client.executions.list(flow="gated")
            if running and client.executions.pending_waits(running[0].exec_id):
                client.executions.abort_wait(running[0].exec_id, wait="gate")
                return
            time.sleep(0.02)

    aborter = threading.Thread(target=abort_when_pending)
    aborter.start()
    handle = gated.run()
    aborter.join()
    assert handle.status == "cancelled"
    assert attrs(one(spans, "wait gate"))["kitaru.wait.outcome"] == "aborted"
    flow_span = one(spans, "flow gated")
    assert attrs(flow_span)["kitaru.execution.status"] == "cancelled"
    assert flow_span.status.status_code == StatusCode.UNSET


@flow(retries=1)
def retried_flow() -> int:
    value = prepare(1)
    if _FAILURES["left"] > 0:
        _FAILURES["left"] -= 1
        raise ValueError("the body failed once")
    return value


def test_flow_level_retries_are_passes_of_one_flow_span(spans: InMemorySpanExporter) -> None:
    _FAILURES["left"] = 1
    assert retried_flow.run().wait() == 2
    flow_span = one(spans, "flow retried_flow")
    assert attrs(flow_span)["kitaru.flow.passes"] == 2
    assert attrs(flow_span)["kitaru.execution.status"] == "completed"
    assert [e.attributes["exception.type"] for e in flow_span.events if e.attributes] == [
        "ValueError"
    ]
    live, again = named(spans, "checkpoint prepare")
    assert attrs(live)["kitaru.checkpoint.reused"] is False
    assert attrs(again)["kitaru.checkpoint.reused"] is True  # stored by the failed pass


# --- off unless an SDK is set up -----------------------------------------------------------------


def _run_script(tmp_path: Path, prelude: str) -> dict[str, Any]:
    script = tmp_path / "otel_off.py"
    script.write_text(textwrap.dedent(prelude) + textwrap.dedent("""
        import json, sys
        import kitaru
        from kitaru._context import current_flow

        seen = {}

        @kitaru.checkpoint
        def step(n: int) -> int:
            return n + 1

        @kitaru.flow
        def job(n: int) -> int:
            seen["tracer"] = repr(current_flow.get().tracer)
            return step(n)

        assert job.run(1).wait() == 2
        print(json.dumps({
            "otel": sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"),
            "kitaru_otel": "kitaru._otel" in sys.modules,
            "tracer": seen["tracer"],
        }))
    """))  # fmt: skip
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_without_opentelemetry_imported_a_flow_imports_none_of_it(tmp_path: Path) -> None:
    got = _run_script(tmp_path, "")
    assert got == {"otel": [], "kitaru_otel": False, "tracer": "None"}


def test_the_api_without_an_sdk_provider_records_nothing(tmp_path: Path) -> None:
    got = _run_script(tmp_path, "import opentelemetry.trace\n")
    assert got["tracer"] == "None"
    assert not [m for m in got["otel"] if m.startswith("opentelemetry.sdk")]
