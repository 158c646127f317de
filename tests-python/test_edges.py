"""Edges of issue #11: hostile and huge failures, huge output, damaged results (item 7),
and decorated functions that agent frameworks accept as functions (item 14)."""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
import typing
from pathlib import Path

import kitaru
import pytest
from kitaru import checkpoint, flow
from kitaru.errors import KitaruCorruptionError, KitaruUserCodeError
from kitaru.flow import FlowHandle

# --- item 14: a decorated function looks like the function it wraps ------------------------


@checkpoint(type="tool_call")
def lookup(city: str, units: str = "metric", *, verbose: bool = False) -> dict[str, str]:
    """Look up the weather of a city."""
    return {"city": city, "units": units, "weather": f"sunny in {city}"}


@checkpoint
async def forecast(city: str, days: int = 3, *, detail: str | None = None) -> list[str]:
    """Forecast a city's weather."""
    return [f"rain in {city}"] * days


class Station:
    def __init__(self, name: str) -> None:
        self.name = name

    @checkpoint
    def read(self, sensor: str) -> str:
        """Read a sensor."""
        return f"{self.name}:{sensor}"

    @checkpoint
    async def aread(self, sensor: str) -> str:
        return f"{self.name}:{sensor}:async"


def _is_coroutine_function(obj: object) -> tuple[bool, bool]:
    """(inspect's answer, asyncio's answer; asyncio's is deprecated from Python 3.14)."""
    if sys.version_info >= (3, 14):
        return inspect.iscoroutinefunction(obj), inspect.iscoroutinefunction(obj)
    return inspect.iscoroutinefunction(obj), asyncio.iscoroutinefunction(obj)


@pytest.mark.parametrize("cp", [lookup, forecast], ids=["sync", "async"])
def test_checkpoint_looks_like_the_function_it_wraps(cp: typing.Any) -> None:
    func = cp.__wrapped__
    assert inspect.isfunction(func) and func.__name__ == cp.__name__
    for attr in ("__name__", "__qualname__", "__doc__", "__module__", "__defaults__",
                 "__kwdefaults__", "__annotations__"):  # fmt: skip
        assert getattr(cp, attr) == getattr(func, attr), attr
    assert inspect.signature(cp) == inspect.signature(func)
    assert typing.get_type_hints(cp) == typing.get_type_hints(func)
    assert "city" in typing.get_type_hints(cp)
    async_ = cp is forecast
    assert _is_coroutine_function(cp) == (async_, async_)
    assert not inspect.iscoroutinefunction(lookup)


def test_checkpoint_methods_bind_like_functions() -> None:
    station = Station("north")
    for method, async_ in ((station.read, False), (station.aread, True)):
        assert method.__name__ in ("read", "aread")
        assert list(inspect.signature(method).parameters) == ["sensor"]
        assert typing.get_type_hints(method) == {"sensor": str, "return": str}
        assert _is_coroutine_function(method) == (async_, async_)
    assert list(inspect.signature(Station.read).parameters) == ["self", "sensor"]
    handle = read_station.run("north")
    assert handle.wait() == ["north:t1", "north:t2:async"]
    calls = kitaru.KitaruClient().executions.get(handle.exec_id).checkpoints
    assert [c.name for c in calls] == ["read", "aread"]


@flow
def read_station(name: str) -> list[str]:
    station = Station(name)
    return [station.read("t1"), asyncio.run(station.aread("t2"))]


@flow
def described(topic: str, depth: int = 2) -> dict[str, int]:
    """Describe a topic."""
    return {topic: depth}


@flow
async def adescribed(topic: str) -> str:
    return topic


def test_flow_definition_looks_like_its_function() -> None:
    for fd in (described, adescribed):
        func = fd.__wrapped__
        for attr in ("__name__", "__qualname__", "__doc__", "__module__", "__defaults__",
                     "__annotations__"):  # fmt: skip
            assert getattr(fd, attr) == getattr(func, attr), attr
        assert inspect.signature(fd) == inspect.signature(func)
        assert typing.get_type_hints(fd) == typing.get_type_hints(func)
    assert typing.get_type_hints(described) == {
        "topic": str,
        "depth": int,
        "return": dict[str, int],
    }


# --- current_execution_id ------------------------------------------------------------------


@checkpoint
def whoami() -> str | None:
    return kitaru.current_execution_id()


@checkpoint
async def awhoami() -> str | None:
    return kitaru.current_execution_id()


@flow
def ids_flow() -> list[str | None]:
    return [kitaru.current_execution_id(), whoami(), whoami.submit().result()]


@flow
async def async_ids_flow() -> list[str | None]:
    return [kitaru.current_execution_id(), *await asyncio.gather(awhoami(), awhoami())]


def test_current_execution_id() -> None:
    assert "current_execution_id" in kitaru.__all__
    assert kitaru.current_execution_id() is None
    handle = ids_flow.run()
    assert handle.wait() == [handle.exec_id] * 3
    ahandle = async_ids_flow.run()
    assert ahandle.wait() == [ahandle.exec_id] * 3
    assert ahandle.exec_id != handle.exec_id
    assert kitaru.current_execution_id() is None


