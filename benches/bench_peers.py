"""kitaru side by side with DBOS (SQLite) and LangGraph (SQLite checkpointer), issue #6.

    python benches/bench_peers.py [--n 1000] [--with-kitaru-021]

Installs the peers from PyPI into target/peers-venv (once), runs every workload for every
system in this one run on this machine, and prints each figure with its ratio to kitaru.
Workloads: (a) per-checkpoint overhead, N steps with 100-byte outputs; (b) resume of an
execution with N finished steps to its first live step, in a new process; (c) import time;
(d) a 100-turn conversation whose every turn stores the whole history: bytes on disk per
byte of final history; (e) save and load of one 100 MB value.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEERS = ["dbos==3.4.0", "langgraph==1.2.22", "langgraph-checkpoint-sqlite"]

COMMON = """
import json, os, sys, time, statistics
N = int(os.environ.get("N", "1000"))
WORK = sys.argv[1]
def out(**kw):
    print("RESULT " + json.dumps(kw), flush=True)
BIG = os.urandom(100 << 20) if WORK == "e" else b""
def history(turn):
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " + "lorem ipsum " * 80}
            for i in range(turn + 1)]
"""

KITARU = (
    COMMON
    + """
from kitaru import checkpoint, flow
import kitaru
T = []
@checkpoint
def step(i: int) -> str:
    return "x" * 100
@checkpoint
def live(n: int) -> int:
    out(live_at=time.perf_counter())
    if os.environ.get("CRASH"): os._exit(3)
    return n
@flow
def steps(n: int) -> int:
    for i in range(n):
        t0 = time.perf_counter(); step(i); T.append(time.perf_counter() - t0)
    return live(n)
@checkpoint
def turn(i: int) -> list:
    return history(i)
@flow
def chat(turns: int) -> int:
    for i in range(turns): turn(i)
    return turns
@checkpoint
def big() -> bytes:
    return BIG
@flow
def save_big() -> int:
    t0 = time.perf_counter(); big(); out(save_s=time.perf_counter() - t0)
    return 1
if WORK == "a":
    steps.run(N); out(median_ms=statistics.median(T) * 1e3)
elif WORK == "b1":
    os.environ["CRASH"] = "1"; steps.run(N)
elif WORK == "b2":
    exec_id = kitaru.KitaruClient().executions.list(limit=1)[0].exec_id
    t0 = time.perf_counter(); out(t0=t0); kitaru.KitaruClient().executions.retry(exec_id)
elif WORK == "d":
    chat.run(100)
elif WORK == "e":
    h = save_big.run()
    t0 = time.perf_counter(); kitaru.KitaruClient().executions.get(h.exec_id)
    from kitaru import _config
    tag, data = _config.get_store().checkpoint_output(h.exec_id, "big")
    out(load_s=time.perf_counter() - t0, size=len(data))
"""
)

DBOS = (
    COMMON
    + """
import logging
from dbos import DBOS, DBOSConfig, SetWorkflowID
T = []
@DBOS.step()
def step(i: int) -> str:
    return "x" * 100
@DBOS.step()
def live(n: int) -> int:
    out(live_at=time.perf_counter())
    if os.environ.get("CRASH"): os._exit(3)
    return n
@DBOS.workflow()
def steps(n: int) -> int:
    for i in range(n):
        t0 = time.perf_counter(); step(i); T.append(time.perf_counter() - t0)
    return live(n)
@DBOS.step()
def turn(i: int) -> list:
    return history(i)
@DBOS.workflow()
def chat(turns: int) -> int:
    for i in range(turns): turn(i)
    return turns
@DBOS.step()
def big() -> bytes:
    return BIG
@DBOS.workflow()
def save_big() -> int:
    t0 = time.perf_counter(); big(); out(save_s=time.perf_counter() - t0)
    return 1
config: DBOSConfig = {"name": "bench", "system_database_url": f"sqlite:///{os.getcwd()}/dbos.sqlite",
                      "run_admin_server": False, "log_level": "WARNING"}
t_launch = time.perf_counter()
DBOS(config=config)
DBOS.launch()
if WORK == "a":
    with SetWorkflowID("a"): steps(N)
    out(median_ms=statistics.median(T) * 1e3)
