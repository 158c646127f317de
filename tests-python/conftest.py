from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own store and config directory."""
    store = tmp_path / "store"
    monkeypatch.setenv("KITARU_STORE", str(store))
    monkeypatch.setenv("KITARU_CONFIG_PATH", str(tmp_path / "config"))
    for var in (
        "KITARU_ALLOW_PICKLE",
        "KITARU_LEASE_TTL",
        "KITARU_FSYNC",
        *LLM_ENV,
    ):
        monkeypatch.delenv(var, raising=False)
    return store


# Provider settings of the developer's shell must not leak into tests.
LLM_ENV = (
    "KITARU_LLM_MOCK_RESPONSE",
    "KITARU_DEFAULT_MODEL",
    "KITARU_MODEL_REGISTRY",
    "KITARU_LLM_TIMEOUT",
    "KITARU_LLM_MAX_RETRIES",
    "KITARU_LLM_MAX_RETRY_WAIT",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OLLAMA_HOST",
    "OPENROUTER_API_KEY",
    "OPENROUTER_BASE_URL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


@pytest.fixture
def fake_llm() -> Any:
    """A local OpenAI + Anthropic compatible server (tests-python/fake_llm.py)."""
    from fake_llm import FakeLLM

    server = FakeLLM()
    try:
        yield server
    finally:
        server.close()


def write_script(directory: Path, name: str, source: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "kitaru.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"kitaru {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def race_cli(n: int, *args: str, cwd: Path, env: dict[str, str]) -> list[tuple[int, str, str]]:
    """Start `n` `kitaru` commands at once; (exit code, stdout, stderr) of each."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "kitaru.cli", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    return [(p.wait(timeout=120), *p.communicate()) for p in procs]


def cli_json(*args: str, **kw: Any) -> dict[str, Any]:
    proc = run_cli(*args, "-o", "json", check=True, **kw)
    return json.loads(proc.stdout)


def wait_for_line(path: Path, needle: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text().splitlines():
            return
        time.sleep(0.01)
    raise AssertionError(
        f"{needle!r} never appeared in {path}: {path.read_text() if path.exists() else ''}"
    )


def ledger(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
