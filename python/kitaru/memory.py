"""`kitaru.memory`: scoped, versioned memory for agents (Kitaru 0.4's API).

Values live under (scope type, scope, key); every write is a new version, a delete a
tombstone version. Scopes: ``namespace`` (a name you choose), ``flow`` (the default in a
flow: this flow, by its id ``module.qualname``) and ``execution`` (this execution).

Unlike Kitaru 0.4, memory is consistent under resume and replay: in a flow each operation
is a journaled call of the execution (a synthetic checkpoint ``kitaru_memory_<op>``), so
when the execution resumes or is retried the operations before the live frontier return
what they returned the first time (a read sees the value the first run saw, a write is not
applied twice), and a replay takes them over up to its frontier and runs them live after
it. Outside a flow operations read and write the store directly.
"""

from __future__ import annotations

import builtins
import contextvars
import re
import sys
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .checkpoint import checkpoint
from .errors import KitaruContextError, KitaruStateError, KitaruUsageError

if sys.version_info >= (3, 11):
    _list = list
else:  # pragma: no cover
    pass

__all__ = [
    "CompactResult",
    "CompactionRecord",
    "MemoryEntry",
    "MemoryReindexIssue",
    "MemoryReindexResult",
    "MemoryScopeInfo",
    "PurgeResult",
    "configure",
    "delete",
    "get",
    "history",
    "list",
    "set",
]

MemoryScopeType = Literal["namespace", "flow", "execution"]
_IDENTIFIER = re.compile(r"[A-Za-z0-9._\-/]+")
COMPACTION_PREFIX = "_compaction/"


# --- what the API returns (Kitaru 0.4's models) ---------------------------------------


class MemoryEntry(BaseModel):
    """One version of one key."""

    key: str
    value_type: str
    version: int
    scope: str
    scope_type: MemoryScopeType
    created_at: datetime
    is_deleted: bool
    artifact_id: str
    execution_id: str | None
    flow_id: str | None = None
    flow_name: str | None = None

    model_config = ConfigDict(frozen=True)

    @classmethod
    def from_view(cls, v: dict[str, Any]) -> MemoryEntry:
        return cls(
            key=v["key"],
            value_type=v["value_type"],
            version=v["version"],
            scope=v["scope"],
            scope_type=v["scope_type"],
            created_at=datetime.fromtimestamp(v["created_us"] / 1e6, tz=timezone.utc),
            is_deleted=v["is_deleted"],
            artifact_id=artifact_id(v["scope_type"], v["scope"], v["key"], v["version"]),
            execution_id=v.get("execution_id"),
            flow_id=v.get("flow_id"),
            flow_name=v.get("flow_name"),
        )


class MemoryScopeInfo(BaseModel):
    scope: str
    scope_type: MemoryScopeType
    entry_count: int

    model_config = ConfigDict(frozen=True)


class PurgeResult(BaseModel):
    versions_deleted: int
    keys_affected: int
    scope: str
    scope_type: MemoryScopeType

    model_config = ConfigDict(frozen=True)


class CompactionRecord(BaseModel):
    operation: Literal["compact", "purge"]
    scope: str
    scope_type: MemoryScopeType
    timestamp: datetime
    source_keys: builtins.list[str]
    source_versions: builtins.list[int]
    target_key: str | None
    target_version: int | None
    instruction: str | None
    model: str | None
    source_mode: Literal["current", "history"] | None = None
    keys_affected: int
    versions_deleted: int
    keep: int | None

    model_config = ConfigDict(frozen=True)


class CompactResult(BaseModel):
    entry: MemoryEntry
    sources_read: int
    scope: str
    scope_type: MemoryScopeType
    compaction_record: CompactionRecord

    model_config = ConfigDict(frozen=True)


class MemoryReindexIssue(BaseModel):
    artifact_id: str
    artifact_name: str
    scope: str | None
    key: str | None
    reason: str

    model_config = ConfigDict(frozen=True)


class MemoryReindexResult(BaseModel):
    dry_run: bool
    versions_scanned: int
    execution_scope_versions_scanned: int
    already_indexed: int
    versions_needing_updates: int
    versions_updated: int
    scope_type_tags_identified: int
    flow_tags_identified: int
    scope_type_tags_added: int
    flow_tags_added: int
    issues_count: int
    issue_samples: builtins.list[MemoryReindexIssue]

    model_config = ConfigDict(frozen=True)


def artifact_id(scope_type: str, scope: str, key: str, version: int) -> str:
    """A memory version as an artifact id (`KitaruClient().artifacts.get(...)`); colons
    are never in scopes or keys, so it parses back unambiguously."""
    return f"memory:{scope_type}:{scope}:{key}:{version}"


# --- checks ----------------------------------------------------------------------------


