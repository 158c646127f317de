"""`kitaru model ...` and `kitaru secrets ...`: model aliases and their credentials."""

from __future__ import annotations

import argparse
import sys

from ..errors import KitaruUsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._common import Output


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    m = sub.add_parser("model", help="model aliases for kitaru.llm()", parents=[common])
    ms = m.add_subparsers(dest="action", metavar="ACTION", required=True)
    reg = ms.add_parser("register", help="register (or replace) a model alias", parents=[common])
    reg.add_argument("alias", metavar="ALIAS")
    reg.add_argument("--model", required=True, help="provider/model, e.g. openai/gpt-4o-mini")
    reg.add_argument("--secret", help="the secret holding this provider's credentials")
    reg.add_argument(
        "--base-url", help="an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1"
    )
    reg.add_argument(
        "--structured-output",
        choices=("json_schema", "json_object", "tool"),
        help="how schema= is asked for: response_format json_schema (default), json_object "
        "with the schema in the system prompt, or one forced tool (for servers such as "
        "llama.cpp's that refuse json_schema)",
    )
    reg.add_argument("--input-price", type=float, help="USD per million input tokens")
    reg.add_argument("--output-price", type=float, help="USD per million output tokens")
    reg.add_argument("--default", action="store_true", help="make it the default alias")
    ms.add_parser(
        "list", help="list aliases (local and from KITARU_MODEL_REGISTRY)", parents=[common]
    )
    rm = ms.add_parser("remove", help="remove an alias", parents=[common])
    rm.add_argument("alias", metavar="ALIAS")
    df = ms.add_parser("default", help="make an alias the default", parents=[common])
    df.add_argument("alias", metavar="ALIAS")

    s = sub.add_parser("secrets", help="credentials for model aliases", parents=[common])
    ss = s.add_subparsers(dest="action", metavar="ACTION", required=True)
    st = ss.add_parser(
        "set",
        help="create or update a secret: set NAME --KEY ... (--KEY alone prompts for the value, "
        "or reads a line of stdin; --KEY=- reads stdin; --KEY=value works but leaves the value "
        "in the process list and shell history)",
        parents=[common],
    )
    st.add_argument("name", metavar="NAME")
    st.add_argument("--replace", action="store_true", help="drop the keys not given")
    st.add_argument("values", nargs=argparse.REMAINDER, metavar="--KEY[=-|=value]")
    sh = ss.add_parser("show", help="a secret's keys (values with --show-values)", parents=[common])
    sh.add_argument("name", metavar="NAME")
    sh.add_argument("--show-values", action="store_true", help="print the values too")
    ss.add_parser("list", help="every secret's name and keys", parents=[common])
    dl = ss.add_parser("delete", help="delete a secret", parents=[common])
    dl.add_argument("name", metavar="NAME")


def _alias_rows(items: list[dict[str, Any]]) -> str:
    from ._common import render_table

    if not items:
        return "No model aliases. Register one with `kitaru model register <alias> --model provider/model`."
    rows = [
        [
            ("* " if a["is_default"] else "  ") + a["alias"],
            a["model"],
            a.get("secret") or "",
            a.get("base_url") or "",
            a.get("structured_output") or "",
            (
                f"{a['input_price']:g}/{a['output_price']:g}"
                if a.get("input_price") is not None
                else ""
            ),
            a["source"],
        ]
        for a in items
    ]
    return render_table(
        rows,
        ["ALIAS", "MODEL", "SECRET", "BASE URL", "STRUCTURED", "PRICE IN/OUT ($/M)", "SOURCE"],
    )


def cmd_model(args: argparse.Namespace, out: Output) -> None:
    from .._llm import models as _models

    if args.action == "register":
        a = _models.register_model_alias(
            args.alias,
            model=args.model,
            secret=args.secret,
            base_url=args.base_url,
            input_price=args.input_price,
            output_price=args.output_price,
            default=args.default,
            structured_output=args.structured_output,
        )
        if a.secret is not None:
            from .._llm import secrets as _secrets

            if not any(x["name"] == a.secret for x in _secrets.list_secrets()):
                print(
                    f"Note: there is no secret {a.secret!r} yet; create it with "
                    f"`kitaru secrets set {a.secret} --KEY` (prompts for the value).",
                    file=sys.stderr,
                )
        item = next(x for x in _models.list_model_aliases() if x["alias"] == a.alias)
        out.item(item, lambda: f"Registered model alias {a.alias!r} → {a.model}.")
    elif args.action == "list":
        items = _models.list_model_aliases()
        out.items(items, lambda: _alias_rows(items))
    elif args.action == "remove":
        a = _models.remove_model_alias(args.alias)
        out.item({"alias": a.alias, **a.public_json()}, lambda: f"Removed model alias {a.alias!r}.")
    elif args.action == "default":
        a = _models.set_default_alias(args.alias)
        out.item(
            {"alias": a.alias, **a.public_json()},
            lambda: f"{a.alias!r} is the default model alias.",
        )


