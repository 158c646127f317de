"""Replay: a new execution that takes over its source's results before a checkpoint, with
outputs overridden, and runs the rest live (Kitaru 0.4's `replay`, on kitaru's store)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import kitaru
import pytest
from conftest import run_cli
from kitaru import KitaruClient, checkpoint, flow

RAN: list[str] = []


@checkpoint
def research(topic: str) -> str:
    RAN.append("research")
    return f"notes about {topic}"


@checkpoint
def write_draft(notes: str) -> str:
    RAN.append("write_draft")
    return f"Draft from {notes}"


@checkpoint
def publish(draft: str) -> str:
    RAN.append("publish")
    return f"PUBLISHED: {draft}"


@flow
def content_pipeline(topic: str) -> str:
    return publish(write_draft(research(topic)))


@checkpoint
def fetch(url: str) -> str:
    RAN.append(f"fetch {url}")
    return url.upper()


@flow
def crawler() -> list[str]:
    return [fetch("a"), fetch("b"), fetch("c")]


@flow
def named_pages() -> list[str]:
    return [fetch("h", id="home"), fetch("a", id="about")]


@pytest.mark.both_stores
def test_replay_with_an_override_runs_only_from_the_frontier(store_backend: str) -> None:
    source = content_pipeline.run("kitaru")
    assert source.wait() == "PUBLISHED: Draft from notes about kitaru"
    RAN.clear()
    replay = content_pipeline.replay(
        source.exec_id,
        from_="write_draft",
        overrides={"checkpoint.research": "edited notes for kitaru"},
    )
    assert replay.exec_id != source.exec_id
    assert replay.wait() == "PUBLISHED: Draft from edited notes for kitaru"
    assert RAN == ["write_draft", "publish"]  # research was not run again
    e = KitaruClient().executions.get(replay.exec_id)
    assert e.original_exec_id == source.exec_id
    taken = {c.name: c.original_call_id for c in e.checkpoints}
    assert taken == {
        "research": f"{source.exec_id}/research",
        "write_draft": None,
        "publish": None,
    }
    # The source is untouched.
    assert KitaruClient().executions.result(source.exec_id) == (
        "PUBLISHED: Draft from notes about kitaru"
    )


def test_replay_from_a_later_checkpoint_reuses_everything_before_it() -> None:
    source = content_pipeline.run("agents")
    RAN.clear()
    e = KitaruClient().executions.replay(source.exec_id, from_="publish")
    assert e.status == "completed"
    assert RAN == ["publish"]
    assert KitaruClient().executions.result(e.exec_id) == "PUBLISHED: Draft from notes about agents"
    assert sorted(c.name for c in e.checkpoints if c.original_call_id) == [
        "research",
        "write_draft",
    ]


def test_an_override_later_than_from_moves_nothing_before_from() -> None:
    source = content_pipeline.run("x")
    RAN.clear()
    handle = content_pipeline.replay(
        source.exec_id, from_="research", overrides={"checkpoint.write_draft": "my own draft"}
    )
    # research runs live (it is the frontier); the override answers write_draft's call
    assert handle.wait() == "PUBLISHED: my own draft"
    assert RAN == ["research", "publish"]


def test_flow_inputs_replace_arguments_and_changed_calls_run_again() -> None:
    source = content_pipeline.run("old topic")
    RAN.clear()
    handle = content_pipeline.replay(source.exec_id, from_="publish", topic="new topic")
    # research was taken over, but its inputs changed: it runs again (a divergence), and
    # so does everything after it whose inputs changed
    assert handle.wait() == "PUBLISHED: Draft from notes about new topic"
    assert RAN == ["research", "write_draft", "publish"]


def test_selectors_name_a_call_or_a_checkpoint_only_one_call_has() -> None:
    source = crawler.run()
    assert source.wait() == ["A", "B", "C"]
    RAN.clear()
    handle = crawler.replay(source.exec_id, from_="fetch_3")
    assert handle.wait() == ["A", "B", "C"]
    assert RAN == ["fetch c"]
    # "fetch" is the first call's id; a name no call id has but several calls share is
    # ambiguous
    RAN.clear()
    crawler.replay(source.exec_id, from_="fetch").wait()
    assert RAN == ["fetch a", "fetch b", "fetch c"]
    pages = named_pages.run()
    with pytest.raises(kitaru.KitaruStateError, match=r"ambiguous \(home, about\)"):
        named_pages.replay(pages.exec_id, from_="fetch")
    with pytest.raises(kitaru.KitaruStateError, match=r"no checkpoint 'nope'.*fetch, fetch_2"):
        crawler.replay(source.exec_id, from_="nope")
    with pytest.raises(kitaru.KitaruUsageError, match="answered with input"):
        crawler.replay(source.exec_id, from_="fetch_2", overrides={"wait.approve": True})
    with pytest.raises(kitaru.KitaruUsageError, match="replay override key"):
        crawler.replay(source.exec_id, from_="fetch_2", overrides={"fetch": "x"})
    with pytest.raises(kitaru.KitaruUsageError, match="parameter 'colour'"):
        crawler.replay(source.exec_id, from_="fetch_2", colour="red")
    # a call id given with its execution id, as CheckpointCall.call_id shows it
    RAN.clear()
    crawler.replay(source.exec_id, from_=f"{source.exec_id}/fetch_2").wait()
    assert RAN == ["fetch b", "fetch c"]


def test_the_cli_replays_with_overrides_and_args(tmp_path: Path) -> None:
    env = os.environ.copy()
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    out = subprocess.run(
        [sys.executable, "pipeline.py"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    source = out.stdout.strip()
    proc = run_cli(
        "executions", "replay", source, "--from", "write_draft",
        "--overrides", json.dumps({"checkpoint.research": "edited"}),
        "-o", "json", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    item = json.loads(proc.stdout)["item"]
    assert item["original_exec_id"] == source and item["status"] == "completed"
    assert KitaruClient().executions.result(item["exec_id"]) == "PUBLISHED: Draft from edited"
    assert (tmp_path / "ran.txt").read_text().split() == [
        "research", "write_draft", "publish", "write_draft", "publish",
    ]  # fmt: skip
    bad = run_cli("executions", "replay", source, "--from", "write_draft",
                  "--overrides", "[1]", cwd=tmp_path, env=env)  # fmt: skip
    assert bad.returncode != 0 and "--overrides must be a JSON object" in bad.stderr


PIPELINE = textwrap.dedent(
    """
    import os, sys, time
    from kitaru import checkpoint, flow

    def note(what):
        with open("ran.txt", "a") as f:
            f.write(what + "\\n")

    @checkpoint
    def research(topic: str) -> str:
        note("research")
        return f"notes about {topic}"

    @checkpoint
    def write_draft(notes: str) -> str:
        note("write_draft")
        if os.environ.get("KILL_IN_DRAFT") and os.path.exists("replaying"):
            os.kill(os.getpid(), 9)
        return f"Draft from {notes}"

    @checkpoint
    def publish(draft: str) -> str:
        note("publish")
        return f"PUBLISHED: {draft}"

    @flow
    def pipeline(topic: str) -> str:
        return publish(write_draft(research(topic)))

    if __name__ == "__main__":
        if len(sys.argv) > 1:  # replay the given execution in this process
            open("replaying", "w").close()
            h = pipeline.replay(sys.argv[1], from_="write_draft",
                                overrides={"checkpoint.research": "edited"})
            print(h.exec_id)
        else:
            print(pipeline.run("kitaru").exec_id)
    """
)


def test_a_replay_killed_mid_run_is_retried_like_any_execution(tmp_path: Path) -> None:
    env = dict(os.environ, KILL_IN_DRAFT="1")
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    first = subprocess.run([sys.executable, "pipeline.py"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)  # fmt: skip
    source = first.stdout.strip()
    killed = subprocess.run([sys.executable, "pipeline.py", source], cwd=tmp_path, env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    replays = [e for e in KitaruClient().executions.list() if e.exec_id != source]
    (replay,) = [e for e in replays if e.flow_name == "pipeline"][:1]
    deadline = time.monotonic() + 10
    while KitaruClient().executions.get(replay.exec_id).status != "failed":
        assert time.monotonic() < deadline, "the killed replay never showed as failed"
        time.sleep(0.1)
    (tmp_path / "replaying").unlink()
    proc = run_cli("executions", "retry", replay.exec_id, "-o", "json", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert KitaruClient().executions.result(replay.exec_id) == "PUBLISHED: Draft from edited"
    # research never ran in the replay (taken over, then overridden); write_draft ran in
    # the killed run and again in the retry (it never finished); publish once
    assert (tmp_path / "ran.txt").read_text().split() == [
        "research", "write_draft", "publish", "write_draft", "write_draft", "publish",
    ]  # fmt: skip
    e = KitaruClient().executions.get(replay.exec_id)
    assert e.original_exec_id == source


# --- diff ------------------------------------------------------------------------------


def test_diff_of_a_run_and_its_replay_shows_what_the_override_changed() -> None:
    source = content_pipeline.run("kitaru")
    replay = content_pipeline.replay(
        source.exec_id, from_="write_draft", overrides={"checkpoint.research": "edited notes"}
    )
    d = KitaruClient().executions.diff(source.exec_id, replay.exec_id)
    by_id = {c.call_id: c for c in d.checkpoints}
    assert [c.call_id for c in d.checkpoints] == ["research", "write_draft", "publish"]
    assert {k: c.status for k, c in by_id.items()} == {
        "research": "changed",
        "write_draft": "changed",
        "publish": "changed",
    }
    assert by_id["research"].output_diff is not None
    assert "-notes about kitaru" in by_id["research"].output_diff
    assert "+edited notes" in by_id["research"].output_diff
    assert d.count("changed") == 3 and d.count("same") == 0
    # a replay from the last step with nothing overridden: the taken-over calls are the same
    again = content_pipeline.replay(source.exec_id, from_="publish")
    same = KitaruClient().executions.diff(source.exec_id, again.exec_id)
    assert [(c.call_id, c.status) for c in same.checkpoints] == [
        ("research", "same"),
        ("write_draft", "same"),
        ("publish", "same"),
    ]
    assert all(c.output_diff is None for c in same.checkpoints)


def test_diff_of_two_unrelated_runs_lists_added_and_removed_calls() -> None:
    a = crawler.run()
    b = named_pages.run()
    d = KitaruClient().executions.diff(a.exec_id, b.exec_id)
    statuses = {c.call_id: c.status for c in d.checkpoints}
    assert statuses == {
        "home": "added",
        "about": "added",
        "fetch": "removed",
        "fetch_2": "removed",
        "fetch_3": "removed",
    }
    # the CLI: text and JSON
    text = run_cli("executions", "diff", a.exec_id, b.exec_id, check=True).stdout
    assert "removed" in text and "added" in text and "2 added, 3 removed" in text
    item = json.loads(run_cli("executions", "diff", a.exec_id, b.exec_id, "-o", "json",
                              check=True).stdout)["item"]  # fmt: skip
    assert [c["status"] for c in item["checkpoints"]] == ["added"] * 2 + ["removed"] * 3


@checkpoint
def summary(n: int) -> dict[str, object]:
    return {"count": n, "items": list(range(n))}


@flow
def summarize(n: int) -> dict[str, object]:
    return summary(n)


def test_diff_renders_structured_outputs_as_json() -> None:
    a, b = summarize.run(2), summarize.run(3)
    d = KitaruClient().executions.diff(a.exec_id, b.exec_id)
    (c,) = d.checkpoints
    assert c.status == "changed" and c.output_diff is not None
    assert '-  "count": 2,' in c.output_diff and '+  "count": 3,' in c.output_diff


PARTIAL = textwrap.dedent(
    """
    import os, sys
    from pipeline import pipeline

    # What FlowDefinition.replay does first, then the process dies before the seeding:
    # the execution holds the replay's plan (with the override value) and nothing else.
    from kitaru import _config
    store = _config.get_store()
    source = sys.argv[1]
    plan = store.replay_plan(source, "write_draft", ["checkpoint.research"])
    tag, data = pipeline._override_value("checkpoint.research", "edited")
    note = {"source": source, "from": "write_draft", "frontier": plan["frontier"],
            "reused": plan["reuse"], "overridden": ["research"],
            "override_values": {"research": {"serializer": tag, "blob": store.put_blob(data)}}}
    _, start, _, _ = pipeline._start(("kitaru",), {}, 0, None, replay=note)
    runner = store.start(start, 60_000)
    print(runner.exec_id, flush=True)
    os.kill(os.getpid(), 9)
    """
)


def test_a_replay_killed_before_it_took_over_its_source_is_seeded_by_its_retry(
    tmp_path: Path,
) -> None:
    env = os.environ.copy()
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    (tmp_path / "partial.py").write_text(PARTIAL)
    first = subprocess.run([sys.executable, "pipeline.py"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)  # fmt: skip
    source = first.stdout.strip()
    killed = subprocess.run([sys.executable, "partial.py", source], cwd=tmp_path, env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    replay = killed.stdout.strip()
    proc = run_cli("executions", "retry", replay, "-o", "json", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    # the override and the taken-over calls hold, as if the replay had not been killed
    assert KitaruClient().executions.result(replay) == "PUBLISHED: Draft from edited"
    assert (tmp_path / "ran.txt").read_text().split() == [
        "research", "write_draft", "publish", "write_draft", "publish",
    ]  # fmt: skip
    e = KitaruClient().executions.get(replay)
    assert e.original_exec_id == source
    assert "kitaru_replay_seeded" not in e.metadata


@flow
def asks_a_model(topic: str) -> str:
    answer = kitaru.llm(f"Say something about {topic}", name="idea")
    return publish(answer)


def test_a_replay_counts_the_model_calls_it_did_not_pay_for_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KITARU_LLM_MOCK_RESPONSE", "an idea")
    source = asks_a_model.run("tides")
    assert source.wait() == "PUBLISHED: an idea"
    replay = asks_a_model.replay(source.exec_id, from_="publish")
    assert replay.wait() == "PUBLISHED: an idea"
    cost = KitaruClient().executions.get(replay.exec_id).llm_cost
    assert cost is not None and cost.saved_calls == 1 and cost.calls == 0


def test_a_flow_replays_only_its_own_executions() -> None:
    other = crawler.run()
    with pytest.raises(kitaru.KitaruUsageError, match="ran flow 'crawler', not 'content_pipeline'"):
        content_pipeline.replay(other.exec_id, from_="fetch")


def test_replay_records_its_image_and_cache_options() -> None:
    source = content_pipeline.run("opts")
    handle = content_pipeline.replay(source.exec_id, from_="publish", image="python:3.12",
                                     cache=False)  # fmt: skip
    spec = KitaruClient().executions.get(handle.exec_id).frozen_execution_spec
    assert spec is not None and spec["image"]["base_image"] == "python:3.12"
    assert spec["cache"] is False and "replay" not in spec  # the plan is not an option
