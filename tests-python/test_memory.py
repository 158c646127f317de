"""`kitaru.memory`: Kitaru 0.4's semantics, and consistency under crash, retry and replay."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import kitaru
import pytest
from conftest import cli_json, run_cli
from kitaru import KitaruClient, checkpoint, flow, memory
from kitaru.memory import MemoryEntry

SEEN: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _clean() -> Any:
    SEEN.clear()
    memory._default = None
    yield
    memory._default = None


@checkpoint
def inside() -> None:
    memory.get("x")


@checkpoint
def bump(n: int) -> int:
    return n + 1


@flow
def counter(topic: str) -> int:
    memory.configure(scope="repo_docs", scope_type="namespace")
    count = memory.get("sessions/topic_count") or 0
    count = bump(count)
    memory.set("sessions/topic_count", count)
    memory.set("sessions/last_topic", topic)
    return count


@flow
def default_scope() -> list[str]:
    memory.set("notes", "flow-scoped")
    memory.configure(scope_type="execution")
    memory.set("progress", 1)
    return [e.key for e in memory.list()]


@flow
def nested() -> None:
    inside()


def test_namespace_memory_across_executions_and_outside_flows() -> None:
    assert counter.run("a").wait() == 1
    assert counter.run("b").wait() == 2
    memory.configure(scope="repo_docs")  # outside a flow: namespace by default
    assert memory.get("sessions/topic_count") == 2
    assert memory.get("sessions/topic_count", version=1) == 1
    assert [e.version for e in memory.history("sessions/topic_count")] == [2, 1]
    assert [e.key for e in memory.list()] == ["sessions/last_topic", "sessions/topic_count"]
    memory.set("conventions/test_runner", "pytest")
    gone = memory.delete("sessions/last_topic")
    assert gone is not None and gone.is_deleted and gone.version == 3
    assert memory.get("sessions/last_topic") is None
    assert memory.delete("sessions/last_topic") == gone  # already deleted: its tombstone
    assert memory.delete("never/set") is None
    hist = memory.history("sessions/last_topic")
    assert [(e.version, e.is_deleted) for e in hist] == [(3, True), (2, False), (1, False)]
    assert memory.get("sessions/last_topic", version=2) == "b"
    entry = memory.history("sessions/topic_count")[0]
    assert isinstance(entry, MemoryEntry) and entry.scope_type == "namespace"
    assert entry.execution_id is not None and entry.flow_name == "counter"
    assert entry.value_type == "int"


def test_default_scopes_are_the_flow_and_the_execution() -> None:
    h = default_scope.run()
    assert h.wait() == ["progress"]
    e = KitaruClient().executions.get(h.exec_id)
    assert e.flow_id is not None
    client = KitaruClient()
    assert client.memories.get("notes", scope=e.flow_id, scope_type="flow") is not None
    entry = client.memories.get("progress", scope=h.exec_id, scope_type="execution")
    assert entry is not None and entry.execution_id == h.exec_id
    assert client.artifacts.get(entry.artifact_id).load() == 1


def test_errors_in_the_wrong_context() -> None:
    with pytest.raises(kitaru.KitaruStateError, match="requires an explicit scope"):
        memory.get("x")
    with pytest.raises(kitaru.KitaruUsageError, match="requires `scope=` or `scope_type=`"):
        memory.configure()
    with pytest.raises(kitaru.KitaruUsageError, match="requires an explicit `scope=`"):
        memory.configure(scope_type="namespace")
    with pytest.raises(kitaru.KitaruContextError, match="inside a @flow"):
        memory.configure(scope_type="flow")
    with pytest.raises(kitaru.KitaruUsageError, match="Colons are not allowed"):
        memory.configure(scope="a:b")
    memory.configure(scope="ok")
    with pytest.raises(kitaru.KitaruUsageError, match="reserved"):
        memory.set("_compaction/x", 1)
    with pytest.raises(kitaru.KitaruUsageError, match="version must be an integer"):
        memory.get("x", version=0)
    with pytest.raises(kitaru.KitaruUsageError, match="scope_type must be one of"):
        memory.configure(scope="x", scope_type="global")
    h = nested.run()
    with pytest.raises(kitaru.KitaruExecutionError, match="cannot be called inside a @checkpoint"):
        h.wait()


def test_client_and_cli_surface() -> None:
    client = KitaruClient()
    for v in ({"stage": "draft"}, {"stage": "final"}):
        client.memories.set("notes", v, scope="proj")
    client.memories.set("tmp", 1, scope="proj")
    client.memories.delete("tmp", scope="proj")
    assert [e.key for e in client.memories.list(scope="proj")] == ["notes"]
    assert client.memories.get("tmp", scope="proj") is None  # deleted: history has it
    assert [e.is_deleted for e in client.memories.history("tmp", scope="proj")] == [True, False]
    assert [s.model_dump() for s in client.memories.scopes()] == [
        {"scope": "proj", "scope_type": "namespace", "entry_count": 1}
    ]
    listed = cli_json("memory", "list", "--scope", "proj")
    assert [e["key"] for e in listed["items"]] == ["notes"]
    got = cli_json("memory", "get", "notes", "--scope", "proj")["item"]
    assert got["value"] == {"stage": "final"} and got["entry"]["version"] == 2
    assert cli_json("memory", "set", "n", "41", "--scope", "proj")["item"]["version"] == 1
    assert client.memories.value("n", scope="proj") == 41
    hist = cli_json("memory", "history", "notes", "--scope", "proj")["items"]
    assert [e["version"] for e in hist] == [2, 1]
    res = client.memories.purge("notes", scope="proj", keep=1)
    assert (res.versions_deleted, res.keys_affected) == (1, 1)
    assert [e.version for e in client.memories.history("notes", scope="proj")] == [2]
    with pytest.raises(kitaru.KitaruUsageError, match="keep"):
        client.memories.purge("notes", scope="proj", keep=-1)
    res = client.memories.purge_scope(scope="proj", include_deleted=True)
    assert res.versions_deleted == 4  # notes v2, n v1, tmp v1 + its tombstone
    log = client.memories.compaction_log(scope="proj")
    assert [r.operation for r in log] == ["purge", "purge"]
    assert run_cli("memory", "get", "gone", "--scope", "proj").returncode == 1


def test_compaction_through_a_mocked_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_LLM_MOCK_RESPONSE", "- run tests with pytest\n- use uv")
    client = KitaruClient()
    client.memories.set("conventions/test_runner", {"command": "pytest"}, scope="repo")
    client.memories.set("conventions/python", {"runner": "uv"}, scope="repo")
    res = client.memories.compact(
        scope="repo",
        keys=["conventions/test_runner", "conventions/python"],
        target_key="summaries/conventions",
        instruction="Summarize in bullets.",
        model="openai/gpt-4o-mini",
    )
    assert res.sources_read == 2 and res.entry.key == "summaries/conventions"
    assert client.artifacts.get(res.entry.artifact_id).load() == "- run tests with pytest\n- use uv"
    record = client.memories.compaction_log(scope="repo")[0]
    assert record.operation == "compact" and record.target_version == 1
    assert record.source_keys == ["conventions/test_runner", "conventions/python"]
    with pytest.raises(kitaru.KitaruUsageError, match="requires `target_key`"):
        client.memories.compact(scope="repo", keys=["a", "b"])
    client.memories.set("notes", "one", scope="repo")
    client.memories.set("notes", "two", scope="repo")
    hist = client.memories.compact(scope="repo", key="notes", source_mode="history",
                                   model="openai/gpt-4o-mini")  # fmt: skip
    assert hist.sources_read == 2 and hist.compaction_record.source_versions == [2, 1]
    assert hist.entry.key == "notes" and hist.entry.version == 3
    # the compaction ran as an execution: its model call is in a cost ledger
    latest = client.executions.latest(flow="kitaru_memory_compact")
    assert [c.call for c in latest.llm_calls] == ["compaction"]


# --- consistent under crash, retry and replay ------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from kitaru import checkpoint, flow, memory

    @checkpoint
    def step(label: str) -> str:
        with open(os.environ["LEDGER"], "a") as f:
            f.write(label + "\\n")
        return label

    if os.environ.get("KILL_IN_WRITE"):
        # Die between the version's write and the journal record of the set: the window
        # a retry must not write twice in.
        import kitaru.memory as km
        real = km._store

        class Killer:
            def __init__(self, store):
                self.store = store
            def __getattr__(self, name):
                return getattr(self.store, name)
            def memory_write(self, *a, **k):
                self.store.memory_write(*a, **k)
                os.kill(os.getpid(), signal.SIGKILL)

        km._store = lambda run: Killer(real(run))

    @flow
    def remember(topic: str) -> str:
        memory.configure(scope="agent")
        seen = memory.get("counter") or 0
        memory.set("counter", seen + 1)
        if os.environ.get("KILL_AFTER_SET"):
            os.kill(os.getpid(), signal.SIGKILL)
        step(f"after set {seen}")
        again = memory.get("counter")
        return f"{topic}: saw {seen}, then {again}"

    if __name__ == "__main__":
        print(remember.run(sys.argv[1]).exec_id, flush=True)
    """
)


