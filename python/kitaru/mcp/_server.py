"""The tools of `kitaru-mcp`: Kitaru 0.4's MCP tools on `KitaruClient`, plus `resume`,
`abort_wait`, `diff`, `memory_scopes` and `memory_reindex`.

Every tool answers with the JSON the CLI prints for ``--output json`` (``{"command",
"item"}`` or ``{"command", "items", "count"}``); a kitaru error (an unknown execution, an
answer that does not match its wait's schema, a bad run target, ...) becomes a tool error
with kitaru's message, so the assistant can read what to fix. Nothing secret is in a
result: the views are the store's, which holds no credentials, and store URLs (which
could carry user info or a signed query) are shown through the core's `redact_urls`.

Code runs only where the assistant names it: `kitaru_executions_run` imports the file or
module of its target; `retry`, `resume` and `replay` import the flow the execution
recorded (as `kitaru executions retry` does). No other tool imports anything the store
names. Tools that run flows run them in this process, one at a time.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from ..cli._common import to_jsonable
from ..errors import KitaruError, KitaruUsageError

__all__ = ["build_server"]

# One flow at a time in this process: a script target is loaded as `__kitaru_main__`,
# which a run records when it starts (`_entry.loaded_script`), so a second target loaded
# meanwhile would be recorded in its place. Tools run in worker threads.
_running = threading.Lock()

# Kitaru 0.4's fields of remote stacks (Kubernetes, Vertex, SageMaker, AzureML), with the
# value that means "not given".
_REMOTE_STACK_FIELDS: dict[str, Any] = {
    "container_registry": None, "cluster": None, "subscription_id": None,
    "resource_group": None, "workspace": None, "execution_role": None, "namespace": None,
    "credentials": None, "extra": None, "async_mode": False, "verify": True,
}  # fmt: skip


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


def _one_at_a_time(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def serialized(*args: Any, **kwargs: Any) -> Any:
        with _running:
            return fn(*args, **kwargs)

    return serialized


def _stack_item(info: Any) -> dict[str, Any]:
    """A stack as `kitaru stack ... -o json` shows it, its location redacted."""
    from .._kitaru import redact_urls

    item: dict[str, Any] = {"id": info.id, **to_jsonable(info)}
    item["location"] = redact_urls(item["location"])
    return item


def build_server(stack: str | None = None) -> MCPServer:
    """The MCP server, on the store `stack` names (default: as `KitaruClient`)."""
    from ..client import KitaruClient

    server_stack = stack
    server = MCPServer(
        "kitaru",
        instructions=(
            "Inspect and steer kitaru executions (durable agent runs): start a flow by "
            "target, list and get executions, read their logs, answer their waits, resume, "
            "retry, replay, cancel, diff; read artifacts; read, write and maintain memory; "
            "create and delete local stacks."
        ),
    )

    def client(on: str | None = None) -> KitaruClient:
        return KitaruClient(stack=on or server_stack)

    def where() -> dict[str, Any]:
        """The store this server reads, as `store_where` of the CLI (URL redacted)."""
        from .._kitaru import redact_urls

        choice = client().executions.store_choice()
        return {"stack": choice.stack, "stack_source": choice.source,
                "store": redact_urls(choice.location), "store_options": choice.options}  # fmt: skip

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

    @_tool(server, "kitaru_executions_run")
    @_one_at_a_time
    def executions_run(
        target: str, args: dict[str, Any] | None = None, stack: str | None = None
    ) -> dict[str, Any]:
        """Start a flow and run it here until it ends or waits for input. `target` is
        ``<module_or_file.py>:<flow>`` (a relative path starts at this server's directory;
        a file's ``if __name__ == "__main__":`` block does not run); `args` are the flow's
        arguments by name; `stack` chooses the store. Returns the execution, and a warning
        saying what to do next when it waits or failed."""
        from .. import _entry
        from ..flow import _RESERVED, FlowDefinition

        if args is not None and not isinstance(args, dict):
            raise KitaruUsageError(
                f"args are the flow's arguments by name (a JSON object), got {args!r}."
            )
        clash = sorted(set(args or {}) & set(_RESERVED))
        if clash:
            raise KitaruUsageError(
                f"args names {', '.join(clash)}, which no flow parameter can be called (they "
                "are .run() options); pass `stack` as this tool's own argument."
            )
        # A script that exits (argparse at module level, a flow body calling sys.exit)
        # must not end the server.
        try:
            definition = _entry.load_target(target, FlowDefinition)
        except SystemExit as exc:
            raise KitaruUsageError(
                f"Importing target {target!r} called sys.exit({exc.code!r}). Keep a script's "
                'own code under `if __name__ == "__main__":`.'
            ) from None
        run_stack = stack or server_stack
        try:
            handle = definition.run(stack=run_stack, **(args or {}))
        except SystemExit as exc:
            raise KitaruUsageError(
                f"Flow {definition.name!r} called sys.exit({exc.code!r}); its execution is "
                "recorded as failed (kitaru_executions_latest shows it)."
            ) from None
        execution, warning = None, None
        try:
            e = client(run_stack or definition.stack).executions.get(handle.exec_id)
            execution, warning = to_jsonable(e), _next_step(e)
        except KitaruError as exc:
            warning = f"Execution {handle.exec_id} started, but reading it back failed: {exc}"
        return {"command": "executions.run", "exec_id": handle.exec_id, "target": target,
                "execution": execution, "warning": warning}  # fmt: skip

    @_tool(server, "kitaru_executions_logs")
    def executions_logs(
        exec_id: str, checkpoint: str | None = None, source: str = "step", limit: int | None = None
    ) -> dict[str, Any]:
        """What the execution's flow and checkpoints printed and logged (`source="runner"`:
        the flow body's lines only; `checkpoint`: one checkpoint's, by call id)."""
        found = client().executions.logs(exec_id, checkpoint=checkpoint, source=source,
                                         limit=limit)  # fmt: skip
        return _items("executions.logs", found)

    @_tool(server, "get_execution_logs")
    def get_execution_logs(
        exec_id: str, checkpoint: str | None = None, source: str = "step", limit: int = 200
    ) -> str:
        """Kitaru 0.4's log tool: log lines as text (``<time> <LEVEL> [<checkpoint>] <msg>``,
        ``[flow]`` for the flow body), oldest first. `checkpoint` keeps one checkpoint's
        lines (its call id); `source="runner"` only the flow body's."""
        entries = client().executions.logs(exec_id, checkpoint=checkpoint, source=source,
                                           limit=limit)  # fmt: skip
        lines = [
            f"{e.timestamp.isoformat() if e.timestamp else '-'} {(e.level or 'INFO').upper()} "
            f"[{e.checkpoint_name or 'flow'}] {e.message}"
            for e in entries
        ]
        return "\n".join(lines) if lines else "No log entries found."

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
    @_one_at_a_time
    def executions_resume(exec_id: str, budget_usd: float | None = None) -> dict[str, Any]:
        """Continue a waiting execution whose waits are answered (runs here, to its end or
        its next wait)."""
        e = client().executions.resume(exec_id, budget_usd=budget_usd)
        return _item("executions.resume", e)

    @_tool(server, "kitaru_executions_retry")
    @_one_at_a_time
    def executions_retry(exec_id: str, budget_usd: float | None = None) -> dict[str, Any]:
        """Run a failed execution again: finished checkpoints are reused (runs here)."""
        return _item("executions.retry", client().executions.retry(exec_id, budget_usd=budget_usd))

    @_tool(server, "kitaru_executions_cancel")
    def executions_cancel(exec_id: str) -> dict[str, Any]:
        """Cancel an execution; a running flow stops before its next checkpoint."""
        return _item("executions.cancel", client().executions.cancel(exec_id))

    @_tool(server, "kitaru_executions_replay")
    @_one_at_a_time
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

    @_tool(server, "kitaru_memory_purge")
    def memory_purge(
        key: str, scope: str, scope_type: str = "namespace", keep: int | None = None
    ) -> dict[str, Any]:
        """Delete old versions of a key for good, keeping the newest `keep` (default: none);
        written to the scope's compaction log."""
        found = client().memories.purge(key, scope=scope, scope_type=scope_type, keep=keep)
        return _item("memory.purge", found)

    @_tool(server, "kitaru_memory_purge_scope")
    def memory_purge_scope(
        scope: str,
        scope_type: str = "namespace",
        keep: int | None = None,
        include_deleted: bool = False,
    ) -> dict[str, Any]:
        """`kitaru_memory_purge` for every key of a scope (deleted keys only with
        `include_deleted`, then all their versions)."""
        found = client().memories.purge_scope(
            scope=scope, scope_type=scope_type, keep=keep, include_deleted=include_deleted
        )
        return _item("memory.purge-scope", found)

    @_tool(server, "kitaru_memory_compact")
    @_one_at_a_time
    def memory_compact(
        scope: str,
        scope_type: str = "namespace",
        key: str | None = None,
        keys: list[str] | None = None,
        source_mode: str = "current",
        target_key: str | None = None,
        instruction: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        """Summarize values with a model into a new version of `target_key` (default:
        `key`): one `key` (its latest value, or every version with source_mode="history")
        or several `keys` (needs `target_key`). Sources are kept. Runs here, as an
        execution of the flow `kitaru_memory_compact` (its model call is in its ledger)."""
        done = client().memories.compact(
            scope=scope, scope_type=scope_type, key=key, keys=keys, source_mode=source_mode,
            target_key=target_key, instruction=instruction, model=model, max_tokens=max_tokens,
        )  # fmt: skip
        return _item("memory.compact", done)

    @_tool(server, "kitaru_memory_compaction_log")
    def memory_compaction_log(scope: str, scope_type: str = "namespace") -> dict[str, Any]:
        """A scope's compactions and purges, newest first."""
        found = client().memories.compaction_log(scope=scope, scope_type=scope_type)
        return _items("memory.compaction-log", found)

    @_tool(server, "kitaru_memory_reindex")
    def memory_reindex(apply: bool = False) -> dict[str, Any]:
        """Kitaru 0.4's tag backfill: memory here is indexed by its keys, so nothing ever
        needs updating; counts the versions looked at."""
        return _item("memory.reindex", client().memories.reindex(apply=apply))

    # --- the installation -----------------------------------------------------------

    @_tool(server, "kitaru_stacks_list")
    def stacks_list() -> dict[str, Any]:
        """The stacks (named stores) and which one is active."""
        from ..stacks import list_stacks

        return _items("stack.list", [_stack_item(i) for i in list_stacks()])

    @_tool(server, "manage_stack")
    def manage_stack(
        action: str,
        name: str,
        activate: bool = True,
        recursive: bool = False,
        force: bool = False,
        stack_type: str = "local",
        artifact_store: str | None = None,
        region: str | None = None,
        endpoint: str | None = None,
        allow_http: bool = False,
        options: dict[str, str] | None = None,
        container_registry: str | None = None,
        cluster: str | None = None,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        workspace: str | None = None,
        execution_role: str | None = None,
        namespace: str | None = None,
        credentials: str | None = None,
        extra: dict[str, Any] | None = None,
        async_mode: bool = False,
        verify: bool = True,
    ) -> dict[str, Any]:
        """Create or delete a stack (a named store), as `kitaru stack create/delete`.
        create: `artifact_store` is a directory or a file://, s3://, gs://, az:// URL
        (default: a new directory in the config dir), with `region`, `endpoint`,
        `allow_http` and object-store `options` (never credentials: the environment holds
        those); made active unless `activate` is false. delete: forgets the stack (its
        store is left as it is); the active stack only with `force`. Kitaru 0.4's remote
        stack types and their fields are refused."""
        from .. import stacks

        given = dict(locals())
        for field, unset in _REMOTE_STACK_FIELDS.items():
            if given[field] != unset:
                raise KitaruUsageError(
                    f"manage_stack: {field} configures a remote stack of Kitaru 0.4 "
                    "(Kubernetes, Vertex, SageMaker, AzureML), which kitaru does not run. A "
                    "kitaru stack is a store: give artifact_store (a directory or an s3://, "
                    "gs://, az:// URL) and region, endpoint or options."
                )
        if str(stack_type).strip().lower() != "local":
            raise KitaruUsageError(
                f"manage_stack: stack_type {stack_type!r} is a remote stack type of Kitaru "
                "0.4; kitaru's stacks are 'local' (a store, local or object storage)."
            )
        if action == "create":
            previous = stacks.current_stack().name
            info = stacks.create_stack(
                name, artifact_store=artifact_store, region=region, endpoint=endpoint,
                allow_http=allow_http, options=options, activate=activate,
            )  # fmt: skip
            return _item("stack.create", {**_stack_item(info), "previous_active_stack": previous})
        if action == "delete":
            info = stacks.delete_stack(name, recursive=recursive, force=force)
            active = stacks.current_stack().name
            return _item("stack.delete", {**_stack_item(info), "deleted_stack": info.name,
                                          "new_active_stack": active})  # fmt: skip
        raise KitaruUsageError(
            f"manage_stack: action must be 'create' or 'delete', got {action!r}."
        )

    @_tool(server, "kitaru_status")
    def status() -> dict[str, Any]:
        """Which store this server reads and how many executions are in each status."""
        from .._kitaru import VERSION

        counts: dict[str, int] = {}
        w: dict[str, Any] = {}
        store_error = None
        try:
            w = where()
            for e in client().executions.list():
                counts[e.status.value] = counts.get(e.status.value, 0) + 1
        except KitaruError as exc:  # kitaru's messages carry no credentials
            store_error = str(exc)
        return {"command": "status", "item": {
            "kitaru": VERSION, "stack": w.get("stack"), "store": w.get("store"),
            "store_source": w.get("stack_source"), "executions": counts,
            "store_error": store_error,
        }}  # fmt: skip

    @_tool(server, "kitaru_info")
    def info(
        all: bool = False,  # Kitaru 0.4's name (shadows the builtin here only)
        all_packages: bool = False,
        packages: list[str] | None = None,
    ) -> dict[str, Any]:
        """`kitaru info`: versions and locations, for bug reports. `all` adds the versions
        of kitaru's dependencies and integrations, `all_packages` of every installed
        distribution, `packages` of the ones named (null: not installed)."""
        from ..cli.status import info_item

        item = info_item(where())
        if all or all_packages or packages:
            item["packages"] = _package_versions(bool(all), all_packages, packages or [])
        return _item("info", item)

    # --- the dashboard (Kitaru 0.4's "local server") ------------------------------------

    dashboard = _Dashboard(stack)

    @_tool(server, "kitaru_start_local_server")
    def start_local_server(port: int | None = None, timeout: float = 60) -> dict[str, Any]:
        """Kitaru 0.4's local server is kitaru's dashboard here: starts `kitaru ui` on this
        server's store (on 127.0.0.1) and returns its link, which carries the launch token
        (open it in a browser; whoever has it can use the dashboard). A running one is
        returned as it is."""
        return _item("start_local_server", dashboard.start(port, timeout))

    @_tool(server, "kitaru_stop_local_server")
    def stop_local_server() -> dict[str, Any]:
        """Stops the dashboard `kitaru_start_local_server` started."""
        return _item("stop_local_server", dashboard.stop())

    return server


class _Dashboard:
    """The `kitaru ui` process a server started (stopped with it)."""

    def __init__(self, stack: str | None) -> None:
        self.stack, self.url = stack, ""
        self.proc: Any = None  # subprocess.Popen[str] while one runs
        self.lock = threading.Lock()

    def start(self, port: int | None, timeout: float) -> dict[str, Any]:
        import atexit
        import subprocess
        import sys

        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                return {"mode": "local", "url": self.url, "action": "already_running"}
            if port is not None and not 0 <= port <= 65535:
                raise KitaruUsageError(f"port must be 0..65535, got {port!r}.")
            args = [sys.executable, "-m", "kitaru.cli", "ui", "--no-browser",
                    "--port", str(port if port is not None else 0)]  # fmt: skip
            if self.stack is not None:
                args += ["--stack", self.stack]
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)  # fmt: skip
            first: list[str] = []
            reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()),  # type: ignore[union-attr]
                                      daemon=True)  # fmt: skip
            reader.start()
            reader.join(timeout)
            line = first[0] if first else ""
            if "kitaru ui: " not in line:
                proc.kill()
                rest = proc.communicate(timeout=10)[0] if not reader.is_alive() else ""
                raise KitaruUsageError(
                    f"The dashboard did not start within {timeout:g}s: {(line + rest).strip()[-800:]}"
                )
            self.proc, self.url = proc, line.split("kitaru ui: ", 1)[1].strip()
            atexit.register(self._kill)
            return {"mode": "local", "url": self.url, "action": "started"}

    def stop(self) -> dict[str, Any]:
        with self.lock:
            url, running = self.url, self.proc is not None and self.proc.poll() is None
            self._kill()
            return {"stopped": running, "url": url.split("?", 1)[0] if url else None}

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.communicate(timeout=10)
            except Exception:
                self.proc.kill()
        self.proc = None


