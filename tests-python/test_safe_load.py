"""Nothing read from a store runs code by default (issue 11, items 8 and 9).

A "hostile writer" is anyone who can write the store (a shared bucket or disk). Each test
plants what such a writer could plant — a pickle, a type name that points at a function
or at a module in a directory of its choosing — and checks that the reader gets a clear
error (or a JSON-Schema check) and that the planted code never ran (its marker file is
absent).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import kitaru
import pytest
from conftest import run_cli
from kitaru import KitaruClient, checkpoint, flow, serde


class Evil:
    """What a hostile writer pickles: unpickling it creates the directory `marker`."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.mkdir, (self.marker,))


class Opaque:
    """A user's own type without a typed serializer."""

    def __init__(self, v: int) -> None:
        self.v = v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.v == self.v


@dataclasses.dataclass
class Point:
    x: int
    y: int


# --- pickles ------------------------------------------------------------------------------

PLANT: dict[str, Any] = {"evil": None, "fail": False}


@checkpoint
def fetch_page() -> object:
    if PLANT["evil"] is not None:
        return Evil(PLANT["evil"])
    return {"page": 1}


@flow
def reader_flow() -> str:
    fetch_page()
    if PLANT["fail"]:
        raise RuntimeError("transient")
    return "done"


@flow
def returns_evil(marker: str) -> object:
    return Evil(marker)


def test_a_pickled_result_planted_in_the_store_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned-by-result"
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", "1")  # the hostile writer's process
    handle = returns_evil.run(str(marker))
    monkeypatch.delenv("KITARU_ALLOW_PICKLE")  # the reader: default settings
    with pytest.raises(kitaru.KitaruRuntimeError) as info:
        KitaruClient().executions.result(handle.exec_id)
    message = str(info.value)
    assert "test_safe_load.Evil" in message  # names the type
    assert "runs code" in message  # says why
    assert "allow_pickle=True" in message and "KITARU_ALLOW_PICKLE=1" in message  # how to opt in
    assert not marker.exists()


def test_a_pickled_checkpoint_output_planted_in_the_store_is_refused_on_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned-by-retry"
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", "1")  # the hostile writer's process
    monkeypatch.setitem(PLANT, "evil", str(marker))
    monkeypatch.setitem(PLANT, "fail", True)
    handle = reader_flow.run()
    with pytest.raises(kitaru.KitaruExecutionError):
        handle.wait()
    assert not marker.exists()
    # the victim retries the failed execution with default settings
    monkeypatch.delenv("KITARU_ALLOW_PICKLE")
    monkeypatch.setitem(PLANT, "evil", None)
    monkeypatch.setitem(PLANT, "fail", False)
    execution = KitaruClient().executions.retry(handle.exec_id)
    assert not marker.exists()
    assert execution.status == "failed"
    assert execution.failure is not None
    assert "test_safe_load.Evil" in execution.failure.message
    assert "allow_pickle=True" in execution.failure.message


def test_an_opted_in_pickle_still_imports_no_module(tmp_path: Path) -> None:
    marker = tmp_path / "pwned-by-import"
    _hostile_module(tmp_path, "kx_hostile_pickled", marker)
    sys.path.insert(0, str(tmp_path))
    try:
        # protocol 0 by hand: GLOBAL kx_hostile_pickled.Thing, called with no arguments
        payload = b"ckx_hostile_pickled\nThing\n(tR."
        with pytest.raises(kitaru.KitaruRuntimeError, match="kx_hostile_pickled") as info:
            serde.loads("pickle:kx_hostile_pickled:Thing", payload, allow_pickle=True)
        assert "allow_modules" in str(info.value)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("kx_hostile_pickled", None)
    assert not marker.exists()


@checkpoint(allow_pickle=True)
def make_opaque(v: int) -> Opaque:
    return Opaque(v)


ATTEMPTS: list[int] = []


@flow(retries=1)
def uses_opaque(v: int) -> int:
    value = make_opaque(v)
    ATTEMPTS.append(v)
    if len(ATTEMPTS) == 1:
        raise RuntimeError("first pass fails; the second reuses the pickled output")
    return value.v


@flow(allow_pickle=True)
def returns_opaque(v: int) -> Opaque:
    return Opaque(v)


def test_pickle_works_where_the_user_opted_in(monkeypatch: pytest.MonkeyPatch) -> None:
    ATTEMPTS.clear()
    handle = uses_opaque.run(4)
    assert handle.wait() == 4
    assert ATTEMPTS == [4, 4]
    tag = KitaruClient().executions.get(handle.exec_id).checkpoints[0].output_serializer
    assert tag == "pickle:test_safe_load:Opaque"

    handle = returns_opaque.run(7)
    assert handle.wait() == Opaque(7)
    with pytest.raises(kitaru.KitaruRuntimeError, match="does not load pickles unless"):
        KitaruClient().executions.result(handle.exec_id)
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", "1")
    assert KitaruClient().executions.result(handle.exec_id) == Opaque(7)

    with pytest.raises(kitaru.KitaruUsageError, match="allow_pickle"):
        flow(allow_pickle="yes")  # type: ignore[call-overload]
    with pytest.raises(kitaru.KitaruUsageError, match="allow_pickle"):
        checkpoint(allow_pickle=1)  # type: ignore[call-overload]


