"""A local Azure Blob Storage server for tests: Azurite (npm package `azurite`, installed by
`make dev-deps` into .venv/azurite) on a free 127.0.0.1 port, in memory, with the
emulator's well-known account and key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

from s3server import stop_server

# The emulator's published development account (not a secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


class AzureServerError(RuntimeError):
    """Azurite could not be started (the message says why)."""


@dataclass
class AzureServer:
    url: str
    container: str

    def env(self, prefix: str) -> dict[str, str]:
        """The environment that points kitaru at `az://<container>/<prefix>` on Azurite."""
        return {
            "KITARU_STORE": f"az://{self.container}/{prefix}",
            "AZURE_STORAGE_USE_EMULATOR": "true",
            "AZURITE_BLOB_STORAGE_URL": self.url,
        }


def _azurite() -> str:
    local = Path(sys.executable).parent.parent / "azurite" / "node_modules" / ".bin"
    found = shutil.which("azurite-blob", path=str(local)) or shutil.which("azurite-blob")
    if not found:
        raise AzureServerError(
            "Azurite (`azurite-blob`) is not installed: the Azure tests need it. Run "
            "`make dev-deps` (it installs the azurite npm package into .venv/azurite; needs npm)."
        )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_container(port: int, name: str) -> int:
    """Creates a container with a SharedKey-signed request; returns the HTTP status."""
    headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
    to_sign = (
        "PUT\n" + "\n" * 11
        + "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
        + f"/{ACCOUNT}/{ACCOUNT}/{name}\nrestype:container"
    )  # fmt: skip
    key = base64.b64decode(ACCOUNT_KEY)
    signature = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest())
    headers["Authorization"] = f"SharedKey {ACCOUNT}:{signature.decode()}"
    headers["Content-Length"] = "0"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("PUT", f"/{ACCOUNT}/{name}?restype=container", headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # Azurite keeps serving open keep-alive connections after SIGTERM, and holds nothing
    # that must be saved (it runs in memory): a short grace.
    stop_server(proc, 3)


@contextmanager
def azurite(root: Path, container: str = "kitaru") -> Iterator[AzureServer]:
    exe = _azurite()
    log_path = root / "azurite.log"
    for _attempt in range(5):
        port = _free_port()
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [exe, "--blobHost", "127.0.0.1", "--blobPort", str(port),
                 "--inMemoryPersistence", "--skipApiVersionCheck", "--silent"],
                stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        status = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = create_container(port, container)
                break
            except OSError:
                time.sleep(0.2)
        if status in (201, 409):
            try:
                yield AzureServer(f"http://127.0.0.1:{port}", container)
            finally:
                _stop(proc)
            return
        _stop(proc)
    raise AzureServerError(
        f"Azurite did not start (5 attempts); its log is {log_path}:\n"
        + log_path.read_text(errors="replace")[-3000:]
    )
