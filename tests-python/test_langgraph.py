"""LangGraph graphs on kitaru: `durable(graph)` in flows (SIGKILL and retry from the CLI,
`interrupt()` as a wait answered from other processes, the functional API, async), and
`KitaruSaver` as a plain LangGraph checkpointer. Real langgraph throughout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from conftest import cli_json, ledger, run_cli, write_script

pytest.importorskip("langgraph")

GRAPH = """
import os, signal, sys
from typing import TypedDict
from langgraph.func import entrypoint, task
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from kitaru import flow
from kitaru.adapters.langgraph import durable

LEDGER = os.environ["LEDGER"]


def mark(event):
    with open(LEDGER, "a") as f:
        f.write(event + "\\n")


class State(TypedDict):
    x: int
    approved: bool


def add_one(s):
    mark("add_one")
    return {"x": s["x"] + 1}


def times_ten(s):
    mark("times_ten")
    if os.environ.get("KILL") == "times_ten":
        os.kill(os.getpid(), signal.SIGKILL)
    return {"x": s["x"] * 10}


def approve(s):
    ok = True
    if os.environ.get("ASK"):
        ok = interrupt({"question": "Publish %d?" % s["x"], "response_schema": {"type": "boolean"}})
    mark("approve %s" % ok)
    return {"x": s["x"] + 5, "approved": ok}


builder = StateGraph(State)
builder.add_node("add_one", add_one)
builder.add_node("times_ten", times_ten)
builder.add_node("approve", approve)
builder.add_edge(START, "add_one")
builder.add_edge("add_one", "times_ten")
builder.add_edge("times_ten", "approve")
builder.add_edge("approve", END)
graph = builder.compile()


@task
def double(x: int) -> int:
    mark("double %d" % x)
    if os.environ.get("KILL") == "double %d" % x:
        os.kill(os.getpid(), signal.SIGKILL)
    return 2 * x


@entrypoint()
def doubler(xs: list) -> int:
    return sum(double(x).result() for x in xs)


@flow
def pipeline(x: int) -> dict:
    return durable(graph, name="pipeline").invoke({"x": x, "approved": False})


@flow
def functional(n: int) -> int:
    return durable(doubler).invoke(list(range(1, n + 1)))


if __name__ == "__main__":
    f = pipeline if sys.argv[1] == "graph" else functional
    handle = f.run(int(sys.argv[2]))
    print(handle.exec_id, flush=True)
    print(handle.wait(), flush=True)
