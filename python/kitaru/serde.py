"""Typed serialization of checkpoint outputs, flow arguments and results.

A value is stored as ``(tag, bytes)``; the tag says how to read it back as the same type:

- ``str``: UTF-8 text; ``bytes``: raw bytes;
- ``json``: JSON-able builtins (dict with str keys, list, str, int, float, bool, None);
- ``kjson``: JSON with tagged objects for tuples, sets, frozensets, bytes, dicts with
  non-string keys, dataclasses, pydantic models, enums, datetimes, UUIDs, Decimals, paths,
  PydanticAI messages (through its ``ModelMessagesTypeAdapter``) and LangChain messages;
- ``pydantic:<module>:<qualname>``: a pydantic model as its JSON;
- ``custom:<name>``: a serializer registered with :func:`register_serializer`;
- ``pickle:<module>:<qualname>``: anything else, only when pickle was opted in.

Loading is safe by default, because whoever can write the store chooses these bytes:

- no pickle is stored or loaded unless the user opts in (``@checkpoint(allow_pickle=True)``,
  ``@flow(allow_pickle=True)`` or ``KITARU_ALLOW_PICKLE=1``): unpickling runs code;
- a class named by stored data (``module:qualname``) is used only when its module is
  already imported by this process or allowed with :func:`allow_modules` /
  ``KITARU_ALLOWED_MODULES``; kitaru never imports a module because the store names it;
- such a class must be what the tag says (a pydantic model, a dataclass, an enum, a path
  class) defined in that module, and only its constructor or validators run.
"""

from __future__ import annotations

import json
import sys
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from . import _config
from ._kitaru import blake3_digest
from .errors import KitaruRuntimeError, KitaruUsageError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["allow_modules", "digest", "dumps", "loads", "register_serializer"]

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


# --- which classes stored data may name ------------------------------------------------

_ALLOWED_MODULES: set[str] = set()


def allow_modules(*names: str) -> None:
    """Let stored values name classes of modules `names` (and their submodules) even when
    this process has not imported them yet: kitaru then imports them to load such a value.

    Without this, a stored ``module:qualname`` is resolved only when ``module`` is already
    in ``sys.modules`` (your code imported it). ``KITARU_ALLOWED_MODULES=a,b.c`` does the
    same from the environment.
    """
    for name in names:
        if not isinstance(name, str) or not _is_dotted_name(name):
            raise KitaruUsageError(
                f"allow_modules() takes module names such as 'myapp.models', got {name!r}."
            )
        _ALLOWED_MODULES.add(name)


