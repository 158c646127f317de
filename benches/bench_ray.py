"""Fan-out on Ray vs threads (issue #17). Run with `make bench-ray`; results: README.md.

    python benches/bench_ray.py [--items 1000] [--rounds 3] [--store local|s3]

A flow maps a small checkpoint (returns ``i * i``) over `--items` items, once with the
default runner (the calling process: 16 threads run the bodies) and once with
``runner="ray"`` on a Ray head this script starts (2 CPUs, as on the bench machine):
the flow's driver is a Ray task and each call is a Ray task. Timed from ``.run()`` to
the handle's result, after one warm-up run of each (Ray's worker processes started);
the cross-execution cache is off, so every call runs. Stores: a local directory, or
(``--store s3``) a prefix of a SeaweedFS bucket this script starts.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests-python"))

FLOWS = """
from kitaru import checkpoint, flow


@checkpoint
def square(i: int) -> int:
    return i * i


def fan(n: int) -> int:
    return sum(f.result() for f in square.map(range(n)))


@flow(runner="local")
def fan_local(n: int) -> int:
    return fan(n)


@flow(runner="ray")
def fan_ray(n: int) -> int:
    return fan(n)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--store", choices=("local", "s3"), default="local")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kitaru-bench-ray-"))
    (work / "fanflows.py").write_text(FLOWS)
    sys.path.insert(0, str(work))
    os.chdir(work)  # the flow's module is found from the directory it was started in
    os.environ["KITARU_CONFIG_PATH"] = str(work / "config")
    os.environ["KITARU_CACHE"] = "0"
    server_cm = None
    if args.store == "s3":
        from s3server import seaweedfs

        (work / "seaweedfs").mkdir()
        server_cm = seaweedfs(work / "seaweedfs")
        server = server_cm.__enter__()
        os.environ.update(server.env("bench-ray"))
    else:
        os.environ["KITARU_STORE"] = str(work / "store")

    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip
    os.environ.update(auth)
    port = _free_port()
    subprocess.run([ray_bin, "start", "--head", "--num-cpus", "2", "--port", str(port),
                    "--node-ip-address", "127.0.0.1",
                    "--include-dashboard", "false", "--disable-usage-stats",
                    "--temp-dir", str(work / "ray")], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL,
                   env=os.environ.copy())  # fmt: skip
    os.environ["RAY_ADDRESS"] = f"127.0.0.1:{port}"
    try:
        import fanflows

        n = args.items
        expected = sum(i * i for i in range(n))
        results: dict[str, list[float]] = {"local": [], "ray": []}
        for name, fl in (("local", fanflows.fan_local), ("ray", fanflows.fan_ray)):
            assert fl.run(n).wait(timeout=600) == expected  # warm-up
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                handle = fl.run(n)
                assert handle.wait(timeout=600) == expected
                results[name].append(time.perf_counter() - t0)
        print(f"fan-out of {n} checkpoints (i*i) on the {args.store} store, median of "
              f"{args.rounds} after a warm-up; Ray: a local head with 2 CPUs")  # fmt: skip
        for name in ("local", "ray"):
            med = statistics.median(results[name])
            print(f"  {name:6s} {med * 1000:8.0f} ms   {med / n * 1e6:7.0f} us per call   "
                  f"{n / med:7.0f} calls/s")  # fmt: skip
    except BaseException:
        import traceback

        traceback.print_exc()  # before Ray's own threads see the head go away
        raise
    finally:
        import ray

        ray.shutdown()
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True)
        if server_cm is not None:
            server_cm.__exit__(None, None, None)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
