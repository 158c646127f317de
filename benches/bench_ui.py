"""The dashboard on a big store (issue #16). Run with `make bench-ui`; results: README.md.

    python benches/bench_ui.py [--executions 10000] [--rounds 10]

Fills a local store with `--executions` executions of a two-checkpoint flow (a tenth of
them failed, some waiting), starts `kitaru ui` on it as a user would, and times with HTTP
requests over loopback: the first page of the list (50 rows), the same page filtered by
status and by flow, the list's live-refresh fragment, and one execution's page. Also the
bare `KitaruClient().executions.list(limit=51)` the first page makes, for the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

FLOWS = """
import sys
import kitaru
from kitaru import checkpoint, flow

@checkpoint
def fetch(i: int) -> dict:
    return {"i": i, "text": "x" * 200}

@checkpoint
def judge(page: dict) -> int:
    if page["i"] % 10 == 3:
        raise ValueError("bad page %d" % page["i"])
    return len(page["text"])

@flow
def crawl(i: int) -> int:
    return judge(fetch(i))

@flow
def ask(i: int) -> bool:
    fetch(i)
    return kitaru.wait(schema=bool, name="ok", question="Keep page %d?" % i)

if __name__ == "__main__":
    n = int(sys.argv[1])
    for i in range(n):
        try:
            (ask if i % 50 == 7 else crawl).run(i)
        except Exception:
            pass
"""


def _ms(xs: list[float]) -> dict[str, float]:
    xs = sorted(x * 1000 for x in xs)
    return {"median_ms": round(statistics.median(xs), 1), "max_ms": round(xs[-1], 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--executions", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kitaru-bench-ui-"))
    env = {**os.environ, "KITARU_STORE": str(root / "store"), "KITARU_WAIT_TIMEOUT": "0",
           "KITARU_CONFIG_PATH": str(root / "config"), "KITARU_CACHE": "0"}  # fmt: skip
    (root / "flows.py").write_text(FLOWS)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "flows.py", str(args.executions)], cwd=root, env=env,
                   check=True, capture_output=True)  # fmt: skip
    fill = time.perf_counter() - t0

    floor = subprocess.run(
        [sys.executable, "-c", "import time, kitaru\n"
         "c = kitaru.KitaruClient().executions\nc.list(limit=51)\nxs = []\n"
         "for _ in range(10):\n t = time.perf_counter(); c.list(limit=51); "
         "xs.append(time.perf_counter() - t)\nprint(sorted(xs)[5])"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip

    ui = subprocess.Popen([sys.executable, "-m", "kitaru.cli", "ui", "--port", "0", "--no-browser"],
                          cwd=root, env=env, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert ui.stdout is not None
    url = ui.stdout.readline().split("kitaru ui: ", 1)[1].strip()
    m = re.match(r"(http://[^/]+)/\?token=(\S+)", url)
    assert m
    base = m.group(1)
    results: dict[str, object] = {"executions": args.executions, "fill_s": round(fill, 1),
                                  "client_list_51_ms": round(float(floor.stdout) * 1000, 1)}  # fmt: skip
    try:
        with httpx.Client(base_url=base, timeout=120) as c:
            c.get(f"/?token={m.group(2)}")
            first = c.get("/?fragment=rows").text
            exec_id = re.search(r'data-exec="([^"]+)"', first).group(1)  # type: ignore[union-attr]
            pages = {
                "first_page": "/",
                "refresh_fragment": "/?fragment=rows",
                "filter_status_failed": "/?status=failed",
                "filter_flow_ask": "/?flow=ask",
                "execution_page": f"/executions/{exec_id}",
            }
            for name, path in pages.items():
                times = []
                for _ in range(args.rounds):
                    t = time.perf_counter()
                    r = c.get(path)
                    times.append(time.perf_counter() - t)
                    assert r.status_code == 200, (path, r.status_code)
                results[name] = _ms(times)
    finally:
        ui.terminate()
        ui.wait(timeout=20)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
