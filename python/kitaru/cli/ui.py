"""`kitaru ui`: the local web dashboard (`kitaru.ui`, extra `kitaru[ui]`)."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import Output, stack_arg


def add_parsers(
    sub: Any, common: argparse.ArgumentParser, common_st: list[argparse.ArgumentParser]
) -> None:
    p = sub.add_parser(
        "ui",
        help="a web dashboard on this store (http://127.0.0.1:8384, token in the link)",
        parents=common_st,
    )
    p.add_argument("--port", type=int, default=8384, help="port (default 8384; 0: any free port)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; anything else is reachable by others)",
    )
    p.add_argument(
        "--no-browser", action="store_true", help="do not open a browser (just print the link)"
    )


def cmd_ui(args: argparse.Namespace, out: Output) -> None:
    from ..ui._serve import serve

    serve(
        host=args.host,
        port=args.port,
        stack=stack_arg(args),
        open_browser=False if args.no_browser else None,
    )