elif WORK == "b1":
    os.environ["CRASH"] = "1"
    with SetWorkflowID("b"): steps(N)
elif WORK == "b2":
    out(t0=t_launch)  # launch recovers the pending workflow in the background
    DBOS.retrieve_workflow("b").get_result()
elif WORK == "d":
    with SetWorkflowID("d"): chat(100)
elif WORK == "e":
    with SetWorkflowID("e"): save_big()
    t0 = time.perf_counter()
    steps_info = DBOS.list_workflow_steps("e")
    data = [s for s in steps_info if s["function_name"].endswith("big")][0]["output"]
    out(load_s=time.perf_counter() - t0, size=len(data))
DBOS.destroy()
"""
)

LANGGRAPH = (
    COMMON
    + """
import sqlite3
from typing import TypedDict
from langgraph.graph import StateGraph, START, END
from langgraph.checkpoint.sqlite import SqliteSaver
STAMPS = []
class S(TypedDict):
    i: int
    out: object
def make(node, limit):
    g = StateGraph(S)
    g.add_node("step", node)
    g.add_edge(START, "step")
    g.add_conditional_edges("step", lambda s: "step" if s["i"] < limit else END)
    conn = sqlite3.connect("lg.sqlite", check_same_thread=False)
    return g.compile(checkpointer=SqliteSaver(conn))
def step(s):
    STAMPS.append(time.perf_counter())
    if s["i"] == N:
        out(live_at=time.perf_counter())
        if os.environ.get("CRASH"): os._exit(3)
    return {"i": s["i"] + 1, "out": "x" * 100}
cfg = lambda t: {"configurable": {"thread_id": t}, "recursion_limit": 10**6}
if WORK == "a":
    make(step, N).invoke({"i": 0, "out": ""}, cfg("a"))
    d = [b - a for a, b in zip(STAMPS, STAMPS[1:])]
    out(median_ms=statistics.median(d) * 1e3)
elif WORK == "b1":
    os.environ["CRASH"] = "1"; make(step, N + 1).invoke({"i": 0, "out": ""}, cfg("b"))
elif WORK == "b2":
    t0 = time.perf_counter(); out(t0=t0); make(step, N + 1).invoke(None, cfg("b"))
elif WORK == "d":
    make(lambda s: {"i": s["i"] + 1, "out": history(s["i"])}, 100).invoke({"i": 0, "out": []}, cfg("d"))
elif WORK == "e":
    t0 = time.perf_counter()
    app = make(lambda s: {"i": 1, "out": BIG}, 1)
    app.invoke({"i": 0, "out": b""}, cfg("e")); out(save_s=time.perf_counter() - t0)
    t0 = time.perf_counter(); data = make(step, 1).get_state(cfg("e")).values["out"]
    out(load_s=time.perf_counter() - t0, size=len(data))
