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
    for w in e.pending_waits:
        lines.append(f"Waiting on  {w.name}: {w.question or '(no question)'}")
        lines.append(
            f"            answer: kitaru executions input {e.exec_id} --wait {w.name} --value <json>"
        )
    if e.status.value == "waiting" and not e.pending_waits:
        lines.append(f"Resume with kitaru executions resume {e.exec_id}")
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
            _note(e),
        ]
        for e in items
    ]
    return _table(rows, ["EXECUTION", "FLOW", "STATUS", "STARTED", "DURATION", "NOTE"])


def _note(e: Any) -> str:
    if e.pending_wait is not None:
        return f"{e.pending_wait.name}: {e.pending_wait.question or '(waiting for input)'}"[:70]
    if e.status.value == "waiting":
        return "input given; resume it"
    if e.failure is not None:
        return f"[{e.failure.origin.value}] {e.failure.message}"[:70]
    return ""


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
    elif args.action == "resume":
        e = client.executions.resume(args.exec_id)
        out.item(e, lambda: _describe(e))
        if e.status.value in ("failed", "cancelled"):
            raise _Exit(1)
    elif args.action == "cancel":
        e = client.executions.cancel(args.exec_id)
        out.item(e, lambda: f"Execution {e.exec_id} is {e.status.value}.")
    elif args.action == "input":
        _input(client, args, out)
    elif args.action == "logs":
        _logs(client, args, out)


def _input(client: Any, args: argparse.Namespace, out: Output) -> None:
    from .errors import KitaruUsageError

    chosen = [args.value is not None, args.abort, args.interactive]
    if sum(chosen) != 1:
        raise KitaruUsageError("Give exactly one of --value JSON, --abort or --interactive.")
    if args.interactive:
        if out.json or not sys.stdin.isatty():
            raise KitaruUsageError("--interactive needs a terminal and text output.")
        _interactive_input(client, args.exec_id, args.wait)
        return
    if args.abort:
        e = client.executions.abort_wait(args.exec_id, wait=args.wait)
        out.item(e, lambda: f"Wait aborted; execution {e.exec_id} is {e.status.value}.")
        return
    try:
        value = json.loads(args.value)
    except ValueError as exc:
        raise KitaruUsageError(
            f"--value must be JSON ({exc}); quote strings: --value '\"text\"', or use true/false/numbers/objects."
        ) from None
    e = client.executions.input(args.exec_id, wait=args.wait, value=value)

    def text() -> str:
        if e.pending_waits:
            return (
                f"Input recorded. Execution {e.exec_id} still waits on {e.pending_waits[0].name}."
            )
        return f"Input recorded. Continue it with: kitaru executions resume {e.exec_id}"

    out.item(e, text)


def _interactive_input(client: Any, exec_id: str, wait: str | None) -> None:
    from .errors import KitaruWaitValidationError
    from .wait import parse_value

    for w in client.executions.pending_waits(exec_id):
        if wait is not None and w.name != wait:
            continue
        print(f"{w.name}: {w.question or '(no question)'}")
        if w.schema is not None:
            print(f"  schema: {json.dumps(w.schema)}")
        while True:
            choice = input("  [c]ontinue / [a]bort / [s]kip / [q]uit: ").strip().lower()[:1]
            if choice == "q":
                return
            if choice == "s":
                break
            if choice == "a":
                client.executions.abort_wait(exec_id, wait=w.name)
                print("  aborted")
                return
            if choice == "c":
                raw = input("  value (JSON; empty = null): ").strip()
                try:
                    client.executions.input(
                        exec_id, wait=w.name, value=parse_value(raw) if raw else None
                    )
                except KitaruWaitValidationError as exc:
                    print(f"  {exc}")
                    continue
                print(f"  recorded; continue with: kitaru executions resume {exec_id}")
                break


def _logs(client: Any, args: argparse.Namespace, out: Output) -> None:
    import time

    def fmt(e: Any) -> str:
        where = f"[{e.checkpoint_name}] " if e.checkpoint_name else ""
        return f"{_fmt_time(e.timestamp)} {(e.level or ''):<7} {where}{e.message}"

    source = "runner" if args.runner else "step"
    entries = client.executions.logs(
        args.exec_id, checkpoint=args.checkpoint, source=source, limit=args.limit
    )
    if not args.follow:
        out.items(entries, lambda: "\n".join(fmt(e) for e in entries) or "No log entries found.")
        return
    seen = 0
    while True:
        # Status first, then logs: every batch written before the execution stopped is in
        # the read that follows (reading them the other way round loses the last batches
        # when it stops in between, a window that a network store makes wide).
        status = client.executions.get(args.exec_id).status.value
        entries = client.executions.logs(args.exec_id, checkpoint=args.checkpoint, source=source)
        for e in entries[seen:]:
            print(json.dumps({"command": out.command, "event": "log", "item": to_jsonable(e)}) if out.json else fmt(e),
                  flush=True)  # fmt: skip
        seen = len(entries)
        if status in ("completed", "failed", "cancelled", "waiting"):
            item = {
                "status": status,
                "recovery_command": f"kitaru executions retry {args.exec_id}"
                if status == "failed"
                else None,
            }
            if out.json:
                print(
                    json.dumps(
                        {
                            "command": out.command,
                            "event": "terminal" if status != "waiting" else "waiting",
                            "item": item,
                        }
                    )
                )
            else:
                print(
                    f"-- execution {status}"
                    + (
                        f"; retry with: {item['recovery_command']}"
                        if item["recovery_command"]
                        else ""
                    )
                )
            if status in ("failed", "cancelled"):
                raise _Exit(1)
            return
        time.sleep(args.interval)


# --- init, status, info ---------------------------------------------------------------


