"""`kitaru init`, `kitaru status` and `kitaru info`: the project, the settings in effect,
versions for bug reports."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import KitaruError
from ._common import Output, client_for, store_where, where_text


def add_parsers(
    sub: Any, common: argparse.ArgumentParser, common_st: list[argparse.ArgumentParser]
) -> None:
    ini = sub.add_parser(
        "init", help="mark a directory as a kitaru project (.kitaru/)", parents=[common]
    )
    ini.add_argument("path", nargs="?", metavar="PATH")
    sub.add_parser(
        "status", help="stack, store, config and executions at a glance", parents=common_st
    )
    sub.add_parser("info", help="versions and locations, for bug reports", parents=common_st)


def cmd_init(args: argparse.Namespace, out: Output) -> None:
    import os

    from ..errors import KitaruUsageError

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

    from .. import _files
    from .._kitaru import redact_urls

    # a store URL could carry credentials (refused when used, but shown here)
    env = {
        k: "***" if any(w in k for w in ("KEY", "TOKEN", "SECRET", "PASSWORD")) else redact_urls(v)
        for k, v in sorted(os.environ.items())
        if k.startswith("KITARU_")
    }
    counts: dict[str, int] = {}
    models: dict[str, Any] = {}
    try:
        from .._llm import models as _models

        aliases = _models.list_model_aliases()
        default = next((a["alias"] for a in aliases if a["is_default"]), None)
        models = {"aliases": len(aliases), "default": default}
    except KitaruError as exc:
        models = {"error": str(exc)}
    store_error = None
    where: dict[str, Any] = {"stack": None, "stack_source": "-", "store": "-", "store_options": {}}
    try:
        where = store_where(args)
        for e in client_for(args).executions.list():
            counts[e.status.value] = counts.get(e.status.value, 0) + 1
    except KitaruError as exc:
        store_error = str(exc)
    item = {
        **where,
        "config_dir": _files.config_dir(),
        "environment": env,
        "executions": counts,
        "store_error": store_error,
        "models": models,
    }

    def text() -> str:
        lines = [*where_text(item), f"Config dir  {item['config_dir']}"]
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


def info_item(where: dict[str, Any]) -> dict[str, Any]:
    """`kitaru info`'s payload (also `kitaru-mcp`'s `kitaru_info`) for the store `where`
    (`store_where`'s dict: its URL already redacted)."""
    import platform

    from .. import _files
    from .._kitaru import LAYOUT_VERSION, RECORD_FORMAT_VERSION, VERSION

    return {
        "kitaru": VERSION,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "store_layout_version": LAYOUT_VERSION,
        "record_format_version": RECORD_FORMAT_VERSION,
        **where,
        "config_dir": _files.config_dir(),
    }


def cmd_info(args: argparse.Namespace, out: Output) -> None:
    item = info_item(store_where(args))
    out.item(item, lambda: "\n".join(f"{k:<22} {v}" for k, v in item.items()))
