"""`kitaru-mcp`: an MCP server over stdio that lets a coding assistant inspect and steer
kitaru executions (``pip install 'kitaru[mcp]'``; ``import kitaru`` never imports `mcp`).

    kitaru-mcp [--stack NAME]

The tools are Kitaru 0.4's (`kitaru_executions_list/get/latest/logs/input/retry/replay/
cancel`, `kitaru_artifacts_list/get`, `kitaru_memory_*`, `kitaru_status`,
`kitaru_stacks_list`, `get_execution_logs`) plus `kitaru_executions_resume`,
`kitaru_executions_abort_wait` and `kitaru_executions_diff`; they answer with the CLI's
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

    parser = argparse.ArgumentParser(prog="kitaru-mcp", description=__doc__.split("\n")[0])
    parser.add_argument("--stack", default=None, help="read this stack's store")
    args = parser.parse_args(argv)
    build_server(args.stack).run()