# --- type names chosen by the store ---------------------------------------------------------


def _hostile_module(directory: Path, name: str, marker: Path) -> None:
    """A module that creates `marker` when imported, and defines classes to load."""
    (directory / f"{name}.py").write_text(
        textwrap.dedent(f"""
        import os, dataclasses, pydantic
        os.mkdir({str(marker)!r})

        class Thing:
            pass

        class Model(pydantic.BaseModel):
            x: int = 0

        @dataclasses.dataclass
        class Data:
            x: int = 0
        """)
    )


@pytest.mark.parametrize("kind", ["enum", "path"])
def test_a_stored_type_name_cannot_call_a_function(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / f"pwned-by-{kind}"
    planted = json.dumps({"__kitaru__": kind, "type": "os:mkdir", "v": str(marker)}).encode()
    with pytest.raises(kitaru.KitaruRuntimeError, match=r"os\.mkdir") as info:
        serde.loads("kjson", planted)
    assert "not " in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("tag", "body"),
    [
        ("pydantic:kx_hostile_types:Model", b'{"x": 1}'),
        ("kjson", b'{"__kitaru__": "dataclass", "type": "kx_hostile_types:Data", "v": {"x": 1}}'),
        ("kjson", b'{"__kitaru__": "pydantic", "type": "kx_hostile_types:Model", "v": {"x": 1}}'),
    ],
)
def test_a_stored_type_name_never_imports_its_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tag: str, body: bytes
) -> None:
    marker = tmp_path / "pwned-by-type"
    _hostile_module(tmp_path, "kx_hostile_types", marker)
    monkeypatch.syspath_prepend(str(tmp_path))  # the module is findable (e.g. in the cwd)
    monkeypatch.delitem(sys.modules, "kx_hostile_types", raising=False)
    with pytest.raises(kitaru.KitaruRuntimeError) as info:
        serde.loads(tag, body, what="output of checkpoint 'x'")
    message = str(info.value)
    assert "kx_hostile_types." in message and "checkpoint 'x'" in message  # the type
    assert "not imported" in message  # why
    assert "allow_modules('kx_hostile_types')" in message  # how to opt in
    assert "KITARU_ALLOWED_MODULES" in message
    assert not marker.exists()
    assert "kx_hostile_types" not in sys.modules


def test_allowed_and_imported_modules_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "imported"
    _hostile_module(tmp_path, "kx_allowed_types", marker)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "kx_allowed_types", raising=False)
    monkeypatch.setenv("KITARU_ALLOWED_MODULES", "kx_other, kx_allowed_types")
    try:
        value = serde.loads("pydantic:kx_allowed_types:Model", b'{"x": 3}')
        assert type(value).__name__ == "Model" and value.x == 3
        assert marker.exists()  # the user allowed (so imported) that module
    finally:
        sys.modules.pop("kx_allowed_types", None)
    monkeypatch.setenv("KITARU_ALLOWED_MODULES", "not a module")
    with pytest.raises(kitaru.KitaruUsageError, match="KITARU_ALLOWED_MODULES"):
        serde.loads("pydantic:kx_unknown:Model", b"{}")
    with pytest.raises(kitaru.KitaruUsageError, match="allow_modules"):
        serde.allow_modules("../etc")


def test_a_stored_dataclass_sets_only_its_own_fields() -> None:
    planted = json.dumps(
        {
            "__kitaru__": "dataclass",
            "type": "test_safe_load:Point",
            "v": {"x": 1, "y": 2, "injected": "attribute", "__dict__": {}},
        }
    ).encode()
    value = serde.loads("kjson", planted)
    assert value == Point(1, 2)
    assert not hasattr(value, "injected")


def test_a_class_must_be_defined_where_the_store_says() -> None:
    # `kitaru.serde.json` is the json module, not a class; `collections:OrderedDict` is a
    # class but no dataclass
    for ref in ("kitaru.serde:json", "collections:OrderedDict", "test_safe_load:Point.__init__"):
        planted = json.dumps({"__kitaru__": "dataclass", "type": ref, "v": {}}).encode()
        with pytest.raises(kitaru.KitaruRuntimeError, match="Cannot load"):
            serde.loads("kjson", planted)


# --- agent frameworks' messages -------------------------------------------------------------


def test_pydantic_ai_messages_round_trip_through_their_type_adapter() -> None:
    messages = pytest.importorskip("pydantic_ai.messages")
    history = [
        messages.ModelRequest(parts=[messages.UserPromptPart(content="hi")]),
        messages.ModelResponse(parts=[messages.TextPart(content="hello")]),
    ]
    tag, data = serde.dumps(history)
    assert b"pydantic_ai_message" in data
    assert serde.loads(tag, data) == history


