"""Object-store benchmarks (issue #5). Run with `make bench-s3`; results: README.md here.

    python benches/bench_s3.py [--checkpoints 300] [--repeat 3] [--turns 100]

Starts SeaweedFS on 127.0.0.1 (tests-python/s3server.py) and compares it with the local
disk:

1. per-checkpoint latency of a flow of N checkpoints returning 100-byte strings (median
   over every call of `--repeat` flows), and requests per checkpoint by kind;
2. a 100-turn growing conversation (every turn returns the whole history, ~1 KB more per
   turn): bytes stored under the store's prefix per byte of the final history (goal <= 2x);
3. resume: requests and time to claim a failed execution of N finished checkpoints (its
   journal packed when the run ended), and of one whose runner died (no pack).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests-python"))

import kitaru
from kitaru import _config, checkpoint, flow
from s3server import seaweedfs

PAYLOAD = "x" * 100
TIMES: list[float] = []


@checkpoint
def step(i: int) -> str:
    return PAYLOAD


@flow
def many(n: int, salt: int = 0) -> dict[str, int]:
    store = _config.get_store()
    store.reset_request_counts()
    for i in range(n):
        t0 = time.perf_counter()
        step(salt * n + i)  # inputs no earlier run had: cache misses
        TIMES.append(time.perf_counter() - t0)
    return store.request_counts()


def history(turn: int) -> list[dict[str, str]]:
    return [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"message {i} " + "lorem ipsum " * 80,
        }
        for i in range(turn + 1)
    ]


@checkpoint
def turn(i: int) -> list[dict[str, str]]:
    return history(i)


@flow
def chat(turns: int) -> int:
    for i in range(turns):
        turn(i)
    return turns


DOC = os.urandom(600_000).hex()  # 1.2 MB of text


@checkpoint
def document(version: int) -> str:
    return DOC + "".join(f"edit {version}.{i} " + "x" * 1000 for i in range(version * 20))


@flow
def edit(version: int) -> int:
    document(version)
    return version


@flow
def fails_after(n: int) -> None:
    for i in range(n):
        step(i)
    raise RuntimeError("stop")


_SALT = [0]


def per_checkpoint(n: int, repeat: int, cache: bool = True) -> dict[str, Any]:
    """Live calls (cache misses when `cache`: one lookup and one entry each)."""
    TIMES.clear()
    counts: list[dict[str, int]] = []
    for _ in range(repeat):
        _SALT[0] += 1
        counts.append(many.run(n, _SALT[0], cache=cache).wait())
    ms = sorted(t * 1000 for t in TIMES)
    per = {k: sum(c[k] for c in counts) / (n * repeat) for k in counts[0]}
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p90_ms": round(ms[int(len(ms) * 0.9)], 3),
        "requests_per_checkpoint": per,
    }


def conversation(turns: int) -> dict[str, Any]:
    store = _config.get_store()
    before = store.usage("")
    chat.run(turns).wait()
    after = store.usage("")
    final = len(json.dumps(history(turns - 1)).encode())
    stored = after[1] - before[1]
    return {
        "turns": turns,
        "final_history_bytes": final,
        "stored_bytes": stored,
        "objects": after[0] - before[0],
        "ratio": round(stored / final, 2),
    }


def large_documents(versions: int) -> dict[str, Any]:
    """A 1.2 MB document saved by `versions` separate executions, growing ~20 KB each time:
    no delta applies across executions, content-defined chunking dedups the shared part."""
    store = _config.get_store()
    before = store.usage("")
    for v in range(versions):
        edit.run(v).wait()
    after = store.usage("")
    last = versions - 1
    final = len(DOC) + sum(len(f"edit {last}.{i} ") + 1000 for i in range(last * 20))
    stored = after[1] - before[1]
    return {
        "versions": versions,
        "final_bytes": final,
        "stored_bytes": stored,
        "ratio_to_final": round(stored / final, 2),
    }


def resume(n: int) -> dict[str, Any]:
    handle = fails_after.run(n)
    try:
        handle.wait()
    except kitaru.KitaruExecutionError:
        pass
    store = _config.get_store()
    store.reset_request_counts()
    t0 = time.perf_counter()
    runner = store.claim(handle.exec_id, "retry", 60_000)
    elapsed = time.perf_counter() - t0
    counts = store.request_counts()
    runner.release()
    return {"checkpoints": n, "claim_ms": round(elapsed * 1000, 1), "requests": counts}


_DIES_AFTER = """
import os, sys
from kitaru import checkpoint, flow

@checkpoint
def step(i: int) -> dict:
    return {"i": i, "text": "x" * 100}

@flow
def dies_after(n: int) -> None:
    for i in range(n):
        step(i)
    os._exit(3)  # the runner dies: no end event, so no pack

dies_after.run(int(sys.argv[1]))
"""


def resume_after_crash(n: int) -> dict[str, Any]:
    """The claim of an execution whose runner died after `n` checkpoints: its records are
    read one by one (a pack is written when a run ends, which a dead runner never does)."""
    import subprocess

    proc = subprocess.run([sys.executable, "-c", _DIES_AFTER, str(n)], env=os.environ)
    assert proc.returncode == 3, proc.returncode
    exec_id = kitaru.KitaruClient().executions.list(limit=1)[0].exec_id
    store = _config.get_store()
    store.reset_request_counts()
    t0 = time.perf_counter()
    runner = store.claim(exec_id, "retry", 60_000)
    elapsed = time.perf_counter() - t0
    counts = store.request_counts()
    runner.release()
    return {"checkpoints": n, "claim_ms": round(elapsed * 1000, 1), "requests": counts}


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    if args.only == "resume":
        return {"resume": resume(args.checkpoints),
                "resume_after_crash": resume_after_crash(args.checkpoints)}  # fmt: skip
    return {
        "per_checkpoint": per_checkpoint(args.checkpoints, args.repeat),
        "per_checkpoint_cache_off": per_checkpoint(args.checkpoints, args.repeat, cache=False),
        "conversation": conversation(args.turns),
        "large_documents": large_documents(10),
        "resume": resume(args.checkpoints),
        "resume_after_crash": resume_after_crash(args.checkpoints),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoints", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--only", choices=["resume"], help="run only this part")
    args = parser.parse_args()
    os.environ["KITARU_LEASE_TTL"] = "3600"  # no heartbeat inside the measurements
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kitaru-bench-s3-") as tmp:
        root = Path(tmp)
        os.environ["KITARU_STORE"] = str(root / "local-store")
        results["local"] = run_all(args)
        (root / "weed").mkdir()
        with seaweedfs(root / "weed") as server:
            os.environ.update(server.env(f"bench/{uuid.uuid4().hex[:8]}"))
            results["s3_seaweedfs"] = run_all(args)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
