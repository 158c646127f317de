"""Run Kitaru 0.4's own published examples, unchanged, against this kitaru.

    python tests-python/run_kitaru04_examples.py PATH   # PATH: a Kitaru 0.4 checkout
    make examples-04 KITARU04=PATH

Each example runs as its README says (`python -m examples.<group>.<name>` from the
checkout's root) in a fresh store and config directory. What a person would do by hand is
done here: the LLM and memory examples get registered `fast` and `default` aliases and a
mocked answer (so the memory example's maintenance part, a compaction, runs); the waits of
`wait_and_resume` are answered from another process with `kitaru executions input`, as the
example prints. Exits 1 if any example fails, after running all of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLES = [
    "basic_flow.first_working_flow",
    "basic_flow.flow_with_artifacts",
    "basic_flow.flow_with_checkpoint_runtime",
    "basic_flow.flow_with_configuration",
    "basic_flow.flow_with_logging",
    "execution_management.client_execution_management",
    "execution_management.wait_and_resume",
    "replay.replay_with_overrides",
    "llm.flow_with_llm",
    "memory.flow_with_memory",
    "memory.flow_with_memory --skip-maintenance",
    "pydantic_ai_agent.pydantic_ai_adapter",
]

# What to answer each wait of wait_and_resume with, in order.
ANSWERS = [("approve_release", "true"),
           ("release_details", json.dumps({"notes": "Bug fixes", "major_version": 2}))]  # fmt: skip


def _kitaru(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kitaru.cli", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _answer_waits(proc: subprocess.Popen[str], env: dict[str, str]) -> None:
    """Answer the example's waits as they come (the runner keeps polling meanwhile)."""
    exec_id = None
    for name, value in ANSWERS:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            listed = json.loads(_kitaru(env, "executions", "list", "-o", "json").stdout)
            if listed["items"]:
                exec_id = listed["items"][0]["exec_id"]
                got = _kitaru(env, "executions", "input", exec_id, "--wait", name,
                              "--value", value)  # fmt: skip
                if got.returncode == 0:
                    break
            time.sleep(0.2)


def run_one(root: Path, module: str) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="kitaru04-") as tmp:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
            "KITARU_STORE": str(Path(tmp) / "store"),
            "KITARU_CONFIG_PATH": str(Path(tmp) / "config"),
        }
        if module.startswith(("llm.", "memory.")):
            env["KITARU_LLM_MOCK_RESPONSE"] = "A mocked paragraph."
            _kitaru(env, "model", "register", "fast", "--model", "openai/gpt-5-nano")
            # the memory example compacts with the alias "default" when it resolves
            _kitaru(env, "model", "register", "default", "--model", "openai/gpt-5-nano")
        name, *flags = module.split()
        proc = subprocess.Popen(
            [sys.executable, "-m", f"examples.{name}", *flags],
            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if module.endswith("wait_and_resume"):
            _answer_waits(proc, env)
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return False, f"timed out\n{out}\n{err}"
        return proc.returncode == 0, (out + err).strip()


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    root = Path(sys.argv[1]).resolve()
    if not (root / "examples" / "basic_flow").is_dir():
        print(f"{root} has no examples/basic_flow: give the root of a Kitaru 0.4 checkout.")
        return 2
    failed = 0
    for module in EXAMPLES:
        ok, output = run_one(root, module)
        last = output.splitlines()[-1] if output else ""
        print(f"{'ok  ' if ok else 'FAIL'} {module}: {last}")
        if not ok:
            failed += 1
            print("     " + output.replace("\n", "\n     "))
    print(f"{len(EXAMPLES) - failed} of {len(EXAMPLES)} examples ran.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
