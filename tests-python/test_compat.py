"""Kitaru 0.4's configuration surface: `configure(image=, cache=, retries=, project=)`,
`ImageSettings`, `connect()`, and the `kitaru.runtime` helpers its examples import."""

from __future__ import annotations

from collections.abc import Iterator

import kitaru
import pytest
from conftest import stored_files
from kitaru import KitaruClient, checkpoint, flow
from kitaru.runtime import _get_current_execution_id, _is_inside_checkpoint, _is_inside_flow

FAILS = {"left": 0}
SEEN: dict[str, object] = {}


@pytest.fixture(autouse=True)
def clean_config() -> Iterator[None]:
    yield
    kitaru.configure(image=None, cache=None, retries=None)


@flow
def flaky() -> str:
    if FAILS["left"] > 0:
        FAILS["left"] -= 1
        raise RuntimeError("not yet")
    return "done"


@flow(retries=0)
def flaky_no_retries() -> str:
    return flaky_body()


def flaky_body() -> str:
    if FAILS["left"] > 0:
        FAILS["left"] -= 1
        raise RuntimeError("not yet")
    return "done"


@flow(image={"base_image": "python:3.12-slim", "environment": {"MODE": "flow"}}, cache=True)
def imaged() -> str:
    return "ok"


@checkpoint
def where() -> tuple[str | None, bool]:
    return _get_current_execution_id(), _is_inside_checkpoint()


@flow
def reports() -> tuple[str | None, bool, bool]:
    eid, inside_cp = where()
    SEEN["body"] = _get_current_execution_id()
    return eid, inside_cp, _is_inside_flow()


def test_configured_retries_apply_to_flows_that_set_none() -> None:
    kitaru.configure(retries=2)
    FAILS["left"] = 2
    assert flaky.run().wait() == "done"  # two failed passes, then the third
    FAILS["left"] = 1
    handle = flaky_no_retries.run()  # @flow(retries=0) beats configure()
    assert handle.status == "failed"
    assert kitaru.configure(retries=None).retries is None


def test_configured_image_and_cache_are_recorded_with_the_flows_own_winning() -> None:
    config = kitaru.configure(image={"parent_image": "python:3.11", "environment": {"A": "1"},
                                     "apt_packages": ["git"]}, cache=False)  # fmt: skip
    assert config.image is not None and config.image.base_image == "python:3.11"
    assert config.cache is False
    spec = KitaruClient().executions.get(imaged.run().exec_id).frozen_execution_spec
    assert spec is not None
    image = spec["image"]
    assert image["base_image"] == "python:3.12-slim"  # the flow's field wins
    assert image["apt_packages"] == ["git"]  # the configured one fills the rest
    assert image["environment"] == {"A": "1", "MODE": "flow"}
    assert "kitaru" in image["requirements"]
    assert spec["cache"] is True  # @flow(cache=True) over configure(cache=False)
    plain = KitaruClient().executions.get(flaky.run().exec_id).frozen_execution_spec
    assert (
        plain is not None
        and plain["cache"] is False
        and plain["image"]["base_image"] == ("python:3.11")
    )


def test_image_settings_are_checked() -> None:
    settings = kitaru.ImageSettings(base_image="python:3.12", requirements=["httpx"])
    assert settings.requirements == ["httpx", "kitaru"]
    with pytest.raises(kitaru.KitaruUsageError, match="Unknown image setting 'gpu'"):
        kitaru.configure(image={"gpu": True})
    with pytest.raises(kitaru.KitaruUsageError, match="must not be empty"):
        kitaru.ImageSettings(base_image=" ")
    with pytest.raises(kitaru.KitaruUsageError, match="list of strings"):
        kitaru.ImageSettings(requirements="httpx")  # type: ignore[arg-type]
    with pytest.raises(kitaru.KitaruUsageError, match="cache"):
        kitaru.configure(cache="yes")  # type: ignore[arg-type]
    with pytest.raises(kitaru.KitaruUsageError, match="retries"):
        kitaru.configure(retries=-1)


