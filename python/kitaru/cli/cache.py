"""`kitaru cache ...`: the cross-execution cache's entries, and clearing them."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import Any

from ._common import Output, fmt_time, render_table, store_where


def add_parsers(
    sub: Any, common: argparse.ArgumentParser, common_st: list[argparse.ArgumentParser]
) -> None:
    c = sub.add_parser(
        "cache",
        help="the cross-execution cache: which finished calls answer later executions",
        parents=common_st,
    )
    cs = c.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = cs.add_parser("list", help="list cache entries, oldest first", parents=common_st)
    ls.add_argument("--flow", help="only this flow's entries")
    cl = cs.add_parser(
        "clear",
        help="delete cache entries (executions are untouched; later runs run those calls)",
        parents=common_st,
    )
    cl.add_argument("--flow", help="only this flow's entries (default: every entry)")


def cmd_cache(args: argparse.Namespace, out: Output) -> None:
    from .. import _config

    where = store_where(args)
    store = _config.get_store(where["store"], where["store_options"])
    if args.action == "list":
        entries = store.cache_entries(args.flow)

        def text() -> str:
            if not entries:
                return "No cache entries."
            rows = [
                [
                    e["flow_name"] or "?",
                    e["name"] or "?",
                    f"{e['exec_id']}/{e['call_id']}" if e["exec_id"] else "-",
                    fmt_time(_when(e["created_us"])),
                    e["damaged"] or "",
                ]
                for e in entries
            ]
            return render_table(rows, ["FLOW", "CHECKPOINT", "FROM", "CREATED", "DAMAGED"])

        out.items(entries, text)
    else:
        n = store.clear_cache(args.flow)
        scope = f" of flow {args.flow!r}" if args.flow else ""
        out.item({"deleted": n, "flow": args.flow}, lambda: f"Deleted {n} cache entries{scope}.")


def _when(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, tz=timezone.utc)
