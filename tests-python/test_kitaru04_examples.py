"""Kitaru 0.4's published examples, as flows of our own that use the same API the same way
(`basic_flow/*`, `execution_management/*`, `replay/replay_with_overrides.py`,
`llm/flow_with_llm.py`, `memory/flow_with_memory.py`, `pydantic_ai_agent/pydantic_ai_adapter.py`). The published files themselves run with `make examples-04
KITARU04=<a Kitaru 0.4 checkout>` (tests-python/run_kitaru04_examples.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import kitaru
import pytest
from conftest import run_cli
from kitaru import checkpoint, flow
from kitaru.adapters import pydantic_ai as kp
from kitaru.client import ExecutionStatus
from pydantic_ai import Agent
from pydantic_ai.models.test import TestModel

# --- basic_flow/first_working_flow.py ---------------------------------------------------


@checkpoint
def gather(topic: str) -> str:
    return f"sources on {topic}"


@checkpoint
def condense(sources: str) -> str:
    return f"Summary: {sources} are growing."


@flow
def smallest_agent(topic: str) -> str:
    return condense(gather(topic))


def test_first_working_flow() -> None:
    assert smallest_agent.run("solar").wait() == "Summary: sources on solar are growing."


# --- basic_flow/flow_with_artifacts.py ---------------------------------------------------


@checkpoint
def research(topic: str) -> str:
    kitaru.save("research_context", {"topic": topic, "sources": 2}, type="context",
                tags=["research"])  # fmt: skip
    return f"Research notes about {topic}."


@flow
def first_pass(topic: str) -> str:
    return research(topic)


@checkpoint
def follow_up(prev_exec_id: str) -> str:
    notes = kitaru.load(prev_exec_id, "research")  # a checkpoint's output, by name
    context = kitaru.load(prev_exec_id, "research_context")  # a saved artifact
    return f"{notes} [topic={context['topic']}]"


@flow
def second_pass(prev_exec_id: str) -> str:
    return follow_up(prev_exec_id)


def test_flow_with_artifacts() -> None:
    first = first_pass.run("kitaru")
    assert first.wait() == "Research notes about kitaru."
    second = second_pass.run(first.exec_id).wait()
    assert second == "Research notes about kitaru. [topic=kitaru]"


# --- basic_flow/flow_with_checkpoint_runtime.py -----------------------------------------


@checkpoint(runtime="isolated")
def transform(item: str) -> str:
    return f"[processed] {item.upper()}"


@flow
def fan_out(items: list[str]) -> list[str]:
    futures = [transform.submit(item) for item in items]
    return [f.result() for f in futures]


def test_flow_with_checkpoint_runtime() -> None:
    handle = fan_out.run(["alpha", "bravo", "charlie"])
    deadline = time.monotonic() + 60
    while not handle.status.is_finished:  # the example polls the status
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert handle.wait() == ["[processed] ALPHA", "[processed] BRAVO", "[processed] CHARLIE"]


# --- basic_flow/flow_with_configuration.py ----------------------------------------------


@checkpoint
def upper_draft(topic: str) -> str:
    return f"draft:{topic}".upper()


@flow(cache=True, retries=2)
def configured(topic: str) -> str:
    return upper_draft(topic)


def test_flow_with_configuration() -> None:
    kitaru.configure(
        cache=False,
        retries=1,
        image=kitaru.ImageSettings(
            base_image="python:3.12-slim", environment={"OPENAI_API_KEY": "{{ OPENAI_KEY }}"}
        ),
    )
    try:
        handle = configured.run("kitaru", retries=3)
        assert handle.wait() == "DRAFT:KITARU"
    finally:
        kitaru.configure(cache=None, retries=None, image=None)
    spec = kitaru.KitaruClient().executions.get(handle.exec_id).frozen_execution_spec
    assert spec is not None
    assert (spec["retries"], spec["cache"]) == (3, True)  # .run() > @flow > configure()
    assert spec["image"]["base_image"] == "python:3.12-slim"


# --- basic_flow/flow_with_logging.py ----------------------------------------------------


@checkpoint
def logged_draft(topic: str) -> str:
    kitaru.log(draft_cost={"usd": 0.001})
    kitaru.log(draft_cost={"tokens": 42}, model="demo-model", latency_ms=120)
    return f"draft about {topic}"


@checkpoint
def review(text: str) -> str:
    kitaru.log(quality_score=0.93)
    return f"{text.upper()}. [reviewed]"


@flow
def writing_agent(topic: str) -> str:
    kitaru.log(topic=topic, stage="started")
    out = review(logged_draft(topic))
    kitaru.log(stage="completed", output_kind="text")
    return out


def test_flow_with_logging() -> None:
    handle = writing_agent.run("kitaru")
    assert handle.wait() == "DRAFT ABOUT KITARU. [reviewed]"
    e = kitaru.KitaruClient().executions.get(handle.exec_id)
    assert e.metadata["topic"] == "kitaru" and e.metadata["stage"] == "completed"
    cps = {c.name: c for c in e.checkpoints}
    # repeated keys merge: nested dicts key by key
    assert cps["logged_draft"].metadata["draft_cost"] == {"usd": 0.001, "tokens": 42}
    assert cps["review"].metadata["quality_score"] == 0.93


# --- execution_management/client_execution_management.py ---------------------------------


@checkpoint
def write_summary(topic: str) -> str:
    kitaru.save("summary_context", {"topic": topic}, type="context")
    return f"Summary for {topic}."


@flow
def summarize_topic(topic: str) -> str:
    return write_summary(topic)


def test_client_execution_management() -> None:
    handle = summarize_topic.run("kitaru")
    assert handle.wait() == "Summary for kitaru."
    client = kitaru.KitaruClient()
    execution = client.executions.get(handle.exec_id)
    latest = client.executions.latest(flow="summarize_topic")
    assert latest.exec_id == execution.exec_id
    assert execution.status.value == "completed"
    artifacts = client.artifacts.list(handle.exec_id)
    assert sorted(a.name for a in artifacts) == ["summary_context", "write_summary"]
    context = next(a for a in artifacts if a.name == "summary_context")
    assert context.load() == {"topic": "kitaru"}


# --- execution_management/wait_and_resume.py (the runner keeps polling; another
# process answers with `kitaru executions input`, as the example prints) -----------------

WAITING = textwrap.dedent(
    """
    import kitaru
    from pydantic import BaseModel
    from kitaru import checkpoint, flow
    from kitaru.runtime import _get_current_execution_id

    class ReleaseDetails(BaseModel):
        notes: str
        major_version: int

    @checkpoint
    def draft_note(topic: str) -> str:
        return f"Draft about {topic}."

    @checkpoint
    def publish_note(draft: str, details: ReleaseDetails) -> str:
        return f"PUBLISHED v{details.major_version}: {draft} Notes: {details.notes}"

    @flow
    def approval(topic: str) -> str:
        draft = draft_note(topic)
        exec_id = _get_current_execution_id()
        print(f"  kitaru executions input {exec_id} --value true", flush=True)
        approved = kitaru.wait(name="approve_release", schema=bool,
                               question=f"Approve {topic}?", timeout=3600,
                               metadata={"topic": topic})
        if approved is False:
            return f"REJECTED: {topic}"
        details = kitaru.wait(name="release_details", schema=ReleaseDetails,
                              question="Release details?", timeout=60,
                              metadata={"topic": topic})
        return publish_note(draft, details)

    if __name__ == "__main__":
        print("Result:", approval.run("v1.0").wait(), flush=True)
    """
)


def _pending(exec_id: str, name: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        waits = kitaru.KitaruClient().executions.pending_waits(exec_id)
        if any(w.name == name for w in waits):
            return
        time.sleep(0.1)
    raise AssertionError(f"wait {name} never pending")


def test_wait_and_resume(tmp_path: Path) -> None:
    script = tmp_path / "approval.py"
    script.write_text(WAITING)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        exec_id = line.split("input ", 1)[1].split()[0]
        assert exec_id == line.split()[3]
        deadline = time.monotonic() + 60
        _pending(exec_id, "approve_release", deadline)
        answered = run_cli("executions", "input", exec_id, "--value", "true", check=True)
        assert "resume" not in answered.stdout  # the polling runner continues by itself
        _pending(exec_id, "release_details", deadline)
        details = json.dumps({"notes": "Bug fixes", "major_version": 2})
        run_cli("executions", "input", exec_id, "--wait", "release_details", "--value", details,
                check=True)  # fmt: skip
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Result: PUBLISHED v2: Draft about v1.0. Notes: Bug fixes" in out
    e = kitaru.KitaruClient().executions.get(exec_id)
    assert e.status == ExecutionStatus.COMPLETED
    assert [w.name for w in e.waits] == ["approve_release", "release_details"]


# --- replay/replay_with_overrides.py ----------------------------------------------------


@checkpoint
def notes_for(topic: str) -> str:
    return f"notes about {topic}"


@checkpoint
def write_draft(notes: str) -> str:
    return f"Draft from {notes}"


@checkpoint
def publish(draft: str) -> str:
    return f"PUBLISHED: {draft}"


@flow
def content_pipeline(topic: str) -> str:
    return publish(write_draft(notes_for(topic)))


def test_replay_with_overrides() -> None:
    source = content_pipeline.run("kitaru")
    assert source.wait() == "PUBLISHED: Draft from notes about kitaru"
    client = kitaru.KitaruClient()
    replayed = client.executions.replay(
        source.exec_id,
        from_="write_draft",
        overrides={"checkpoint.notes_for": "edited notes for kitaru"},
    )
    deadline = time.time() + 120
    while time.time() <= deadline:
        execution = client.executions.get(replayed.exec_id)
        if execution.status in {
            ExecutionStatus.COMPLETED,
            ExecutionStatus.FAILED,
            ExecutionStatus.CANCELLED,
        }:
            break
        time.sleep(0.05)
    assert execution.status == ExecutionStatus.COMPLETED
    publish_cp = next(cp for cp in execution.checkpoints if cp.name == "publish")
    assert str(publish_cp.artifacts[0].load()) == "PUBLISHED: Draft from edited notes for kitaru"
    assert execution.original_exec_id == source.exec_id


# --- llm/flow_with_llm.py ---------------------------------------------------------------


@checkpoint
def expand(topic: str, outline: str) -> str:
    return kitaru.llm(f"Write about {topic} from:\n{outline}", model="fast", name="draft_call")


@flow
def llm_writer(topic: str) -> str:
    outline = kitaru.llm(f"Outline {topic}.", model="fast", name="outline_call")
    return expand(topic, outline)


def test_flow_with_llm(fake_llm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from fake_llm import Reply

    for k, v in fake_llm.env().items():
        monkeypatch.setenv(k, v)
    run_cli("model", "register", "fast", "--model", "openai/gpt-5-nano", check=True)
    fake_llm.queue(Reply(text="- a\n- b\n- c"), Reply(text="A paragraph."))
    handle = llm_writer.run("kitaru")
    assert handle.wait() == "A paragraph."
    e = kitaru.KitaruClient().executions.get(handle.exec_id)
    assert {c.name for c in e.checkpoints} == {"outline_call", "expand"}
    assert [c.call for c in e.llm_calls] == ["outline_call", "draft_call"]
    assert os.environ.get("KITARU_LLM_MOCK_RESPONSE") is None


# --- memory/flow_with_memory.py ---------------------------------------------------------


@checkpoint
def next_count(current: Any) -> int:
    return int(current) + 1


@checkpoint
def analyse(topic: str, n: int) -> str:
    return f"Analyzed {topic!r} (topic #{n})"


@flow
def memory_walkthrough(namespace: str, topic: str) -> None:
    from kitaru import memory

    memory.configure(scope=namespace, scope_type="namespace")
    count = memory.get("sessions/topic_count")
    n = next_count(count)
    memory.set("sessions/topic_count", n)
    memory.set("sessions/last_topic", topic)
    memory.delete("scratch/obsolete")
    memory.configure(scope_type="execution")
    memory.set("progress/phase", "analysis")
    analysis = analyse(topic, n)
    memory.set("progress/phase", "synthesis")
    memory.configure(scope_type="flow")
    memory.set("summaries/latest", analysis)


def test_flow_with_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from kitaru import memory

    memory.configure(scope="repo_docs", scope_type="namespace")
    try:
        memory.set("conventions/test_runner", {"command": "just test"})
        memory.set("conventions/test_runner", {"command": "just test", "notes": "rerun"})
        memory.set("sessions/topic_count", 2)
        memory.set("scratch/obsolete", {"status": "delete inside flow"})
        handle = memory_walkthrough.run("repo_docs", "release_notes")
        while not handle.status.is_finished:
            time.sleep(0.05)
        assert handle.status.is_successful
    finally:
        memory._default = None
    client = kitaru.KitaruClient()
    execution = client.executions.get(handle.exec_id)
    assert execution.flow_id is not None
    # detached writes into the execution's scope, after the run
    client.memories.set("execution/notes", {"stage": "draft"}, scope=handle.exec_id,
                        scope_type="execution")  # fmt: skip
    count = client.memories.get("sessions/topic_count", scope="repo_docs", scope_type="namespace")
    assert count is not None and client.artifacts.get(count.artifact_id).load() == 3
    assert client.memories.get("scratch/obsolete", scope="repo_docs") is None
    phases = client.memories.history("progress/phase", scope=handle.exec_id,
                                     scope_type="execution")  # fmt: skip
    assert [e.version for e in phases] == [2, 1]
    summary = client.memories.get("summaries/latest", scope=execution.flow_id, scope_type="flow")
    assert summary is not None and summary.flow_name == "memory_walkthrough"
    assert {(s.scope_type, s.scope) for s in client.memories.scopes()} == {
        ("namespace", "repo_docs"),
        ("execution", handle.exec_id),
        ("flow", execution.flow_id),
    }
    monkeypatch.setenv("KITARU_LLM_MOCK_RESPONSE", "- use just test")
    compacted = client.memories.compact(scope="repo_docs", scope_type="namespace",
                                        keys=["conventions/test_runner", "sessions/topic_count"],
                                        target_key="summaries/conventions",
                                        instruction="Summarize.", model="openai/gpt-5-nano")  # fmt: skip
    assert compacted.model_dump(mode="json")["sources_read"] == 2
    purged = client.memories.purge("conventions/test_runner", scope="repo_docs",
                                   scope_type="namespace", keep=1)  # fmt: skip
    assert purged.versions_deleted == 1
    log = client.memories.compaction_log(scope="repo_docs", scope_type="namespace")
    assert [r.operation for r in log] == ["purge", "compact"]


# --- pydantic_ai_agent/pydantic_ai_adapter.py -----------------------------------------------


def gather_context() -> str:
    """Simple tool used by the test model during the agent loop."""
    return "context-ready"


research_agent = kp.wrap(
    Agent(TestModel(), name="researcher", tools=[gather_context]),
    tool_capture_config={"mode": "full"},
)


@checkpoint(type="llm_call")
def run_research(topic: str) -> str:
    return research_agent.run_sync(f"Research {topic} and summarize findings.").output


@flow
def research_flow(topic: str) -> str:
    return run_research(topic)


def test_pydantic_ai_adapter() -> None:
    handle = research_flow.run("kitaru")
    assert handle.wait() == '{"gather_context":"context-ready"}'
    (call,) = kitaru.KitaruClient().executions.get(handle.exec_id).checkpoints
    events = call.metadata["pydantic_ai_events"]
    kinds = [e["type"] for e in sorted(events.values(), key=lambda e: e["sequence_index"])]
    assert kinds == ["llm_call", "tool_call", "llm_call"]
    (summary,) = call.metadata["pydantic_ai_run_summaries"].values()
    assert (summary["model_call_count"], summary["tool_call_count"]) == (2, 1)
    tool = next(e for e in events.values() if e["type"] == "tool_call")
    assert tool["tool_name"] == "gather_context" and tool["capture_mode"] == "full"
    names = {a.name: a for a in call.artifacts}
    assert names[tool["artifacts"][1]].load() == "context-ready"
    # the inline model requests are in the execution's cost ledger, on this checkpoint
    assert len(call.metadata["llm_calls"]) == 2


@pytest.mark.skipif(
    not os.environ.get("KITARU04"),
    reason="set KITARU04 to a Kitaru 0.4 checkout to run its published examples unchanged",
)
def test_the_published_examples_run_unchanged() -> None:
    runner = Path(__file__).with_name("run_kitaru04_examples.py")
    proc = subprocess.run(
        [sys.executable, str(runner), os.environ["KITARU04"]],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
