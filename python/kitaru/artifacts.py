"""`kitaru.save()` / `kitaru.load()`: named values of a checkpoint, and reading another
execution's values by name (Kitaru 0.4's artifacts).

A saved value is a content-addressed blob of the store (deduplicated, verified when read);
its entry (name, kind, tags, serializer, blob hash) is part of the saving checkpoint's
record (under ``kitaru_artifacts`` in its metadata), so it is committed with the
checkpoint's result: a failed attempt leaves none behind, a resumed or replayed execution
carries them with the checkpoints it reuses.
"""

from __future__ import annotations

from ._context import current_checkpoint, current_flow
from .errors import KitaruContextError, KitaruRuntimeError, KitaruUsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from ._context import FlowRun
    from ._kitaru import Store
    from ._views import ExecutionView

__all__ = ["ARTIFACT_TYPES", "load", "save"]

ARTIFACT_TYPES = ("prompt", "response", "context", "input", "output", "blob")
# Where a checkpoint's metadata keeps its saved artifacts: name -> list of versions.
KEY = "kitaru_artifacts"


def save(name: str, value: Any, *, type: str = "output", tags: Sequence[str] | None = None) -> None:
    """Store `value` as the artifact `name` of the running checkpoint (a new version when
    the name is saved again). `type` is one of prompt, response, context, input, output,
    blob (any case); `tags` a list of strings. Only inside a checkpoint."""
    run, scope = current_flow.get(), current_checkpoint.get()
    if run is None or scope is None:
        raise KitaruContextError(
            "kitaru.save() can only be called inside a @checkpoint (the artifact belongs to "
            "the checkpoint that saves it)."
        )
    if not isinstance(name, str) or not name.strip():
        raise KitaruUsageError(f"kitaru.save() name must be a non-empty string, got {name!r}.")
    kind = type.lower() if isinstance(type, str) else None
    if kind not in ARTIFACT_TYPES:
        raise KitaruUsageError(
            f"kitaru.save() type must be one of {', '.join(ARTIFACT_TYPES)}, got {type!r}."
        )
    if tags is not None and (isinstance(tags, str) or not all(isinstance(t, str) for t in tags)):
        raise KitaruUsageError(f"kitaru.save() tags must be a list of strings, got {tags!r}.")
    from . import serde

    tag, data = serde.dumps(value, what=f"artifact {name!r}", allow_pickle=run.allow_pickle)
    import time

    entry = {
        "kind": kind,
        "tags": list(tags or ()),
        "serializer": tag,
        "blob": _store(run).put_blob(data),
        "size": len(data),
        "saved_at": time.time(),
    }
    scope.metadata.setdefault(KEY, {}).setdefault(name, []).append(entry)


def load(exec_id: str, name: str) -> Any:
    """The artifact `name` of execution `exec_id` (its latest version), else the output of
    its checkpoint call or checkpoint named `name`. Only inside a checkpoint; none or
    several matches raise `KitaruRuntimeError` naming what there is."""
    run, scope = current_flow.get(), current_checkpoint.get()
    if run is None or scope is None:
        raise KitaruContextError("kitaru.load() can only be called inside a @checkpoint.")
    if not isinstance(exec_id, str) or not exec_id.strip():
        raise KitaruUsageError(f"kitaru.load() needs an execution id, got {exec_id!r}.")
    exec_id = exec_id.strip()  # its form is checked by the store, which names a bad one
    if not isinstance(name, str) or not name:
        raise KitaruUsageError(f"kitaru.load() name must be a non-empty string, got {name!r}.")
    store = _store(run)
    found = find(store, store.inspect(exec_id, full=True), name)
    if len(found) != 1:
        raise KitaruRuntimeError(_not_one(exec_id, name, found, store))
    return found[0][1](run.allow_pickle)


def find(store: Store, view: ExecutionView, name: str) -> list[tuple[str, Callable[[bool], Any]]]:
    """(description, loader) of what `name` names in the execution of `view`: its saved
    artifacts of that name (latest version per checkpoint call), else the output of the
    finished call with that call id (``fetch_2``), else of those of that checkpoint."""
    exec_id = view["exec_id"]
    saved: list[tuple[str, Callable[[bool], Any]]] = []
    by_id: list[tuple[str, Callable[[bool], Any]]] = []
    by_name: list[tuple[str, Callable[[bool], Any]]] = []
    for c in view["checkpoints"]:
        if c["status"] != "completed":
            continue
        versions = saved_artifacts(c["metadata_json"]).get(name)
        if versions:
            saved.append((f"artifact {name!r} of {c['call_id']}",
                          _blob_loader(store, exec_id, versions[-1], name)))  # fmt: skip
        output = (f"output of {c['call_id']}", _output_loader(store, exec_id, c["call_id"]))
        if name == c["call_id"]:
            by_id.append(output)
        elif name == c["name"]:
            by_name.append(output)
    # a call id names one call; a checkpoint name only when one call has it
    return saved or by_id or by_name


def saved_artifacts(metadata_json: str | None) -> dict[str, list[dict[str, Any]]]:
    """The artifacts a checkpoint saved, from its recorded metadata: name -> versions."""
    if not metadata_json or KEY not in metadata_json:
        return {}
    import json

    found = json.loads(metadata_json).get(KEY)
    return found if isinstance(found, dict) else {}


def _blob_loader(
    store: Store, exec_id: str, entry: dict[str, Any], name: str
) -> Callable[[bool], Any]:
    def load(allow_pickle: bool) -> Any:
        from . import serde

        data = store.get_blob(entry["blob"], exec_id)
        return serde.loads(entry["serializer"], data, what=f"artifact {name!r} of {exec_id}",
                           allow_pickle=allow_pickle)  # fmt: skip

    return load


def _output_loader(store: Store, exec_id: str, call_id: str) -> Callable[[bool], Any]:
    def load(allow_pickle: bool) -> Any:
        from . import serde

        found = store.checkpoint_output(exec_id, call_id)
        if found is None:  # pragma: no cover - the view listed it as finished
            raise KitaruRuntimeError(f"Checkpoint {call_id} of {exec_id} has no stored output.")
        return serde.loads(*found, what=f"output of {call_id} of {exec_id}",
                           allow_pickle=allow_pickle)  # fmt: skip

    return load


def _not_one(exec_id: str, name: str, found: list[tuple[str, Any]], store: Store) -> str:
    if found:
        listed = "; ".join(what for what, _ in found)
        return (
            f"Multiple artifacts named {name!r} in execution {exec_id}: {listed}. Save them "
            "under different names, or load a checkpoint's output by its call id (fetch_2)."
        )
    view = store.inspect(exec_id, full=True)
    names = sorted({n for c in view["checkpoints"] for n in saved_artifacts(c["metadata_json"])})
    calls = [c["call_id"] for c in view["checkpoints"] if c["status"] == "completed"]
    return (
        f"No artifact named {name!r} in execution {exec_id}. Saved artifacts: "
        f"{', '.join(names) or 'none'}; checkpoint outputs: {', '.join(calls) or 'none'}."
    )


def _store(run: FlowRun) -> Store:
    if run.store is not None:
        return run.store
    from . import _config

    return _config.get_store()