def check_identifier(value: Any, kind: str, *, allow_reserved: bool = False) -> str:
    if not isinstance(value, str):
        raise KitaruUsageError(f"Memory {kind} must be a string, got {value!r}.")
    v = value.strip()
    if not v:
        raise KitaruUsageError(f"Memory {kind} must be non-empty and may not be whitespace-only.")
    if not _IDENTIFIER.fullmatch(v):
        raise KitaruUsageError(
            f"Memory {kind} {v!r} may only contain letters, numbers, '.', '_', '-', and '/'. "
            "Colons are not allowed."
        )
    if kind == "key" and not allow_reserved and v.startswith(COMPACTION_PREFIX):
        raise KitaruUsageError(
            f"Memory key prefix {COMPACTION_PREFIX!r} is reserved for compaction audit logs."
        )
    return v


def check_scope_type(value: Any) -> str:
    v = str(value).strip().lower()
    if v not in ("namespace", "flow", "execution"):
        raise KitaruUsageError(
            "Memory scope_type must be one of 'namespace', 'flow', or 'execution'."
        )
    return v


def check_version(version: Any) -> int | None:
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise KitaruUsageError("Memory version must be an integer >= 1.")
    return version


# --- the active scope -------------------------------------------------------------------


class _Scope:
    __slots__ = ("scope", "scope_type")

    def __init__(self, scope: str, scope_type: str) -> None:
        self.scope, self.scope_type = scope, scope_type

    def __repr__(self) -> str:
        return f"{self.scope_type}:{self.scope}"


# Outside a flow: the process's scope (it also seeds flows started later in the process).
_default: _Scope | None = None
# Inside a flow: the scope `configure()` chose in this flow (per execution run).
_in_flow: contextvars.ContextVar[tuple[str, _Scope] | None] = contextvars.ContextVar(
    "kitaru_memory_scope", default=None
)


def _run() -> Any:
    from ._context import current_checkpoint, current_flow

    run = current_flow.get()
    return run, current_checkpoint.get()


def _guard(api: str) -> Any:
    run, cp = _run()
    if cp is not None:
        raise KitaruContextError(
            f"kitaru.memory.{api}() cannot be called inside a @checkpoint. "
            "Move memory operations to the flow body."
        )
    return run


def configure(scope: str | None = None, *, scope_type: str | None = None) -> None:
    """Set the active scope: in a flow for the rest of this execution's body, outside one
    for this process (and flows it starts later that configure none).

    ``scope`` alone: a namespace. ``scope_type="flow"`` or ``"execution"`` without a scope:
    the current flow's or execution's (inside a flow only).
    """
    global _default
    run = _guard("configure")
    st = check_scope_type(scope_type) if scope_type is not None else None
    if scope is not None:
        chosen = _Scope(check_identifier(scope, "scope"), st or "namespace")
    elif st is None:
        raise KitaruUsageError("kitaru.memory.configure() requires `scope=` or `scope_type=`.")
    elif st == "namespace":
        raise KitaruUsageError(
            "kitaru.memory.configure(scope_type='namespace') requires an explicit `scope=` value."
        )
    elif run is None:
        raise KitaruContextError(
            "kitaru.memory.configure() can only infer flow or execution scopes inside a "
            "@flow. Provide an explicit `scope=` outside flows."
        )
    else:
        chosen = _Scope(run.flow_id if st == "flow" else run.exec_id, st)
    if run is None:
        _default = chosen
    else:
        _in_flow.set((run.exec_id, chosen))


def _active(api: str) -> tuple[Any, _Scope]:
    """(the flow run or None, the scope an operation uses)."""
    run = _guard(api)
    if run is not None:
        configured = _in_flow.get()
        if configured is not None and configured[0] == run.exec_id:
            return run, configured[1]
        if _default is not None:
            return run, _default
        return run, _Scope(run.flow_id, "flow")
    if _default is None:
        raise KitaruStateError(
            f"kitaru.memory.{api}() outside a @flow requires an explicit scope. "
            "Call kitaru.memory.configure(scope=...) first."
        )
    return None, _default


# --- operations -------------------------------------------------------------------------


def _store(run: Any) -> Any:
    from . import _config

    if run is not None and run.store is not None:
        return run.store
    return _config.get_store()


def _value_type(value: Any) -> str:
    return type(value).__name__


def _dumps(value: Any, run: Any, what: str) -> tuple[str, bytes]:
    from . import serde

    return serde.dumps(value, what=what, allow_pickle=bool(run and run.allow_pickle))


def _loads(pair: Any, run: Any, what: str) -> Any:
    from . import serde

    if pair is None:
        return None
    tag, data = pair
    with serde.pickle_allowed(bool(run and run.allow_pickle)):
        return serde.loads(tag, data, what=what)


def _writer(run: Any) -> dict[str, Any]:
    """Who writes, for a write made by a flow: its execution and call (the current
    journaled operation) and, in a run that took the execution over, since when a write
    of this call may already be in the store."""
    from ._context import current_checkpoint

    if run is None:
        return {}
    scope = current_checkpoint.get()
    since = None
    if run.runner.claim_seq > 0:
        since = _created_us(run.exec_id)
    return {
        "execution_id": run.exec_id,
        "call_id": scope.call_id if scope is not None else None,
        "flow_id": run.flow_id,
        "flow_name": run.flow_name,
        "dedupe_since": since,
    }


