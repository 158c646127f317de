"""A 100-turn chat graph on `KitaruSaver` vs LangGraph's `SqliteSaver`, side by side.

The graph: one `reply` node, `messages` with `add_messages`; each turn adds a user message
and an answer (~300 characters each). Measured for each checkpointer in one run: bytes
stored (kitaru: its store's records and blobs; SQLite: the database file after a
checkpoint of its WAL), the median time of a `put` (the checkpoint of a step) and of a
`put_writes`, and the median `get_tuple` of the latest checkpoint (a fresh checkpointer
per read for the cold figure: nothing cached).

    make bench-langgraph
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

TURNS = 100


class Chat(TypedDict):
    messages: Annotated[list[Any], add_messages]


def reply(s: Chat) -> dict[str, Any]:
    n = len(s["messages"])
    return {"messages": [AIMessage(content=f"answer {n}: " + "the tide turns at dawn " * 13)]}


def _graph(saver: Any) -> Any:
    b = StateGraph(Chat)
    b.add_node("reply", reply)
    b.add_edge(START, "reply")
    b.add_edge("reply", END)
    return b.compile(checkpointer=saver)


class Timed:
    """Times a checkpointer's put and put_writes (wrapping the instance, not the class)."""

    def __init__(self, saver: Any) -> None:
        self.puts: list[float] = []
        self.writes: list[float] = []
        put, put_writes = saver.put, saver.put_writes

        def timed_put(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return put(*a, **k)
            finally:
                self.puts.append((time.perf_counter() - t0) * 1000)

        def timed_writes(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return put_writes(*a, **k)
            finally:
                self.writes.append((time.perf_counter() - t0) * 1000)

        saver.put, saver.put_writes = timed_put, timed_writes


def _chat(saver: Any) -> tuple[Timed, float]:
    timed = Timed(saver)
    g = _graph(saver)
    cfg: Any = {"configurable": {"thread_id": "chat"}}
    t0 = time.perf_counter()
    for i in range(TURNS):
        g.invoke(
            {"messages": [HumanMessage(content=f"question {i}: " + "when is high water " * 15)]},
            cfg,
        )
    return timed, (time.perf_counter() - t0) * 1000


def _gets(make: Any, n: int = 20) -> float:
    cfg: Any = {"configurable": {"thread_id": "chat"}}
    times = []
    for _ in range(n):
        saver = make()
        t0 = time.perf_counter()
        tup = saver.get_tuple(cfg)
        times.append((time.perf_counter() - t0) * 1000)
        assert len(tup.checkpoint["channel_values"]["messages"]) == 2 * TURNS
    return statistics.median(times)


def _dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="kitaru-bench-lg-"))
    os.environ["KITARU_CONFIG_PATH"] = str(tmp / "config")
    from kitaru.adapters.langgraph import KitaruSaver
    from langgraph.checkpoint.sqlite import SqliteSaver

    store = tmp / "kitaru"
    k_timed, k_total = _chat(KitaruSaver(str(store)))
    k_get = _gets(lambda: KitaruSaver(str(store)))
    k_bytes = _dir_bytes(store / "graph") + _dir_bytes(store / "blobs")

    db = tmp / "chat.sqlite"
    conn = sqlite3.connect(db, check_same_thread=False)
    s_timed, s_total = _chat(SqliteSaver(conn))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    s_get = _gets(lambda: SqliteSaver(conn))
    s_bytes = os.path.getsize(db)

    med = statistics.median
    print(f"{TURNS}-turn chat, {2 * TURNS} messages; medians")
    print(
        "| checkpointer | bytes stored | put (ms) | put_writes (ms) | get_tuple latest, cold (ms) | 100 turns (ms) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| KitaruSaver (local store) | {k_bytes:,} | {med(k_timed.puts):.3f} | {med(k_timed.writes):.3f} | {k_get:.2f} | {k_total:.0f} |"
    )
    print(
        f"| SqliteSaver | {s_bytes:,} | {med(s_timed.puts):.3f} | {med(s_timed.writes):.3f} | {s_get:.2f} | {s_total:.0f} |"
    )
    print(
        f"bytes: SQLite / kitaru = {s_bytes / k_bytes:.1f}x; put: {med(s_timed.puts) / med(k_timed.puts):.1f}x faster"
    )


if __name__ == "__main__":
    main()