def _read_value(key: str) -> str:
    """A value given as `--KEY` alone or `--KEY=-`: prompted for (hidden) on a terminal,
    else one stdin line."""
    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"{key}: ")
    else:
        value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise KitaruUsageError(f"No value given for {key}.")
    return value


def _parse_values(
    name: str, tokens: list[str], out: Output
) -> tuple[dict[str, str], bool, list[str]]:
    """(values, replace, the keys given as --KEY=value) from the tokens after NAME.
    argparse hands everything after NAME over as they are, so the command's own options
    (`-o/--output`, `--replace`) are taken out first: an error (or a prompt) must not
    happen before `-o json` is known."""
    from .._llm import secrets as _secrets

    rest: list[str] = []
    replace = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("-o", "--output") and i + 1 < len(tokens):
            out.json = tokens[i + 1] == "json"
            i += 2
            continue
        if tok.startswith("--output="):
            out.json = tok.split("=", 1)[1] == "json"
        elif tok == "--replace":
            replace = True
        else:
            rest.append(tok)
        i += 1
    _secrets.validate_name(name)
    values: dict[str, str] = {}
    for tok in rest:
        if not tok.startswith("--") or len(tok) < 3:
            raise KitaruUsageError(
                f"Expected --KEY=value, got {tok.split('=', 1)[0]!r}: e.g. "
                "`kitaru secrets set openai --OPENAI_API_KEY` (prompts for the value; "
                "--OPENAI_API_KEY=- reads it from stdin)."
            )
        key = tok[2:].partition("=")[0]
        _secrets.validate_key(key)
        if key in values:
            raise KitaruUsageError(f"Secret key {key} is given twice.")
        values[key] = ""
    # Prompt (or read stdin) only once every token is known to be valid.
    inline: list[str] = []
    for tok in rest:
        key, sep, value = tok[2:].partition("=")
        if sep and value != "-":
            values[key] = value
            inline.append(key)
        else:
            values[key] = _read_value(key)
    return values, replace, inline


def _warn_inline(name: str, inline: list[str]) -> None:
    """Say that `--KEY=value` exposed the value (after the save, so that a `-o json` error
    on stderr stays one JSON document)."""
    key = inline[0]
    print(
        f"kitaru: warning: the value of {', '.join(inline)} was given on the command line, "
        "where other users of this machine can read it in the process list and the shell "
        f"keeps it in its history. Next time use `kitaru secrets set {name} --{key}` (prompts "
        f"for the value, hidden) or `--{key}=-` with the value on stdin, e.g. "
        f'`printf %s "${key}" | kitaru secrets set {name} --{key}=-`.',
        file=sys.stderr,
    )


def cmd_secrets(args: argparse.Namespace, out: Output) -> None:
    from .._llm import secrets as _secrets

    if args.action == "set":
        values, replace, inline = _parse_values(args.name, args.values, out)
        keys = _secrets.set_secret(args.name, values, replace=args.replace or replace)
        if inline:
            _warn_inline(args.name, inline)
        item = {"name": args.name, "keys": keys}
        out.item(item, lambda: f"Secret {args.name!r} saved with keys: {', '.join(keys)}.")
    elif args.action == "show":
        values = _secrets.get_secret(args.name)
        shown = values if args.show_values else _secrets.masked(values)
        item = {"name": args.name, "values": shown}
        out.item(
            item,
            lambda: "\n".join(
                [f"Secret {args.name}"] + [f"  {k}={v}" for k, v in sorted(shown.items())]
            ),
        )
    elif args.action == "list":
        items = _secrets.list_secrets()
        out.items(
            items,
            lambda: (
                "\n".join(
                    f"{x['name']}: {x['error']}"
                    if x.get("error")
                    else f"{x['name']}: {', '.join(x['keys'])}"  # type: ignore[arg-type]
                    for x in items
                )
                or "No secrets. Create one with `kitaru secrets set <name> --KEY` (prompts)."
            ),
        )
    elif args.action == "delete":
        _secrets.delete_secret(args.name)
        out.item({"name": args.name, "deleted": True}, lambda: f"Deleted secret {args.name!r}.")
