"""The package's import graph has no cycle (docs/architecture.md, "Python package").

Every module under python/kitaru is parsed with `ast`; an edge is any import of another
kitaru module, at module level, in a function or under `TYPE_CHECKING`. Importing a
package's submodule is an edge to that submodule only (Python runs the package's
`__init__` first, but kitaru's subpackages keep theirs free of imports of the core).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import kitaru

PACKAGE = Path(kitaru.__file__).parent


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (source file, is a package); compiled modules have a stub."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted(PACKAGE.rglob("*.py*")):
        if path.suffix not in (".py", ".pyi") or "__pycache__" in path.parts:
            continue
        parts = ["kitaru", *path.relative_to(PACKAGE).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found.setdefault(".".join(parts), (path, is_package))
    return found


def _target(name: str, modules: dict[str, tuple[Path, bool]]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        if path.suffix == ".pyi":
            graph[name] = set()
            continue
        here = name if is_package else name.rpartition(".")[0]
        edges: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges.update(
                    _target(a.name, modules) for a in node.names if a.name.startswith("kitaru")
                )
            elif isinstance(node, ast.ImportFrom):
                base = here
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                source = (
                    (f"{base}.{node.module}" if node.level and node.module else base)
                    if node.level
                    else (node.module or "")
                )
                if source.split(".")[0] != "kitaru":
                    continue
                for alias in node.names:
                    full = f"{source}.{alias.name}"
                    edges.add(full if full in modules else _target(source, modules))
        edges.discard(None)
        edges.discard(name)
        graph[name] = {e for e in edges if e is not None}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph`, as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_sees_every_kind_of_import() -> None:
    graph = import_graph()
    assert "kitaru.cli.executions" in graph["kitaru.cli"]  # from . import executions
    assert "kitaru._llm.providers" in graph["kitaru._llm.call"]  # in a function
    assert "kitaru._llm.models" in graph["kitaru._llm.providers"]  # module level
    assert "kitaru._kitaru" in graph["kitaru._config"]  # the compiled module, by its stub
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle() -> None:
    cycle = _cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_earlier_module_paths_still_import() -> None:
    # kitaru._models and kitaru._providers were flat modules before the LLM feature moved
    # into kitaru._llm; they are the same module objects under their old names.
    for old, new in (
        ("kitaru._models", "kitaru._llm.models"),
        ("kitaru._providers", "kitaru._llm.providers"),
    ):
        assert importlib.import_module(old) is importlib.import_module(new)
    assert callable(kitaru.llm) and callable(kitaru.allm)
    assert kitaru.LLMResponse.__name__ == "LLMResponse"
    from kitaru.cli import main

    assert callable(main)