def _is_dotted_name(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


def _module_allowed(module: str) -> bool:
    for name in (*_ALLOWED_MODULES, *_config.allowed_modules()):
        if module == name or module.startswith(name + "."):
            return True
    return False


def _type_ref(cls: type) -> str:
    module = cls.__module__
    for stored, local in MODULE_ALIASES.items():
        if module == local:
            module = stored  # a re-entered script's class is stored under its real name
            break
    return f"{module}:{cls.__qualname__}"


_KINDS = {
    "class": "a class",
    "pydantic": "a pydantic model",
    "dataclass": "a dataclass",
    "enum": "an enum",
    "path": "a pathlib path class",
}


def _is_kind(obj: Any, kind: str) -> bool:
    if not isinstance(obj, type):
        return False
    if kind == "pydantic":
        pyd = sys.modules.get("pydantic")
        return pyd is not None and issubclass(obj, pyd.BaseModel)
    if kind == "dataclass":
        import dataclasses

        return dataclasses.is_dataclass(obj)
    if kind == "enum":
        import enum

        return issubclass(obj, enum.Enum)
    if kind == "path":
        import pathlib

        return issubclass(obj, pathlib.PurePath)
    return True


def resolve_type(ref: str, kind: str = "class", *, what: str = "value") -> Any:
    """The class named by a stored ``module:qualname`` reference, when it is safe to use.

    The module must already be imported, or allowed (:func:`allow_modules`); the class must
    be defined in it under that name and be of `kind` (``pydantic``, ``dataclass``,
    ``enum``, ``path``). Nothing else a store names is ever imported or called.
    """
    stored_module, sep, qualname = ref.partition(":")
    module_name = MODULE_ALIASES.get(stored_module, stored_module)
    shown = f"{stored_module}.{qualname}" if sep else ref

    def refuse(why: str, hint: str) -> KitaruRuntimeError:
        return KitaruRuntimeError(
            f"Cannot load the {what}: it is stored as type {shown}, and {why}. {hint}"
        )

    parts = qualname.split(".")
    if (
        not sep
        or not _is_dotted_name(module_name)
        or not all(p.isidentifier() and not p.startswith("__") for p in parts)
    ):
        raise refuse(
            "that is not the name of a class kitaru can rebuild",
            "The store holds a value this kitaru did not write; check who writes to it.",
        )
    module = sys.modules.get(module_name)
    if module is None:
        if not _module_allowed(module_name):
            raise refuse(
                f"module {module_name!r} is not imported by this process. kitaru never imports "
                "a module because stored data names it",
                f"Import {module_name} before loading (e.g. import the module that defines "
                f"your flow), or allow it with kitaru.serde.allow_modules({module_name!r}) or "
                f"KITARU_ALLOWED_MODULES={module_name}.",
            )
        import importlib

        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise refuse(
                f"the allowed module {module_name!r} cannot be imported ({exc})",
                "Run from the environment where that type can be imported.",
            ) from exc
    obj: Any = module
    for part in parts:
        obj = getattr(obj, part, None)
        if obj is None:
            raise refuse(
                f"module {module_name!r} has no {qualname!r}",
                "Restore the class (or give the environment that has it) to load this value.",
            )
    if (
        not isinstance(obj, type)
        or obj.__module__ != module_name
        or obj.__qualname__ != qualname
        or not _is_kind(obj, kind)
    ):
        raise refuse(
            f"{module_name}.{qualname} is not {_KINDS.get(kind, 'a class')} defined there",
            "The store holds a value this kitaru did not write; check who writes to it.",
        )
    return obj


def _is_pydantic(value: Any) -> bool:
    pyd = sys.modules.get("pydantic")
    return pyd is not None and isinstance(value, pyd.BaseModel)


# --- agent frameworks' messages (their modules are only looked at, never imported) ------


def _is_pydantic_ai_message(value: Any) -> bool:
    mod = sys.modules.get("pydantic_ai.messages")
    return mod is not None and isinstance(value, (mod.ModelRequest, mod.ModelResponse))


def _is_langchain_message(value: Any) -> bool:
    mod = sys.modules.get("langchain_core.messages")
    return mod is not None and isinstance(value, mod.BaseMessage)


def _framework_module(name: str, what: str) -> Any:
    """A framework's module (a fixed name, never one read from the store), imported lazily."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise KitaruRuntimeError(
            f"Cannot load a stored {what}: {name} is not installed here ({exc}). "
            "Install it in this environment to load the value."
        ) from exc


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

    if _is_langchain_message(v):
        data = sys.modules["langchain_core.messages"].message_to_dict(v)
        return {_MARK: "langchain_message", "v": _enc(data)[0]}
    if _is_pydantic(v):
        return {_MARK: "pydantic", "type": _type_ref(t), "v": v.model_dump(mode="json")}
    if _is_pydantic_ai_message(v):
        adapter = sys.modules["pydantic_ai.messages"].ModelMessagesTypeAdapter
        return {_MARK: "pydantic_ai_message", "v": json.loads(adapter.dump_json([v]))[0]}
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


class _Decoder:
    """The object hook of a ``kjson`` load: `what` names the value in errors."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __call__(self, d: dict[str, Any]) -> Any:
        kind = d.get(_MARK)
        if kind is None:
            return d
        try:
            return self._decode(kind, d)
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise KitaruRuntimeError(
                f"Cannot load the {self.what}: its stored {kind!r} value is malformed ({exc!r})."
            ) from exc

    def _decode(self, kind: Any, d: dict[str, Any]) -> Any:
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
        if kind in ("pydantic", "dataclass", "enum", "path"):
            cls = resolve_type(str(d["type"]), kind, what=self.what)
            if kind == "pydantic":
                return cls.model_validate(v)
            if kind == "dataclass":
                return _build_dataclass(cls, v)
            return cls(v)
        if kind == "pydantic_ai_message":
            mod = _framework_module("pydantic_ai.messages", "PydanticAI message")
            return mod.ModelMessagesTypeAdapter.validate_json(json.dumps([v]))[0]
        if kind == "langchain_message":
            mod = _framework_module("langchain_core.messages", "LangChain message")
            return mod.messages_from_dict([v])[0]
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
        raise KitaruRuntimeError(
            f"Cannot load the {self.what}: unknown tagged value {kind!r} in stored JSON; "
            "upgrade kitaru."
        )


def _build_dataclass(cls: type, v: Any) -> Any:
    """An instance of dataclass `cls` from its stored fields: the constructor gets the init
    fields; declared ``init=False`` fields are set after it; anything else is ignored."""
    import dataclasses

    if not isinstance(v, dict):
        raise TypeError(f"dataclass fields must be an object, got {type(v).__name__}")
    fields = dataclasses.fields(cls)
    init = {f.name for f in fields if f.init}
    later = {f.name for f in fields if not f.init}
    obj = cls(**{k: x for k, x in v.items() if k in init})
    for k, x in v.items():
        if k in later:
            object.__setattr__(obj, k, x)
    return obj


def _hashable(k: Any) -> Any:
    return tuple(_hashable(x) for x in k) if type(k) is list else k


# `json.dumps` with options builds an encoder per call (about a microsecond, on every
# checkpoint's input digest and output); one kept encoder writes the same bytes.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _json_bytes(v: Any) -> bytes:
    return _ENCODE(v).encode()


# --- pickle: only when opted in ---------------------------------------------------------

_pickle_scope: ContextVar[bool] = ContextVar("kitaru_allow_pickle", default=False)


class pickle_allowed:
    """``with pickle_allowed(flag):`` loads and stores in this context may use pickle when
    `flag` is true (a checkpoint's or flow's ``allow_pickle=True``)."""

    __slots__ = ("flag", "token")

    def __init__(self, flag: bool) -> None:
        self.flag = bool(flag)

    def __enter__(self) -> None:
        self.token = _pickle_scope.set(self.flag or _pickle_scope.get())

    def __exit__(self, *exc: object) -> None:
        _pickle_scope.reset(self.token)


def _pickle_ok(explicit: bool) -> bool:
    return explicit or _pickle_scope.get() or _config.allow_pickle()


_PICKLE_OPT_IN = (
    "@checkpoint(allow_pickle=True) or @flow(allow_pickle=True) for your own flows, or "
    "KITARU_ALLOW_PICKLE=1 for the whole process"
)


def dumps(value: Any, *, what: str = "value", allow_pickle: bool = False) -> tuple[str, bytes]:
    """Serialize `value`; `what` names the owner (e.g. ``output of checkpoint 'fetch'``) in errors.

    A value without a typed serializer is pickled only when `allow_pickle` (or an enclosing
    :class:`pickle_allowed`, or ``KITARU_ALLOW_PICKLE=1``) says so.
    """
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
    if _is_pydantic(value) and not _is_langchain_message(value):
        return f"pydantic:{_type_ref(t)}", value.model_dump_json().encode()
    try:
        encoded, plain = _enc(value)
        return ("json" if plain else "kjson"), _json_bytes(encoded)
    except (_Unsupported, ValueError, TypeError, RecursionError):
        pass
    return _pickle_dumps(value, t, what, allow_pickle)


def _pickle_dumps(value: Any, t: type, what: str, allow_pickle: bool) -> tuple[str, bytes]:
    name = f"{t.__module__}.{t.__qualname__}"
    if not _pickle_ok(allow_pickle):
        raise KitaruRuntimeError(
            f"Cannot store the {what}: type {name} has no typed serializer, and kitaru does not "
            "pickle values unless you opt in (a pickle runs code when it is loaded, so anyone who "
            "can write the store could run code in your process). Return JSON-able data, a "
            "dataclass or a pydantic model, register a serializer with "
            f"kitaru.serde.register_serializer(), or opt in with {_PICKLE_OPT_IN}."
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


def _unpickle(data: bytes, what: str) -> Any:
    import io
    import pickle

    class ImportedOnlyUnpickler(pickle.Unpickler):
        # Even an opted-in pickle imports nothing: globals come from imported (or allowed)
        # modules only, so a pickle cannot load a module (or path) the store names.
        def find_class(self, module: str, name: str) -> Any:
            module = MODULE_ALIASES.get(module, module)
            if module not in sys.modules and not _module_allowed(module):
                raise KitaruRuntimeError(
                    f"Cannot load the {what}: its pickle needs {module}.{name}, and module "
                    f"{module!r} is not imported by this process. Import it first, or allow it "
                    f"with kitaru.serde.allow_modules({module!r}) or KITARU_ALLOWED_MODULES."
                )
            return super().find_class(module, name)

    return ImportedOnlyUnpickler(io.BytesIO(data)).load()


def loads(tag: str, data: bytes, *, what: str = "value", allow_pickle: bool = False) -> Any:
    """Read back a value stored by :func:`dumps`.

    Pickles are loaded only when `allow_pickle` (or an enclosing :class:`pickle_allowed`,
    or ``KITARU_ALLOW_PICKLE=1``) says so; classes only as :func:`resolve_type` allows.
    """
    if tag == "str":
        return data.decode("utf-8", "surrogatepass")
    if tag == "bytes":
        return bytes(data)
    if tag == "json":
        return json.loads(data)
    if tag == "kjson":
        return json.loads(data, object_hook=_Decoder(what))
    kind, _, rest = tag.partition(":")
    if kind == "pydantic":
        return resolve_type(rest, "pydantic", what=what).model_validate_json(data)
    if kind == "custom":
        custom = _CUSTOM_BY_NAME.get(rest)
        if custom is None:
            raise KitaruRuntimeError(
                f"The {what} was stored with serializer {rest!r}, which is not registered in this "
                "process; call kitaru.serde.register_serializer(...) before loading it."
            )
        return custom.loads(bytes(data))
    if kind == "pickle":
        if not _pickle_ok(allow_pickle):
            raise KitaruRuntimeError(
                f"Refusing to load the {what}: it is a pickle of type {rest.replace(':', '.')}, "
                "and kitaru does not load pickles unless you opt in, because loading one runs "
                "code chosen by whoever wrote the store. If you trust everyone who can write to "
                f"this store, opt in with {_PICKLE_OPT_IN}."
            )
        return _unpickle(data, what)
    raise KitaruRuntimeError(
        f"The {what} uses serializer {tag!r}, unknown to this kitaru; upgrade kitaru."
    )


def digest(value: Any) -> bytes | None:
    """A blake3 digest of `value`'s serialized form, or None when it cannot be serialized.

    Values without a typed serializer are hashed as their pickle (the pickle is hashed,
    never stored or loaded)."""
    try:
        tag, data = dumps(value, allow_pickle=True)
    except Exception:
        return None
    return blake3_digest(tag.encode() + b"\0" + data)
