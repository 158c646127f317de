"""Stored values as text a person can read, without running anything the store names.

The dashboard reads stores that others write, so a value is shown from its bytes: JSON
and pydantic models as indented JSON, text as text, bytes as a preview. Pickles are never
loaded (loading one runs code chosen by whoever wrote the store), whatever
``KITARU_ALLOW_PICKLE`` says; values of custom serializers are shown only when this
process has the serializer registered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# What a page shows of one value; the rest is cut (the size says how much there was).
MAX_SHOWN = 64 * 1024


@dataclass(frozen=True)
class Shown:
    text: str
    kind: str  # json, text, bytes, note (a value that is not shown)
    type_name: str
    truncated: bool


def _cut(text: str, kind: str, type_name: str) -> Shown:
    if len(text) > MAX_SHOWN:
        return Shown(text[:MAX_SHOWN], kind, type_name, True)
    return Shown(text, kind, type_name, False)


def as_json_text(value: Any) -> str:
    from ..client import _plain

    return json.dumps(value, indent=2, ensure_ascii=False, default=_plain)


def show(tag: str, data: bytes) -> Shown:
    """A stored value (serializer tag and bytes) for a page."""
    kind, _, rest = tag.partition(":")
    if kind == "pickle":
        return Shown(
            f"A pickled {rest.replace(':', '.') or 'object'} ({len(data):,} bytes): not "
            "loaded here, since loading a pickle runs code chosen by whoever wrote the store.",
            "note", rest.replace(":", ".") or "pickle", False,
        )  # fmt: skip
    if tag == "str":
        return _cut(data.decode("utf-8", "replace"), "text", "str")
    if tag == "bytes":
        preview = data[: MAX_SHOWN // 4]
        try:
            return _cut(preview.decode("utf-8"), "text", "bytes")
        except UnicodeDecodeError:
            return _cut(preview.hex(" ", 2), "bytes", "bytes")
    if tag == "json" or kind == "pydantic":
        try:
            return _cut(as_json_text(json.loads(data)), "json", rest or "json")
        except ValueError:
            return _cut(data.decode("utf-8", "replace"), "text", rest or "json")
    from .. import serde

    try:
        value = serde.loads(tag, data, what="value", allow_pickle=False)
    except Exception as exc:
        return Shown(f"Not shown: {exc}", "note", tag, False)
    if isinstance(value, str):
        return _cut(value, "text", "str")
    return _cut(as_json_text(value), "json", type(value).__name__)


def show_value(value: Any) -> Shown:
    """An already loaded value (a wait's answer, an artifact) for a page."""
    if isinstance(value, str):
        return _cut(value, "text", "str")
    return _cut(as_json_text(value), "json", type(value).__name__)
