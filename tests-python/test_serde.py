from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import pathlib
import uuid
from typing import Any

import kitaru
import pydantic
import pytest
from kitaru import KitaruClient, checkpoint, flow, serde


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int
    tags: frozenset[str] = frozenset()


@dataclasses.dataclass
class WithDerived:
    a: int
    b: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.b = self.a * 2


class Plan(pydantic.BaseModel):
    steps: list[str]
    budget: float
    deadline: datetime.date | None = None


class Custom:
    def __init__(self, v: str) -> None:
        self.v = v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Custom) and other.v == self.v


class Opaque:
    def __init__(self, v: int) -> None:
        self.v = v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.v == self.v


VALUES: list[Any] = [
    None,
    True,
    0,
    -7,
    2**80,
    1.5,
    float("inf"),
    "text",
    "ünïcödé \ud800",
    b"\x00\xff",
    [],
    {"a": [1, {"b": None}]},
    (1, "two", (3.0,)),
    {1, 2, 3},
    frozenset({"x"}),
    {(1, 2): "tuple key", 3: "int key"},
    {"__kitaru__": "not a tag"},
    [b"nested bytes", (1,)],
    Point(1, 2, frozenset({"a"})),
    WithDerived(3),
    Color.BLUE,
    datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
    datetime.date(2026, 1, 2),
    datetime.timedelta(days=1, seconds=5),
    decimal.Decimal("1.10"),
    uuid.UUID(int=5),
    pathlib.Path("/tmp/x"),
    Plan(steps=["a"], budget=1.5, deadline=datetime.date(2026, 2, 1)),
    [Plan(steps=[], budget=0)],
    Opaque(5),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_round_trip_keeps_value_and_type(value: Any) -> None:
    opt_in = type(value) is Opaque  # no typed serializer: pickled, which needs an opt-in
    tag, data = serde.dumps(value, allow_pickle=opt_in)
    back = serde.loads(tag, data, allow_pickle=opt_in)
    assert type(back) is type(value)
    if isinstance(value, float) and value != value:
        return
    assert back == value
    if isinstance(value, tuple):
        assert type(back[2]) is tuple


def test_tags_say_how_values_are_stored() -> None:
    assert serde.dumps("x")[0] == "str"
    assert serde.dumps(b"x")[0] == "bytes"
    assert serde.dumps({"a": [1]})[0] == "json"
    assert serde.dumps((1,))[0] == "kjson"
    assert serde.dumps(Plan(steps=[], budget=1))[0] == f"pydantic:{__name__}:Plan"
    assert serde.dumps(Opaque(1), allow_pickle=True)[0] == f"pickle:{__name__}:Opaque"


def test_custom_serializer_is_used_and_required_on_load() -> None:
    serde.register_serializer(
        Custom, dumps=lambda c: c.v.encode(), loads=lambda b: Custom(b.decode()), name="test.custom"
    )
    tag, data = serde.dumps(Custom("hi"))
    assert (tag, data) == ("custom:test.custom", b"hi")
    assert serde.loads(tag, data) == Custom("hi")
    with pytest.raises(kitaru.KitaruRuntimeError, match="not registered"):
        serde.loads("custom:nope", b"")
    with pytest.raises(kitaru.KitaruUsageError, match="':'"):
        serde.register_serializer(Custom, dumps=bytes, loads=bytes, name="a:b")


def test_pickle_is_off_unless_opted_in(monkeypatch: pytest.MonkeyPatch) -> None:
    tag, data = serde.dumps(Opaque(1), allow_pickle=True)
    for setting in (None, "0"):  # the default, and switched off explicitly
        if setting is not None:
            monkeypatch.setenv("KITARU_ALLOW_PICKLE", setting)
        with pytest.raises(kitaru.KitaruRuntimeError, match="does not load pickles unless"):
            serde.loads(tag, data)
        with pytest.raises(
            kitaru.KitaruRuntimeError, match="does not pickle values unless"
        ) as info:
            serde.dumps(Opaque(1), what="output of checkpoint 'x'")
        assert "Opaque" in str(info.value) and "checkpoint 'x'" in str(info.value)
        assert "allow_pickle=True" in str(info.value)
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", "1")
    assert serde.loads(*serde.dumps(Opaque(2))) == Opaque(2)
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", "maybe")
    with pytest.raises(kitaru.KitaruUsageError, match="KITARU_ALLOW_PICKLE"):
        serde.loads(tag, data)


def test_unknown_tags_and_types_are_clear_errors() -> None:
    with pytest.raises(kitaru.KitaruRuntimeError, match="unknown to this kitaru"):
        serde.loads("zstd", b"")
    with pytest.raises(kitaru.KitaruRuntimeError, match=r"stored as type no_such_module\.Model"):
        serde.loads("pydantic:no_such_module:Model", b"{}")


def test_digest_is_stable_and_input_sensitive() -> None:
    assert serde.digest({"x": {1, 2, 3}}) == serde.digest({"x": {3, 2, 1}})
    assert serde.digest({"x": 1}) != serde.digest({"x": 2})
    assert serde.digest({"x": (1,)}) != serde.digest({"x": [1]})
    assert len(serde.digest("a") or b"") == 32


@checkpoint
def produce(kind: str) -> Any:
    return {
        "point": Point(1, 2),
        "plan": Plan(steps=["s"], budget=2.0),
        "raw": b"\x01",
        "tuple": (1, 2),
    }[kind]


@flow
def typed(kind: str) -> Any:
    return produce(kind)


@pytest.mark.parametrize("kind", ["point", "plan", "raw", "tuple"])
def test_checkpoint_outputs_keep_their_type_through_the_store(kind: str) -> None:
    handle = typed.run(kind)
    value = handle.wait()
    assert value == produce.__wrapped__(kind)  # type: ignore[attr-defined]
    assert type(value) is type(produce.__wrapped__(kind))  # type: ignore[attr-defined]
    # and the stored checkpoint output reads back as the same type
    from kitaru import _config

    tag, data = _config.get_store().checkpoint_output(handle.exec_id, "produce")  # type: ignore[misc]
    assert type(serde.loads(tag, data)) is type(value)
    assert KitaruClient().executions.get(handle.exec_id).checkpoints[0].output_serializer == tag


def test_large_outputs_go_to_blobs_and_are_verified() -> None:
    big = "x" * 100_000
    handle = big_flow.run(big)
    assert handle.wait() == big
    from kitaru import _config

    store = _config.get_store()
    blobs = store.keys("blobs")
    assert (
        len(blobs) == 2
    )  # the output and the result are one deduplicated blob; the arguments another
    # corrupt every blob: reading the result now fails loudly instead of returning garbage
    import os

    root = os.environ["KITARU_STORE"]
    for key in blobs:
        path = pathlib.Path(root, key)
        data = bytearray(path.read_bytes())
        data[10] ^= 1
        path.write_bytes(bytes(data))
    from kitaru.errors import KitaruCorruptionError

    with pytest.raises(KitaruCorruptionError, match=handle.exec_id):
        KitaruClient().executions.result(handle.exec_id)


@checkpoint
def echo(s: str) -> str:
    return s


@flow
def big_flow(s: str) -> str:
    return echo(s) + ""
