"""`kitaru memory ...`: memory with an explicit scope, and its maintenance."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import Exit, Output, fmt_time, render_table, store_where


def add_parsers(
    sub: Any, common: argparse.ArgumentParser, common_st: list[argparse.ArgumentParser]
) -> None:
    scoped = argparse.ArgumentParser(add_help=False)
    scoped.add_argument("--scope", required=True, help="the memory scope")
    scoped.add_argument(
        "--scope-type",
        default="namespace",
        choices=["namespace", "flow", "execution"],
        help="the scope's type (default: namespace)",
    )
    both = [*common_st, scoped]
    g = sub.add_parser("memory", help="scoped, versioned memory", parents=common_st)
    ms = g.add_subparsers(dest="action", metavar="ACTION", required=True)
    ms.add_parser("scopes", help="every scope holding keys", parents=common_st)
    ms.add_parser("list", help="the live keys of a scope, latest versions", parents=both)
    p = ms.add_parser("get", help="a key's latest (or --version) entry and value", parents=both)
    p.add_argument("key")
    p.add_argument("--version", type=int)
    p = ms.add_parser("history", help="every version of a key, newest first", parents=both)
    p.add_argument("key")
    p = ms.add_parser("set", help="write a new version (VALUE: JSON, else text)", parents=both)
    p.add_argument("key")
    p.add_argument("value")
    p = ms.add_parser("delete", help="soft-delete a key (a tombstone version)", parents=both)
    p.add_argument("key")
    p = ms.add_parser("purge", help="delete old versions of a key for good", parents=both)
    p.add_argument("key")
    p.add_argument("--keep", type=int, help="newest versions to keep (default: none)")
    p = ms.add_parser("purge-scope", help="purge every key of a scope", parents=both)
    p.add_argument("--keep", type=int, help="newest versions to keep per key (default: none)")
    p.add_argument("--include-deleted", action="store_true", help="deleted keys too")
    p = ms.add_parser("compact", help="summarize values into a new version with a model",
                      parents=both)  # fmt: skip
    p.add_argument("--key", help="one key (its latest value, or --source-mode history)")
    p.add_argument("--keys", nargs="+", help="several keys' latest values (needs --target-key)")
    p.add_argument("--source-mode", default="current", choices=["current", "history"])
    p.add_argument("--target-key", help="where the summary goes (default: --key)")
    p.add_argument("--instruction", help="what the model is asked to do with the values")
    p.add_argument("--model", help="model alias or provider/model (default: the default alias)")
    p.add_argument("--max-tokens", type=int)
    ms.add_parser("compaction-log", help="a scope's compactions and purges", parents=both)
    p = ms.add_parser("reindex", help="Kitaru 0.4's tag backfill (nothing to do here)",
                      parents=common_st)  # fmt: skip
    p.add_argument("--apply", action="store_true")


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _rows(entries: list[Any]) -> str:
    rows = [
        [
            e.key,
            str(e.version),
            "deleted" if e.is_deleted else e.value_type,
            fmt_time(e.created_at),
            e.execution_id or "-",
        ]
        for e in entries
    ]
    return render_table(rows, ["KEY", "VERSION", "TYPE", "CREATED", "EXECUTION"])


def cmd_memory(args: argparse.Namespace, out: Output) -> None:
    from .. import _config
    from .._memory_admin import MemoriesAPI

    where = store_where(args)
    api = MemoriesAPI(_config.get_store(where["store"], where["store_options"]))
    a = args.action
    scope = {"scope": args.scope, "scope_type": args.scope_type} if hasattr(args, "scope") else {}
    if a == "scopes":
        scopes = api.scopes()
        rows = [[s.scope_type, s.scope, str(s.entry_count)] for s in scopes]
        out.items(scopes, lambda: render_table(rows, ["TYPE", "SCOPE", "KEYS"]))
    elif a == "list":
        entries = api.list(**scope)
        out.items(entries, lambda: _rows(entries) if entries else "No keys.")
    elif a == "history":
        entries = api.history(args.key, **scope)
        out.items(entries, lambda: _rows(entries) if entries else "No versions.")
    elif a == "get":
        entry = api.get(args.key, version=args.version, **scope)
        if entry is None:
            out.item({"entry": None, "value": None}, lambda: f"No key {args.key!r}.")
            raise Exit(1)
        value = api.value(args.key, version=entry.version, **scope)
        text = value if isinstance(value, str) else json.dumps(value, indent=2, default=repr)
        body = "" if entry.is_deleted else "\n\n" + text
        out.item({"entry": entry, "value": value}, lambda: _rows([entry]) + body)
    elif a == "set":
        entry = api.set(args.key, _value(args.value), **scope)
        out.item(entry, lambda: f"Wrote {entry.key} version {entry.version}.")
    elif a == "delete":
        gone = api.delete(args.key, **scope)
        out.item(gone, lambda: f"Deleted {args.key}." if gone else f"No key {args.key!r}.")
    elif a == "purge":
        purged = api.purge(args.key, keep=args.keep, **scope)
        out.item(purged, lambda: f"Deleted {purged.versions_deleted} version(s) of {args.key}.")
    elif a == "purge-scope":
        purged = api.purge_scope(keep=args.keep, include_deleted=args.include_deleted, **scope)
        out.item(purged, lambda: f"Deleted {purged.versions_deleted} version(s) of "
                                 f"{purged.keys_affected} key(s).")  # fmt: skip
    elif a == "compact":
        done = api.compact(key=args.key, keys=args.keys, source_mode=args.source_mode,
                           target_key=args.target_key, instruction=args.instruction,
                           model=args.model, max_tokens=args.max_tokens, **scope)  # fmt: skip
        out.item(done, lambda: f"Compacted {done.sources_read} value(s) into "
                               f"{done.entry.key} version {done.entry.version}.")  # fmt: skip
    elif a == "compaction-log":
        log = api.compaction_log(**scope)
        rows = [[fmt_time(r.timestamp), r.operation, ", ".join(r.source_keys) or "-",
                 r.target_key or "-", str(r.versions_deleted)] for r in log]  # fmt: skip
        out.items(log, lambda: render_table(rows, ["WHEN", "OP", "SOURCES", "TARGET", "DELETED"]))
    elif a == "reindex":
        scanned = api.reindex(apply=args.apply)
        out.item(scanned,
                 lambda: f"Scanned {scanned.versions_scanned} version(s); nothing to update.")  # fmt: skip