def cmd_init(args: argparse.Namespace, out: Output) -> None:
    import os

    from .errors import KitaruUsageError

    root = os.path.abspath(args.path or ".")
    if not os.path.isdir(root):
        raise KitaruUsageError(f"{root} is not a directory.")
    marker = os.path.join(root, ".kitaru")
    if os.path.exists(marker):
        raise KitaruUsageError(f"{marker} already exists: {root} is already a kitaru project.")
    os.mkdir(marker)
    item = {"path": marker, "repository_directory": root}
    out.item(item, lambda: f"Initialized a kitaru project in {root} ({marker}).")


def cmd_status(args: argparse.Namespace, out: Output) -> None:
    import os

    from . import _config
    from ._kitaru import redact_urls

    # a store URL could carry credentials (refused when used, but shown here)
    env = {k: redact_urls(v) for k, v in sorted(os.environ.items()) if k.startswith("KITARU_")}
    counts: dict[str, int] = {}
    store_error = None
    try:
        from .client import KitaruClient

        for e in KitaruClient().executions.list():
            counts[e.status.value] = counts.get(e.status.value, 0) + 1
    except KitaruError as exc:
        store_error = str(exc)
    item = {
        "store": redact_urls(_config.store_location()),
        "config_dir": _config.config_dir(),
        "environment": env,
        "executions": counts,
        "store_error": store_error,
    }

    def text() -> str:
        lines = [f"Store       {item['store']}", f"Config dir  {item['config_dir']}"]
        if store_error:
            lines.append(f"Store error {store_error}")
        else:
            summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"
            lines.append(f"Executions  {summary}")
        for k, v in env.items():
            lines.append(f"{k:<24} {v}")
        return "\n".join(lines)

    out.item(item, text)


def cmd_info(args: argparse.Namespace, out: Output) -> None:
    import platform

    from . import _config
    from ._kitaru import LAYOUT_VERSION, RECORD_FORMAT_VERSION, redact_urls
    from .flow import VERSION

    item = {
        "kitaru": VERSION,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "store_layout_version": LAYOUT_VERSION,
        "record_format_version": RECORD_FORMAT_VERSION,
        "store": redact_urls(_config.store_location()),
        "config_dir": _config.config_dir(),
    }
    out.item(item, lambda: "\n".join(f"{k:<22} {v}" for k, v in item.items()))


# --- store ----------------------------------------------------------------------------


def cmd_store(args: argparse.Namespace, out: Output) -> None:
    from . import _config

    store = _config.get_store()
    if args.action == "info":
        info = {"location": store.url, "config_dir": str(_config.config_dir())}
        out.item(info, lambda: f"Store       {info['location']}\nConfig dir  {info['config_dir']}")
    elif args.action == "verify":
        report = json.loads(store.verify())

        def text() -> str:
            lines = [
                f"Checked {report['executions']} executions, {report['records']} records and "
                f"{report['blobs']} blobs in {store.url}."
            ]
            lines += [f"  {f['kind']:<9} {f['key']}: {f['detail']}" for f in report["findings"]]
            lines.append(
                f"{len(report['findings'])} problem(s) found."
                if report["findings"]
                else "No problems found."
            )
            return "\n".join(lines)

        out.item(report, text)
        if report["findings"]:
            raise _Exit(1)
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
        ("resume", "run a waiting execution whose waits are answered, reusing finished work"),
        ("cancel", "cancel an execution"),
    ):
        c = exs.add_parser(name, help=helptext, parents=[common])
        c.add_argument("exec_id", metavar="EXEC_ID")
    inp = exs.add_parser("input", help="answer (or abort) a pending wait", parents=[common])
    inp.add_argument("exec_id", metavar="EXEC_ID")
    inp.add_argument("--value", help="the answer as JSON, e.g. true, 3, '\"text\"', '{\"a\": 1}'")
    inp.add_argument(
        "--abort", action="store_true", help="abort the wait: the execution is cancelled"
    )
    inp.add_argument("--wait", help="which wait, when several are pending")
    inp.add_argument(
        "-i", "--interactive", action="store_true", help="prompt for each pending wait"
    )
    lg = exs.add_parser("logs", help="captured stdout, stderr and logging output", parents=[common])
    lg.add_argument("exec_id", metavar="EXEC_ID")
    lg.add_argument("--checkpoint", help="only this checkpoint call (e.g. fetch_2)")
    lg.add_argument("--runner", action="store_true", help="only the flow body's output")
    lg.add_argument("--limit", type=int, help="at most N entries")
    lg.add_argument(
        "-f", "--follow", action="store_true", help="keep printing until the execution stops"
    )
    lg.add_argument(
        "--interval", type=float, default=1.0, help="seconds between polls with --follow"
    )

    ini = sub.add_parser(
        "init", help="mark a directory as a kitaru project (.kitaru/)", parents=[common]
    )
    ini.add_argument("path", nargs="?", metavar="PATH")
    sub.add_parser("status", help="store, config and executions at a glance", parents=[common])
    sub.add_parser("info", help="versions and locations, for bug reports", parents=[common])

    st = sub.add_parser("store", help="the store: location and raw records", parents=[common])
    sts = st.add_subparsers(dest="action", metavar="ACTION", required=True)
    sts.add_parser("info", help="where the store is", parents=[common])
    sts.add_parser(
        "verify", help="re-read and re-hash everything; exit 1 on any problem", parents=[common]
    )
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
    command = f"{args.group}.{args.action}" if getattr(args, "action", None) else args.group
    out = Output(command, getattr(args, "output", "text"))
    handlers = {
        "executions": cmd_executions,
        "store": cmd_store,
        "init": cmd_init,
        "status": cmd_status,
        "info": cmd_info,
    }
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
