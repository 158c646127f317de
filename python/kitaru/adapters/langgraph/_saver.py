"""`KitaruSaver`: a LangGraph checkpointer (`BaseCheckpointSaver`) on a kitaru store.

Records (Rust `src/graph.rs`): one create-only record per checkpoint and one per pending
write, under ``graph/<thread>/<namespace>/``, on any kitaru store (a local directory, S3,
GCS, Azure). A checkpoint record holds LangGraph's serialized checkpoint (without channel
values), its metadata, its parent's id and a reference per channel: small values inline,
larger ones as content-addressed blobs, so an unchanged channel — or the same value in
another checkpoint or thread — is stored once. A channel that did not change refers to the
value stored when it last did (no new bytes at all). A list that grows (a conversation's
messages) is stored as a delta: the new items and a reference to the list before, whole
again every 32 versions, so a 100-turn chat stores its messages about once, not 100 times.

Values are serialized by LangGraph's own serializer protocol (`JsonPlusSerializer`,
without its pickle fallback unless you pass a serializer that has it).

Every method exists sync and async; the logic is written once as a generator of store
steps (`kitaru._steps`), run blocking or awaited.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from typing import Any, cast

import ormsgpack
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from ..._steps import run_async, run_sync

__all__ = ["KitaruSaver"]

Steps = Generator[tuple[Any, Any], Any, Any]

# Values up to this size live in the checkpoint's record; larger ones are blobs.
INLINE = 512
_FORMAT = 1
# (thread, ns, channel, version) -> reference, for channels that did not change.
_REF_CACHE = 4096
# A list stored as a delta of the one before at most this many times in a row; then whole.
MAX_DELTA_DEPTH = 32
_LOADED_CACHE = 64


def _pack(value: Any) -> bytes:
    return ormsgpack.packb(value)


def _unpack(data: bytes) -> Any:
    return ormsgpack.unpackb(data)


def _extends(new: list[Any], old: list[Any]) -> bool:
    """Whether `new` starts with the items of `old` (the same objects, or equal ones)."""
    if len(new) < len(old):
        return False
    try:
        return all(a is b or bool(a == b) for a, b in zip(new, old, strict=False))
    except Exception:  # items whose == is not a plain yes/no (arrays): store it whole
        return False


def _config(thread: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {"thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}
    }


class KitaruSaver(BaseCheckpointSaver[int]):
    """LangGraph's checkpointer on kitaru's store.

    ``builder.compile(checkpointer=KitaruSaver())`` stores a graph's checkpoints in the
    active stack's store (``KITARU_STORE``, a stack, or the local default); pass `store=`
    (a location such as ``"s3://bucket/prefix"`` or a path, or a `kitaru._kitaru.Store`)
    for another one.
    """

    def __init__(self, store: Any = None, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde or JsonPlusSerializer())
        from ... import _config

        if store is None or isinstance(store, str):
            store = _config.get_store(store)
        self.store = store
        self._refs: OrderedDict[tuple[str, str, str, Any], list[Any]] = OrderedDict()
        # (thread, ns, channel) -> (the list it held last, its reference, delta depth)
        self._last: dict[tuple[str, str, str], tuple[list[Any], list[Any], int]] = {}
        # delta blob -> the list it stands for (a chain is read once per process)
        self._loaded: OrderedDict[str, list[Any]] = OrderedDict()

    # --- references to channel values ---------------------------------------------------

    def _remember(self, key: tuple[str, str, str, Any], ref: list[Any]) -> None:
        self._refs[key] = ref
        self._refs.move_to_end(key)
        while len(self._refs) > _REF_CACHE:
            self._refs.popitem(last=False)

    def _value_ref(self, value: Any, last: tuple[str, str, str] | None = None) -> Steps:
        """A reference to `value`, stored: inline, a blob, or — for a list that extends the
        list this channel held last (a conversation growing by a few messages per step) —
        a delta blob holding only the new items and a reference to the earlier list."""
        if last is not None and type(value) is list:
            prev = self._last.get(last)
            if prev is not None and prev[2] < MAX_DELTA_DEPTH:
                items, base, depth = prev
                if _extends(value, items):
                    kind, tail = self.serde.dumps_typed(value[len(items) :])
                    digest = yield "put_blob", (_pack({"base": base, "kind": kind, "tail": tail}),)
                    ref = ["d", digest, depth + 1]
                    self._last[last] = (list(value), ref, depth + 1)
                    self._loaded[digest] = list(value)
                    return ref
        kind, data = self.serde.dumps_typed(value)
        if len(data) <= INLINE:
            ref = ["i", kind, data]
        else:
            digest = yield "put_blob", (data,)
            ref = ["b", kind, digest]
        if last is not None:
            if type(value) is list:
                self._last[last] = (list(value), ref, 0)
            else:
                self._last.pop(last, None)
        return ref

    def _load_ref(self, ref: list[Any]) -> Steps:
        if ref[0] == "i":
            return self.serde.loads_typed((ref[1], ref[2]))
        if ref[0] == "d":
            hit = self._loaded.get(ref[1])
            if hit is not None:
                self._loaded.move_to_end(ref[1])
                return list(hit)
            node = _unpack(bytes((yield "get_blob", (ref[1],))))
            base = yield from self._load_ref(node["base"])
            value = [*base, *self.serde.loads_typed((node["kind"], node["tail"]))]
            self._loaded[ref[1]] = list(value)
            while len(self._loaded) > _LOADED_CACHE:
                self._loaded.popitem(last=False)
            return value
        data = yield "get_blob", (ref[2],)
        return self.serde.loads_typed((ref[1], bytes(data)))

    # --- put --------------------------------------------------------------------------

    def _put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> Steps:
        conf = config["configurable"]
        thread, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        parent = conf.get("checkpoint_id")
        c = dict(checkpoint)
        values: dict[str, Any] = c.pop("channel_values", {})  # type: ignore[assignment]
        fresh: dict[str, list[Any]] = {}
        for ch, ver in new_versions.items():
            if ch in values:
                ref = yield from self._value_ref(values[ch], (thread, ns, ch))
            else:
                ref = ["e"]
            fresh[ch] = [ver, ref]
            self._remember((thread, ns, ch, ver), ref)
        channels: dict[str, list[Any]] = {}
        missing: dict[str, Any] = {}
        for ch, ver in checkpoint["channel_versions"].items():
            if ch in fresh and fresh[ch][0] == ver:
                channels[ch] = fresh[ch]
                continue
            ref = self._refs.get((thread, ns, ch, ver))
            if ref is not None:
                channels[ch] = [ver, ref]
            else:
                missing[ch] = ver
        if missing:
            yield from self._find_refs(thread, ns, parent, missing, channels)
        record = {
            "f": _FORMAT,
            "cp": list(self.serde.dumps_typed(c)),
            "md": list(self.serde.dumps_typed(get_checkpoint_metadata(config, metadata))),
            "p": parent,
            "ch": channels,
        }
        yield "graph_put_checkpoint", (thread, ns, checkpoint["id"], _pack(record))
        return _config(thread, ns, checkpoint["id"])

    def _find_refs(
        self,
        thread: str,
        ns: str,
        parent: str | None,
        missing: dict[str, Any],
        into: dict[str, list[Any]],
    ) -> Steps:
        """References of unchanged channels this process has not seen: from the parent
        checkpoint, else from the newest checkpoint that has them."""
        ids: list[str] = [parent] if parent else []
        found = yield "graph_get_checkpoints", (thread, ns, ids)
        records = [_unpack(b) for b in found if b is not None]
        in_parent = records[0]["ch"] if records else {}
        if any(in_parent.get(ch, [None])[0] != ver for ch, ver in missing.items()):
            all_ids = yield "graph_checkpoint_ids", (thread, ns)
            more = yield "graph_get_checkpoints", (thread, ns, list(reversed(all_ids)))
            records += [_unpack(b) for b in more if b is not None]
        for ch, ver in missing.items():
            for rec in records:
                hit = rec["ch"].get(ch)
                if hit is not None and hit[0] == ver:
                    into[ch] = hit
                    self._remember((thread, ns, ch, ver), hit[1])
                    break

    def _put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> Steps:
        conf = config["configurable"]
        thread, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        out = []
        for idx, (channel, value) in enumerate(writes):
            ref = yield from self._value_ref(value)
            data = _pack({"c": channel, "r": ref, "p": task_path})
            out.append((WRITES_IDX_MAP.get(channel, idx), data))
        yield "graph_put_writes", (thread, ns, conf["checkpoint_id"], task_id, out)

    # --- reading ----------------------------------------------------------------------

    def _tuple(
        self, thread: str, ns: str, cid: str, raw: bytes, writes: list[tuple[str, int, bytes]]
    ) -> Steps:
        rec = _unpack(raw)
        checkpoint = self.serde.loads_typed(tuple(rec["cp"]))
        values = {}
        for ch, (_ver, ref) in rec["ch"].items():
            if ref[0] != "e":
                values[ch] = yield from self._load_ref(ref)
        pending = []
        for task_id, idx, data in writes:
            w = _unpack(data)
            value = yield from self._load_ref(w["r"])
            pending.append((writes_sort_key(w["p"], task_id, idx), (task_id, w["c"], value)))
        pending.sort(key=lambda p: p[0])
        parent = rec["p"]
        return CheckpointTuple(
            config=_config(thread, ns, cid),
            checkpoint=cast(Checkpoint, {**checkpoint, "channel_values": values}),
            metadata=self.serde.loads_typed(tuple(rec["md"])),
            parent_config=_config(thread, ns, parent) if parent else None,
            pending_writes=[w for _, w in pending],
        )

    def _get_tuple(self, config: RunnableConfig) -> Steps:
        conf = config["configurable"]
        thread, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        cid = get_checkpoint_id(config)
        if cid is None:
            ids = yield "graph_checkpoint_ids", (thread, ns)
            if not ids:
                return None
            cid = ids[-1]
        (raw,) = yield "graph_get_checkpoints", (thread, ns, [cid])
        if raw is None:
            return None
        found = yield "graph_writes", (thread, ns, [cid])
        writes = found[0][1] if found else []
        return (yield from self._tuple(thread, ns, cid, raw, writes))

    def _list(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> Steps:
        conf = (config or {}).get("configurable", {})
        if conf.get("thread_id") is not None:
            threads = [str(conf["thread_id"])]
        else:
            threads = yield "graph_threads", (None,)
        want_ns = conf.get("checkpoint_ns")
        want_id = conf.get("checkpoint_id")
        before_id = get_checkpoint_id(before) if before else None
        out: list[CheckpointTuple] = []
        for thread in threads:
            if want_ns is not None:
                namespaces = [want_ns]
            else:
                namespaces = yield "graph_threads", (thread,)
            candidates: list[tuple[str, str]] = []
            for ns in namespaces:
                ids = yield "graph_checkpoint_ids", (thread, ns)
                for cid in ids:
                    if want_id and cid != want_id:
                        continue
                    if before_id and cid >= before_id:
                        continue
                    candidates.append((cid, ns))
            candidates.sort(reverse=True)  # newest first
            by_ns: dict[str, list[str]] = {}
            for cid, ns in candidates:
                by_ns.setdefault(ns, []).append(cid)
            raws: dict[tuple[str, str], bytes] = {}
            for ns, cids in by_ns.items():
                found = yield "graph_get_checkpoints", (thread, ns, cids)
                raws.update({(cid, ns): b for cid, b in zip(cids, found, strict=True) if b})
            chosen: list[tuple[str, str]] = []
            for cid, ns in candidates:
                if limit is not None and len(out) + len(chosen) >= limit:
                    break
                raw = raws.get((cid, ns))
                if raw is None:
                    continue
                if filter:
                    md = self.serde.loads_typed(tuple(_unpack(raw)["md"]))
                    if not all(md.get(k) == v for k, v in filter.items()):
                        continue
                chosen.append((cid, ns))
            writes: dict[tuple[str, str], list[Any]] = {}
            for ns in {ns for _, ns in chosen}:
                cids = [cid for cid, n in chosen if n == ns]
                found = yield "graph_writes", (thread, ns, cids)
                writes.update({(cid, ns): ws for cid, ws in found})
            for cid, ns in chosen:
                tup = yield from self._tuple(
                    thread, ns, cid, raws[(cid, ns)], writes.get((cid, ns), [])
                )
                out.append(tup)
            if limit is not None and len(out) >= limit:
                break
        return out

    # --- deleting and copying ---------------------------------------------------------

    def _delete_for_runs(self, run_ids: Sequence[str]) -> Steps:
        wanted = set(run_ids)
        if not wanted:
            return
        threads = yield "graph_threads", (None,)
        for thread in threads:
            namespaces = yield "graph_threads", (thread,)
            for ns in namespaces:
                ids = yield "graph_checkpoint_ids", (thread, ns)
                found = yield "graph_get_checkpoints", (thread, ns, ids)
                doomed = [
                    cid
                    for cid, raw in zip(ids, found, strict=True)
                    if raw is not None
                    and self.serde.loads_typed(tuple(_unpack(raw)["md"])).get("run_id") in wanted
                ]
                if doomed:
                    yield "graph_delete", (thread, ns, doomed)

    def _copy_thread(self, source: str, target: str) -> Steps:
        namespaces = yield "graph_threads", (source,)
        for ns in namespaces:
            ids = yield "graph_checkpoint_ids", (source, ns)
            found = yield "graph_get_checkpoints", (source, ns, ids)
            for cid, raw in zip(ids, found, strict=True):
                if raw is not None:
                    yield "graph_put_checkpoint", (target, ns, cid, raw)
            for cid, ws in (yield "graph_writes", (source, ns, None)):
                by_task: dict[str, list[tuple[int, bytes]]] = {}
                for task_id, idx, data in ws:
                    by_task.setdefault(task_id, []).append((idx, data))
                for task_id, items in by_task.items():
                    yield "graph_put_writes", (target, ns, cid, task_id, items)

    def _prune(self, thread_ids: Sequence[str], strategy: str) -> Steps:
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"Unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'.")
        for thread in thread_ids:
            if strategy == "delete":
                yield "graph_delete", (str(thread), None, None)
                continue
            namespaces = yield "graph_threads", (str(thread),)
            for ns in namespaces:
                ids = yield "graph_checkpoint_ids", (str(thread), ns)
                if len(ids) > 1:
                    yield "graph_delete", (str(thread), ns, ids[:-1])

    # --- BaseCheckpointSaver ----------------------------------------------------------

    def _sync(self, steps: Steps) -> Any:
        return run_sync(steps, self.store)

    async def _async(self, steps: Steps) -> Any:
        return await run_async(steps, self.store)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._sync(self._get_tuple(config))  # type: ignore[no-any-return]

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._async(self._get_tuple(config))  # type: ignore[no-any-return]

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        yield from self._sync(self._list(config, filter, before, limit))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        for tup in await self._async(self._list(config, filter, before, limit)):
            yield tup

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._sync(self._put(config, checkpoint, metadata, new_versions))  # type: ignore[no-any-return]

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._async(self._put(config, checkpoint, metadata, new_versions))  # type: ignore[no-any-return]

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._sync(self._put_writes(config, writes, task_id, task_path))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._async(self._put_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self.store.graph_delete(str(thread_id))

    async def adelete_thread(self, thread_id: str) -> None:
        await self.store.graph_delete(str(thread_id), awaitable=True)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._sync(self._delete_for_runs(run_ids))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._async(self._delete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._sync(self._copy_thread(str(source_thread_id), str(target_thread_id)))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._async(self._copy_thread(str(source_thread_id), str(target_thread_id)))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._sync(self._prune(thread_ids, strategy))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._async(self._prune(thread_ids, strategy))