# --- real frameworks -------------------------------------------------------------------------


def _agent() -> typing.Any:
    from pydantic_ai import Agent
    from pydantic_ai.models.test import TestModel

    return Agent(TestModel(call_tools=["lookup"]), tools=[lookup])


@flow
async def pydantic_ai_flow(question: str) -> str:
    # PydanticAI runs a sync tool in a worker thread (run_sync would leave a loop open)
    return str((await _agent().run(question)).output)


def test_pydantic_ai_agent_takes_a_checkpoint_as_a_tool() -> None:
    pytest.importorskip("pydantic_ai")
    handle = pydantic_ai_flow.run("What is the weather?")
    assert "sunny in " in handle.wait()
    calls = kitaru.KitaruClient().executions.get(handle.exec_id).checkpoints
    assert [(c.name, c.checkpoint_type) for c in calls] == [("lookup", "tool_call")]


def _graph() -> typing.Any:
    from langgraph.graph import END, START, StateGraph
    from typing_extensions import TypedDict

    class State(TypedDict):
        city: str
        days: list[str]

    async def plan(state: State) -> dict[str, list[str]]:
        return {"days": await forecast(state["city"], days=2)}

    graph = StateGraph(State)
    graph.add_node("plan", plan)
    graph.add_node("node_forecast", node_forecast)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "node_forecast")
    graph.add_edge("node_forecast", END)
    return graph.compile()


@checkpoint
async def node_forecast(state: dict[str, typing.Any]) -> dict[str, list[str]]:
    """A LangGraph node that is an async checkpoint."""
    return {"days": [*state["days"], f"sun in {state['city']}"]}


@flow
async def langgraph_flow(city: str) -> list[str]:
    out = await _graph().ainvoke({"city": city, "days": []})
    return list(out["days"])


def test_langgraph_async_checkpoint_node_returns_its_value() -> None:
    pytest.importorskip("langgraph")
    handle = langgraph_flow.run("Lima")
    assert handle.wait() == ["rain in Lima", "rain in Lima", "sun in Lima"]
    calls = kitaru.KitaruClient().executions.get(handle.exec_id).checkpoints
    assert [c.name for c in calls] == ["forecast", "node_forecast"]


@flow
async def langchain_flow(city: str) -> list[str]:
    from langchain_core.tools import tool

    sync_tool, async_tool = tool(lookup), tool(forecast)
    assert async_tool.coroutine is not None  # seen as a coroutine function
    return [
        sync_tool.invoke({"city": city})["weather"],
        *(await async_tool.ainvoke({"city": city, "days": 1})),
    ]


def test_langchain_tools_from_checkpoints() -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.tools import tool

    assert set(tool(lookup).args) == {"city", "units", "verbose"}
    assert tool(lookup).description == "Look up the weather of a city."
    handle = langchain_flow.run("Oslo")
    assert handle.wait() == ["sunny in Oslo", "rain in Oslo"]


# --- item 7 (a): hostile exceptions end the execution `failed` -------------------------------


