"""`KitaruClient().memories`: memory read and written with an explicit scope, and its
maintenance (purge, compaction through a model, the audit log). Kitaru 0.4's surface."""

from __future__ import annotations

import builtins
from datetime import datetime, timezone
from typing import Any

from . import memory as m
from .errors import KitaruUsageError
from .flow import flow

_LIST = builtins.list


def _scope(scope: Any, scope_type: Any) -> tuple[Any, str]:
    """(scope type, scope), checked (the type one of `MemoryScopeType`'s values)."""
    return m.check_scope_type(scope_type), m.check_identifier(scope, "scope")


def _keep(keep: Any, api: str) -> int:
    if keep is None:
        return 0
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise KitaruUsageError(f"{api} `keep` must be >= 0 or None.")
    return keep


def _log_key(scope_type: str, scope: str) -> str:
    return f"{m.COMPACTION_PREFIX}{scope_type}/{scope}"


class MemoriesAPI:
    """Memory with an explicit scope (any process, no flow needed)."""

    def __init__(self, store: Any = None) -> None:
        self._given = store

    @property
    def _store(self) -> Any:
        if self._given is not None:
            return self._given
        from . import _config

        return _config.get_store()

    def _read(self, st: str, sc: str, key: str, version: int | None) -> tuple[Any, Any] | None:
        """(entry view, value) of one live version in one read; None when missing or a
        tombstone. `key` is checked by the caller (the audit log's is reserved)."""
        found = self._store.memory_get(st, sc, key, m.check_version(version))
        if found is None or found[1] is None:
            return None
        return found[0], m._loads(found[1], None, f"memory value {key!r}")

    def get(
        self, key: str, *, scope: str, scope_type: str = "namespace", version: int | None = None
    ) -> m.MemoryEntry | None:
        """The latest entry of `key` (or version `version`); None when the key has no such
        version or it is a tombstone (`history` shows those). Load its value with `value()`
        or through `KitaruClient().artifacts.get(entry.artifact_id).load()`."""
        st, sc = _scope(scope, scope_type)
        found = self._store.memory_get(st, sc, m.check_identifier(key, "key"),
                                       m.check_version(version))  # fmt: skip
        if found is None or found[1] is None:
            return None
        return m.MemoryEntry.from_view(found[0])

    def value(
        self, key: str, *, scope: str, scope_type: str = "namespace", version: int | None = None
    ) -> Any:
        """The value of `key` (latest, or `version`); None when missing or deleted."""
        st, sc = _scope(scope, scope_type)
        found = self._read(st, sc, m.check_identifier(key, "key"), version)
        return None if found is None else found[1]

    def list(self, *, scope: str, scope_type: str = "namespace") -> _LIST[m.MemoryEntry]:
        st, sc = _scope(scope, scope_type)
        return [
            m.MemoryEntry.from_view(v)
            for v in self._store.memory_list(st, sc)
            if not v["key"].startswith(m.COMPACTION_PREFIX)
        ]

    def history(
        self, key: str, *, scope: str, scope_type: str = "namespace"
    ) -> _LIST[m.MemoryEntry]:
        st, sc = _scope(scope, scope_type)
        views = self._store.memory_history(st, sc, m.check_identifier(key, "key"))
        return [m.MemoryEntry.from_view(v) for v in views]

    def set(
        self, key: str, value: Any, *, scope: str, scope_type: str = "namespace"
    ) -> m.MemoryEntry:
        st, sc = _scope(scope, scope_type)
        key = m.check_identifier(key, "key")
        pair = m._dumps(value, None, f"memory value {key!r}")
        return m.MemoryEntry.from_view(
            self._store.memory_write(st, sc, key, pair, m._value_type(value))
        )

    def delete(
        self, key: str, *, scope: str, scope_type: str = "namespace"
    ) -> m.MemoryEntry | None:
        st, sc = _scope(scope, scope_type)
        out = m._delete(self._store, st, sc, m.check_identifier(key, "key"), {})
        return None if out is None else m.MemoryEntry.from_view(out)

    def scopes(self) -> _LIST[m.MemoryScopeInfo]:
        return [m.MemoryScopeInfo(**v) for v in self._store.memory_scopes()]

    # --- maintenance --------------------------------------------------------------------

    def purge(
        self, key: str, *, scope: str, scope_type: str = "namespace", keep: int | None = None
    ) -> m.PurgeResult:
        """Delete the versions of `key` beyond the newest `keep` (None: all of them), for
        good; the purge is written to the scope's audit log."""
        st, sc = _scope(scope, scope_type)
        key = m.check_identifier(key, "key")
        n = _keep(keep, "purge")
        deleted = self._store.memory_purge(st, sc, key, n)
        self._audit(st, sc, "purge", [key], [], None, None, None, None, None,
                    keys_affected=1 if deleted else 0, versions_deleted=deleted, keep=keep)  # fmt: skip
        return m.PurgeResult(versions_deleted=deleted, keys_affected=1 if deleted else 0,
                             scope=sc, scope_type=st)  # fmt: skip

    def purge_scope(
        self,
        *,
        scope: str,
        scope_type: str = "namespace",
        keep: int | None = None,
        include_deleted: bool = False,
    ) -> m.PurgeResult:
        """`purge` for every key of a scope (keys whose latest version is a tombstone only
        with `include_deleted`, then all their versions); the audit log is kept."""
        st, sc = _scope(scope, scope_type)
        n = _keep(keep, "purge_scope")
        deleted = affected = 0
        live = set(self._store.memory_keys(st, sc, False))
        for key in self._store.memory_keys(st, sc, include_deleted):
            if key.startswith(m.COMPACTION_PREFIX):
                continue
            d = self._store.memory_purge(st, sc, key, n if key in live else 0)
            deleted += d
            affected += 1 if d else 0
        self._audit(st, sc, "purge", [], [], None, None, None, None, None,
                    keys_affected=affected, versions_deleted=deleted, keep=keep)  # fmt: skip
        return m.PurgeResult(versions_deleted=deleted, keys_affected=affected, scope=sc,
                             scope_type=st)  # fmt: skip

    def compact(
        self,
        *,
        scope: str,
        scope_type: str = "namespace",
        key: str | None = None,
        keys: _LIST[str] | None = None,
        source_mode: str = "current",
        target_key: str | None = None,
        instruction: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
    ) -> m.CompactResult:
        """Summarize values with a model (`kitaru.llm()`, run as an execution of the flow
        ``kitaru_memory_compact``, so the call is in its cost ledger) and write the summary
        as a new version of `target_key` (default: `key`). Sources are never deleted."""
        st, sc = _scope(scope, scope_type)
        mode = str(source_mode).strip().lower()
        if mode not in ("current", "history"):
            raise KitaruUsageError("Memory compaction source_mode must be 'current' or 'history'.")
        if (key is None) == (keys is None):
            raise KitaruUsageError("compact() takes exactly one of `key=` or `keys=`.")
        names = [m.check_identifier(k, "key") for k in ([key] if key is not None else keys or [])]
        if not names:
            raise KitaruUsageError("compact() needs at least one key.")
        if keys is not None and target_key is None:
            raise KitaruUsageError("compact() in multi-key mode requires `target_key`.")
        if mode == "history" and len(names) != 1:
            raise KitaruUsageError("compact(source_mode='history') takes a single `key=`.")
        target = m.check_identifier(target_key or names[0], "key")
        sources: _LIST[tuple[str, int, Any]] = []
        wanted: _LIST[tuple[str, int | None]] = []  # (key, version; None: the latest)
        for name in names:
            if mode == "history":
                history = self._store.memory_history(st, sc, name)
                wanted += [(name, e["version"]) for e in history if not e["is_deleted"]]
            else:
                wanted.append((name, None))
        for name, version in wanted:
            # one read: the version recorded is the one whose value the model sees
            found = self._read(st, sc, name, version)
            if found is not None:
                sources.append((name, found[0]["version"], found[1]))
        if not sources:
            raise KitaruUsageError("compact() found no source entries to summarize.")
        prompt = _prompt(sources, instruction)
        handle = kitaru_memory_compact.run(st, sc, target, prompt, model, max_tokens)
        written = m.MemoryEntry.from_view(handle.wait())
        record = self._audit(st, sc, "compact", [s[0] for s in sources],
                             [s[1] for s in sources], target, written.version, instruction,
                             model, mode, keys_affected=0, versions_deleted=0, keep=None)  # fmt: skip
        return m.CompactResult(entry=written, sources_read=len(sources), scope=sc,
                               scope_type=st, compaction_record=record)  # fmt: skip

    def compaction_log(
        self, *, scope: str, scope_type: str = "namespace"
    ) -> _LIST[m.CompactionRecord]:
        """The scope's compactions and purges, newest first."""
        st, sc = _scope(scope, scope_type)
        log_key = _log_key(st, sc)
        out = []
        for e in self._store.memory_history(st, sc, log_key):
            found = self._read(st, sc, log_key, e["version"])
            if found is not None and isinstance(found[1], dict):
                out.append(m.CompactionRecord(**found[1]))
        return out

    def reindex(self, *, apply: bool = False) -> m.MemoryReindexResult:
        """Kitaru 0.4 backfilled artifact tags; memory here is indexed by its keys, so there
        is never anything to update. Counts the versions it looked at."""
        scanned = execution = 0
        for s in self._store.memory_scopes():
            for key in self._store.memory_keys(s["scope_type"], s["scope"], True):
                n = len(self._store.memory_history(s["scope_type"], s["scope"], key))
                scanned += n
                execution += n if s["scope_type"] == "execution" else 0
        return m.MemoryReindexResult(
            dry_run=not apply, versions_scanned=scanned,
            execution_scope_versions_scanned=execution, already_indexed=scanned,
            versions_needing_updates=0, versions_updated=0, scope_type_tags_identified=0,
            flow_tags_identified=0, scope_type_tags_added=0, flow_tags_added=0,
            issues_count=0, issue_samples=[],
        )  # fmt: skip

    def _audit(
        self,
        st: str,
        sc: str,
        operation: str,
        source_keys: _LIST[str],
        source_versions: _LIST[int],
        target_key: str | None,
        target_version: int | None,
        instruction: str | None,
        model: str | None,
        source_mode: str | None,
        *,
        keys_affected: int,
        versions_deleted: int,
        keep: int | None,
    ) -> m.CompactionRecord:
        record = m.CompactionRecord(
            operation=operation, scope=sc, scope_type=st,  # type: ignore[arg-type]
            timestamp=datetime.now(timezone.utc), source_keys=source_keys,
            source_versions=source_versions, target_key=target_key,
            target_version=target_version, instruction=instruction, model=model,
            source_mode=source_mode, keys_affected=keys_affected,  # type: ignore[arg-type]
            versions_deleted=versions_deleted, keep=keep,
        )  # fmt: skip
        value = record.model_dump(mode="json")
        pair = m._dumps(value, None, "memory compaction record")
        self._store.memory_write(st, sc, _log_key(st, sc), pair, "CompactionRecord")
        return record


def _prompt(sources: _LIST[tuple[str, int, Any]], instruction: str | None) -> str:
    import json

    parts = [
        instruction
        or "Summarize the following memory entries into one concise entry that keeps every "
        "fact a later reader needs.",
        "",
    ]
    for key, version, value in sources:
        text = value if isinstance(value, str) else json.dumps(value, default=repr, indent=2)
        parts.append(f"## {key} (version {version})\n{text}\n")
    return "\n".join(parts)


@flow
def kitaru_memory_compact(
    scope_type: str,
    scope: str,
    target_key: str,
    prompt: str,
    model: str | None,
    max_tokens: int | None,
) -> dict[str, Any]:
    """A compaction: the model call, then the summary written as a version of `target_key`
    (both journaled: a retry neither pays nor writes twice)."""
    from ._llm.call import llm

    summary = llm(prompt, model=model, max_tokens=max_tokens, name="compaction")
    m.configure(scope=scope, scope_type=scope_type)
    tag, data = m._dumps(summary, None, f"memory value {target_key!r}")
    return m.kitaru_memory_set(scope_type, scope, target_key, m._value_type(summary), tag, data)
