"""`kitaru store ...`: where the store is, verify it, reindex it, dump raw records."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import KitaruError
from ._common import Exit, Output, store_where, where_text


def add_parsers(
    sub: Any, common: argparse.ArgumentParser, common_st: list[argparse.ArgumentParser]
) -> None:
    st = sub.add_parser("store", help="the store: location and raw records", parents=common_st)
    sts = st.add_subparsers(dest="action", metavar="ACTION", required=True)
    sts.add_parser("info", help="where the store is, and which stack chose it", parents=common_st)
    sts.add_parser(
        "verify", help="re-read and re-hash everything; exit 1 on any problem", parents=common_st
    )
    sts.add_parser(
        "reindex",
        help="write the execution index entries that are missing (listings find executions "
        "through it); reads every execution once",
        parents=common_st,
    )
    d = sts.add_parser(
        "dump",
        help="print records as JSON (a key, or every record of an execution id)",
        parents=common_st,
    )
    d.add_argument("key", metavar="KEY_OR_EXEC_ID")


def cmd_store(args: argparse.Namespace, out: Output) -> None:
    from .. import _config, _files

    where = store_where(args)
    store = _config.get_store(where["store"], where["store_options"])
    if args.action == "info":
        info = {
            "location": store.url,
            "stack": where["stack"],
            "stack_source": where["stack_source"],
            "options": where["store_options"],
            "config_dir": str(_files.config_dir()),
        }

        def info_text() -> str:
            lines = where_text({**where, "store": info["location"]})
            return "\n".join([*lines, f"Config dir  {info['config_dir']}"])

        out.item(info, info_text)
    elif args.action == "verify":
        from ._progress import progress

        with progress("verifying") as p:
            report = store.verify(progress=p)

        def text() -> str:
            lines = [
                f"Checked {report['executions']} executions, {report['records']} records and "
                f"{report['blobs']} blobs in {store.url}."
            ]
            lines += [f"  {f['kind']:<9} {f['key']}: {f['detail']}" for f in report["findings"]]
            if report.get("torn_tails"):
                lines.append(
                    f"{report['torn_tails']} segment(s) end in an append a crash cut short "
                    "(never counted; not a problem)."
                )
            if report.get("fenced"):
                lines.append(
                    f"{report['fenced']} record(s) written by a runner after another process "
                    "took its execution over (never counted; not a problem)."
                )
            lines.append(
                f"{len(report['findings'])} problem(s) found."
                if report["findings"]
                else "No problems found."
            )
            return "\n".join(lines)

        out.item(report, text)
        if report["findings"]:
            raise Exit(1)
    elif args.action == "reindex":
        from ._progress import progress

        with progress("indexing") as p:
            done = store.reindex(progress=p)
        out.item(
            done,
            lambda: (
                f"Indexed {done['executions']} executions in {store.url} "
                f"({done['missing']} had entries missing)."
            ),
        )
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
            records.append({"key": k, **dumped})
        if not records:
            raise KitaruError(f"No records under {key!r} in the store at {store.url}.")
        out.items(records, lambda: json.dumps(records, indent=2))
