"""`KitaruClient().graphs`: the LangGraph threads `KitaruSaver` keeps in a store.

Listing needs no LangGraph: thread ids, namespaces, checkpoint ids and sizes come from the
records; a checkpoint's step, source and parent are read from its record when LangGraph's
serializer is importable (they are LangGraph's serialized metadata).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GraphCheckpoint", "GraphThread", "GraphsAPI"]


@dataclass(frozen=True)
class GraphCheckpoint:
    """One checkpoint of a thread."""

    checkpoint_id: str
    namespace: str
    parent_id: str | None
    step: int | None
    source: str | None
    size: int
    pending_writes: int
    channels: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GraphThread:
    """A thread: its namespaces, how many checkpoints, the latest one, bytes of records."""

    thread_id: str
    namespaces: list[str]
    checkpoints: int
    latest_checkpoint_id: str | None
    size: int


def _metadata(record: dict[str, Any]) -> dict[str, Any]:
    try:
        from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    except ImportError:
        return {}
    try:
        md = JsonPlusSerializer().loads_typed(tuple(record["md"]))
    except Exception:
        return {}
    return md if isinstance(md, dict) else {}


class GraphsAPI:
    """The LangGraph threads in the client's store (`KitaruSaver`, `durable()`)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def list(self) -> list[GraphThread]:
        """Every thread, sorted by id."""
        out = []
        for thread in self._store.graph_threads():
            namespaces = self._store.graph_threads(thread)
            n, latest, size = 0, None, 0
            for ns in namespaces:
                ids = self._store.graph_checkpoint_ids(thread, ns)
                n += len(ids)
                if ids and (latest is None or ids[-1] > latest):
                    latest = ids[-1]
                size += sum(
                    len(b or b"") for b in self._store.graph_get_checkpoints(thread, ns, ids)
                )
            out.append(GraphThread(thread, namespaces, n, latest, size))
        return out

    def get(self, thread_id: str) -> builtins.list[GraphCheckpoint]:
        """A thread's checkpoints, newest first; an unknown thread has none."""
        import ormsgpack

        out = []
        for ns in self._store.graph_threads(thread_id):
            ids = self._store.graph_checkpoint_ids(thread_id, ns)
            raws = self._store.graph_get_checkpoints(thread_id, ns, ids)
            writes = dict(self._store.graph_writes(thread_id, ns, None))
            for cid, raw in zip(ids, raws, strict=True):
                if raw is None:
                    continue
                rec = ormsgpack.unpackb(raw)
                md = _metadata(rec)
                step = md.get("step")
                out.append(
                    GraphCheckpoint(
                        checkpoint_id=cid,
                        namespace=ns,
                        parent_id=rec.get("p"),
                        step=step if isinstance(step, int) else None,
                        source=md.get("source") if isinstance(md.get("source"), str) else None,
                        size=len(raw),
                        pending_writes=len(writes.get(cid, [])),
                        channels=sorted(rec.get("ch", {})),
                    )
                )
        out.sort(key=lambda c: c.checkpoint_id, reverse=True)
        return out
