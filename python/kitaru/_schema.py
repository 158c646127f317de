"""Validation of wait input outside the flow's own process.

A wait stores its schema as JSON Schema (and, for people, the ``module:qualname`` of its
type). `kitaru executions input` and `KitaruClient().executions.input()` check an answer
against that JSON Schema only, with the `jsonschema` library: they never import the type's
module or put a directory named by the store on `sys.path`, so whoever can write the store
cannot make them run code. The flow's own process checks the answer again with its own
types when `wait()` returns it.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import KitaruRuntimeError, KitaruWaitValidationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._views import WaitView

# Deeper answers are refused before validation (and before `json` or a validator would
# hit Python's recursion limit).
MAX_DEPTH = 200


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` nests lists/dicts more than `limit` levels (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= limit and len(children):
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _describe(error: Any) -> str:
    path = getattr(error, "json_path", "$")
    if error.validator == "type":
        kinds = error.validator_value
        kinds = " or ".join(kinds) if isinstance(kinds, list) else str(kinds)
        return f"{path}: expected {kinds}, got {json.dumps(error.instance)[:60]}"
    return f"{path}: {error.message}"


def errors(schema: Any, value: Any, wait_name: str = "?") -> list[str]:
    """What is wrong with `value` under the JSON Schema `schema` (empty when it is valid).

    Only `schema` itself is used: a ``$ref`` to anything outside it is an error, never a
    download.
    """
    import jsonschema
    import referencing

    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
        # Formats are asserted (date-time, date, uuid, email, uri...), as pydantic checks
        # them in the flow's process; the checkers come with `jsonschema[format-nongpl]`.
        validator = cls(
            schema, registry=referencing.Registry(), format_checker=cls.FORMAT_CHECKER
        )
        found = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    except RecursionError:
        raise KitaruWaitValidationError(
            f"Input for wait {wait_name!r} is nested too deeply to check against its schema."
        ) from None
    except Exception as exc:
        raise KitaruRuntimeError(
            f"The stored JSON Schema of wait {wait_name!r} cannot be used to check an answer "
            f"({type(exc).__name__}: {exc}). The wait was not answered."
        ) from exc
    return [_describe(e) for e in found]


def validate(wait: WaitView, value: Any) -> Any:
    """`value` as JSON-able data accepted by the wait's JSON Schema, or KitaruWaitValidationError."""
    name = wait["name"]
    if too_deep(value):
        raise KitaruWaitValidationError(
            f"Input for wait {name!r} nests lists or objects more than {MAX_DEPTH} levels deep; "
            "give a flatter value."
        )
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise KitaruWaitValidationError(
            f"Input for wait {name!r} must be JSON-able data (dict, list, str, number, bool, "
            f"None): {exc}"
        ) from None
    schema_json = wait["schema_json"]
    if schema_json is None:
        if value is not None:
            raise KitaruWaitValidationError(
                f"Wait {name!r} is a continue/abort gate and takes no value; give --value null or --abort."
            )
        return None
    try:
        schema = json.loads(schema_json)
    except ValueError as exc:
        raise KitaruRuntimeError(
            f"The stored JSON Schema of wait {name!r} is not JSON ({exc}). The wait was not answered."
        ) from exc
    problems = errors(schema, value, name)
    if problems:
        raise KitaruWaitValidationError(
            f"Input for wait {name!r} does not match its schema: {'; '.join(problems[:5])}. "
            f"Expected JSON Schema: {schema_json}"
        )
    return value
