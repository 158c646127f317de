"""kitaru quickstart: a research agent is killed mid-run, then resumed.

    python examples/quickstart.py

The script starts the agent in a child process, kills it with SIGKILL once two of its
four checkpoints have finished (as a pod eviction would), then resumes the execution
with `kitaru executions retry <id>` in a new process. The finished checkpoints return
their stored output at once; only the unfinished ones run again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from kitaru import checkpoint, flow


def say(message: str) -> None:
    print(f"    [pid {os.getpid()}] {message}", flush=True)


@checkpoint(type="llm_call")
def plan(topic: str) -> list[str]:
    say(f"planning research on {topic!r} ...")
    time.sleep(0.5)  # stands in for an LLM call
    return [f"{topic}: history", f"{topic}: failure modes"]


@checkpoint(type="tool_call")
def research(question: str) -> str:
    say(f"researching {question!r} ...")
    time.sleep(0.5)
    return f"findings about {question}"


@checkpoint(type="llm_call")
def write(topic: str, notes: list[str]) -> str:
    say("writing the report ...")
    time.sleep(0.5)
    return f"Report on {topic}\n" + "\n".join(f"- {n}" for n in notes)


@flow
def research_agent(topic: str) -> str:
    questions = plan(topic)
    notes = [research(q) for q in questions]
    return write(topic, notes)


def child() -> None:
    handle = research_agent.run("durable agents")
    print(json.dumps({"finished": handle.exec_id}), flush=True)


def main() -> int:
    print("1. Start the agent in a child process and kill it (SIGKILL) after two checkpoints:")
    proc = subprocess.Popen(
        [sys.executable, "-u", __file__, "--child"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    done = 0
    for line in proc.stdout:
        print(line, end="")
        if "researching" in line:
            done += 1  # `plan` finished; then the first research finished when the second starts
            if done == 2:
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait()
    print(f"    child exit code {proc.returncode} (killed)\n")

    kitaru = [sys.executable, "-m", "kitaru.cli"]
    listing = json.loads(
        subprocess.run(
            [
                *kitaru,
                "executions",
                "list",
                "--flow",
                "research_agent",
                "--limit",
                "1",
                "-o",
                "json",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    exec_id = listing["items"][0]["exec_id"]
    print(f"2. The execution {exec_id} shows the runner died:")
    status = listing["items"][0]["status"]
    reason = (listing["items"][0].get("failure") or {}).get("message", "")
    print(f"    status: {status}: {reason}\n")

    print(f"3. Resume it in a new process: kitaru executions retry {exec_id}")
    retried = subprocess.run(
        [*kitaru, "executions", "retry", exec_id], capture_output=True, text=True
    )
    print("\n".join(f"    {line}" for line in (retried.stdout + retried.stderr).splitlines()))
    if retried.returncode != 0:
        return 1
    item = json.loads(
        subprocess.run(
            [*kitaru, "executions", "get", exec_id, "-o", "json"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )["item"]

    print("\n4. Which run produced each checkpoint:")
    for call in item["checkpoints"]:
        run = call["attempts"][-1]["run"]
        how = "reused from the killed run" if run == 1 else "ran live in the retry"
        print(f"    {call['name']:<12} {how}")
    code = f"import kitaru; print(kitaru.KitaruClient().executions.result({exec_id!r}))"
    result = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    print(f"\n5. status: {item['status']}; result:")
    print("\n".join(f"    {line}" for line in result.splitlines()))
    return 0 if item["status"] == "completed" else 1


if __name__ == "__main__":
    if "--child" in sys.argv:
        child()
    else:
        sys.exit(main())