"""
)

IMPORTS = {
    "kitaru021": "import kitaru","kitaru": "import kitaru", "dbos": "import dbos",
           "langgraph": "import langgraph.graph, langgraph.checkpoint.sqlite"}  # fmt: skip


def peers_python(with_kitaru_021: bool) -> str:
    venv = REPO / "target" / "peers-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PEERS], check=True)
    if with_kitaru_021:
        subprocess.run([str(py), "-m", "pip", "install", "-q", "kitaru==0.21.0"], check=True)
    return str(py)


def run(py: str, script: Path, work: str, cwd: Path, n: int) -> list[dict]:
    env = {
        **CACHED,
        "N": str(n),
        "KITARU_STORE": str(cwd / "store"),
        "KITARU_CONFIG_PATH": str(cwd / "cfg"),
    }
    proc = subprocess.run(
        [py, str(script), work], cwd=cwd, env=env, capture_output=True, text=True, timeout=1800
    )
    results = [
        json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")
    ]
    if proc.returncode not in (0, 3) or (not results and work not in ("b1", "d")):
        raise RuntimeError(
            f"{script.name} {work} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    return results


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# Bytecode caching on, as users run (some sandboxes set PYTHONDONTWRITEBYTECODE).
CACHED = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def import_ms(py: str, stmt: str) -> float:
    """Median extra wall time of `python -c stmt` over `python -c pass` (after a warm-up)."""
    subprocess.run([py, "-c", stmt], check=True, capture_output=True, env=CACHED)
    samples = [
        _timed(lambda: subprocess.run([py, "-c", stmt], check=True, env=CACHED)) for _ in range(7)
    ]
    base = [
        _timed(lambda: subprocess.run([py, "-c", "pass"], check=True, env=CACHED)) for _ in range(7)
    ]
    return (statistics.median(samples) - statistics.median(base)) * 1e3


def _timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def workload(
    py: str, source: str, name: str, work: str, n: int, base: Path
) -> tuple[list[dict], int]:
    """Runs one workload in a fresh directory; its results and the bytes it left on disk."""
    with tempfile.TemporaryDirectory(dir=base) as d:
        cwd = Path(d)
        script = cwd / f"{name}_bench.py"
        script.write_text(textwrap.dedent(source))
        before = du(cwd)
        if work == "b":
            run(py, script, "b1", cwd, n)
            work = "b2"
        got = run(py, script, work, cwd, n)
        return got, du(cwd) - before


def measure(
    name: str, py: str, source: str, n: int, base: Path, works: tuple[str, ...]
) -> dict[str, float]:
    final_history = len(json.dumps(
        [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " + "lorem ipsum " * 80}
         for i in range(100)]).encode())  # fmt: skip
    r = {"import_ms": import_ms(py, IMPORTS[name])}
    if "a" in works:
        got, _ = workload(py, source, name, "a", n, base)
        r["a_per_checkpoint_ms"] = next(x["median_ms"] for x in got if "median_ms" in x)
    if "b" in works:
        got, _ = workload(py, source, name, "b", n, base)
        t0 = next(x["t0"] for x in got if "t0" in x)
        live = next(x["live_at"] for x in got if "live_at" in x)
        r["b_resume_ms"] = (live - t0) * 1e3
    if "d" in works:
        _, stored = workload(py, source, name, "d", n, base)
        r["d_bytes_per_history_byte"] = stored / final_history
    if "e" in works:
        got, _ = workload(py, source, name, "e", n, base)
        r["e_save_MBps"] = 100 * 1.048576 / next(x["save_s"] for x in got if "save_s" in x)
        r["e_load_MBps"] = 100 * 1.048576 / next(x["load_s"] for x in got if "load_s" in x)
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument(
        "--with-kitaru-021",
        action="store_true",
        help="also install and run kitaru 0.21 (ZenML; large)",
    )
    ap.add_argument("--skip-big", action="store_true", help="skip workload (e), 100 MB")
    args = ap.parse_args()
    peer_py = peers_python(args.with_kitaru_021)
    base = REPO / "target" / "bench-tmp"
    base.mkdir(parents=True, exist_ok=True)
    works = ("a", "b", "d") if args.skip_big else ("a", "b", "d", "e")
    plan = [
        ("kitaru", sys.executable, KITARU, args.n, works),
        ("dbos", peer_py, DBOS, args.n, works),
        ("langgraph", peer_py, LANGGRAPH, args.n, works),
    ]
    if args.with_kitaru_021:
        # ~0.25 s per checkpoint: (a) with 30 steps, (c) and (d); same flow code as kitaru's.
        plan.append(("kitaru021", peer_py, KITARU, 30, ("a", "d")))
    results: dict[str, dict[str, float]] = {}
    for name, py, source, n, w in plan:
        results[name] = measure(name, py, source, n, base, w)
        print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
    names = list(results)
    keys = sorted({k for r in results.values() for k in r})
    print(f"{'metric':<28}" + "".join(f"{n:>14}" for n in names) + "   ratio peer/kitaru")
    for k in keys:
        row = f"{k:<28}" + "".join(f"{results[n].get(k, float('nan')):>14.3f}" for n in names)
        kit = results["kitaru"].get(k)
        ratios = ", ".join(
            f"{n} {results[n][k] / kit:.1f}x"
            for n in names
            if n != "kitaru" and kit and k in results[n]
        )
        print(row + "   " + ratios)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
