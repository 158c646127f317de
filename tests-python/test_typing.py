"""The public surface as a type checker sees it: mypy runs on a user-style file and the
types it reveals (and the calls it rejects) are checked line by line."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

# Each `reveal_type` line says what mypy must reveal (`# is: ...`, module paths left out);
# each line marked `# error` must be rejected, and no other line may be.
USER_CODE = """
import asyncio

from kitaru import FlowHandle, checkpoint, flow


@checkpoint
def double(x: int) -> int:
    return 2 * x


@checkpoint(retries=2, type="tool_call", runtime="inline")
async def fetch(url: str) -> bytes:
    return url.encode()


class Agent:
    @checkpoint
    def think(self, question: str) -> str:
        return question


@flow
def pipeline(n: int) -> str:
    reveal_type(double(n))  # is: int
    reveal_type(double(n, id="first"))  # is: int
    reveal_type(double.submit(n))  # is: Future[int]
    reveal_type(fetch.submit("a"))  # is: Future[bytes]
    reveal_type(double.map([1, 2]))  # is: list[Future[int]]
    reveal_type(double.product([1, 2]))  # is: list[Future[int]]
    reveal_type(double.submit(n, after=double.submit(n)))  # is: Future[int]
    reveal_type(fetch.map(["a", "b"]))  # is: list[Future[bytes]]
    reveal_type(Agent().think("why"))  # is: str
    double("n")  # error
    double.submit("n")  # error
    Agent().think(1)  # error
    return str(n)


@flow(retries=1)
async def agent(question: str) -> list[str]:
    body = await reveal_type(fetch(question))  # is: Coroutine[Any, Any, bytes]
    reveal_type(body)  # is: bytes
    return [question]


reveal_type(pipeline)  # is: FlowDefinition[[n: int], str]
reveal_type(agent)  # is: FlowDefinition[[question: str], list[str]]
reveal_type(pipeline.run(3))  # is: FlowHandle[str]
reveal_type(pipeline.run(3, stack="prod", retries=2))  # is: FlowHandle[str]
reveal_type(pipeline.run(3).wait())  # is: str
reveal_type(agent.run("q"))  # is: FlowHandle[list[str]]
reveal_type(agent.run("q").wait())  # is: list[str]
reveal_type(asyncio.run(agent.arun("q")))  # is: FlowHandle[list[str]]
handle: FlowHandle[int] = pipeline.run(3)  # error
pipeline.run("not an int")  # error
pipeline.run(n=3, extra=1)  # error
pipeline.run(3, retries="2")  # error
agent.run(42)  # error
"""


def _short(type_text: str) -> str:
    """`concurrent.futures._base.Future[builtins.int]` -> `Future[int]`; a TypedDict shown
    with its fields (`TypedDict(kitaru._views.WaitView, {...})`) -> `WaitView`."""
    while (start := type_text.find("TypedDict(")) >= 0:
        name_end = type_text.index(",", start)
        depth, at = 0, type_text.index("{", name_end)
        while True:
            depth += {"{": 1, "}": -1}.get(type_text[at], 0)
            at += 1
            if depth == 0:
                break
        name = type_text[start + len("TypedDict(") : name_end]
        type_text = type_text[:start] + name + type_text[at + 1 :]  # past the closing ")"
    return re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", type_text)


# The boundary to the Rust core, as kitaru's own modules see it (`_kitaru.pyi`): views are
# TypedDicts, every I/O method blocks or (awaitable=True) returns an awaitable.
CORE_CODE = """
from kitaru._kitaru import Store

store = Store("memory://typing")
view = store.inspect("id")
reveal_type(view)  # is: ExecutionView
reveal_type(view["checkpoints"][0]["attempts"][0]["failure"])  # is: FailureView | None
reveal_type(store.inspect("id", awaitable=True))  # is: Awaitable[ExecutionView]
reveal_type(store.list(limit=1))  # is: list[ExecutionView]
reveal_type(store.verify()["findings"])  # is: list[Finding]
reveal_type(store.pending_wait("id"))  # is: WaitView
reveal_type(store.start_record("id")[0])  # is: EntryPointView
runner = store.claim("id", "retry", 1000)
reveal_type(runner)  # is: Runner
decision = runner.begin_call("c", "c", None, ordered=True, explicit=False, policy="rerun")
reveal_type(decision)  # is: CallDecision
reveal_type(runner.settle_call(decision, awaitable=True))  # is: Awaitable[CallDecision]
reveal_type(runner.poll_answer("w"))  # is: tuple[bool, str | None] | None
view["no_such_key"]  # error
store.claim("id", "restart", 1000)  # error
store.start("flow", 1000)  # error
"""


def test_mypy_sees_the_types_of_flows_and_checkpoints(tmp_path: Path) -> None:
    _check(tmp_path, USER_CODE)


def test_mypy_sees_the_core_boundary(tmp_path: Path) -> None:
    _check(tmp_path, CORE_CODE)


def _check(tmp_path: Path, code: str) -> None:
    """Runs mypy (strict) on `code` and compares what it reveals and rejects, line by line."""
    source = textwrap.dedent(code).lstrip()
    (tmp_path / "user_agent.py").write_text(source)
    (tmp_path / "mypy.ini").write_text("[mypy]\nstrict = True\n")
    out = subprocess.run(
        [
            sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--no-incremental",
            "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", "--hide-error-context",
            "--no-pretty", "user_agent.py",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode in (0, 1), out.stderr + out.stdout

    expected: dict[int, str] = {}
    expected_errors: set[int] = set()
    for number, line in enumerate(source.splitlines(), start=1):
        if "# is: " in line:
            expected[number] = line.split("# is: ")[1]
        elif line.endswith("# error"):
            expected_errors.add(number)

    revealed: dict[int, str] = {}
    errors: dict[int, list[str]] = {}
    for line in out.stdout.splitlines():
        found = re.match(r"user_agent\.py:(\d+): (\w+): (.*)", line)
        if found is None:
            continue
        number, kind, text = int(found[1]), found[2], found[3]
        shown = re.fullmatch(r'Revealed type is "(.*)"', text)
        if kind == "note" and shown:
            revealed[number] = _short(shown[1])
        elif kind == "error":
            errors.setdefault(number, []).append(text)

    assert revealed == expected, out.stdout
    assert set(errors) == expected_errors, out.stdout
