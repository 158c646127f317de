"""The per-user config directory: where it is, and how its files are written and locked.

Stacks (`stacks.py`), model aliases and secrets (`_llm/`) keep their files here.
"""

from __future__ import annotations

import os
import sys


def config_dir() -> str:
    """`KITARU_CONFIG_PATH`, else the platform's per-user config directory for kitaru."""
    override = os.environ.get("KITARU_CONFIG_PATH", "").strip()
    if override:
        return os.path.abspath(os.path.expanduser(override))
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Application Support", "kitaru")
    if sys.platform == "win32":
        appdata = os.environ.get("APPDATA") or os.path.join(home, "AppData", "Roaming")
        return os.path.join(appdata, "kitaru")
    xdg = os.environ.get("XDG_CONFIG_HOME", "").strip()
    return os.path.join(xdg or os.path.join(home, ".config"), "kitaru")


def default_store_location() -> str:
    """The `default` stack's store: `<config dir>/store`."""
    return os.path.join(config_dir(), "store")


def write_private_file(path: str, text: str) -> None:
    """Write `text` to `path` atomically, readable by the owner only (0600 in a 0700 dir).

    A crash leaves the old file or the new one, never a mix: the text goes to a temporary
    file in the same directory, which is then renamed over `path`.
    """
    import tempfile

    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory
    )
    try:
        os.chmod(tmp, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class config_lock:
    """An exclusive advisory lock on `<config dir>/<name>.lock`, for read-change-write
    updates of a config file by several processes at once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.fd = -1

    def __enter__(self) -> None:
        directory = config_dir()
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.fd = os.open(
            os.path.join(directory, f"{self.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600
        )
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks
            return
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # closing releases the lock