def _created_us(exec_id: str) -> int:
    """When an execution was created: its UUIDv7 id starts with the milliseconds."""
    return int(exec_id.replace("-", "")[:12], 16) * 1000


# The journaled operations: each call in a flow is a checkpoint of the execution, so a
# resumed or retried run gets what the first run got. Never cached across executions.


@checkpoint(type="memory", cache=False)
def kitaru_memory_get(
    scope_type: str, scope: str, key: str, version: int | None
) -> dict[str, Any] | None:
    run, _ = _run()
    found = _store(run).memory_get(scope_type, scope, key, version)
    if found is None:
        return None
    entry, value = found
    return {"entry": entry, "value": builtins.list(value) if value is not None else None}


@checkpoint(type="memory", cache=False)
def kitaru_memory_set(
    scope_type: str, scope: str, key: str, value_type: str, serializer: str, data: bytes
) -> dict[str, Any]:
    run, _ = _run()
    return dict(
        _store(run).memory_write(
            scope_type, scope, key, (serializer, data), value_type, **_writer(run)
        )
    )


@checkpoint(type="memory", cache=False)
def kitaru_memory_delete(scope_type: str, scope: str, key: str) -> dict[str, Any] | None:
    run, _ = _run()
    return _delete(_store(run), scope_type, scope, key, _writer(run))


@checkpoint(type="memory", cache=False)
def kitaru_memory_list(scope_type: str, scope: str) -> builtins.list[dict[str, Any]]:
    run, _ = _run()
    return [dict(e) for e in _store(run).memory_list(scope_type, scope)]


@checkpoint(type="memory", cache=False)
def kitaru_memory_history(scope_type: str, scope: str, key: str) -> builtins.list[dict[str, Any]]:
    run, _ = _run()
    return [dict(e) for e in _store(run).memory_history(scope_type, scope, key)]


def _delete(
    store: Any, scope_type: str, scope: str, key: str, writer: dict[str, Any]
) -> dict[str, Any] | None:
    """Soft delete: a tombstone version; None when the key has no version; the existing
    tombstone when it is deleted already."""
    latest = store.memory_get(scope_type, scope, key)
    if latest is None:
        return None
    entry, value = latest
    if value is None:
        return dict(entry)
    return dict(store.memory_write(scope_type, scope, key, None, entry["value_type"], **writer))


def set(key: str, value: Any) -> None:
    """Write `value` as the next version of `key` in the active scope."""
    run, sc = _active("set")
    key = check_identifier(key, "key")
    tag, data = _dumps(value, run, f"memory value {key!r}")
    if run is not None:
        kitaru_memory_set(sc.scope_type, sc.scope, key, _value_type(value), tag, data)
        return
    _store(None).memory_write(sc.scope_type, sc.scope, key, (tag, data), _value_type(value))


def get(key: str, *, version: int | None = None) -> Any | None:
    """The latest value of `key` (or version `version`); None when missing or deleted."""
    run, sc = _active("get")
    key = check_identifier(key, "key")
    version = check_version(version)
    if run is not None:
        out = kitaru_memory_get(sc.scope_type, sc.scope, key, version)
        if out is None or out["value"] is None:
            return None
        return _loads(out["value"], run, f"memory value {key!r}")
    found = _store(None).memory_get(sc.scope_type, sc.scope, key, version)
    if found is None or found[1] is None:
        return None
    return _loads(found[1], None, f"memory value {key!r}")


def list() -> builtins.list[MemoryEntry]:
    """The latest live entry of every key in the active scope, sorted by key."""
    run, sc = _active("list")
    if run is not None:
        views = kitaru_memory_list(sc.scope_type, sc.scope)
    else:
        views = _store(None).memory_list(sc.scope_type, sc.scope)
    return [MemoryEntry.from_view(v) for v in views if not v["key"].startswith(COMPACTION_PREFIX)]


def history(key: str) -> builtins.list[MemoryEntry]:
    """Every version of `key`, newest first, tombstones included."""
    run, sc = _active("history")
    key = check_identifier(key, "key")
    if run is not None:
        views = kitaru_memory_history(sc.scope_type, sc.scope, key)
    else:
        views = _store(None).memory_history(sc.scope_type, sc.scope, key)
    return [MemoryEntry.from_view(v) for v in views]


def delete(key: str) -> MemoryEntry | None:
    """Soft-delete `key` (a tombstone version); None when it has no version."""
    run, sc = _active("delete")
    key = check_identifier(key, "key")
    if run is not None:
        out = kitaru_memory_delete(sc.scope_type, sc.scope, key)
    else:
        out = _delete(_store(None), sc.scope_type, sc.scope, key, {})
    return None if out is None else MemoryEntry.from_view(out)
