"""`kitaru executions ...`: list, inspect, retry, resume, replay, cancel, answer waits, read
logs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._common import (
    Exit,
    Output,
    client_for,
    fmt_duration,
    fmt_time,
    render_table,
    to_jsonable,
)


def add_parsers(
    sub: Any, common: argparse.ArgumentParser, common_st: list[argparse.ArgumentParser]
) -> None:
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
    rp = exs.add_parser(
        "replay",
        help="a new execution that reuses this one's results up to a checkpoint and runs the rest",
        parents=common_st,
    )
    rp.add_argument("exec_id", metavar="EXEC_ID")
    rp.add_argument(
        "--from", dest="from_", required=True, metavar="CHECKPOINT",
        help="the checkpoint (call id such as write_draft or fetch_2) from which to run live",
    )  # fmt: skip
    rp.add_argument(
        "--overrides", metavar="JSON",
        help='outputs to replace, e.g. \'{"checkpoint.research": "edited notes"}\'',
    )  # fmt: skip
    rp.add_argument("--args", metavar="JSON", help="flow arguments to replace, by name")
    df = exs.add_parser(
        "diff", help="two executions checkpoint by checkpoint (e.g. a run and its replay)",
        parents=common_st,
    )  # fmt: skip
    df.add_argument("exec_a", metavar="EXEC_A")
    df.add_argument("exec_b", metavar="EXEC_B")
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


def cmd_executions(args: argparse.Namespace, out: Output) -> None:
    from ..errors import KitaruExecutionNotFoundError

    client = client_for(args)
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
        from ._progress import progress

        with progress("listing") as p:
            items = client.executions.list(
                flow=args.flow, status=args.status, limit=args.limit, progress=p
            )
        out.items(items, lambda: _list_text(items))
    elif args.action == "get":
        e = client.executions.get(args.exec_id)
        out.item(e, lambda: _describe(e))
    elif args.action == "retry":
        e = client.executions.retry(args.exec_id, budget_usd=args.budget_usd)
        out.item(e, lambda: _describe(e))
        if e.status.value in ("failed", "cancelled"):
            raise Exit(1)
    elif args.action == "resume":
        e = client.executions.resume(args.exec_id, budget_usd=args.budget_usd)
        out.item(e, lambda: _describe(e))
        if e.status.value in ("failed", "cancelled"):
            raise Exit(1)
    elif args.action == "cancel":
        e = client.executions.cancel(args.exec_id)
        out.item(e, lambda: f"Execution {e.exec_id} is {e.status.value}.")
    elif args.action == "replay":
        overrides = _json_object(args.overrides, "--overrides")
        flow_inputs = _json_object(args.args, "--args")
        e = client.executions.replay(
            args.exec_id, from_=args.from_, overrides=overrides, **flow_inputs
        )
        out.item(e, lambda: _describe(e))
        if e.status.value in ("failed", "cancelled"):
            raise Exit(1)
    elif args.action == "diff":
        d = client.executions.diff(args.exec_a, args.exec_b)
        out.item(d, lambda: _diff_text(d))
    elif args.action == "input":
        _input(client, args, out)
    elif args.action == "logs":
        _logs(client, args, out)


def _diff_text(d: Any) -> str:
    def pair(a: Any, b: Any, unit: str = "", digits: int = 2) -> str:
        def one(v: Any) -> str:
            return "-" if v is None else f"{unit}{v:.{digits}f}" if isinstance(v, float) else f"{v}"

        return f"{one(a)} -> {one(b)}"

    rows = [
        [c.call_id, c.status, pair(c.duration_a, c.duration_b, digits=3),
         pair(c.cost_usd_a, c.cost_usd_b, "$", 4), pair(c.tokens_a, c.tokens_b)]
        for c in d.checkpoints
    ]  # fmt: skip
    counts = ", ".join(
        f"{d.count(s)} {s}" for s in ("same", "changed", "added", "removed") if d.count(s)
    )
    lines = [
        f"a: {d.a}",
        f"b: {d.b}",
        "",
        render_table(
            rows, ["checkpoint", "status", "seconds a -> b", "cost a -> b", "tokens a -> b"]
        ),
        "",
        f"{counts or 'no checkpoints'}; cost {pair(d.cost_usd_a, d.cost_usd_b, '$', 4)}, "
        f"tokens {pair(d.tokens_a, d.tokens_b)}, seconds {pair(d.duration_a, d.duration_b, digits=3)}",
    ]
    for c in d.checkpoints:
        if c.output_diff:
            lines += ["", c.output_diff]
    return "\n".join(lines)


def _after_input(e: Any) -> str:
    """What happens next once a wait is answered: a runner still polling continues by
    itself (and holds the lease, so `resume` would be refused); else `resume` continues."""
    if e.holder:  # a live process holds the lease: it is polling for this answer
        return (
            f"Input recorded. The process running execution {e.exec_id} ({e.holder}) continues it."
        )
    return f"Input recorded. Continue it with: kitaru executions resume {e.exec_id}"


def _json_object(text: str | None, option: str) -> dict[str, Any]:
    """The JSON object an option gives (empty when the option is not given)."""
    from ..errors import KitaruUsageError

    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise KitaruUsageError(f"{option} must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise KitaruUsageError(f"{option} must be a JSON object, got {text!r}.")
    return value


def _input(client: Any, args: argparse.Namespace, out: Output) -> None:
    from ..errors import KitaruUsageError

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
        return _after_input(e)

    out.item(e, text)


def _interactive_input(client: Any, exec_id: str, wait: str | None) -> None:
    from ..errors import KitaruWaitValidationError
    from ..wait import parse_value

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
                print(f"  recorded. {_after_input(client.executions.get(exec_id))}")
                break


def _logs(client: Any, args: argparse.Namespace, out: Output) -> None:
    import time

    def fmt(e: Any) -> str:
        where = f"[{e.checkpoint_name}] " if e.checkpoint_name else ""
        return f"{fmt_time(e.timestamp)} {(e.level or ''):<7} {where}{e.message}"

    source = "runner" if args.runner else "step"
    entries = client.executions.logs(
        args.exec_id, checkpoint=args.checkpoint, source=source, limit=args.limit
    )
    if not args.follow:
        out.items(entries, lambda: "\n".join(fmt(e) for e in entries) or "No log entries found.")
        return
    from ._progress import StatusLine, timed

    seen, line, began = 0, StatusLine(), time.monotonic()
    while True:
        # Status first, then logs: every batch written before the execution stopped is in
        # the read that follows (reading them the other way round loses the last batches
        # when it stops in between, a window that a network store makes wide).
        status = client.executions.get(args.exec_id).status.value
        entries = client.executions.logs(args.exec_id, checkpoint=args.checkpoint, source=source)
        if len(entries) > seen:
            line.clear()
        for e in entries[seen:]:
            print(json.dumps({"command": out.command, "event": "log", "item": to_jsonable(e)}) if out.json else fmt(e),
                  flush=True)  # fmt: skip
        seen = len(entries)
        if status in ("completed", "failed", "cancelled", "waiting"):
            line.clear()
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
                raise Exit(1)
            return
        if not out.json:
            line.show(
                f"… {status}, {seen} log line(s), following for {timed(began)} (Ctrl-C stops)"
            )
        time.sleep(args.interval)


def _describe(e: Any) -> str:
    lines = [
        f"Execution   {e.exec_id}",
        f"Flow        {e.flow_name}",
        f"Status      {e.status.value}",
        f"Started     {fmt_time(e.started_at)}",
        f"Ended       {fmt_time(e.ended_at)}  ({fmt_duration(e.started_at, e.ended_at)})",
    ]
    if e.original_exec_id:
        taken = [c.name for c in e.checkpoints if c.original_call_id]
        lines.append(
            f"Replay of   {e.original_exec_id}"
            + (f" (took over {', '.join(taken)})" if taken else " (took over no checkpoint)")
        )
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
                "cached" if c.cached_from else c.status.value,
                fmt_duration(c.started_at, c.ended_at),
                str(attempts),
                (
                    c.failure.message[:60]
                    if c.failure
                    else f"{c.output_serializer or ''} {c.output_size or 0}B"
                ),
            ]
        )
    if rows:
        table = render_table(
            rows, ["CALL", "RUN", "TYPE", "STATUS", "DURATION", "ATTEMPTS", "OUTPUT / FAILURE"]
        )
        lines.extend("  " + line for line in table.splitlines())
    for c in e.checkpoints:
        if c.cached_from:
            lines.append(f"Cached      {c.name} from {c.cached_from}")
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
        table = render_table(
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
            fmt_time(e.started_at),
            fmt_duration(e.started_at, e.ended_at),
            _note(e),
        ]
        for e in items
    ]
    return render_table(rows, ["EXECUTION", "FLOW", "STATUS", "STARTED", "DURATION", "NOTE"])


def _note(e: Any) -> str:
    if e.pending_wait is not None:
        return f"{e.pending_wait.name}: {e.pending_wait.question or '(waiting for input)'}"[:70]
    if e.status.value == "waiting":
        return "input given; resume it"
    if e.failure is not None:
        return f"[{e.failure.origin.value}] {e.failure.message}"[:70]
    return ""
