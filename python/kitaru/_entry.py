"""Re-entry: find a recorded flow in a new process so it can run again from the top."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

from . import serde
from .errors import KitaruStateError

_MAIN_ALIAS = "__kitaru_main__"
_loaded_script: str | None = None


def loaded_script() -> str | None:
    return _loaded_script


_loading: str | None = None


def loading_script() -> str | None:
    """The script being loaded to run a recorded flow, while its top level runs (a flow
    started there would start a new execution each time the script is loaded)."""
    return _loading


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _load_script(path: str) -> Any:
    """Import a script as module `__kitaru_main__`: its ``if __name__ == "__main__"`` block does not run."""
    global _loaded_script
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if main_file and _same_file(main_file, path):
        return main
    existing = sys.modules.get(_MAIN_ALIAS)
    if existing is not None and _loaded_script and _same_file(_loaded_script, path):
        return existing
    if not os.path.exists(path):
        raise KitaruStateError(
            f"The flow's script {path} no longer exists; restore it (or run from the machine that has it) to resume."
        )
    spec = importlib.util.spec_from_file_location(_MAIN_ALIAS, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always has a spec
        raise KitaruStateError(f"Cannot load the flow's script {path}.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MAIN_ALIAS] = module
    serde.MODULE_ALIASES["__main__"] = _MAIN_ALIAS
    script_dir = os.path.dirname(path)
    if script_dir not in sys.path:
        sys.path.insert(0, script_dir)
    _loaded_script = path
    global _loading
    _loading = path
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(_MAIN_ALIAS, None)
        raise _import_failed(path, exc) from exc
    finally:
        _loading = None
    return module


def _inside(path: str, root: str) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def _working_copy(script: str, recorded_cwd: str | None) -> str:
    """The recorded script, or (when it does not exist here, e.g. on another machine that
    shares the store) the file at the same path relative to this process's directory."""
    if os.path.exists(script) or not recorded_cwd:
        return script
    rel = os.path.relpath(script, recorded_cwd)
    if rel.startswith(os.pardir):
        return script
    candidate = os.path.join(os.getcwd(), rel)
    return candidate if os.path.exists(candidate) else script


def _import_failed(where: str, exc: BaseException) -> KitaruStateError:
    return KitaruStateError(
        f"Loading the flow's code from {where} failed with {type(exc).__name__}: {exc}. "
        "Fix the error (or give it the environment it expects) and run the command again; "
        "nothing stored was changed."
    )


def load_flow(entry: dict[str, Any], flow_type: type, root: str | None = None) -> Any:
    """The flow recorded as `entry` (module, qualname, script, cwd); `flow_type` is
    `FlowDefinition`, given by the caller (the flow module imports this one).

    With `root` (or ``KITARU_WORKER_ROOT``), only a script under `root` is loaded and a
    module is imported from this process's directory and installed packages, never from
    the directory the execution recorded: for runs nobody chose by hand (recovery).
    """

    module_name, qualname = entry["module"], entry["qualname"]
    script = entry.get("script")
    # Set by `kitaru worker` for the runs it starts on its own: only code under this
    # directory (or installed) is loaded, since no person chose the execution.
    root = root or os.environ.get("KITARU_WORKER_ROOT") or None
    if module_name == "__main__":
        if not script:
            raise KitaruStateError(
                "This execution's flow was defined in an interactive session, so no other process can "
                "import it; define flows in a module or script to resume them."
            )
        path = _working_copy(script, entry.get("cwd"))
        if root is not None and not _inside(path, root):
            raise KitaruStateError(
                f"The flow's script {path} is outside the worker's directory {root}; a worker "
                "loads only code under the directory it runs in. Start `kitaru worker` in the "
                "project that holds the script, or retry this execution by hand."
            )
        module = _load_script(path)
    else:
        # a worker's runs import from its own directory only, never one the store names
        recorded = None if root is not None else entry.get("cwd")
        for where in (os.getcwd(), recorded):
            if where and where not in sys.path:
                sys.path.insert(0, where)
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise KitaruStateError(
                f"Cannot import module {module_name!r} of the flow ({exc}). Run this command from the "
                f"directory the flow was started in ({entry.get('cwd')}) with the same environment."
            ) from exc
        except Exception as exc:
            raise _import_failed(f"module {module_name!r}", exc) from exc
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise KitaruStateError(
                f"Module {module_name!r} has no flow {qualname!r} any more; restore it to resume this execution."
            )
    if not isinstance(obj, flow_type):
        raise KitaruStateError(
            f"{module_name}.{qualname} is not a @flow (found {type(obj).__name__})."
        )
    return obj


def load_target(target: str, flow_type: type) -> Any:
    """The flow a run target names: ``<module or file.py>:<attribute>`` (Kitaru 0.4's
    target of `kitaru_executions_run`). A file is loaded as a recorded script is (module
    `__kitaru_main__`: its ``if __name__ == "__main__":`` block does not run, and the
    execution records the script); a module is imported by name, from the current
    directory too. `KitaruUsageError` says which part is wrong and how to write it."""
    from .errors import KitaruUsageError

    where, _, attr = target.rpartition(":") if isinstance(target, str) else ("", "", "")
    where, attr = where.strip(), attr.strip()
    if not where or not attr:
        raise KitaruUsageError(
            f"A target looks like <module_or_file.py>:<flow>, e.g. agents/research.py:research "
            f"or my_pkg.flows:research; got {target!r}."
        )
    cwd = os.getcwd()
    if where.endswith(".py") or "/" in where or os.sep in where:
        path = os.path.abspath(os.path.expanduser(where))
        if not os.path.isfile(path):
            raise KitaruUsageError(
                f"No such file {path} (target {target!r}; a relative path starts at {cwd}). "
                "Give the path of the .py file that defines the flow."
            )
        module, label = _load_script(path), path
    else:
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (where + ".").startswith(exc.name + "."):
                raise _import_failed(f"module {where!r}", exc) from exc
            raise KitaruUsageError(
                f"No module named {where!r} (target {target!r}) importable from {cwd}. Give a "
                "module on the path (my_pkg.flows:research) or the path of a .py file."
            ) from None
        except Exception as exc:
            raise _import_failed(f"module {where!r}", exc) from exc
        label = where
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            flows = sorted(n for n, v in vars(module).items() if isinstance(v, flow_type))
            raise KitaruUsageError(
                f"{label} has no attribute {attr!r} (target {target!r}). Its flows: "
                f"{', '.join(flows) or 'none'}."
            )
    if not isinstance(obj, flow_type):
        raise KitaruUsageError(
            f"{label}:{attr} is a {type(obj).__name__}, not a kitaru flow (target {target!r}). "
            "Name a function decorated with @flow."
        )
    return obj
