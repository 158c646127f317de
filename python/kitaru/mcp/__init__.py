"""`kitaru-mcp`: an MCP server over stdio that lets a coding assistant start, inspect and
steer kitaru executions (``pip install 'kitaru[mcp]'``; ``import kitaru`` never imports `mcp`).

    kitaru-mcp [--stack NAME]

The tools are Kitaru 0.4's (`kitaru_executions_run/list/get/latest/logs/input/retry/replay/
cancel`, `get_execution_logs`, `kitaru_artifacts_list/get`, `kitaru_memory_*` with purge
and compaction, `kitaru_status`, `kitaru_info`, `kitaru_stacks_list`, `manage_stack`) plus
`kitaru_executions_resume`, `kitaru_executions_abort_wait`, `kitaru_executions_diff`,
`kitaru_memory_scopes` and `kitaru_memory_reindex`; they answer with the CLI's
``--output json`` shapes.
"""

from __future__ import annotations

try:
    import mcp as _mcp  # noqa: F401
except ImportError as _exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "kitaru.mcp needs the MCP SDK: pip install 'kitaru[mcp]' (mcp >= 2)."
    ) from _exc

from ._server import build_server

__all__ = ["build_server", "main"]


def main(argv: list[str] | None = None) -> None:
    """The `kitaru-mcp` console script: serves the tools over stdio."""
    import argparse
    import os

    parser = argparse.ArgumentParser(prog="kitaru-mcp", description=__doc__.split("\n")[0])
    parser.add_argument("--stack", default=None, help="read this stack's store")
    args = parser.parse_args(argv)
    # A flow run by a tool that reaches an unanswered wait suspends at once: its answer
    # comes through this server (kitaru_executions_input, then _resume), which a tool
    # call polling for it would only hold up. KITARU_WAIT_TIMEOUT, when set, still wins.
    os.environ.setdefault("KITARU_WAIT_TIMEOUT", "0")
    build_server(args.stack).run()
