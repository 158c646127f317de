"""The `kitaru` command line: one module per command group, this one builds the parser
and dispatches.

`_common` holds what the groups share (output, tables, the store a command uses); each
group module has `add_parsers` and its `cmd_*` handlers, and imports the rest of kitaru
where a command needs it, so `kitaru --help` stays quick.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..errors import KitaruError
from . import cache, executions, memory, models, stack, status, store, ui, worker
from ._common import Exit, Output

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from .._kitaru import VERSION

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
    executions.add_parsers(sub, common, common_st)
    status.add_parsers(sub, common, common_st)
    store.add_parsers(sub, common, common_st)
    cache.add_parsers(sub, common, common_st)
    memory.add_parsers(sub, common, common_st)
    ui.add_parsers(sub, common, common_st)
    worker.add_parsers(sub, common, common_st)
    stack.add_parsers(sub, common)
    models.add_parsers(sub, common)
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
        "executions": executions.cmd_executions,
        "store": store.cmd_store,
        "cache": cache.cmd_cache,
        "memory": memory.cmd_memory,
        "stack": stack.cmd_stack,
        "init": status.cmd_init,
        "status": status.cmd_status,
        "info": status.cmd_info,
        "model": models.cmd_model,
        "secrets": models.cmd_secrets,
        "ui": ui.cmd_ui,
        "worker": worker.cmd_worker,
    }
    try:
        handlers[args.group](args, out)
    except Exit as e:
        return e.code
    except (KitaruError, LookupError) as exc:
        out.error(exc)
        return 1
    except KeyboardInterrupt:
        out.error(KitaruError("interrupted"))
        return 130
    return 0
