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
            more = " --budget-usd <dollars>" if e.failure.origin.value == "budget" else ""
            lines.append(f"Retry with  kitaru executions retry {e.exec_id}{more}")
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
    lines.extend(_llm_lines(e))
    return "\n".join(lines)


def _usd(v: float | None) -> str:
    if v is None:
        return "?"
    if v == 0 or v >= 100:
        return f"${v:,.2f}"
    return f"${v:.6f}" if v < 0.01 else f"${v:.4f}"


def _llm_lines(e: Any) -> list[str]:
    cost = e.llm_cost
    if cost is None or (not cost.calls and not cost.saved_calls and cost.budget_usd is None):
        return []
    total = f"LLM cost    {_usd(cost.cost_usd)} spent on {cost.calls} call{'s' * (cost.calls != 1)}"
    total += f" ({cost.tokens_input} tokens in, {cost.tokens_output} out)"
    if cost.unpriced_calls:
        total += f"; {cost.unpriced_calls} without a known price"
    lines = [total]
    if cost.saved_calls:
        lines.append(
            f"LLM saved   {_usd(cost.saved_usd)} by reusing {cost.saved_calls} stored call"
            + "s" * (cost.saved_calls != 1)
            + " on resume"
        )
    if cost.budget_usd is not None:
        lines.append(f"LLM budget  {_usd(cost.budget_usd)}")
    rows = [
        [
            c.call,
            str(c.run),
            c.checkpoint or "",
            c.model or "",
            "" if c.tokens_input is None else str(c.tokens_input),
            "" if c.tokens_output is None else str(c.tokens_output),
            "" if c.latency_ms is None else f"{c.latency_ms:.0f}ms",
            _usd(c.cost_usd),
        ]
        for c in e.llm_calls
    ]
    if rows:
        table = _table(
            rows, ["LLM CALL", "RUN", "IN CHECKPOINT", "MODEL", "IN", "OUT", "LATENCY", "COST"]
        )
        lines.extend("  " + line for line in table.splitlines())
    return lines


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


_warned = False


def _stack_arg(args: argparse.Namespace) -> str | None:
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


def _client(args: argparse.Namespace) -> Any:
    from .client import ExecutionsAPI, KitaruClient

    client = KitaruClient()
    client.executions = ExecutionsAPI(_stack_arg(args), "--stack")
    return client


def cmd_executions(args: argparse.Namespace, out: Output) -> None:
    from .errors import KitaruExecutionNotFoundError

    client = _client(args)
    try:
        _executions_action(client, args, out)
    except KitaruExecutionNotFoundError as exc:
        choice = client.executions.store_choice()
        chosen = (
            f"the store of stack {choice.stack!r} (from {choice.source})"
            if choice.stack
            else "the store KITARU_STORE names"
        )
        raise KitaruExecutionNotFoundError(
            f"{exc}. That is {chosen}; to look in another stack's store, add --stack NAME."
        ) from None