def test_there_is_no_server_to_connect_to() -> None:
    with pytest.raises(kitaru.KitaruFeatureNotAvailableError, match="stack"):
        kitaru.connect("https://kitaru.example.com", api_key="k")
    with pytest.raises(kitaru.KitaruFeatureNotAvailableError, match="no server"):
        kitaru.configure(project="team")


def test_the_runtime_helpers_of_kitaru_04_examples() -> None:
    assert _get_current_execution_id() is None and not _is_inside_flow()
    handle = reports.run()
    eid, inside_cp, inside_flow = handle.wait()
    assert eid == handle.exec_id == SEEN["body"]
    assert inside_cp and inside_flow


def test_stack_labels_and_recursive_delete(tmp_path: object) -> None:
    info = kitaru.create_stack("labelled", artifact_store=str(tmp_path), activate=False,
                               labels={"team": "agents"})  # fmt: skip
    assert info.labels == {"team": "agents"} and info.id == "labelled"
    (listed,) = [s for s in kitaru.list_stacks() if s.name == "labelled"]
    assert listed.labels == {"team": "agents"}
    with pytest.raises(kitaru.KitaruUsageError, match="labels"):
        kitaru.create_stack("bad-labels", artifact_store=str(tmp_path), labels={"n": 1})  # type: ignore[dict-item]
    assert kitaru.delete_stack("labelled", recursive=True).name == "labelled"
    assert tmp_path.exists()  # type: ignore[attr-defined]  # the store's data stays


ORDER: list[str] = []


@checkpoint
def pair(a: int, b: int) -> int:
    return a * b


@checkpoint
def step(name: str, seconds: float = 0.0, fail: bool = False) -> str:
    import time

    ORDER.append(f"start {name}")
    time.sleep(seconds)
    if fail:
        raise RuntimeError(f"{name} failed")
    ORDER.append(f"end {name}")
    return name


@flow
def fan_out() -> list[int]:
    return [f.load() for f in pair.product([1, 2], [10, 20])]


@flow
def ordered() -> list[str]:
    first = step.submit("first", 0.3)
    second = step.submit("second", after=first)
    return [second.result(), first.load()]


@flow
def after_a_failure() -> str:
    bad = step.submit("bad", fail=True)
    dependent = step.submit("dependent", after=[bad])
    try:
        dependent.result()
    except kitaru.KitaruRuntimeError as exc:
        return str(exc)
    return "ran"


def test_product_fans_out_over_every_combination() -> None:
    handle = fan_out.run()
    assert handle.wait() == [10, 20, 20, 40]
    calls = [c.name for c in KitaruClient().executions.get(handle.exec_id).checkpoints]
    assert sorted(calls) == ["pair", "pair_2", "pair_3", "pair_4"]


def test_after_orders_a_call_behind_others() -> None:
    ORDER.clear()
    assert ordered.run().wait() == ["second", "first"]
    assert ORDER.index("end first") < ORDER.index("start second")
    ORDER.clear()
    message = after_a_failure.run().wait()
    assert "did not run" in message and "bad failed" in message
    assert "start dependent" not in ORDER


def test_a_retry_uses_the_retries_recorded_when_the_flow_started() -> None:
    kitaru.configure(retries=1)
    FAILS["left"] = 3  # more than one retry can absorb
    handle = flaky.run()
    assert handle.status == "failed"
    kitaru.configure(retries=None)  # a later process that configured nothing
    FAILS["left"] = 1
    done = KitaruClient().executions.retry(handle.exec_id)
    assert done.status == "completed"  # the recorded retries=1 absorbed the failure


def test_configured_image_lists_are_joined_with_the_flows() -> None:
    kitaru.configure(image={"requirements": ["pandas"]})
    spec = KitaruClient().executions.get(imaged_by_name.run().exec_id).frozen_execution_spec
    assert spec is not None
    assert spec["image"]["requirements"] == ["pandas", "kitaru"]
    assert spec["image"]["base_image"] == "python:3.12"
    settings = kitaru.ImageSettings(requirements=["kitaru[s3]>=0.1", "Kitaru~=0.1"])
    assert settings.requirements == ["kitaru[s3]>=0.1", "Kitaru~=0.1"]  # nothing added
    with pytest.raises(kitaru.KitaruUsageError, match="environment"):
        kitaru.ImageSettings(environment=["A=1"])  # type: ignore[arg-type]


