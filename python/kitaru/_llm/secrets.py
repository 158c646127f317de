"""Secrets: named sets of credentials (`kitaru secrets ...`) for model aliases.

Kept in `<config dir>/secrets/<name>.json`, outside the artifact store, readable by the
owner only (files 0600 in a 0700 directory). `kitaru.llm()` reads them into the request it
sends; they are never copied into `os.environ`, a record, an artifact or a log.
"""

from __future__ import annotations

import json
import os
import re

from .. import _files
from ..errors import KitaruRuntimeError, KitaruUsageError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def secrets_dir() -> str:
    return os.path.join(_files.config_dir(), "secrets")


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", ".."):
        raise KitaruUsageError(
            f"Invalid secret name {name!r}: use letters, digits, '.', '-' and '_' "
            "(up to 128 characters, starting with a letter or digit)."
        )
    return name


def validate_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise KitaruUsageError(
            f"Invalid secret key {key!r}: keys look like environment variables "
            "(letters, digits and '_', not starting with a digit), e.g. OPENAI_API_KEY."
        )
    return key


def _path(name: str) -> str:
    return os.path.join(secrets_dir(), validate_name(name) + ".json")


def get_secret(name: str) -> dict[str, str]:
    """The values of secret `name`; a clear error when it does not exist."""
    path = _path(name)
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise KitaruRuntimeError(
            f"No secret named {name!r} (looked in {secrets_dir()}). Create it with "
            f"`kitaru secrets set {name} --KEY` (prompts for the value)."
        ) from None
    except (OSError, ValueError) as exc:
        # The exception text of a JSON error quotes no content beyond a position.
        raise KitaruRuntimeError(
            f"Cannot read secret {name!r} from {path}: {type(exc).__name__}. Re-create it with "
            f"`kitaru secrets set {name} --replace --KEY` (prompts for the value)."
        ) from None
    values = raw.get("values") if isinstance(raw, dict) else None
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise KitaruRuntimeError(
            f"Secret file {path} is malformed. Re-create it with "
            f"`kitaru secrets set {name} --replace --KEY` (prompts for the value)."
        )
    return dict(values)


def set_secret(name: str, values: dict[str, str], *, replace: bool = False) -> list[str]:
    """Create secret `name` or update its keys (all of them with `replace`); returns its keys."""
    validate_name(name)
    if not values:
        raise KitaruUsageError(
            f"Give at least one value: `kitaru secrets set {name} --KEY` (prompts for the value)."
        )
    for key, value in values.items():
        validate_key(key)
        if not isinstance(value, str):
            raise KitaruUsageError(f"The value of secret key {key} must be a string.")
    with _files.config_lock("secrets"):
        current: dict[str, str] = {}
        if not replace and os.path.exists(_path(name)):
            current = get_secret(name)
        current.update(values)
        text = json.dumps({"version": 1, "name": name, "values": current}, indent=2) + "\n"
        _files.write_private_file(_path(name), text)
    return sorted(current)


def list_secrets() -> list[dict[str, object]]:
    """Every secret's name and key names (no values)."""
    try:
        files = sorted(os.listdir(secrets_dir()))
    except FileNotFoundError:
        return []
    out: list[dict[str, object]] = []
    for file in files:
        if not file.endswith(".json") or not _NAME_RE.match(file[:-5]):
            continue
        name = file[:-5]
        try:
            out.append({"name": name, "keys": sorted(get_secret(name))})
        except KitaruRuntimeError as exc:  # one unreadable secret must not hide the others
            out.append({"name": name, "keys": [], "error": str(exc)})
    return out


def delete_secret(name: str) -> None:
    try:
        os.unlink(_path(name))
    except FileNotFoundError:
        raise KitaruUsageError(
            f"No secret named {name!r}; `kitaru secrets list` shows the existing ones."
        ) from None


def masked(values: dict[str, str]) -> dict[str, str]:
    return {key: "***" for key in values}
