"""Where kitaru keeps things, and the process-wide settings read from the environment.

Resolution is cheap and lazy: nothing here touches the disk until a store is needed.
"""

from __future__ import annotations

import os
import sys

from .errors import KitaruUsageError

TYPE_CHECKING = False

if TYPE_CHECKING:
    from ._kitaru import Store

_TRUE = {"1", "true", "yes", "on", "t", "y"}
_FALSE = {"0", "false", "no", "off", "f", "n"}


def env_flag(name: str, default: bool) -> bool:
    """A boolean environment variable; an unrecognised value is a usage error."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise KitaruUsageError(
        f"{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no or on/off."
    )


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


def store_location() -> str:
    """`KITARU_STORE` (a path, file:// or memory:// URL), else `<config dir>/store`."""
    location = os.environ.get("KITARU_STORE", "").strip()
    return location or os.path.join(config_dir(), "store")


def lease_ttl_ms() -> int:
    raw = os.environ.get("KITARU_LEASE_TTL", "").strip()
    if not raw:
        return 30_000
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0.1 <= seconds <= 86_400:
        raise KitaruUsageError(
            f"KITARU_LEASE_TTL={raw!r} must be a number of seconds between 0.1 and 86400."
        )
    return int(seconds * 1000)


def wait_timeout() -> float:
    """Seconds `wait()` polls for an answer before it suspends (`KITARU_WAIT_TIMEOUT`, 600)."""
    raw = os.environ.get("KITARU_WAIT_TIMEOUT", "").strip()
    if not raw:
        return 600.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        raise KitaruUsageError(f"KITARU_WAIT_TIMEOUT={raw!r} must be a number of seconds >= 0.")
    return value


def allow_pickle() -> bool:
    """Whether values may be stored and loaded with pickle (`KITARU_ALLOW_PICKLE`)."""
    return env_flag("KITARU_ALLOW_PICKLE", True)


_stores: dict[tuple[int, str, bool], Store] = {}


def get_store(location: str | None = None) -> Store:
    """The store at `location` (default: `store_location()`), opened once per process."""
    from ._kitaru import Store

    loc = location or store_location()
    fsync = env_flag("KITARU_FSYNC", False)
    key = (os.getpid(), loc, fsync)
    store = _stores.get(key)
    if store is None:
        store = Store(loc, fsync=fsync)
        _stores[key] = store
    return store


def write_private_file(path: str, text: str) -> None:
    """Write `text` to `path` atomically, readable by the owner only (0600 in a 0700 dir).

    A crash leaves the old file or the new one, never a mix: the text goes to a temporary
    file in the same directory, which is then renamed over `path`.
    """
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
