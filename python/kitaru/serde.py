"""Typed serialization of checkpoint outputs, flow arguments and results.

A value is stored as ``(tag, bytes)``; the tag says how to read it back as the same type:

- ``str``: UTF-8 text; ``bytes``: raw bytes;
- ``json``: JSON-able builtins (dict with str keys, list, str, int, float, bool, None);
- ``kjson``: JSON with tagged objects for tuples, sets, frozensets, bytes, dicts with
  non-string keys, dataclasses, pydantic models, enums, datetimes, UUIDs, Decimals, paths;
- ``pydantic:<module>:<qualname>``: a pydantic model as its JSON;
- ``custom:<name>``: a serializer registered with :func:`register_serializer`;
- ``pickle:<module>:<qualname>``: anything else, when pickle is allowed
  (``KITARU_ALLOW_PICKLE=0`` refuses to store or load pickles).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from . import _config
from ._kitaru import blake3_digest
from .errors import KitaruRuntimeError, KitaruUsageError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["digest", "dumps", "loads", "register_serializer"]

_MARK = "__kitaru__"

# module aliases used when a flow defined in a script is re-entered (see _entry.py)
MODULE_ALIASES: dict[str, str] = {}


class _Custom:
    __slots__ = ("cls", "dumps", "loads", "name")

    def __init__(
        self, name: str, cls: type, dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any]
    ):
        self.name, self.cls, self.dumps, self.loads = name, cls, dumps, loads


_CUSTOM_BY_TYPE: dict[type, _Custom] = {}
_CUSTOM_BY_NAME: dict[str, _Custom] = {}


def register_serializer(
    cls: type,
    *,
    dumps: Callable[[Any], bytes],
    loads: Callable[[bytes], Any],
    name: str | None = None,
) -> None:
    """Store values of exactly type `cls` with `dumps` and read them back with `loads`.

    `name` (default ``module.qualname`` of `cls`) is recorded with each value, so keep it
    stable: stored executions find their serializer by it.
    """
    if not isinstance(cls, type):
        raise KitaruUsageError(f"register_serializer() needs a class, got {cls!r}.")
    key = name or f"{cls.__module__}.{cls.__qualname__}"
    if not key or ":" in key:
        raise KitaruUsageError(f"Serializer name {key!r} must be non-empty and contain no ':'.")
    entry = _Custom(key, cls, dumps, loads)
    _CUSTOM_BY_TYPE[cls] = entry
    _CUSTOM_BY_NAME[key] = entry


class _Unsupported(Exception):
    pass


def _type_ref(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def resolve_type(ref: str) -> Any:
    """The class named by a ``module:qualname`` reference."""
    module_name, _, qualname = ref.partition(":")
    module_name = MODULE_ALIASES.get(module_name, module_name)
    try:
        import importlib

        obj: Any = sys.modules.get(module_name) or importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise KitaruRuntimeError(
            f"Cannot load a stored value of type {ref.replace(':', '.')}: {exc}. "
            "Run from the directory (and environment) where that type can be imported."
        ) from exc
    return obj


def _is_pydantic(value: Any) -> bool:
    pyd = sys.modules.get("pydantic")
    return pyd is not None and isinstance(value, pyd.BaseModel)


_SCALARS = (str, int, float, bool, type(None))


def _enc(v: Any) -> tuple[Any, bool]:
    """Encode `v` for JSON; the flag is True when `v` needed no tagging (plain JSON)."""
    t = type(v)
    if t in _SCALARS:
        return v, True
    if t is list:
        out, plain = [], True
        for x in v:
            e, p = _enc(x)
            out.append(e)
            plain = plain and p
        return out, plain
    if t is dict:
        if all(type(k) is str for k in v) and _MARK not in v:
            d, plain = {}, True
            for k, x in v.items():
                e, p = _enc(x)
                d[k] = e
                plain = plain and p
            return d, plain
        return {_MARK: "dict", "items": [[_enc(k)[0], _enc(x)[0]] for k, x in v.items()]}, False
    if t is tuple:
        return {_MARK: "tuple", "v": [_enc(x)[0] for x in v]}, False
    if t is set or t is frozenset:
        items = sorted((_enc(x)[0] for x in v), key=lambda e: json.dumps(e, sort_keys=True))
        return {_MARK: t.__name__, "v": items}, False
    if t is bytes:
        import base64

        return {_MARK: "bytes", "b64": base64.b64encode(v).decode("ascii")}, False
    return _enc_object(v, t), False


def _enc_object(v: Any, t: type) -> Any:
    import datetime
    import decimal
    import enum
    import pathlib
    import uuid

    if _is_pydantic(v):
        return {_MARK: "pydantic", "type": _type_ref(t), "v": v.model_dump(mode="json")}
    if hasattr(t, "__dataclass_fields__"):
        import dataclasses

        fields = {f.name: _enc(getattr(v, f.name))[0] for f in dataclasses.fields(v)}
        return {_MARK: "dataclass", "type": _type_ref(t), "v": fields}
    if isinstance(v, enum.Enum):
        return {_MARK: "enum", "type": _type_ref(t), "v": _enc(v.value)[0]}
    if t is datetime.datetime:
        return {_MARK: "datetime", "v": v.isoformat()}
    if t is datetime.date:
        return {_MARK: "date", "v": v.isoformat()}
    if t is datetime.time:
        return {_MARK: "time", "v": v.isoformat()}
    if t is datetime.timedelta:
        return {_MARK: "timedelta", "v": [v.days, v.seconds, v.microseconds]}
    if t is decimal.Decimal:
        return {_MARK: "decimal", "v": str(v)}
    if t is uuid.UUID:
        return {_MARK: "uuid", "v": str(v)}
    if isinstance(v, pathlib.PurePath):
        return {_MARK: "path", "type": _type_ref(t), "v": str(v)}
    raise _Unsupported(t)


def _dec_hook(d: dict[str, Any]) -> Any:
    kind = d.get(_MARK)
    if kind is None:
        return d
    v: Any = d.get("v")
    if kind == "tuple":
        return tuple(v)
    if kind == "set":
        return set(v)
    if kind == "frozenset":
        return frozenset(v)
    if kind == "bytes":
        import base64

        return base64.b64decode(d["b64"])
    if kind == "dict":
        return {_hashable(k): x for k, x in d["items"]}
    if kind == "pydantic":
        return resolve_type(d["type"]).model_validate(v)
    if kind == "dataclass":
        import dataclasses

        cls = resolve_type(d["type"])
        init = {f.name for f in dataclasses.fields(cls) if f.init}
        obj = cls(**{k: x for k, x in v.items() if k in init})
        for k, x in v.items():
            if k not in init:
                object.__setattr__(obj, k, x)
        return obj
    if kind == "enum":
        return resolve_type(d["type"])(v)
    if kind == "path":
        return resolve_type(d["type"])(v)
    import datetime
    import decimal
    import uuid

    simple: dict[str, Callable[[Any], Any]] = {
        "datetime": datetime.datetime.fromisoformat,
        "date": datetime.date.fromisoformat,
        "time": datetime.time.fromisoformat,
        "timedelta": lambda x: datetime.timedelta(days=x[0], seconds=x[1], microseconds=x[2]),
        "decimal": decimal.Decimal,
        "uuid": uuid.UUID,
    }
    if kind in simple:
        return simple[kind](v)
    raise KitaruRuntimeError(f"Unknown tagged value {kind!r} in stored JSON; upgrade kitaru.")


def _hashable(k: Any) -> Any:
    return tuple(_hashable(x) for x in k) if type(k) is list else k


def _json_bytes(v: Any) -> bytes:
    return json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode()


def dumps(value: Any, *, what: str = "value") -> tuple[str, bytes]:
    """Serialize `value`; `what` names the owner (e.g. ``output of checkpoint 'fetch'``) in errors."""
    t = type(value)
    if t is str:
        return "str", value.encode("utf-8", "surrogatepass")
    if t is bytes:
        return "bytes", value
    custom = _CUSTOM_BY_TYPE.get(t)
    if custom is not None:
        data = custom.dumps(value)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise KitaruUsageError(
                f"Serializer {custom.name!r} returned {type(data).__name__} for the {what}; it must return bytes."
            )
        return f"custom:{custom.name}", bytes(data)
    if _is_pydantic(value):
        return f"pydantic:{_type_ref(t)}", value.model_dump_json().encode()
    try:
        encoded, plain = _enc(value)
        return ("json" if plain else "kjson"), _json_bytes(encoded)
    except (_Unsupported, ValueError, TypeError, RecursionError):
        pass
    return _pickle_dumps(value, t, what)


def _pickle_dumps(value: Any, t: type, what: str) -> tuple[str, bytes]:
    name = f"{t.__module__}.{t.__qualname__}"
    if not _config.allow_pickle():
        raise KitaruRuntimeError(
            f"Cannot store the {what}: type {name} has no typed serializer and pickle is "
            "disabled (KITARU_ALLOW_PICKLE=0). Return JSON-able data, a dataclass or a pydantic "
            "model, or register a serializer with kitaru.serde.register_serializer()."
        )
    import pickle

    try:
        return f"pickle:{_type_ref(t)}", pickle.dumps(value, protocol=5)
    except Exception as exc:
        raise KitaruRuntimeError(
            f"Cannot store the {what}: a value of type {name} cannot be serialized ({exc}). "
            "Return JSON-able data, a dataclass or a pydantic model, or register a serializer "
            "with kitaru.serde.register_serializer()."
        ) from exc


def _unpickle(data: bytes) -> Any:
    import io
    import pickle

    class AliasUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            return super().find_class(MODULE_ALIASES.get(module, module), name)

    return AliasUnpickler(io.BytesIO(data)).load()


def loads(tag: str, data: bytes, *, what: str = "value") -> Any:
    """Read back a value stored by :func:`dumps`."""
    if tag == "str":
        return data.decode("utf-8", "surrogatepass")
    if tag == "bytes":
        return bytes(data)
    if tag == "json":
        return json.loads(data)
    if tag == "kjson":
        return json.loads(data, object_hook=_dec_hook)
    kind, _, rest = tag.partition(":")
    if kind == "pydantic":
        return resolve_type(rest).model_validate_json(data)
    if kind == "custom":
        custom = _CUSTOM_BY_NAME.get(rest)
        if custom is None:
            raise KitaruRuntimeError(
                f"The {what} was stored with serializer {rest!r}, which is not registered in this "
                "process; call kitaru.serde.register_serializer(...) before loading it."
            )
        return custom.loads(bytes(data))
    if kind == "pickle":
        if not _config.allow_pickle():
            raise KitaruRuntimeError(
                f"The {what} is a pickle of {rest.replace(':', '.')} and loading pickles is disabled "
                "(KITARU_ALLOW_PICKLE=0). Pickles run code when loaded; set KITARU_ALLOW_PICKLE=1 "
                "only if you trust everyone who can write to this store."
            )
        return _unpickle(data)
    raise KitaruRuntimeError(
        f"The {what} uses serializer {tag!r}, unknown to this kitaru; upgrade kitaru."
    )


def digest(value: Any) -> bytes | None:
    """A blake3 digest of `value`'s serialized form, or None when it cannot be serialized."""
    try:
        tag, data = dumps(value)
    except Exception:
        return None
    return blake3_digest(tag.encode() + b"\0" + data)
