"""`kitaru stack ...`: named store configurations."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import Output, render_table, to_jsonable


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
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
    cr.add_argument(
        "--runner",
        choices=("local", "ray"),
        help="where flows on this stack run unless they choose: this process (local, the "
        "default) or a Ray cluster (ray; RAY_ADDRESS)",
    )
    cr.add_argument("--no-activate", action="store_true", help="do not make it the active stack")
    dl = sks.add_parser(
        "delete", help="forget a stack (its store is left as it is)", parents=[common]
    )
    dl.add_argument("name", metavar="NAME")
    dl.add_argument(
        "--force", action="store_true", help="delete the active stack; 'default' becomes active"
    )


def cmd_stack(args: argparse.Namespace, out: Output) -> None:
    from .. import _config, stacks
    from ..errors import KitaruUsageError

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
            return render_table(rows, ["ACTIVE", "NAME", "STORE", "OPTIONS"])

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
            runner=args.runner,
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
    if info.runner:
        lines.append(f"Runner      {info.runner}")
    return "\n".join(lines)


def _parse_options(pairs: list[str] | None) -> dict[str, str]:
    from ..errors import KitaruUsageError

    options: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise KitaruUsageError(
                f"--option takes KEY=VALUE (an object_store config key), got {pair!r}."
            )
        options[key.strip()] = value
    return options
