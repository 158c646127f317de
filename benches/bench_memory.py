"""`kitaru.memory` benchmarks (issue #13). Run with `make bench-memory`; results: README.md.

    python benches/bench_memory.py [--ops 300] [--keys 1000]

On a local store and on SeaweedFS (started on 127.0.0.1): the latency of `memory.set` and
of `memory.get` of the latest version outside a flow (direct), the same inside a flow (a
journaled operation: the store access plus the call's record), `memory.list` of a scope of
`--keys` keys, and the requests each operation sends.
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

from kitaru import _config, flow, memory
from s3server import seaweedfs

TIMES: dict[str, list[float]] = {"set": [], "get": []}


@flow
def in_flow(n: int) -> None:
    memory.configure(scope="bench-flow")
    for i in range(n):
        t0 = time.perf_counter()
        memory.set("counter", i)
        t1 = time.perf_counter()
        memory.get("counter")
        t2 = time.perf_counter()
        TIMES["set"].append(t1 - t0)
        TIMES["get"].append(t2 - t1)


def _ms(xs: list[float]) -> dict[str, float]:
    xs = sorted(x * 1000 for x in xs)
    return {
        "median_ms": round(statistics.median(xs), 3),
        "p90_ms": round(xs[int(len(xs) * 0.9)], 3),
    }


def _timed(fn: Any, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return out


def run_all(ops: int, keys: int) -> dict[str, Any]:
    store = _config.get_store()
    memory.configure(scope=f"bench-{uuid.uuid4().hex[:6]}")
    results: dict[str, Any] = {}
    store.reset_request_counts()
    sets = _timed(lambda i: memory.set("counter", i), ops)
    results["set_direct"] = {**_ms(sets), "requests": _per(store.request_counts(), ops)}
    store.reset_request_counts()
    gets = _timed(lambda i: memory.get("counter"), ops)
    results["get_latest_direct"] = {**_ms(gets), "requests": _per(store.request_counts(), ops)}
    for k in TIMES.values():
        k.clear()
    in_flow.run(ops).wait()
    results["set_in_flow"] = _ms(TIMES["set"])
    results["get_in_flow"] = _ms(TIMES["get"])
    memory.configure(scope=f"bench-list-{uuid.uuid4().hex[:6]}")
    for i in range(keys):
        memory.set(f"notes/{i:05}", {"i": i})
    store.reset_request_counts()
    t0 = time.perf_counter()
    listed = memory.list()
    elapsed = time.perf_counter() - t0
    assert len(listed) == keys
    results["list"] = {
        "keys": keys,
        "ms": round(elapsed * 1000, 1),
        "requests": store.request_counts(),
    }
    return results


def _per(counts: dict[str, int], n: int) -> dict[str, float]:
    return {k: round(v / n, 2) for k, v in counts.items() if v}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ops", type=int, default=300)
    p.add_argument("--keys", type=int, default=1000)
    args = p.parse_args()
    os.environ["KITARU_LEASE_TTL"] = "3600"  # no heartbeat inside the measurements
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kitaru-bench-memory-") as tmp:
        root = Path(tmp)
        os.environ["KITARU_STORE"] = str(root / "local-store")
        results["local"] = run_all(args.ops, args.keys)
        (root / "weed").mkdir()
        with seaweedfs(root / "weed") as server:
            os.environ.update(server.env(f"bench/{uuid.uuid4().hex[:8]}"))
            results["s3_seaweedfs"] = run_all(args.ops, args.keys)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