class StrRaises(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


class NothingPrints(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ exploded")


class _Unformattable:
    def __format__(self, spec: str) -> str:
        raise RuntimeError("__format__ exploded")

    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


class OddModule(Exception):
    pass


OddModule.__module__ = _Unformattable()  # type: ignore[assignment]


class AttrRaises(Exception):
    def __getattr__(self, name: str) -> typing.Any:
        if name.startswith("__"):
            raise AttributeError(name)  # (traceback and pytest read __notes__)
        raise RuntimeError(f"no attribute {name} for you")


HOSTILE: dict[str, tuple[typing.Callable[[], BaseException], str, str]] = {
    # name: (exception, its recorded type ends with, the message contains)
    "str": (lambda: StrRaises("payload"), "StrRaises", "StrRaises('payload')"),
    "str_and_repr": (NothingPrints, "NothingPrints", "its str() and repr() raised"),
    "module": (lambda: OddModule("odd module"), "OddModule", "odd module"),
    "getattr": (lambda: AttrRaises("getattr"), "AttrRaises", "getattr"),
    "surrogate": (lambda: ValueError("bad \udc80 byte"), "ValueError", "bad \\udc80 byte"),
}


@flow
def hostile_body(kind: str) -> None:
    raise HOSTILE[kind][0]()


@checkpoint
def hostile_step(kind: str) -> None:
    raise HOSTILE[kind][0]()


@flow
def hostile_checkpoint(kind: str) -> None:
    hostile_step(kind)


@pytest.mark.parametrize("where", ["body", "checkpoint"])
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_exception_ends_the_execution_failed(where: str, kind: str) -> None:
    _, type_suffix, text = HOSTILE[kind]
    fd = hostile_body if where == "body" else hostile_checkpoint
    handle = fd.run(kind)  # records the failure instead of raising the printing error
    with pytest.raises(KitaruUserCodeError) as info:
        handle.wait(timeout=30)
    assert text in str(info.value)
    ex = kitaru.KitaruClient().executions.get(handle.exec_id)
    assert ex.status == "failed" and ex.failure is not None
    assert text in ex.failure.message
    assert ex.failure.exception_type is not None
    assert ex.failure.exception_type.endswith(type_suffix)
    if where == "checkpoint":
        [call] = ex.checkpoints
        failure = call.attempts[-1].failure
        assert failure is not None and failure.exception_type is not None
        assert failure.exception_type.endswith(type_suffix) and text in failure.message


# --- item 7 (b): huge messages and output are bounded, never fatal ---------------------------

HUGE = (64 << 20) + (4 << 20)  # more than a record may hold (64 MiB)


@checkpoint
def huge_failure() -> None:
    raise ValueError("z" * HUGE)


@flow
def huge_failure_in_checkpoint() -> None:
    huge_failure()


@flow
def huge_failure_in_body() -> None:
    raise ValueError("z" * HUGE)


@pytest.mark.parametrize("fd", [huge_failure_in_checkpoint, huge_failure_in_body])
def test_huge_exception_message_is_cut_and_recorded(fd: typing.Any) -> None:
    handle = fd.run()
    with pytest.raises(KitaruUserCodeError, match="characters cut by kitaru"):
        handle.wait(timeout=60)
    ex = kitaru.KitaruClient().executions.get(handle.exec_id)
    assert ex.status == "failed" and ex.failure is not None
    assert ex.failure.exception_type == "ValueError"
    message = ex.failure.message
    limit = kitaru._context.MESSAGE_LIMIT
    assert message.startswith("z" * limit) and len(message) < limit + 100
    assert f"{HUGE - limit} characters cut by kitaru" in message
    tb = ex.failure.traceback or ""
    assert "Traceback (most recent call last)" in tb and "characters cut by kitaru" in tb
    assert len(tb) < kitaru._context.TRACEBACK_LIMIT + 100
    if fd is huge_failure_in_checkpoint:
        [call] = ex.checkpoints
        assert [a.failure.exception_type for a in call.attempts if a.failure] == ["ValueError"]


@checkpoint
def shout() -> int:
    print("y" * HUGE)
    print("after the huge line")
    return 7


@flow
def shouting() -> int:
    return shout() + 1


def test_huge_log_line_is_cut_and_the_checkpoint_stays_committed() -> None:
    handle = shouting.run()
    assert handle.wait(timeout=60) == 8
    logs = kitaru.KitaruClient().executions.logs(handle.exec_id)
    messages = [e.message for e in logs if e.checkpoint_name == "shout"]
    assert len(messages) == 2 and messages[1] == "after the huge line"
    cut = HUGE - kitaru._context.LOG_LINE_LIMIT
    assert messages[0].startswith("yyyy") and f"{cut} characters cut by kitaru" in messages[0]


LINE = 200_000


@checkpoint
def chatty(lines: int) -> int:
    for i in range(lines):
        print(f"{i:06} " + "c" * LINE)
    return lines


@flow
def chatty_flow(lines: int) -> int:
    return chatty(lines)


def test_log_batches_larger_than_a_record_are_split() -> None:
    lines = (70 << 20) // LINE  # 70 MB of output from one checkpoint, in lines of 200 KB
    handle = chatty_flow.run(lines)
    assert handle.wait(timeout=120) == lines
    logs = kitaru.KitaruClient().executions.logs(handle.exec_id)
    assert [e.message[:6] for e in logs] == [f"{i:06}" for i in range(lines)]
    assert all(len(e.message) == LINE + 7 for e in logs)
    records = list(
        (Path(os.environ["KITARU_STORE"]) / "executions" / handle.exec_id / "log").iterdir()
    )
    assert len(records) >= 9  # at most 8 MiB each


# --- item 7 (c): a damaged execution has no result -------------------------------------------


@checkpoint
def numbered(i: int) -> dict[str, int]:
    return {"number": i}


@flow
def numbers() -> list[int]:
    return [numbered(i)["number"] for i in range(3)]


def test_result_of_a_damaged_execution_is_refused() -> None:
    handle = numbers.run()
    assert handle.wait() == [0, 1, 2]
    segment = Path(os.environ["KITARU_STORE"]) / "executions" / handle.exec_id / "seg" / "00000000"
    data = bytearray(segment.read_bytes())
    at = data.index(b'{"number":1}') + 3  # inside the second checkpoint's stored output
    data[at] ^= 0x01
    segment.write_bytes(bytes(data))
    client = kitaru.KitaruClient()
    where = f"executions/{handle.exec_id}/seg/00000000"
    with pytest.raises(KitaruCorruptionError, match=where):
        client.executions.get(handle.exec_id)
    with pytest.raises(KitaruCorruptionError, match=where):
        client.executions.result(handle.exec_id)
    for read in (handle.wait, handle.get, FlowHandle(handle.exec_id).wait):
        with pytest.raises(KitaruCorruptionError, match=where):
            read()
