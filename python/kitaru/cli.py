"""The `kitaru` command line."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import KitaruError

__all__ = ["main"]


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
    return repr(v)


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _fmt_time(t: datetime | None) -> str:
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _fmt_duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "-"
    secs = ((end or datetime.now(timezone.utc)) - start).total_seconds()
    if secs < 1:
        return f"{secs * 1000:.0f}ms"
    if secs < 120:
        return f"{secs:.1f}s"
    if secs < 7200:
        return f"{secs / 60:.1f}m"
    return f"{secs / 3600:.1f}h"


def _table(rows: list[list[str]], headers: list[str]) -> str:
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


# --- executions ---------------------------------------------------------------------


def _describe(e: Any) -> str:
    lines = [
        f"Execution   {e.exec_id}",
        f"Flow        {e.flow_name}",
        f"Status      {e.status.value}",
        f"Started     {_fmt_time(e.started_at)}",
        f"Ended       {_fmt_time(e.ended_at)}  ({_fmt_duration(e.started_at, e.ended_at)})",
    ]
    if e.holder:
        lines.append(f"Runner      {e.holder}")
    if e.failure:
        lines.append(f"Failure     [{e.failure.origin.value}] {e.failure.message}")
        if e.status.value == "failed":
            lines.append(f"Retry with  kitaru executions retry {e.exec_id}")
    if e.metadata:
        lines.append(f"Metadata    {json.dumps(e.metadata)}")
    lines.append(f"Checkpoints {len(e.checkpoints)}")
    rows = []
    for c in e.checkpoints:
        attempts = len(c.attempts)
        rows.append(
            [
                c.name,
                str(c.attempts[-1].run) if c.attempts else "-",
                c.checkpoint_type or "",
                c.status.value,
                _fmt_duration(c.started_at, c.ended_at),
                str(attempts),
                (
                    c.failure.message[:60]
                    if c.failure
                    else f"{c.output_serializer or ''} {c.output_size or 0}B"
                ),
            ]
        )
    if rows:
        table = _table(
            rows, ["CALL", "RUN", "TYPE", "STATUS", "DURATION", "ATTEMPTS", "OUTPUT / FAILURE"]
        )
        lines.extend("  " + line for line in table.splitlines())
    for d in e.divergences:
        lines.append(
            f"Divergence  {d.call_id}: inputs changed since it finished; policy {d.policy}"
        )
    return "\n".join(lines)


def _list_text(items: list[Any]) -> str:
    if not items:
        return "No executions found."
    rows = [
        [
            e.exec_id,
            e.flow_name or "",
            e.status.value,
            _fmt_time(e.started_at),
            _fmt_duration(e.started_at, e.ended_at),
        ]
        for e in items
    ]
    return _table(rows, ["EXECUTION", "FLOW", "STATUS", "STARTED", "DURATION"])


def cmd_executions(args: argparse.Namespace, out: Output) -> None:
    from .client import KitaruClient

    client = KitaruClient()
    if args.action == "list":
        items = client.executions.list(flow=args.flow, status=args.status, limit=args.limit)
        out.items(items, lambda: _list_text(items))
    elif args.action == "get":
        e = client.executions.get(args.exec_id)
        out.item(e, lambda: _describe(e))
    elif args.action == "retry":
        e = client.executions.retry(args.exec_id)
        out.item(e, lambda: _describe(e))
        if e.status.value in ("failed", "cancelled"):
            raise _Exit(1)
    elif args.action == "cancel":
        e = client.executions.cancel(args.exec_id)
        out.item(e, lambda: f"Execution {e.exec_id} is {e.status.value}.")


# --- store ----------------------------------------------------------------------------


def cmd_store(args: argparse.Namespace, out: Output) -> None:
    from . import _config

    store = _config.get_store()
    if args.action == "info":
        info = {"location": store.url, "config_dir": str(_config.config_dir())}
        out.item(info, lambda: f"Store       {info['location']}\nConfig dir  {info['config_dir']}")
    elif args.action == "dump":
        key = args.key
        if "/" not in key:  # an execution id: every record of it
            keys = store.keys(f"executions/{key}")
        else:
            keys = [key]
        records = []
        for k in keys:
            dumped = store.dump_key(k)
            if dumped is None:
                raise KitaruError(f"No record at {k} in the store at {store.url}.")
            records.append({"key": k, **json.loads(dumped)})
        if not records:
            raise KitaruError(f"No records under {key!r} in the store at {store.url}.")
        out.items(records, lambda: json.dumps(records, indent=2))


def _parser() -> argparse.ArgumentParser:
    from .flow import VERSION

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-o",
        "--output",
        choices=["text", "json"],
        default=argparse.SUPPRESS,
        help="output format (default: text)",
    )
    p = argparse.ArgumentParser(
        prog="kitaru", description="Durable runtime for Python AI agents.", parents=[common]
    )
    p.add_argument("-V", "--version", action="version", version=f"kitaru {VERSION}")
    sub = p.add_subparsers(dest="group", metavar="COMMAND")

    ex = sub.add_parser("executions", help="inspect and steer executions", parents=[common])
    exs = ex.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = exs.add_parser("list", help="list executions, newest first", parents=[common])
    ls.add_argument("--flow", help="only executions of this flow")
    ls.add_argument("--status", help="running, waiting, completed, failed or cancelled")
    ls.add_argument("--limit", type=int, help="at most N executions")
    for name, helptext in (
        ("get", "show one execution with its checkpoints"),
        ("retry", "run a failed execution again from the top, reusing finished checkpoints"),
        ("cancel", "cancel an execution"),
    ):
        c = exs.add_parser(name, help=helptext, parents=[common])
        c.add_argument("exec_id", metavar="EXEC_ID")

    st = sub.add_parser("store", help="the store: location and raw records", parents=[common])
    sts = st.add_subparsers(dest="action", metavar="ACTION", required=True)
    sts.add_parser("info", help="where the store is", parents=[common])
    d = sts.add_parser(
        "dump",
        help="print records as JSON (a key, or every record of an execution id)",
        parents=[common],
    )
    d.add_argument("key", metavar="KEY_OR_EXEC_ID")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.group:
        parser.print_help()
        return 0
    command = f"{args.group}.{args.action}"
    out = Output(command, getattr(args, "output", "text"))
    handlers = {"executions": cmd_executions, "store": cmd_store}
    try:
        handlers[args.group](args, out)
    except _Exit as e:
        return e.code
    except (KitaruError, LookupError) as exc:
        out.error(exc)
        return 1
    except KeyboardInterrupt:
        out.error(KitaruError("interrupted"))
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
