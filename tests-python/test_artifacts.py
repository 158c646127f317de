"""`kitaru.save()` / `kitaru.load()` and `KitaruClient().artifacts` (Kitaru 0.4's rules)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import kitaru
import pytest
from kitaru import KitaruClient, checkpoint, flow

ATTEMPTS: list[int] = []


@checkpoint
def research(topic: str) -> str:
    kitaru.save("research_context", {"topic": topic, "sources": 3}, type="context", tags=["t"])
    kitaru.save("draft", "first")
    kitaru.save("draft", "second")  # a new version
    return f"notes about {topic}"


@checkpoint
def later(exec_id: str, name: str) -> Any:
    return kitaru.load(exec_id, name)


@flow
def producer(topic: str) -> str:
    return research(topic)


@flow
def consumer(exec_id: str, name: str) -> Any:
    return later(exec_id, name)


@checkpoint(retries=1)
def flaky_saver() -> str:
    ATTEMPTS.append(1)
    kitaru.save("attempt", len(ATTEMPTS))
    if len(ATTEMPTS) == 1:
        raise RuntimeError("first attempt fails after saving")
    return "ok"


@flow
def retried() -> str:
    return flaky_saver()


@checkpoint
def saves_ctx(i: int) -> int:
    kitaru.save("ctx", i)
    return i


@flow
def two_savers() -> list[int]:
    return [saves_ctx(1), saves_ctx(2)]


def test_load_finds_a_saved_artifact_or_a_checkpoint_output() -> None:
    source = producer.run("kitaru")
    assert source.wait() == "notes about kitaru"
    assert consumer.run(source.exec_id, "research_context").wait() == {
        "topic": "kitaru",
        "sources": 3,
    }
    assert consumer.run(source.exec_id, "draft").wait() == "second"  # the latest version
    # no artifact of that name: the output of the checkpoint (by name or call id)
    assert consumer.run(source.exec_id, "research").wait() == "notes about kitaru"


def test_load_errors_name_what_there_is() -> None:
    source = producer.run("x")
    failed = consumer.run(source.exec_id, "nothing")
    with pytest.raises(kitaru.KitaruExecutionError, match=r"No artifact named 'nothing'.*draft"):
        failed.wait()
    both = two_savers.run()
    ambiguous = consumer.run(both.exec_id, "ctx")
    with pytest.raises(kitaru.KitaruExecutionError, match="Multiple artifacts named 'ctx'"):
        ambiguous.wait()
    with pytest.raises(kitaru.KitaruExecutionError, match="execution id"):
        consumer.run("not/an id", "x").wait()


@flow
def saves_in_its_body() -> None:
    kitaru.save("x", 1)


def test_save_and_load_only_inside_a_checkpoint() -> None:
    with pytest.raises(kitaru.KitaruContextError, match="inside a @checkpoint"):
        kitaru.save("x", 1)
    with pytest.raises(kitaru.KitaruContextError, match="inside a @checkpoint"):
        kitaru.load("some-id", "x")
    handle = saves_in_its_body.run()
    with pytest.raises(kitaru.KitaruExecutionError, match="inside a @checkpoint"):
        handle.wait()


@checkpoint
def typed(kind: str, tags: Any) -> None:
    kitaru.save("x", 1, type=kind, tags=tags)


@flow
def typed_flow(kind: str, tags: Any) -> None:
    typed(kind, tags)


@pytest.mark.parametrize(
    ("kind", "tags", "message"),
    [("picture", None, "type must be one of"), ("OUTPUT", "one-tag", "list of strings")],
)
def test_bad_type_and_tags_are_usage_errors(kind: str, tags: Any, message: str) -> None:
    with pytest.raises(kitaru.KitaruExecutionError, match=message):
        typed_flow.run(kind, tags).wait()
    assert typed_flow.run("OUTPUT", ["fine"]).wait() is None  # any case, a list of strings


def test_an_attempt_that_fails_leaves_no_artifact_behind() -> None:
    ATTEMPTS.clear()
    handle = retried.run()
    assert handle.wait() == "ok"
    e = KitaruClient().executions.get(handle.exec_id)
    saved = [a for a in e.artifacts if a.name == "attempt"]
    assert [(a.load(), a.metadata["version"]) for a in saved] == [(2, 1)]


def test_the_client_lists_and_gets_artifacts() -> None:
    source = producer.run("lists")
    client = KitaruClient()
    arts = client.artifacts.list(source.exec_id)
    assert sorted((a.name, a.kind, a.save_type) for a in arts) == [
        ("draft", "output", "manual"),
        ("draft", "output", "manual"),
        ("research", "output", "step_output"),
        ("research_context", "context", "manual"),
    ]
    (ctx,) = client.artifacts.list(source.exec_id, name="research_context")
    assert ctx.metadata["tags"] == ["t"] and ctx.producing_call == "research"
    assert client.artifacts.get(ctx.artifact_id).load() == {"topic": "lists", "sources": 3}
    second = client.artifacts.get(f"{source.exec_id}/research/draft@2")
    assert second.load() == "second"
    assert client.artifacts.list(source.exec_id, kind="context", limit=5) == [ctx]
    with pytest.raises(kitaru.KitaruRuntimeError, match="No artifact"):
        client.artifacts.get(f"{source.exec_id}/research/nope")
    # the checkpoint's own metadata does not show the bookkeeping
    (call,) = client.executions.get(source.exec_id).checkpoints
    assert "kitaru_artifacts" not in call.metadata


@checkpoint
def finish_up(notes: str) -> str:
    return notes.upper()


@flow
def two_step(topic: str) -> str:
    return finish_up(research(topic))


def test_artifacts_travel_with_a_replay() -> None:
    source = two_step.run("replayed")
    replay = two_step.replay(source.exec_id, from_="finish_up")
    # research was taken over (not run): its saved artifacts came with it
    assert consumer.run(replay.exec_id, "research_context").wait()["topic"] == "replayed"
    assert consumer.run(replay.exec_id, "draft").wait() == "second"


SCRIPT = textwrap.dedent(
    """
    import sys
    import kitaru
    from kitaru import checkpoint, flow

    @checkpoint
    def make() -> str:
        kitaru.save("report", {"pages": 12}, type="output")
        return "made"

    @checkpoint
    def read(exec_id: str) -> object:
        return kitaru.load(exec_id, "report")

    @flow
    def maker() -> str:
        return make()

    @flow
    def reader(exec_id: str) -> object:
        return read(exec_id)

    if __name__ == "__main__":
        if sys.argv[1] == "make":
            print(maker.run().exec_id)
        else:
            print(reader.run(sys.argv[2]).wait())
    """
)


def test_save_in_one_process_load_in_another(tmp_path: Path) -> None:
    (tmp_path / "report.py").write_text(SCRIPT)
    env = os.environ.copy()

    def run(*args: str) -> str:
        out = subprocess.run([sys.executable, "report.py", *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    made = run("make")
    assert run("read", made) == "{'pages': 12}"


@checkpoint
def twice(x: int) -> int:
    return x * 10


@flow
def calls_twice() -> list[int]:
    return [twice(1), twice(2)]


def test_a_call_id_names_one_call_even_when_the_checkpoint_ran_twice() -> None:
    source = calls_twice.run()
    assert consumer.run(source.exec_id, "twice").wait() == 10  # the call id of the first
    assert consumer.run(source.exec_id, "twice_2").wait() == 20
