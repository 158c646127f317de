"""A wait's JSON Schema as form fields, and a submitted form back to a value.

The form is a convenience: what it builds is checked against the wait's schema by
`ExecutionsAPI.input` (the same `jsonschema` check as the CLI's), which has the last word.
Fields cover what pydantic emits for a wait's type: objects (nested ones flattened to
dotted names), strings (formats as input types), numbers with bounds, booleans, enums,
``Optional[...]`` (``anyOf`` with null) and local ``$ref``s; anything else (lists,
unions, free-form objects) is a JSON text field. Every form also takes the answer as raw
JSON, which wins when given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# A schema nested deeper than this is answered as JSON (and a $ref cycle ends here).
_MAX_DEPTH = 6
_FORMAT_INPUTS = {
    "date": "date",
    "date-time": "datetime-local",
    "email": "email",
    "uri": "url",
    "time": "time",
}


@dataclass
class Field:
    """One input of the form; `name` is a dotted path into the answer ("" for the answer
    itself when the schema is not an object)."""

    name: str
    label: str
    kind: str  # text, textarea, integer, number, boolean, enum, json
    required: bool
    description: str | None = None
    input_type: str = "text"
    default: str | None = None
    options: list[str] = field(default_factory=list)  # enum values, shown as JSON
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False


class FormError(ValueError):
    """A field's text cannot become a value of its type (names the field)."""


def _resolve(schema: Any, root: dict[str, Any]) -> Any:
    """`schema` with a local ``#/...`` $ref followed (others are left as they are)."""
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 16:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            return schema
        target: Any = root
        for part in ref[2:].split("/"):
            target = (
                target.get(part.replace("~1", "/").replace("~0", "~"), {})
                if isinstance(target, dict)
                else {}
            )
        schema, seen = target, seen + 1
    return schema


def _non_null(schema: dict[str, Any], root: dict[str, Any]) -> tuple[Any, bool]:
    """(the schema without a null alternative, whether null is allowed)."""
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list):
            options = [_resolve(o, root) for o in options]
            rest = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            if len(rest) == 1 and len(rest) < len(options):
                merged = {**rest[0], **{k: v for k, v in schema.items() if k != key}}
                return merged, True
    kinds = schema.get("type")
    if isinstance(kinds, list) and "null" in kinds:
        rest = [k for k in kinds if k != "null"]
        if len(rest) == 1:
            return {**schema, "type": rest[0]}, True
    return schema, False


def fields(schema: Any) -> list[Field]:
    """The inputs for an answer of `schema` (one JSON field when there is no schema)."""
    if not isinstance(schema, dict):
        return [Field("", "Answer (JSON)", "json", True)]
    out: list[Field] = []
    _collect(schema, schema, "", "Answer", True, out, 0)
    return out


def _collect(
    schema: Any,
    root: dict[str, Any],
    name: str,
    label: str,
    required: bool,
    out: list[Field],
    depth: int,
) -> None:
    schema = _resolve(schema, root)
    if not isinstance(schema, dict):
        out.append(Field(name, label, "json", required))
        return
    schema, nullable = _non_null(schema, root)
    schema = _resolve(schema, root)
    label = str(schema.get("title") or label)
    desc = schema.get("description")
    default = schema.get("default")
    shown_default = (
        None if default is None else (default if isinstance(default, str) else json.dumps(default))
    )
    kind = schema.get("type")

    def add(kind_: str, **extra: Any) -> None:
        out.append(Field(name, label, kind_, required, description=desc,
                         default=shown_default, nullable=nullable, **extra))  # fmt: skip

    if isinstance(schema.get("enum"), list) and schema["enum"]:
        add("enum", options=[json.dumps(v) for v in schema["enum"]])
    elif "const" in schema:
        add("enum", options=[json.dumps(schema["const"])])
    elif kind == "object" and isinstance(schema.get("properties"), dict) and depth < _MAX_DEPTH:
        needed = set(schema.get("required") or [])
        for key, sub in schema["properties"].items():
            child = f"{name}.{key}" if name else str(key)
            title = str(key).replace("_", " ").capitalize()
            _collect(sub, root, child, title, key in needed, out, depth + 1)
    elif kind == "boolean":
        add("boolean")
    elif kind in ("integer", "number"):
        add(str(kind), input_type="number",
            minimum=schema.get("minimum", schema.get("exclusiveMinimum")),
            maximum=schema.get("maximum", schema.get("exclusiveMaximum")))  # fmt: skip
    elif kind == "string":
        wide = (schema.get("maxLength") or 0) > 200 or schema.get("format") == "markdown"
        add("textarea" if wide else "text",
            input_type=_FORMAT_INPUTS.get(str(schema.get("format")), "text"))  # fmt: skip
    else:
        add("json")


def value_of(form: dict[str, str], fields_: list[Field]) -> Any:
    """The answer a submitted form gives: the raw JSON field when filled, else the fields
    (an empty optional field is left out; an empty nullable one is null)."""
    raw = form.get("__json__", "").strip()
    if raw:
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise FormError(f"The JSON answer is not valid JSON: {exc}.") from None
    if len(fields_) == 1 and fields_[0].name == "":
        return _parse(fields_[0], form.get("f:", ""))
    answer: dict[str, Any] = {}
    for f in fields_:
        text = form.get(f"f:{f.name}", "")
        if text == "" and f.kind not in ("text", "textarea"):
            if f.nullable and f.required:
                _put(answer, f.name, None)
            elif f.required:
                raise FormError(f"{f.label} ({f.name}) is required.")
            continue
        if text == "" and not f.required:
            continue
        _put(answer, f.name, _parse(f, text))
    return answer


def _put(answer: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = answer
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value


def _parse(f: Field, text: str) -> Any:
    what = f"{f.label} ({f.name or 'answer'})"
    try:
        if f.kind == "integer":
            return int(text)
        if f.kind == "number":
            number = float(text)
            return int(number) if number.is_integer() and "." not in text else number
        if f.kind == "boolean":
            if text not in ("true", "false"):
                raise ValueError(text)
            return text == "true"
        if f.kind in ("enum", "json"):
            return json.loads(text)
    except ValueError:
        kind = (
            "JSON"
            if f.kind in ("enum", "json")
            else f"a{'n' if f.kind[0] in 'aeiou' else ''} {f.kind}"
        )
        raise FormError(f"{what}: {text[:60]!r} is not {kind}.") from None
    return text
