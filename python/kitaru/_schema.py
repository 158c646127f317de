"""Validation of wait input in a process that may not have the schema's type.

A wait stores its schema as JSON Schema and, when it is an importable class, as
``module:qualname``. Input is checked against the JSON Schema here (no import needed), and
then, when the type can be imported, with pydantic's `TypeAdapter` for the exact rules.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

from .errors import KitaruWaitValidationError

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is(kind: str, value: Any) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    cls = _TYPES.get(kind)
    return cls is None or isinstance(value, cls)


def errors(
    schema: dict[str, Any], value: Any, root: dict[str, Any] | None = None, path: str = "$"
) -> list[str]:
    """What is wrong with `value` under a JSON Schema (the subset pydantic produces)."""
    root = root or schema
    if "$ref" in schema:
        ref = schema["$ref"]
        target: Any = root
        for part in ref.lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return errors(target, value, root, path)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [errors(s, value, root, path) for s in schema[key]]
            if all(options):
                return [
                    f"{path}: matches none of the allowed forms ({'; '.join(o[0] for o in options)})"
                ]
            return []
    if "allOf" in schema:
        return [e for s in schema["allOf"] for e in errors(s, value, root, path)]
    out: list[str] = []
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    if kinds and not any(_is(k, value) for k in kinds):
        return [f"{path}: expected {' or '.join(kinds)}, got {json.dumps(value)[:60]}"]
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: must be {json.dumps(schema['const'])}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: must be one of {json.dumps(schema['enum'])}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for req in schema.get("required", []):
            if req not in value:
                out.append(f"{path}: missing required field {req!r}")
        for key, item in value.items():
            if key in props:
                out.extend(errors(props[key], item, root, f"{path}.{key}"))
            elif schema.get("additionalProperties") is False:
                out.append(f"{path}: unexpected field {key!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                out.extend(errors(schema["additionalProperties"], item, root, f"{path}.{key}"))
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out.extend(errors(schema["items"], item, root, f"{path}[{i}]"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for key, ok in (("minimum", value >= schema.get("minimum", value)), ("maximum", value <= schema.get("maximum", value)),
                        ("exclusiveMinimum", "exclusiveMinimum" not in schema or value > schema["exclusiveMinimum"]),
                        ("exclusiveMaximum", "exclusiveMaximum" not in schema or value < schema["exclusiveMaximum"])):  # fmt: skip
            if not ok:
                out.append(f"{path}: violates {key} {schema[key]}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get(
            "maxLength", len(value)
        ):
            out.append(f"{path}: length out of range")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: does not match {schema['pattern']!r}")
    return out


def _import_type(type_ref: str, cwd: str | None) -> Any:
    module, _, qualname = type_ref.partition(":")
    if module in ("__main__", "__kitaru_main__"):
        return None  # a script's class: not importable here; the JSON Schema decides
    for path in (os.getcwd(), cwd):
        if path and path not in sys.path:
            sys.path.insert(0, path)
    try:
        import importlib

        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj
    except Exception:
        return None


def validate(wait: dict[str, Any], value: Any, cwd: str | None) -> Any:
    """`value` as JSON-able data accepted by the wait, or KitaruWaitValidationError."""
    name = wait["name"]
    if wait.get("schema_json") is None:
        if value is not None:
            raise KitaruWaitValidationError(
                f"Wait {name!r} is a continue/abort gate and takes no value; give --value null or --abort."
            )
        return None
    schema = json.loads(wait["schema_json"])
    problems = errors(schema, value)
    if problems:
        raise KitaruWaitValidationError(
            f"Input for wait {name!r} does not match its schema: {'; '.join(problems[:5])}. "
            f"Expected JSON Schema: {wait['schema_json']}"
        )
    cls = _import_type(wait["schema_type"], cwd) if wait.get("schema_type") else None
    if cls is None:
        return value
    from pydantic import TypeAdapter, ValidationError

    adapter = TypeAdapter(cls)
    try:
        return adapter.dump_python(adapter.validate_python(value), mode="json")
    except ValidationError as exc:
        raise KitaruWaitValidationError(
            f"Input for wait {name!r} does not match {cls.__qualname__}: {exc}"
        ) from exc
