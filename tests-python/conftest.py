from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azserver import AzureServer, AzureServerError, azurite
from s3server import S3Server, S3ServerError, seaweedfs

REPO = Path(__file__).resolve().parent.parent

STORE_BACKENDS = ("local", "s3")
ALL_STORE_BACKENDS = ("local", "s3", "azure")

# Environment variables that could point a test's S3 client somewhere else.
_AWS_VARS = (
    "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_ENDPOINT",
    "AWS_ENDPOINT_URL_S3", "AWS_ALLOW_HTTP", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
    "AWS_CONDITIONAL_PUT", "AZURE_STORAGE_USE_EMULATOR", "AZURITE_BLOB_STORAGE_URL",
    "AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY",
)  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "both_stores: run the test against the local store and against S3 (SeaweedFS)",
    )
    config.addinivalue_line(
        "markers",
        "all_stores: run the test against the local store, S3 (SeaweedFS) and Azure (Azurite)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `both_stores` run once per store backend (`store_backend` = local, s3)."""
    if metafunc.definition.get_closest_marker("all_stores"):
        metafunc.parametrize("store_backend", ALL_STORE_BACKENDS, indirect=True)
    elif metafunc.definition.get_closest_marker("both_stores"):
        metafunc.parametrize("store_backend", STORE_BACKENDS, indirect=True)


@pytest.fixture(autouse=True)
def store_backend(request: pytest.FixtureRequest) -> str:
    """Which store the test runs against: "local" unless the test is marked `both_stores`."""
    return str(getattr(request, "param", "local"))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS on free 127.0.0.1 ports for the whole session, signed requests only.

    Fails (never skips) when the server cannot start: CI must prove S3 works.
    """
    try:
        with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
            yield server
    except S3ServerError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureServer]:
    """Azurite (Azure Blob Storage emulator) for the whole session; fails if it cannot start."""
    try:
        with azurite(tmp_path_factory.mktemp("azurite")) as server:
            yield server
    except AzureServerError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def s3_prefix(request: pytest.FixtureRequest) -> str:
    """A fresh key prefix inside the test bucket for one test."""
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]
    return f"t/{name}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def isolated_store(
    request: pytest.FixtureRequest,
    store_backend: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """Every test gets its own store and config directory: a local directory, or for a
    `store_backend` "s3" / "azure" test a fresh prefix in the SeaweedFS bucket / Azurite
    container (`KITARU_STORE` and `AWS_*` / `AZURE*` are set in the environment, so
    subprocesses use it too)."""
    store = tmp_path / "store"
    monkeypatch.setenv("KITARU_STORE", str(store))
    monkeypatch.setenv("KITARU_CONFIG_PATH", str(tmp_path / "config"))
    for var in (
        "KITARU_ALLOW_PICKLE",
        "KITARU_LEASE_TTL",
        "KITARU_FSYNC",
        "KITARU_STACK",
        "KITARU_CACHE",
        "KITARU_RETRIES",
        "KITARU_IMAGE",
        *LLM_ENV,
        *_AWS_VARS,
    ):
        monkeypatch.delenv(var, raising=False)
    if store_backend in ("s3", "azure"):
        server: S3Server | AzureServer = request.getfixturevalue(
            "s3_server" if store_backend == "s3" else "azure_server"
        )
        for name, value in server.env(request.getfixturevalue("s3_prefix")).items():
            monkeypatch.setenv(name, value)
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


def stored_files(root: Path) -> list[tuple[Path, bytes]]:
    """Every file under a store with its compression undone (`stored_plain`), so a search
    for a secret also looks inside compressed records, packs and blobs."""
    from kitaru._kitaru import stored_plain

    if not root.exists():
        return []
    return [(p, stored_plain(p.read_bytes())) for p in sorted(root.rglob("*")) if p.is_file()]


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


@pytest.fixture(autouse=True)
def _close_run_sync_loops() -> Iterator[None]:
    """PydanticAI's `run_sync` leaves an event loop set on the thread it ran in; when a later
    `asyncio.run` replaces it, the unclosed loop warns from the garbage collector in some
    other test. Close it at the end of the test that made it."""
    yield
    if "pydantic_ai" not in sys.modules:
        return
    import asyncio
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        loop = getattr(getattr(policy, "_local", None), "_loop", None)
    if loop is not None and not loop.is_running() and not loop.is_closed():
        loop.close()
        policy.set_event_loop(None)