def test_langchain_messages_round_trip() -> None:
    lc = pytest.importorskip("langchain_core.messages")
    history = [lc.HumanMessage(content="hi"), lc.AIMessage(content="hello")]
    tag, data = serde.dumps(history)
    assert b"langchain_message" in data
    back = serde.loads(tag, data)
    assert [type(m) for m in back] == [lc.HumanMessage, lc.AIMessage]
    assert [m.content for m in back] == ["hi", "hello"]


def test_framework_messages_load_where_the_framework_is_not_imported_yet() -> None:
    """A stored framework message names no module: kitaru imports the framework itself."""
    code = textwrap.dedent("""
        import sys
        from kitaru import serde
        for tag, data in [("kjson", sys.argv[1]), ("kjson", sys.argv[2])]:
            try:
                serde.loads(tag, data.encode())
            except Exception as exc:
                print(type(exc).__name__, exc)
        print(sorted(m for m in ("pydantic_ai.messages", "langchain_core.messages") if m in sys.modules))
    """)
    ai = json.dumps({"__kitaru__": "pydantic_ai_message", "v": {"kind": "request", "parts": []}})
    lc = json.dumps(
        {"__kitaru__": "langchain_message", "v": {"type": "human", "data": {"content": "x"}}}
    )
    out = subprocess.run(
        [sys.executable, "-c", code, ai, lc], capture_output=True, text=True, check=True
    ).stdout
    for module in ("pydantic_ai.messages", "langchain_core.messages"):
        try:
            import importlib.util

            installed = importlib.util.find_spec(module.split(".")[0]) is not None
        except ValueError:
            installed = False
        if installed:
            assert module in out
        else:
            assert f"{module} is not installed here" in out


# --- `kitaru executions input` ----------------------------------------------------------------

WAITER = """
import os
import pydantic
import kitaru
from kitaru import flow

class Answer(pydantic.BaseModel):
    x: int

@flow
def asks() -> int:
    return kitaru.wait(name="ask", schema=Answer, timeout=0).x
"""

ARMED = (
    """
import os
os.mkdir({marker!r})
"""
    + WAITER
)


def _start_waiting(tmp_path: Path) -> tuple[str, Path, Path]:
    """A waiting execution whose flow (and wait type) live in a module of the store's
    recorded directory; (exec id, that directory, the marker its armed module creates)."""
    workdir = tmp_path / "writer"
    workdir.mkdir()
    (workdir / "kx_wait_types.py").write_text(WAITER)
    code = "import kx_wait_types; print(kx_wait_types.asks.run().exec_id)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    marker = tmp_path / "pwned-by-input"
    # The writer now arms the module in the directory the store names.
    (workdir / "kx_wait_types.py").write_text(ARMED.format(marker=str(marker)))
    for cached in (workdir / "__pycache__").glob("*"):
        cached.unlink()
    return out.stdout.strip().splitlines()[-1], workdir, marker


def test_executions_input_validates_by_json_schema_without_importing_the_wait_type(
    tmp_path: Path,
) -> None:
    exec_id, _, marker = _start_waiting(tmp_path)
    reader = tmp_path / "reader"
    reader.mkdir()
    view = KitaruClient().executions.get(exec_id)
    assert view.status == "waiting"

    bad = run_cli("executions", "input", exec_id, "--value", '{"x": "nope"}', cwd=reader)
    assert bad.returncode == 1 and "expected integer" in bad.stderr, bad.stderr
    assert not marker.exists()
    missing = run_cli("executions", "input", exec_id, "--value", "{}", cwd=reader)
    assert missing.returncode == 1 and "'x'" in missing.stderr and "required" in missing.stderr
    assert not marker.exists()

    good = run_cli("executions", "input", exec_id, "--value", '{"x": 5}', cwd=reader)
    assert good.returncode == 0, good.stderr
    assert not marker.exists()
    assert "kx_wait_types" not in sys.modules
    assert KitaruClient().executions.pending_waits(exec_id) == []


def test_executions_input_with_a_deeply_nested_value_is_a_usage_error(tmp_path: Path) -> None:
    exec_id, _, marker = _start_waiting(tmp_path)
    depth = 20_000
    deep = "[" * depth + "]" * depth
    proc = run_cli("executions", "input", exec_id, "--value", deep, cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr
    assert "--value" in proc.stderr and "too deeply" in proc.stderr
    # the same value given through the client
    value: Any = []
    for _ in range(5_000):
        value = [value]
    with pytest.raises(kitaru.KitaruWaitValidationError, match="levels deep"):
        KitaruClient().executions.input(exec_id, value=value)
    assert KitaruClient().executions.get(exec_id).status == "waiting"
    assert not marker.exists()


def test_a_wait_schema_cannot_make_the_reader_fetch_a_url() -> None:
    from kitaru import _schema

    wait = {"name": "w", "schema_json": json.dumps({"$ref": "http://127.0.0.1:9/schema.json"})}
    with pytest.raises(kitaru.KitaruRuntimeError, match="cannot be used to check"):
        _schema.validate(wait, 1)