def _executions_action(client: Any, args: argparse.Namespace, out: Output) -> None:
    if args.action == "list":
        items = client.executions.list(flow=args.flow, status=args.status, limit=args.limit)
        out.items(items, lambda: _list_text(items))
    elif args.action == "get":
        e = client.executions.get(args.exec_id)
        out.item(e, lambda: _describe(e))
    elif args.action == "retry":
        e = client.executions.retry(args.exec_id, budget_usd=args.budget_usd)
        out.item(e, lambda: _describe(e))
        if e.status.value in ("failed", "cancelled"):
            raise _Exit(1)
    elif args.action == "resume":
        e = client.executions.resume(args.exec_id, budget_usd=args.budget_usd)
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
    except RecursionError:
        raise KitaruUsageError(
            "--value nests lists or objects too deeply to read; give a flatter JSON value."
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


def _where(args: argparse.Namespace) -> dict[str, Any]:
    """The store commands use from here: stack, why, location and options."""
    from . import _config
    from ._kitaru import redact_urls

    choice = _config.resolve_store(_stack_arg(args), "--stack")
    return {
        "stack": choice.stack,
        "stack_source": choice.source,
        "store": redact_urls(choice.location),
        "store_options": choice.options,
    }


def _where_text(item: dict[str, Any]) -> list[str]:
    stack = item["stack"] or "(none)"
    lines = [f"Stack       {stack}  (from {item['stack_source']})", f"Store       {item['store']}"]
    if item["store_options"]:
        opts = ", ".join(f"{k}={v}" for k, v in sorted(item["store_options"].items()))
        lines.append(f"Options     {opts}")
    return lines


def cmd_status(args: argparse.Namespace, out: Output) -> None:
    import os

    from . import _config
    from ._kitaru import redact_urls

    # a store URL could carry credentials (refused when used, but shown here)
    env = {
        k: "***" if any(w in k for w in ("KEY", "TOKEN", "SECRET", "PASSWORD")) else redact_urls(v)
        for k, v in sorted(os.environ.items())
        if k.startswith("KITARU_")
    }
    counts: dict[str, int] = {}
    models: dict[str, Any] = {}
    try:
        from . import _models

        aliases = _models.list_model_aliases()
        default = next((a["alias"] for a in aliases if a["is_default"]), None)
        models = {"aliases": len(aliases), "default": default}
    except KitaruError as exc:
        models = {"error": str(exc)}
    store_error = None
    where: dict[str, Any] = {"stack": None, "stack_source": "-", "store": "-", "store_options": {}}
    try:
        where = _where(args)
        for e in _client(args).executions.list():
            counts[e.status.value] = counts.get(e.status.value, 0) + 1
    except KitaruError as exc:
        store_error = str(exc)
    item = {
        **where,
        "config_dir": _config.config_dir(),
        "environment": env,
        "executions": counts,
        "store_error": store_error,
        "models": models,
    }

    def text() -> str:
        lines = [*_where_text(item), f"Config dir  {item['config_dir']}"]
        if store_error:
            lines.append(f"Store error {store_error}")
        else:
            summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"
            lines.append(f"Executions  {summary}")
        if "error" in models:
            lines.append(f"Models      {models['error']}")
        else:
            default = f" (default: {models['default']})" if models["default"] else ""
            lines.append(f"Models      {models['aliases']} alias(es){default}")
        for k, v in env.items():
            lines.append(f"{k:<24} {v}")
        return "\n".join(lines)

    out.item(item, text)


def cmd_info(args: argparse.Namespace, out: Output) -> None:
    import platform

    from . import _config
    from ._kitaru import LAYOUT_VERSION, RECORD_FORMAT_VERSION
    from .flow import VERSION

    item = {
        "kitaru": VERSION,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "store_layout_version": LAYOUT_VERSION,
        "record_format_version": RECORD_FORMAT_VERSION,
        **_where(args),
        "config_dir": _config.config_dir(),
    }
    out.item(item, lambda: "\n".join(f"{k:<22} {v}" for k, v in item.items()))


# --- stacks ---------------------------------------------------------------------------


def _stack_item(info: Any) -> dict[str, Any]:
    return {"id": info.id, **to_jsonable(info)}


def _stack_text(info: Any) -> str:
    lines = [
        f"Stack       {info.name}{'  (active)' if info.is_active else ''}",
        f"Store       {info.location}",
    ]
    if info.options:
        lines.append(
            f"Options     {', '.join(f'{k}={v}' for k, v in sorted(info.options.items()))}"
        )
    return "\n".join(lines)


def _parse_options(pairs: list[str] | None) -> dict[str, str]:
    from .errors import KitaruUsageError

    options: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise KitaruUsageError(
                f"--option takes KEY=VALUE (an object_store config key), got {pair!r}."
            )
        options[key.strip()] = value
    return options


def cmd_stack(args: argparse.Namespace, out: Output) -> None:
    from . import _config, stacks
    from .errors import KitaruUsageError

    if getattr(args, "stack", None) is not None:
        raise KitaruUsageError(
            "--stack chooses the store of other commands; `kitaru stack ...` takes stack names "
            "as arguments."
        )
    if args.action == "list":
        infos = stacks.list_stacks()

        def text() -> str:
            rows = [
                [
                    "*" if i.is_active else "",
                    i.name,
                    i.location,
                    ", ".join(f"{k}={v}" for k, v in sorted(i.options.items())),
                ]
                for i in infos
            ]
            return _table(rows, ["ACTIVE", "NAME", "STORE", "OPTIONS"])

        out.items([_stack_item(i) for i in infos], text)
    elif args.action == "current":
        info = stacks.current_stack()
        choice = _config.resolve_store()
        in_effect = {"stack": choice.stack, "store": choice.location, "source": choice.source}
        item = {**_stack_item(info), "in_effect": in_effect}

        def current_text() -> str:
            text = _stack_text(info)
            if choice.stack != info.name or choice.location != info.location:
                text += (
                    f"\nIn effect   {choice.stack or choice.location} (from {choice.source}), "
                    "which takes precedence here"
                )
            return text

        out.item(item, current_text)
    elif args.action == "show":
        info = stacks.get_stack(args.name)
        out.item(_stack_item(info), lambda: _stack_text(info))
    elif args.action == "use":
        info = stacks.use_stack(args.name)
        out.item(_stack_item(info), lambda: f"Active stack is now {info.name} ({info.location}).")
    elif args.action == "create":
        previous = stacks.current_stack().name
        info = stacks.create_stack(
            args.name,
            artifact_store=args.artifact_store,
            region=args.region,
            endpoint=args.endpoint,
            allow_http=args.allow_http,
            options=_parse_options(args.option),
            activate=not args.no_activate,
        )
        item = {**_stack_item(info), "previous_active_stack": previous}

        def create_text() -> str:
            text = f"Created stack {info.name}.\n{_stack_text(info)}"
            if not info.is_active:
                text += f"\nActivate it with: kitaru stack use {info.name}"
            return text

        out.item(item, create_text)
    elif args.action == "delete":
        info = stacks.delete_stack(args.name, force=args.force)
        active = stacks.current_stack().name
        item = {**_stack_item(info), "deleted_stack": info.name, "new_active_stack": active}
        out.item(
            item,
            lambda: (
                f"Deleted stack {info.name}; its store at {info.location} is left as it is.\n"
                f"Active stack: {active}"
            ),
        )


# --- store ----------------------------------------------------------------------------


def cmd_store(args: argparse.Namespace, out: Output) -> None:
    from . import _config

    where = _where(args)
    store = _config.get_store(where["store"], where["store_options"])
    if args.action == "info":
        info = {
            "location": store.url,
            "stack": where["stack"],
            "stack_source": where["stack_source"],
            "options": where["store_options"],
            "config_dir": str(_config.config_dir()),
        }

        def info_text() -> str:
            lines = _where_text({**where, "store": info["location"]})
            return "\n".join([*lines, f"Config dir  {info['config_dir']}"])

        out.item(info, info_text)
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
    # Commands that read or steer executions choose their store like a flow does; --stack
    # takes the place of a flow's stack= (KITARU_STORE still wins).
    stack_opt = argparse.ArgumentParser(add_help=False)
    stack_opt.add_argument(
        "--stack",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help="use this stack's store (default: KITARU_STORE, pyproject.toml, the active stack)",
    )
    common_st = [common, stack_opt]
    p = argparse.ArgumentParser(
        prog="kitaru", description="Durable runtime for Python AI agents.", parents=common_st
    )
    p.add_argument("-V", "--version", action="version", version=f"kitaru {VERSION}")
    sub = p.add_subparsers(dest="group", metavar="COMMAND")

    ex = sub.add_parser("executions", help="inspect and steer executions", parents=common_st)
    exs = ex.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = exs.add_parser("list", help="list executions, newest first", parents=common_st)
    ls.add_argument("--flow", help="only executions of this flow")
    ls.add_argument("--status", help="running, waiting, completed, failed or cancelled")
    ls.add_argument("--limit", type=int, help="at most N executions")
    for name, helptext in (
        ("get", "show one execution with its checkpoints"),
        ("retry", "run a failed execution again from the top, reusing finished checkpoints"),
        ("resume", "run a waiting execution whose waits are answered, reusing finished work"),
        ("cancel", "cancel an execution"),
    ):
        c = exs.add_parser(name, help=helptext, parents=common_st)
        c.add_argument("exec_id", metavar="EXEC_ID")
        if name in ("retry", "resume"):
            c.add_argument(
                "--budget-usd",
                type=float,
                metavar="USD",
                help="a new LLM budget for the execution (e.g. after a budget stop)",
            )
    inp = exs.add_parser("input", help="answer (or abort) a pending wait", parents=common_st)
    inp.add_argument("exec_id", metavar="EXEC_ID")
    inp.add_argument("--value", help="the answer as JSON, e.g. true, 3, '\"text\"', '{\"a\": 1}'")
    inp.add_argument(
        "--abort", action="store_true", help="abort the wait: the execution is cancelled"
    )
    inp.add_argument("--wait", help="which wait, when several are pending")
    inp.add_argument(
        "-i", "--interactive", action="store_true", help="prompt for each pending wait"
    )
    lg = exs.add_parser(
        "logs", help="captured stdout, stderr and logging output", parents=common_st
    )
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
    sub.add_parser(
        "status", help="stack, store, config and executions at a glance", parents=common_st
    )
    sub.add_parser("info", help="versions and locations, for bug reports", parents=common_st)

    st = sub.add_parser("store", help="the store: location and raw records", parents=common_st)
    sts = st.add_subparsers(dest="action", metavar="ACTION", required=True)
    sts.add_parser("info", help="where the store is, and which stack chose it", parents=common_st)
    sts.add_parser(
        "verify", help="re-read and re-hash everything; exit 1 on any problem", parents=common_st
    )
    d = sts.add_parser(
        "dump",
        help="print records as JSON (a key, or every record of an execution id)",
        parents=common_st,
    )
    d.add_argument("key", metavar="KEY_OR_EXEC_ID")

    sk = sub.add_parser(
        "stack",
        help="named store configurations: create, list, use, delete",
        description="A stack names a store (a directory or an s3://, gs://, az:// URL) and its "
        "options. Runs use KITARU_STORE, else kitaru.configure(stack=), else the flow's "
        "stack=, else [tool.kitaru] stack in pyproject.toml, else the active stack, else "
        "'default' (the local store). Credentials come from the environment, never a stack.",
        parents=[common],
    )
    sks = sk.add_subparsers(dest="action", metavar="ACTION", required=True)
    sks.add_parser("list", help="every stack; * marks the active one", parents=[common])
    sks.add_parser(
        "current", help="the active stack, and what takes precedence here", parents=[common]
    )
    for name, helptext in (
        ("show", "one stack's store and options"),
        ("use", "make a stack the active one for this user"),
    ):
        c = sks.add_parser(name, help=helptext, parents=[common])
        c.add_argument("name", metavar="NAME")
    cr = sks.add_parser("create", help="create a stack (and make it active)", parents=[common])
    cr.add_argument("name", metavar="NAME")
    cr.add_argument(
        "--artifact-store",
        metavar="URL",
        help="a directory or file://, memory://, s3://bucket/prefix, gs://, az:// URL "
        "(default: a new directory in the config dir)",
    )
    cr.add_argument("--region", help="the object store's region (e.g. eu-west-1)")
    cr.add_argument("--endpoint", metavar="URL", help="an S3-compatible or Azure endpoint URL")
    cr.add_argument(
        "--allow-http", action="store_true", help="allow a plain-http endpoint (local servers)"
    )
    cr.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="an object_store config key (repeatable); credentials are refused: set them in "
        "the environment",
    )
    cr.add_argument("--no-activate", action="store_true", help="do not make it the active stack")
    dl = sks.add_parser(
        "delete", help="forget a stack (its store is left as it is)", parents=[common]
    )
    dl.add_argument("name", metavar="NAME")
    dl.add_argument(
        "--force", action="store_true", help="delete the active stack; 'default' becomes active"
    )
    from . import _cli_llm

    _cli_llm.add_parsers(sub, common)
    return p


def _cmd_model(args: argparse.Namespace, out: Output) -> None:
    from . import _cli_llm

    _cli_llm.cmd_model(args, out)


def _cmd_secrets(args: argparse.Namespace, out: Output) -> None:
    from . import _cli_llm

    _cli_llm.cmd_secrets(args, out)


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
        "stack": cmd_stack,
        "init": cmd_init,
        "status": cmd_status,
        "info": cmd_info,
        "model": _cmd_model,
        "secrets": _cmd_secrets,
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