@flow(image="python:3.12")
def imaged_by_name() -> str:
    return "ok"


@flow
def after_lists() -> list[str]:
    firsts = step.map(["a", "b"], [0.2, 0.2])
    last = step.submit("last", after=[firsts])  # a list of .map() results
    return [last.result()]


def test_after_accepts_lists_of_futures() -> None:
    ORDER.clear()
    assert after_lists.run().wait() == ["last"]
    assert ORDER.index("start last") > max(ORDER.index("end a"), ORDER.index("end b"))


def test_execution_defaults_from_pyproject_and_environment(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kitaru 0.4's order, lowest first: [tool.kitaru] < KITARU_* < configure() < @flow."""
    from pathlib import Path

    project = Path(str(tmp_path)) / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[tool.kitaru]\ncache = false\nretries = 3\nimage = {base_image = "python:3.10"}\n'
    )
    monkeypatch.chdir(project)

    def spec() -> dict[str, object]:
        out = KitaruClient().executions.get(flaky.run().exec_id).frozen_execution_spec
        assert out is not None
        return out

    s = spec()
    assert (s["cache"], s["retries"], s["image"]["base_image"]) == (False, 3, "python:3.10")  # type: ignore[index]
    monkeypatch.setenv("KITARU_CACHE", "yes")
    monkeypatch.setenv("KITARU_RETRIES", "1")
    monkeypatch.setenv("KITARU_IMAGE", '{"apt_packages": ["git"]}')
    s = spec()
    assert (s["cache"], s["retries"]) == (True, 1)
    assert s["image"]["base_image"] == "python:3.10" and s["image"]["apt_packages"] == ["git"]  # type: ignore[index]
    kitaru.configure(retries=0)
    assert spec()["retries"] == 0
    assert (
        KitaruClient().executions.get(imaged.run().exec_id).frozen_execution_spec["cache"] is True
    )  # type: ignore[index]
    for var, value, message in [
        ("KITARU_CACHE", "maybe", "KITARU_CACHE must be true or false"),
        ("KITARU_RETRIES", "-2", "KITARU_RETRIES must be an int >= 0"),
        ("KITARU_IMAGE", "{nope", "KITARU_IMAGE is not a JSON object"),
        ("KITARU_RUNNER", "x", "KITARU_RUNNER was renamed"),
    ]:
        with monkeypatch.context() as m:
            m.setenv(var, value)
            with pytest.raises(kitaru.KitaruUsageError, match=message):
                flaky.run()
    (project / "pyproject.toml").write_text("[tool.kitaru]\nretries = 'two'\n")
    with pytest.raises(kitaru.KitaruUsageError, match=r"retries in \[tool.kitaru\]"):
        flaky.run()


def test_kitaru_stack_chooses_the_stack(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    other = Path(str(tmp_path)) / "other-store"
    kitaru.create_stack("elsewhere", artifact_store=str(other))
    monkeypatch.delenv("KITARU_STORE")
    monkeypatch.setenv("KITARU_STACK", "elsewhere")
    handle = flaky.run()
    assert handle.wait() == "done"
    assert (other / "executions" / handle.exec_id).is_dir()
    monkeypatch.setenv("KITARU_STACK", "missing")
    with pytest.raises(kitaru.KitaruError, match="missing"):
        flaky.run()


def test_a_literal_credential_in_image_settings_never_reaches_the_store(
    isolated_store: object,
) -> None:
    from pathlib import Path

    secret = "sk-live-0123456789abcdef"
    env = {"OPENAI_API_KEY": secret, "GH_TOKEN": "{{ GH_TOKEN }}", "MODE": "prod"}
    kitaru.configure(image={"environment": env})
    handle = flaky.run()
    spec = KitaruClient().executions.get(handle.exec_id).frozen_execution_spec
    assert spec is not None
    assert spec["image"]["environment"] == {
        "OPENAI_API_KEY": "<redacted>",
        "GH_TOKEN": "{{ GH_TOKEN }}",  # a reference, resolved where the image is built
        "MODE": "prod",
    }
    for path, data in stored_files(Path(str(isolated_store))):
        assert secret.encode() not in data, path