"""


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "graph.py"
    if not script.exists():
        write_script(tmp_path, "graph.py", GRAPH)
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        env={**os.environ, "LEDGER": str(tmp_path / "ledger.txt"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _latest(tmp_path: Path) -> str:
    return str(cli_json("executions", "list", cwd=tmp_path)["items"][0]["exec_id"])


def _env(tmp_path: Path, **env: str) -> dict[str, str]:
    return {"LEDGER": str(tmp_path / "ledger.txt"), **env}


@pytest.mark.both_stores
def test_sigkill_in_node_two_retry_does_not_run_node_one_again(tmp_path: Path) -> None:
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    clean = _run(clean_dir, "graph", "4")
    assert clean.returncode == 0, clean.stderr
    expected = clean.stdout.splitlines()[1]
    assert expected == "{'x': 55, 'approved': True}"

    crashed = _run(tmp_path, "graph", "4", KILL="times_ten")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    exec_id = _latest(tmp_path)
    assert ledger(tmp_path / "ledger.txt") == ["add_one", "times_ten"]
    got = cli_json("executions", "get", exec_id, cwd=tmp_path)["item"]
    assert [c["name"] for c in got["checkpoints"]] == ["pipeline.add_one"]

    retried = run_cli("executions", "retry", exec_id, cwd=tmp_path, env=_env(tmp_path))
    assert retried.returncode == 0, retried.stdout + retried.stderr
    # add_one ran once in all; times_ten again (it was cut short), then approve.
    assert ledger(tmp_path / "ledger.txt") == [
        "add_one", "times_ten", "times_ten", "approve True"
    ]  # fmt: skip
    from kitaru import KitaruClient

    assert str(KitaruClient().executions.result(exec_id)) == expected
    got = cli_json("executions", "get", exec_id, cwd=tmp_path)["item"]
    calls = got["checkpoints"]
    assert [(c["name"], c["checkpoint_type"]) for c in calls] == [
        ("pipeline.add_one", "graph_node"),
        ("pipeline.times_ten", "graph_node"),
        ("pipeline.approve", "graph_node"),
    ]
    # a retry of the finished execution's flow body would find the graph finished
    assert got["status"] == "completed"


def test_interrupt_waits_and_an_answer_from_other_processes_resumes_the_graph(
    tmp_path: Path,
) -> None:
    proc = _run(tmp_path, "graph", "2", ASK="1", KITARU_WAIT_TIMEOUT="0")
    exec_id = proc.stdout.split()[0]
    got = cli_json("executions", "get", exec_id, cwd=tmp_path)["item"]
    assert got["status"] == "waiting", proc.stderr
    wait = got["pending_wait"]
    assert wait["question"] == "Publish 30?"
    assert wait["metadata"]["adapter"] == "langgraph"
    assert ledger(tmp_path / "ledger.txt") == ["add_one", "times_ten"]

    env = _env(tmp_path, ASK="1")
    bad = run_cli("executions", "input", exec_id, "--value", '"sure"', cwd=tmp_path, env=env)
    assert bad.returncode != 0 and "boolean" in bad.stdout + bad.stderr
    run_cli("executions", "input", exec_id, "--value", "false", cwd=tmp_path, env=env, check=True)
    run_cli("executions", "resume", exec_id, cwd=tmp_path, env=env, check=True)
    from kitaru import KitaruClient

    assert KitaruClient().executions.result(exec_id) == {"x": 35, "approved": False}
    # the nodes before the interrupt did not run again; approve got the answer
    assert ledger(tmp_path / "ledger.txt") == ["add_one", "times_ten", "approve False"]


def test_functional_api_tasks_finished_before_a_crash_are_not_run_again(
    tmp_path: Path,
) -> None:
    crashed = _run(tmp_path, "functional", "4", KILL="double 3")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    exec_id = _latest(tmp_path)
    retried = run_cli("executions", "retry", exec_id, cwd=tmp_path, env=_env(tmp_path))
    assert retried.returncode == 0, retried.stdout + retried.stderr
    from kitaru import KitaruClient

    assert KitaruClient().executions.result(exec_id) == 20
    assert ledger(tmp_path / "ledger.txt") == [
        "double 1", "double 2", "double 3", "double 3", "double 4"
    ]  # fmt: skip
    names = [c.name for c in KitaruClient().executions.get(exec_id).checkpoints]
    assert names.count("doubler.task") == 1 and "doubler.task_4" in names


# --- in-process -------------------------------------------------------------------------

from kitaru import flow  # noqa: E402
from kitaru.adapters.langgraph import KitaruSaver, durable  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.graph.message import add_messages  # noqa: E402

SEEN: list[str] = []


class Conversation(TypedDict):
    messages: Annotated[list[Any], add_messages]


class Doc(TypedDict):
    text: str
    summary: str


def draft(s: Doc) -> dict[str, str]:
    SEEN.append("draft")
    return {"text": s["text"] + " drafted"}


def summarize(s: Doc) -> dict[str, str]:
    import kitaru

    SEEN.append("summarize")
    if os.environ.get("SUMMARY_FAILS"):
        raise RuntimeError("summarizer down")
    return {"summary": kitaru.llm("Summarize: " + s["text"], model="openai/gpt-4o-mini")}


_b = StateGraph(Doc)
_b.add_node("draft", draft)
_b.add_node("summarize", summarize)
_b.add_edge(START, "draft")
_b.add_edge("draft", "summarize")
_b.add_edge("summarize", END)
doc_graph = _b.compile()


@flow
async def write_doc(text: str) -> dict[str, Any]:
    return await durable(doc_graph, name="doc").ainvoke({"text": text, "summary": ""})  # type: ignore[no-any-return]


def test_async_graph_in_an_async_flow_retries_from_the_failed_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kitaru import KitaruClient

    monkeypatch.setenv("KITARU_LLM_MOCK_RESPONSE", "short")
    monkeypatch.setenv("SUMMARY_FAILS", "1")
    SEEN.clear()
    handle = write_doc.run("notes")
    with pytest.raises(Exception, match="summarizer down"):
        handle.wait()
    monkeypatch.delenv("SUMMARY_FAILS")
    KitaruClient().executions.retry(handle.exec_id)
    assert SEEN == ["draft", "summarize", "summarize"]
    assert KitaruClient().executions.result(handle.exec_id) == {
        "text": "notes drafted", "summary": "short"
    }  # fmt: skip
    calls = KitaruClient().executions.get(handle.exec_id).checkpoints
    # the llm() call inside the node is a checkpoint of its own, next to the nodes'
    assert [(c.name, c.checkpoint_type) for c in calls] == [
        ("doc.draft", "graph_node"),
        ("llm_1", "llm_call"),
        ("doc.summarize", "graph_node"),
    ]


def test_outside_a_flow_durable_runs_the_graph_as_it_is() -> None:
    SEEN.clear()
    os.environ["KITARU_LLM_MOCK_RESPONSE"] = "x"
    try:
        with pytest.raises(Exception, match="inside a @flow"):
            durable(doc_graph).invoke({"text": "t", "summary": ""})
    finally:
        del os.environ["KITARU_LLM_MOCK_RESPONSE"]
    assert SEEN == ["draft", "summarize"]  # ran plainly, until llm() wanted a flow


def test_saver_as_a_plain_checkpointer_keeps_history_and_shares_unchanged_values() -> None:
    class Chat(TypedDict):
        big: str
        turn: int

    def step(s: Chat) -> dict[str, int]:
        return {"turn": s["turn"] + 1}

    b = StateGraph(Chat)
    b.add_node("step", step)
    b.add_edge(START, "step")
    b.add_edge("step", END)
    saver = KitaruSaver()
    g = b.compile(checkpointer=saver)
    cfg: Any = {"configurable": {"thread_id": "chat-1"}}
    big = "context " * 2000  # a large channel that never changes after the first turn
    g.invoke({"big": big, "turn": 0}, cfg)
    g.invoke({"turn": 5}, cfg)
    assert g.get_state(cfg).values == {"big": big, "turn": 6}
    history = list(g.get_state_history(cfg))
    assert len(history) >= 4 and all(h.values.get("big") == big for h in history if h.values)
    # the large value is stored once as the channel and once inside the first input
    # (LangGraph's `__start__` channel): two blobs, however many checkpoints follow
    assert len(saver.store.keys("blobs")) == 2
    for n in range(3):
        g.invoke({"turn": n}, cfg)
    assert len(saver.store.keys("blobs")) == 2
    assert saver.store.graph_threads() == ["chat-1"]
    saver.delete_thread("chat-1")
    assert g.get_state(cfg).values == {}


def test_a_growing_conversation_is_stored_as_deltas_and_read_back_whole() -> None:
    from langchain_core.messages import AIMessage, HumanMessage

    def reply(s: Conversation) -> dict[str, Any]:
        return {"messages": [AIMessage(content=f"answer {len(s['messages'])} " + "x" * 600)]}

    b = StateGraph(Conversation)
    b.add_node("reply", reply)
    b.add_edge(START, "reply")
    b.add_edge("reply", END)
    saver = KitaruSaver()
    g = b.compile(checkpointer=saver)
    cfg: Any = {"configurable": {"thread_id": "long-chat"}}
    for i in range(40):
        g.invoke({"messages": [HumanMessage(content=f"question {i} " + "y" * 600)]}, cfg)

    # Another saver (as in another process: nothing cached) reads the same history.
    cold = b.compile(checkpointer=KitaruSaver())
    ours = [h.values for h in g.get_state_history(cfg)]
    theirs = [h.values for h in cold.get_state_history(cfg)]
    assert theirs == ours
    final = cold.get_state(cfg).values["messages"]
    assert len(final) == 80 and final[-1].content.startswith("answer 79 ")
    # Stored: about the conversation once (plus a whole copy every 32 versions), not the
    # ~40 whole copies a checkpointer that stores each version whole keeps.
    whole = sum(
        len(saver.serde.dumps_typed(h.values.get("messages", []))[1])
        for h in g.get_state_history(cfg)
    )
    _, blob_bytes = saver.store.usage("blobs")
    _, record_bytes = saver.store.usage("graph")
    assert blob_bytes + record_bytes < whole / 5, (blob_bytes, record_bytes, whole)


def test_threads_are_listed_and_inspected_through_the_client() -> None:
    from kitaru import KitaruClient

    saver = KitaruSaver()
    g = doc_graph.copy(update={"checkpointer": saver})
    os.environ["KITARU_LLM_MOCK_RESPONSE"] = "s"
    try:
        with pytest.raises(Exception, match="inside a @flow"):
            g.invoke({"text": "t", "summary": ""}, {"configurable": {"thread_id": "docs-1"}})
    finally:
        del os.environ["KITARU_LLM_MOCK_RESPONSE"]
    (thread,) = KitaruClient().graphs.list()
    assert thread.thread_id == "docs-1" and thread.namespaces == [""]
    assert thread.checkpoints == 3 and thread.size > 0  # input, start, after draft
    cps = KitaruClient().graphs.get("docs-1")
    assert [c.step for c in cps] == [1, 0, -1]
    assert cps[0].parent_id == cps[1].checkpoint_id and cps[0].source == "loop"
    assert cps[0].pending_writes == 1 and "text" in cps[0].channels  # summarize's error
    assert thread.latest_checkpoint_id == cps[0].checkpoint_id
    assert KitaruClient().graphs.get("no-such-thread") == []
