"""What every command group shares: output (text or JSON), tables, times, and the store
a command uses (`--stack`)."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def to_jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (str, int, float, bool)):
        return v.value if isinstance(v, enum.Enum) else v
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, Path):
        return str(v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: to_jsonable(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, dict):
        return {str(k): to_jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_jsonable(x) for x in v]
    if isinstance(v, (set, frozenset)):
        return sorted((to_jsonable(x) for x in v), key=repr)
    if hasattr(v, "model_dump"):  # pydantic models (memory entries)
        return to_jsonable(v.model_dump(mode="json"))
    return repr(v)


class Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def fmt_time(t: datetime | None) -> str:
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def fmt_duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "-"
    return fmt_seconds(((end or datetime.now(timezone.utc)) - start).total_seconds())


def fmt_seconds(secs: float) -> str:
    if secs < 1:
        return f"{secs * 1000:.0f}ms"
    if secs < 120:
        return f"{secs:.1f}s"
    if secs < 7200:
        return f"{secs / 60:.1f}m"
    return f"{secs / 3600:.1f}h"


def render_table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


class Output:
    def __init__(self, command: str, mode: str) -> None:
        self.command, self.json = command, mode == "json"

    def item(self, item: Any, text: Callable[[], str]) -> None:
        if self.json:
            print(json.dumps({"command": self.command, "item": to_jsonable(item)}, indent=2))
        else:
            print(text())

    def items(self, items: list[Any], text: Callable[[], str]) -> None:
        if self.json:
            print(
                json.dumps(
                    {"command": self.command, "items": to_jsonable(items), "count": len(items)},
                    indent=2,
                )
            )
        else:
            print(text())

    def error(self, exc: BaseException) -> None:
        if self.json:
            err = {"message": str(exc), "type": type(exc).__name__}
            print(json.dumps({"command": self.command, "error": err}), file=sys.stderr)
        else:
            print(f"Error: {exc}", file=sys.stderr)


_warned = False


def stack_arg(args: argparse.Namespace) -> str | None:
    """The `--stack` option; a note on stderr when `KITARU_STORE` overrides it."""
    import os

    global _warned
    stack: str | None = getattr(args, "stack", None)
    if stack is not None and os.environ.get("KITARU_STORE", "").strip() and not _warned:
        _warned = True
        print(
            f"kitaru: KITARU_STORE is set and takes precedence over --stack {stack}.",
            file=sys.stderr,
        )
    return stack


def client_for(args: argparse.Namespace) -> Any:
    from ..client import ExecutionsAPI, KitaruClient

    client = KitaruClient()
    client.executions = ExecutionsAPI(stack_arg(args), "--stack")
    return client


def store_where(args: argparse.Namespace) -> dict[str, Any]:
    """The store commands use from here: stack, why, location and options."""
    from .. import _config
    from .._kitaru import redact_urls

    choice = _config.resolve_store(stack_arg(args), "--stack")
    return {
        "stack": choice.stack,
        "stack_source": choice.source,
        "store": redact_urls(choice.location),
        "store_options": choice.options,
    }


def where_text(item: dict[str, Any]) -> list[str]:
    stack = item["stack"] or "(none)"
    lines = [f"Stack       {stack}  (from {item['stack_source']})", f"Store       {item['store']}"]
    if item["store_options"]:
        opts = ", ".join(f"{k}={v}" for k, v in sorted(item["store_options"].items()))
        lines.append(f"Options     {opts}")
    return lines
