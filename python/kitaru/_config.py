"""Which store to use, and the process-wide settings read from the environment.

Resolution is cheap and lazy: nothing here touches the disk until a store is needed, and
stacks (`stacks.py`) are only read when `KITARU_STORE` does not name the store. The config
directory and its files are `_files.py`'s.
"""

from __future__ import annotations

import os

from .errors import KitaruUsageError

TYPE_CHECKING = False

if TYPE_CHECKING:
    from ._kitaru import Store
    from ._types import StoreChoice

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


def resolve_store(stack: str | None = None, source: str = "stack=") -> StoreChoice:
    """The store to use: `KITARU_STORE` > `kitaru.configure(stack=)` > `stack` (a flow's,
    a `.run()`'s or the CLI's `--stack`, described by `source`) > pyproject.toml
    `[tool.kitaru] stack` > the active stack (`kitaru stack use`) > the local default.
    """
    location = os.environ.get("KITARU_STORE", "").strip()
    if location:
        from ._types import StoreChoice

        return StoreChoice(location, {}, None, "KITARU_STORE")
    from . import stacks

    return stacks.resolve(stack, source)


def store_location() -> str:
    """The location of the store that `get_store()` opens from here."""
    return resolve_store().location


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
    """Whether every value of this process may be stored and loaded with pickle
    (`KITARU_ALLOW_PICKLE`, off: a pickle runs code when loaded, so it is opted in)."""
    return env_flag("KITARU_ALLOW_PICKLE", False)


def allowed_modules() -> tuple[str, ...]:
    """Modules (with their submodules) whose classes stored values may name even when not
    imported yet (`KITARU_ALLOWED_MODULES`, comma-separated)."""
    raw = os.environ.get("KITARU_ALLOWED_MODULES", "")
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise KitaruUsageError(
                f"KITARU_ALLOWED_MODULES names {name!r}, which is not a module name; give "
                "comma-separated module names such as myapp.models,otherlib."
            )
    return names


_stores: dict[tuple[int, str, tuple[tuple[str, str], ...], bool], Store] = {}


def get_store(location: str | None = None, options: dict[str, str] | None = None) -> Store:
    """The store at `location` with object-store `options` (default: `resolve_store()`),
    opened once per process."""
    from ._kitaru import Store

    if location is None:
        choice = resolve_store()
        location, options = choice.location, choice.options
    fsync = env_flag("KITARU_FSYNC", False)
    opts = tuple(sorted((options or {}).items()))
    key = (os.getpid(), location, opts, fsync)
    store = _stores.get(key)
    if store is None:
        store = Store(location, fsync=fsync, options=dict(opts) or None)
        _stores[key] = store
    return store