def _package_versions(deps: bool, every: bool, named: list[str]) -> dict[str, str | None]:
    """Installed versions (None: not installed), read from distribution metadata only."""
    import re
    from importlib import metadata

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    names = list(named)
    if deps:
        names += [re.split(r"[\s\[<>=!~;@(]", r.strip(), maxsplit=1)[0]
                  for r in metadata.requires("kitaru") or []]  # fmt: skip
    found = {n: version(n) for n in names}
    if every:
        for d in metadata.distributions():
            found.setdefault(d.metadata["Name"], d.version)
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


def _next_step(e: Any) -> str | None:
    """What the assistant does next with a run that did not complete."""
    status = e.status.value
    if status == "waiting":
        names = ", ".join(w.name for w in e.pending_waits) or "a wait"
        return (
            f"Execution {e.exec_id} is waiting for input ({names}): answer it with "
            "kitaru_executions_input, then continue it with kitaru_executions_resume."
        )
    if status == "failed":
        why = e.failure.message if e.failure else "no failure recorded"
        return (
            f"Execution {e.exec_id} failed: {why}. Fix the cause, then "
            "kitaru_executions_retry runs it again with its finished checkpoints reused."
        )
    if status == "cancelled":
        return f"Execution {e.exec_id} was cancelled."
    return None


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