def _script(tmp_path: Path) -> Path:
    path = tmp_path / "remember.py"
    path.write_text(SCRIPT)
    return path


@pytest.mark.parametrize("kill", ["KILL_AFTER_SET", "KILL_IN_WRITE"])
def test_a_set_before_a_sigkill_is_written_once_and_read_back_alike(
    tmp_path: Path, kill: str
) -> None:
    """Killed after the set was recorded, or after its version was written but before
    the set was recorded: either way the retry leaves one version."""
    script = _script(tmp_path)
    env = {**os.environ, "LEDGER": str(tmp_path / "ledger"), kill: "1"}
    memory.configure(scope="agent")
    memory.set("counter", 10)
    proc = subprocess.run([sys.executable, str(script), "t"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # a write by someone else between the crash and the retry
    memory.set("other", "unrelated")
    (exec_id,) = [e.exec_id for e in KitaruClient().executions.list(flow="remember")]
    env.pop(kill)
    retry = subprocess.run([sys.executable, "-m", "kitaru.cli", "executions", "retry", exec_id],
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert KitaruClient().executions.result(exec_id) == "t: saw 10, then 11"
    history = memory.history("counter")
    assert [e.version for e in history] == [2, 1]  # the killed run's write, once
    assert history[0].execution_id == exec_id
    assert (tmp_path / "ledger").read_text().splitlines() == ["after set 10"]


def test_a_replay_reads_what_its_source_read_before_its_frontier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read taken over from the source returns what it returned there, even when the
    value changed since; from a set on, the replay writes a new version."""
    script = _script(tmp_path)
    monkeypatch.setenv("LEDGER", str(tmp_path / "ledger"))  # the replays run in this process
    env = {**os.environ, "LEDGER": str(tmp_path / "ledger")}
    memory.configure(scope="agent")
    memory.set("counter", 5)
    out = subprocess.run([sys.executable, str(script), "r"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    exec_id = out.stdout.split()[0]
    memory.set("counter", 100)  # changed after the run
    client = KitaruClient()
    replayed = client.executions.replay(exec_id, from_="kitaru_memory_get_2")
    assert client.executions.result(replayed.exec_id) == "r: saw 5, then 100"
    replayed = client.executions.replay(exec_id, from_="kitaru_memory_set")
    # from the set on, everything runs live: the set writes a new version
    assert client.executions.result(replayed.exec_id) == "r: saw 5, then 6"
    assert memory.get("counter") == 6
    assert [e.version for e in memory.history("counter")][:2] == [4, 3]


@pytest.mark.both_stores
def test_racing_writers_never_lose_a_write(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        from kitaru import memory
        memory.configure(scope="race")
        for i in range(5):
            memory.set("key", f"{sys.argv[1]}-{i}")
        """
    )
    script = tmp_path / "writer.py"
    script.write_text(code)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(n)], stderr=subprocess.PIPE, text=True)
        for n in range(6)
    ]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    memory.configure(scope="race")
    history = memory.history("key")
    assert [e.version for e in history] == list(range(30, 0, -1))
    values = {memory.get("key", version=v) for v in range(1, 31)}
    assert values == {f"{n}-{i}" for n in range(6) for i in range(5)}


def test_memory_entries_dump_like_kitaru_04() -> None:
    memory.configure(scope="dump")
    memory.set("k", [1, 2])
    (entry,) = memory.list()
    dumped = entry.model_dump(mode="json")
    assert set(dumped) == {
        "key", "value_type", "version", "scope", "scope_type", "created_at", "is_deleted",
        "artifact_id", "execution_id", "flow_id", "flow_name",
    }  # fmt: skip
    assert json.loads(json.dumps(dumped))["value_type"] == "list"
