"""Benchmarks of the durable core (issue #2). Run with `make bench`; results: README.md here.

    python benches/bench_core.py [--checkpoints 1000] [--repeat 5]

1. per-checkpoint overhead: a flow of N checkpoints returning 100-byte strings, on a local
   store, fsync off and on, on memory://, and an async flow awaiting async checkpoints;
   median over all calls of N flows;
2. import time: `python -X importtime -c "import kitaru"`, median of runs;
3. resume: a failed execution with N finished checkpoints is retried in a fresh process;
   time from the retry call to the first line of the first live checkpoint body.
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

FLOW = textwrap.dedent(
    """
    import os, sys, time, json
    from kitaru import checkpoint, flow

    PAYLOAD = "x" * 100
    TIMES = []

    @checkpoint
    def step(i: int) -> str:
        return PAYLOAD

    @checkpoint
    def live(n: int) -> int:
        mark = os.environ.get("LIVE_MARK")
        if mark:
            with open(mark, "w") as f:
                f.write(repr(time.perf_counter()))
        if os.environ.get("FAIL_LIVE"):
            raise RuntimeError("crash at the live step")
        return n

    @checkpoint
    async def astep(i: int) -> str:
        return PAYLOAD

    @flow
    async def amany(n: int) -> int:
        for i in range(n):
            t0 = time.perf_counter()
            await astep(i)
            TIMES.append(time.perf_counter() - t0)
        return n

    @flow
    def same(n: int) -> int:
        # every call with equal inputs (a poll in a loop): cost per call must not grow
        for i in range(n):
            t0 = time.perf_counter()
            step(0)
            TIMES.append(time.perf_counter() - t0)
        return n

    @flow
    def many(n: int) -> int:
        for i in range(n):
            t0 = time.perf_counter()
            step(i)
            TIMES.append(time.perf_counter() - t0)
        return live(n)

    if __name__ == "__main__":
        mode = sys.argv[1]
        if mode in ("run", "run-async", "run-same"):
            h = {"run": many, "run-async": amany, "run-same": same}[mode].run(int(sys.argv[2]))
            print(json.dumps({"exec_id": h.exec_id, "times": TIMES, "status": str(h.status)}))
        elif mode == "get":
            import kitaru
            client = kitaru.KitaruClient()
            samples = []
            for _ in range(int(sys.argv[3])):
                t0 = time.perf_counter()
                ex = client.executions.get(sys.argv[2])
                samples.append(time.perf_counter() - t0)
            print(json.dumps({"samples": samples, "checkpoints": len(ex.checkpoints)}))
        elif mode == "retry":
            import kitaru
            client = kitaru.KitaruClient()
            t0 = time.perf_counter()
            client.executions.retry(sys.argv[2])
            print(json.dumps({"t0": t0}))
    """
)


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> str:
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return subprocess.run(cmd, env=env, cwd=cwd, check=True, capture_output=True, text=True).stdout


def per_checkpoint(
    tmp: Path,
    n: int,
    repeat: int,
    fsync: bool,
    store: str | None = None,
    mode: str = "run",
    cache: bool = True,
    warm: bool = False,
) -> dict[str, float]:
    """Median time of one checkpoint call (100-byte output) in flows of `n` checkpoints.
    On a directory store each flow is paired with a measurement of the bare write floor
    right before it, since the disk's speed drifts by 10x within minutes on these VMs.
    `cache`: the cross-execution cache on (the default: every call a miss, in a fresh
    store) or off; `warm`: the flow ran once before in the same store, so every call is
    answered by the cache."""
    times: list[float] = []
    floors: list[float] = []
    ratios: list[float] = []
    for r in range(repeat):
        location = store or str(tmp / f"store-cp-{fsync}-{cache}-{warm}-{r}")
        env = {
            **os.environ,
            "KITARU_STORE": location,
            "KITARU_FSYNC": "1" if fsync else "0",
            "KITARU_CACHE": "1" if cache else "0",
        }
        if warm:
            run([sys.executable, "flow.py", mode, str(n)], env, tmp)
        floor = None if store else write_floor(tmp, n)["median_ms"]
        out = json.loads(run([sys.executable, "flow.py", mode, str(n)], env, tmp))
        median = statistics.median(out["times"]) * 1e3
        times.extend(out["times"])
        if floor is not None:
            floors.append(floor)
            ratios.append(median / floor)
    times.sort()
    result = {
        "median_ms": statistics.median(times) * 1e3,
        "p90_ms": times[int(len(times) * 0.9)] * 1e3,
        "calls": len(times),
    }
    if floors:
        result["write_floor_median_ms"] = statistics.median(floors)
        result["ratio_to_floor_median"] = statistics.median(ratios)
    return result


# Measure as users run: with bytecode caching on (some sandboxes set PYTHONDONTWRITEBYTECODE,
# which recompiles every module at every start).
CACHED = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def import_time(repeat: int) -> dict[str, float]:
    samples = []
    for i in range(repeat + 1):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import kitaru"],
            capture_output=True,
            text=True,
            check=True,
            env=CACHED,
        ).stderr
        if i == 0:
            continue  # warm-up: writes the bytecode cache
        last = [line for line in err.splitlines() if line.rstrip().endswith("| kitaru")][-1]
        samples.append(int(last.split("|")[1]) / 1000)
    return {"median_ms": statistics.median(samples), "min_ms": min(samples), "max_ms": max(samples)}


def resume(tmp: Path, n: int, repeat: int) -> dict[str, float]:
    samples = []
    for r in range(repeat):
        env = {**os.environ, "KITARU_STORE": str(tmp / f"store-resume-{r}"), "FAIL_LIVE": "1"}
        exec_id = json.loads(run([sys.executable, "flow.py", "run", str(n)], env, tmp))["exec_id"]
        mark = tmp / f"mark-{r}"
        env.pop("FAIL_LIVE")
        env["LIVE_MARK"] = str(mark)
        t0 = json.loads(run([sys.executable, "flow.py", "retry", exec_id], env, tmp))["t0"]
        samples.append(float(mark.read_text()) - t0)
    return {"median_ms": statistics.median(samples) * 1e3, "min_ms": min(samples) * 1e3}


def get_execution(tmp: Path, n: int, repeat: int) -> dict[str, float]:
    """`KitaruClient().executions.get` of a finished execution of `n` checkpoints, in a new
    process (the first call reads the store; later ones too: nothing is cached)."""
    env = {**os.environ, "KITARU_STORE": str(tmp / "store-get")}
    exec_id = json.loads(run([sys.executable, "flow.py", "run", str(n)], env, tmp))["exec_id"]
    out = json.loads(run([sys.executable, "flow.py", "get", exec_id, str(repeat)], env, tmp))
    samples = sorted(out["samples"])
    return {
        "checkpoints": out["checkpoints"],
        "first_ms": out["samples"][0] * 1e3,
        "median_ms": statistics.median(samples) * 1e3,
    }


def write_floor(tmp: Path, n: int) -> dict[str, float]:
    """The bare cost of what one checkpoint must do on disk: write a 200-byte file and
    publish it create-only (hard link + unlink), from Python, in the same directory."""
    d = Path(tempfile.mkdtemp(dir=tmp, prefix="floor"))
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        staged = d / f"{i}#1"
        with open(staged, "wb") as f:
            f.write(b"x" * 200)
        os.link(staged, d / str(i))
        os.unlink(staged)
        times.append(time.perf_counter() - t0)
    return {"median_ms": statistics.median(times) * 1e3}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoints", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument(
        "--dir",
        default=str(Path(__file__).resolve().parent.parent / "target" / "bench-tmp"),
        help="where the stores live (default: target/bench-tmp, on the disk the default store uses)",
    )
    args = p.parse_args()
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        tmp = Path(d)
        (tmp / "flow.py").write_text(FLOW)
        results = {
            "checkpoint_overhead": per_checkpoint(tmp, args.checkpoints, args.repeat, fsync=False),
            "checkpoint_overhead_cache_off": per_checkpoint(
                tmp, args.checkpoints, args.repeat, fsync=False, cache=False
            ),
            "checkpoint_answered_by_cache": per_checkpoint(
                tmp, args.checkpoints, args.repeat, fsync=False, warm=True
            ),
            "checkpoint_overhead_fsync": per_checkpoint(
                tmp, args.checkpoints, args.repeat, fsync=True
            ),
            "checkpoint_overhead_memory_store": per_checkpoint(
                tmp, args.checkpoints, args.repeat, fsync=False, store="memory://bench"
            ),
            "checkpoint_overhead_async_flow": per_checkpoint(
                tmp, args.checkpoints, args.repeat, fsync=False, mode="run-async"
            ),
            "checkpoint_overhead_equal_inputs_memory_store": per_checkpoint(
                tmp, args.checkpoints * 10, args.repeat, fsync=False, store="memory://bench",
                mode="run-same",
            ),
            "import": import_time(max(args.repeat * 3, 15)),
            "resume_to_first_live_step": resume(tmp, args.checkpoints, args.repeat),
            "executions_get_5000_checkpoints": get_execution(tmp, 5000, args.repeat),
        }
    results["checkpoints"] = args.checkpoints
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
