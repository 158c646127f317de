"""The tools of `kitaru-mcp`: Kitaru 0.4's MCP tools on `KitaruClient`, plus `resume`,
`abort_wait` and `diff`.

Every tool answers with the JSON the CLI prints for ``--output json`` (``{"command",
"item"}`` or ``{"command", "items", "count"}``); a kitaru error (an unknown execution, an
answer that does not match its wait's schema, ...) becomes a tool error with kitaru's
message, so the assistant can read what to fix. Nothing secret is in a result: the views
are the store's, which holds no credentials.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from ..cli._common import to_jsonable
from ..errors import KitaruError

__all__ = ["build_server"]


def _item(command: str, item: Any) -> dict[str, Any]:
    return {"command": command, "item": to_jsonable(item)}


def _items(command: str, items: list[Any]) -> dict[str, Any]:
    return {"command": command, "items": to_jsonable(items), "count": len(items)}


def _tool(server: MCPServer, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Registers `fn` as tool `name`; kitaru's errors become tool errors that keep their
    message (MCP hides the text of any other exception from the client)."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except (KitaruError, LookupError, ValueError) as exc:
                raise ToolError(f"{type(exc).__name__}: {exc}") from None

        server.tool(name=name)(guarded)
        return guarded

    return register


def build_server(stack: str | None = None) -> MCPServer:
    """The MCP server, on the store `stack` names (default: as `KitaruClient`)."""
    from ..client import KitaruClient

    server = MCPServer(
        "kitaru",
        instructions=(
            "Inspect and steer kitaru executions (durable agent runs): list and get them, "
            "read their logs, answer their waits, resume, retry, replay, cancel, diff; "
            "read artifacts and memory."
        ),
    )

    def client() -> KitaruClient:
        return KitaruClient(stack=stack)

    # --- executions -----------------------------------------------------------------

    @_tool(server, "kitaru_executions_list")
    def executions_list(
        flow: str | None = None, status: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """Executions, newest first; filter by flow name and status (running, waiting,
        completed, failed, cancelled)."""
        items = client().executions.list(flow=flow, status=status, limit=limit)
        return _items("executions.list", items)

    @_tool(server, "kitaru_executions_get")
    def executions_get(exec_id: str) -> dict[str, Any]:
        """One execution in full: checkpoints, attempts, failure, pending wait, LLM cost."""
        return _item("executions.get", client().executions.get(exec_id))

    @_tool(server, "kitaru_executions_latest")
    def executions_latest(flow: str | None = None, status: str | None = None) -> dict[str, Any]:
        """The newest execution (of a flow, with a status)."""
        found = client().executions.list(flow=flow, status=status, limit=1)
        if not found:
            raise LookupError("No execution matches; kitaru_executions_list shows what there is.")
        return _item("executions.latest", client().executions.get(found[0].exec_id))

    @_tool(server, "kitaru_executions_logs")
    def executions_logs(exec_id: str) -> dict[str, Any]:
        """What the execution's flow and checkpoints printed and logged."""
        return _items("executions.logs", client().executions.logs(exec_id))

    @_tool(server, "get_execution_logs")
    def get_execution_logs(exec_id: str, checkpoint: str | None = None, limit: int = 200) -> str:
        """Kitaru 0.4's log tool: log lines as text (``<time> <LEVEL> [<checkpoint>] <msg>``)."""
        entries = client().executions.logs(exec_id)
        lines = []
        for e in entries:
            if checkpoint is not None and getattr(e, "checkpoint", None) != checkpoint:
                continue
            where = getattr(e, "checkpoint", None) or "flow"
            level = str(getattr(e, "level", "INFO") or "INFO").upper()
            lines.append(
                f"{getattr(e, 'timestamp', '')} {level} [{where}] {getattr(e, 'message', e)}"
            )
        return "\n".join(lines[-limit:]) if lines else "No log entries found."

    @_tool(server, "kitaru_executions_input")
    def executions_input(
        exec_id: str, value: Any = None, wait: str | None = None
    ) -> dict[str, Any]:
        """Answer a pending wait (by name; optional when one is pending). The value is
        checked against the wait's JSON Schema; then resume the execution."""
        return _item("executions.input", client().executions.input(exec_id, wait=wait, value=value))

    @_tool(server, "kitaru_executions_abort_wait")
    def executions_abort_wait(exec_id: str, wait: str | None = None) -> dict[str, Any]:
        """Abort a pending wait: the execution is cancelled."""
        return _item("executions.abort_wait", client().executions.abort_wait(exec_id, wait=wait))

    @_tool(server, "kitaru_executions_resume")
    def executions_resume(exec_id: str, budget_usd: float | None = None) -> dict[str, Any]:
        """Continue a waiting execution whose waits are answered (runs here, to its end or
        its next wait)."""
        e = client().executions.resume(exec_id, budget_usd=budget_usd)
        return _item("executions.resume", e)

    @_tool(server, "kitaru_executions_retry")
    def executions_retry(exec_id: str, budget_usd: float | None = None) -> dict[str, Any]:
        """Run a failed execution again: finished checkpoints are reused (runs here)."""
        return _item("executions.retry", client().executions.retry(exec_id, budget_usd=budget_usd))

    @_tool(server, "kitaru_executions_cancel")
    def executions_cancel(exec_id: str) -> dict[str, Any]:
        """Cancel an execution; a running flow stops before its next checkpoint."""
        return _item("executions.cancel", client().executions.cancel(exec_id))

    @_tool(server, "kitaru_executions_replay")
    def executions_replay(
        exec_id: str,
        from_: str,
        overrides: dict[str, Any] | None = None,
        flow_inputs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Replay an execution from a checkpoint (its name or call id), with outputs of
        checkpoints overridden and flow inputs changed; a new execution (runs here)."""
        e = client().executions.replay(
            exec_id, from_=from_, overrides=overrides, **(flow_inputs or {})
        )
        return {"command": "executions.replay", "available": True, "operation": "replay",
                "item": to_jsonable(e), "execution": to_jsonable(e)}  # fmt: skip

    @_tool(server, "kitaru_executions_diff")
    def executions_diff(exec_a: str, exec_b: str) -> dict[str, Any]:
        """Two executions compared call by call."""
        return _item("executions.diff", client().executions.diff(exec_a, exec_b))

    # --- artifacts ------------------------------------------------------------------

    @_tool(server, "kitaru_artifacts_list")
    def artifacts_list(
        exec_id: str,
        name: str | None = None,
        kind: str | None = None,
        producing_call: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """An execution's artifacts: saved values, checkpoint outputs, LLM prompts/responses."""
        found = client().artifacts.list(
            exec_id, name=name, kind=kind, producing_call=producing_call, limit=limit
        )
        return _items("artifacts.list", found)

    @_tool(server, "kitaru_artifacts_get")
    def artifacts_get(artifact_id: str) -> dict[str, Any]:
        """One artifact with its value (as JSON when it is JSON-able, else its repr)."""
        ref = client().artifacts.get(artifact_id)
        item = to_jsonable(ref)
        item.update(_value_fields(ref.load()))
        return {"command": "artifacts.get", "item": item}

    # --- memory ---------------------------------------------------------------------

    @_tool(server, "kitaru_memory_get")
    def memory_get(
        key: str, scope: str, scope_type: str = "namespace", version: int | None = None
    ) -> dict[str, Any]:
        """A memory key's value (latest, or `version`); item null when there is none."""
        m = client().memories
        entry = m.get(key, scope=scope, scope_type=scope_type, version=version)
        if entry is None:
            return {"command": "memory.get", "item": None}
        item = to_jsonable(entry)
        item.update(
            _value_fields(m.value(key, scope=scope, scope_type=scope_type, version=version))
        )
        return {"command": "memory.get", "item": item}

    @_tool(server, "kitaru_memory_set")
    def memory_set(
        key: str, value: Any, scope: str, scope_type: str = "namespace"
    ) -> dict[str, Any]:
        """Write a new version of a key."""
        entry = client().memories.set(key, value, scope=scope, scope_type=scope_type)
        return _item("memory.set", entry)

    @_tool(server, "kitaru_memory_delete")
    def memory_delete(key: str, scope: str, scope_type: str = "namespace") -> dict[str, Any]:
        """Delete a key (a tombstone version; history stays)."""
        return _item(
            "memory.delete", client().memories.delete(key, scope=scope, scope_type=scope_type)
        )

    @_tool(server, "kitaru_memory_list")
    def memory_list(scope: str, scope_type: str = "namespace") -> dict[str, Any]:
        """The live keys of a scope with their latest versions."""
        return _items("memory.list", client().memories.list(scope=scope, scope_type=scope_type))

    @_tool(server, "kitaru_memory_history")
    def memory_history(key: str, scope: str, scope_type: str = "namespace") -> dict[str, Any]:
        """Every version of a key, newest first."""
        found = client().memories.history(key, scope=scope, scope_type=scope_type)
        return _items("memory.history", found)

    @_tool(server, "kitaru_memory_scopes")
    def memory_scopes() -> dict[str, Any]:
        """Every scope holding keys."""
        return _items("memory.scopes", client().memories.scopes())

    # --- the installation -----------------------------------------------------------

    @_tool(server, "kitaru_stacks_list")
    def stacks_list() -> dict[str, Any]:
        """The stacks (named stores) and which one is active."""
        from ..stacks import list_stacks

        return _items("stack.list", list_stacks())

    @_tool(server, "kitaru_status")
    def status() -> dict[str, Any]:
        """Which store this server reads and how many executions are in each status."""
        c = client()
        choice = c.executions.store_choice()
        counts: dict[str, int] = {}
        for e in c.executions.list():
            counts[e.status.value] = counts.get(e.status.value, 0) + 1
        from .._kitaru import VERSION, redact_urls

        return {"command": "status", "item": {
            "kitaru": VERSION, "stack": choice.stack, "store": redact_urls(choice.location),
            "store_source": choice.source, "executions": counts,
        }}  # fmt: skip

    return server


def _value_fields(value: Any) -> dict[str, Any]:
    """A value for a tool result: JSON when it is JSON-able, else its repr."""
    import json

    plain = to_jsonable(value)
    try:
        json.dumps(plain)
    except (TypeError, ValueError):
        return {"value": repr(value), "value_format": "repr", "value_type": type(value).__name__}
    fmt = "repr" if isinstance(plain, str) and not isinstance(value, str) else "json"
    return {"value": plain, "value_format": fmt, "value_type": type(value).__name__}
