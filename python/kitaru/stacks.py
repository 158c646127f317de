"""Stacks: named store configurations, and which store a run uses.

A stack is a store location (a directory, ``file://``, ``memory://``, ``s3://``, ``gs://``
or ``az://`` URL) plus object-store options such as the region or endpoint. Stacks live in
``<config dir>/stacks.json`` (owner-only, replaced atomically). Credentials never go in a
stack: the store reads them from the environment (``AWS_ACCESS_KEY_ID``, ...).

Which store a run uses, highest first: ``KITARU_STORE`` > ``kitaru.configure(stack=)`` >
``.run(stack=)`` / ``@flow(stack=)`` > ``KITARU_STACK`` > ``[tool.kitaru] stack`` in the
nearest ``pyproject.toml`` > the active stack (``kitaru stack use``) > ``default``, the local store
in ``<config dir>/store``. Switching stacks changes no flow code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import _files
from ._types import StoreChoice
from .errors import KitaruFeatureNotAvailableError, KitaruUsageError

__all__ = [
    "DEFAULT_STACK",
    "KitaruConfig",
    "StackInfo",
    "configure",
    "create_stack",
    "current_stack",
    "delete_stack",
    "get_stack",
    "list_stacks",
    "use_stack",
]

DEFAULT_STACK = "default"
_FILE_VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_OPTION_KEY = re.compile(r"[a-z][a-z0-9_]*")
# Words and fragments of object-store config keys that hold credentials.
_SECRET_WORDS = frozenset({"secret", "token", "password", "passphrase", "sas"})
_SECRET_PARTS = (
    "access_key",
    "account_key",
    "service_account_key",
    "private_key",
    "api_key",
    "customer_key",
)


@dataclass(frozen=True)
class StackInfo:
    """A stack: its name, store location and object-store options."""

    name: str
    location: str
    options: dict[str, str] = field(default_factory=dict)
    is_active: bool = False
    is_default: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    runner: str | None = None  # where flows on this stack run by default (None: local)

    @property
    def id(self) -> str:
        """Kitaru 0.4 names stacks by id too; here the name is the id."""
        return self.name


_IMAGE_FIELDS = ("base_image", "requirements", "dockerfile", "build_context_root",
                 "environment", "apt_packages", "replicate_local_python_environment",
                 "image_tag", "target_repository", "user", "platform")  # fmt: skip


RUNNERS = ("local", "ray")  # where a flow's driver and its fan-outs run


def check_runner(value: Any, where: str) -> str | None:
    """`value` if it names a runner (None: not chosen here)."""
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() not in RUNNERS:
        raise KitaruUsageError(
            f"Unknown runner {value!r} ({where}); the runners are {', '.join(RUNNERS)}."
        )
    return value.strip().lower()


def _requirement_name(requirement: str) -> str:
    """The distribution a requirement line names (``kitaru[s3]>=0.1`` -> ``kitaru``)."""
    return re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0].lower()


@dataclass(frozen=True)
class ImageSettings:
    """Container image settings for remote runs (Kitaru 0.4's fields). Recorded on each
    execution today; the scale-out runners give them effect."""

    base_image: str | None = None
    requirements: list[str] = field(default_factory=list)
    dockerfile: str | None = None
    build_context_root: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    apt_packages: list[str] = field(default_factory=list)
    replicate_local_python_environment: bool = False
    image_tag: str | None = None
    target_repository: str | None = None
    user: str | None = None
    platform: str | None = None

    def __post_init__(self) -> None:
        for name in _IMAGE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str) and not value.strip():
                raise KitaruUsageError(f"ImageSettings.{name} must not be empty.")
        for name in ("requirements", "apt_packages"):
            items = getattr(self, name)
            if not isinstance(items, (list, tuple)) or not all(
                isinstance(i, str) and i for i in items
            ):
                raise KitaruUsageError(f"ImageSettings.{name} must be a list of strings.")
            object.__setattr__(self, name, list(items))
        env = self.environment
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise KitaruUsageError("ImageSettings.environment must map strings to strings.")
        if not any(_requirement_name(r) == "kitaru" for r in self.requirements):
            object.__setattr__(self, "requirements", [*self.requirements, "kitaru"])

    @classmethod
    def coerce(cls, value: Any, where: str = "image") -> ImageSettings | None:
        """ImageSettings from what `image=` accepts: None, an image name (the base image),
        a mapping of the fields (``parent_image`` for ``base_image``), or ImageSettings."""
        if value is None or isinstance(value, ImageSettings):
            return value
        if isinstance(value, str):
            return cls(base_image=value)
        if hasattr(value, "model_dump"):  # ZenML's DockerSettings and the like
            value = value.model_dump(exclude_none=True)
        if not hasattr(value, "keys"):
            raise KitaruUsageError(
                f"{where} must be an image name, a mapping of image settings or "
                f"ImageSettings, got {value!r}."
            )
        fields = {("base_image" if k == "parent_image" else k): value[k] for k in value}
        unknown = sorted(set(fields) - set(_IMAGE_FIELDS))
        if unknown:
            raise KitaruUsageError(
                f"Unknown image setting {unknown[0]!r} ({where}); the settings are "
                f"{', '.join(_IMAGE_FIELDS)}."
            )
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in _IMAGE_FIELDS}

    def recorded(self) -> dict[str, Any]:
        """The settings as recorded on an execution: an environment value whose name looks
        like a credential (``*_KEY``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``) is kept
        only when it is a reference (``{{ NAME }}``), never as a literal, so no secret
        reaches the store."""
        out = self.to_dict()
        env = dict(out["environment"])
        for k, v in env.items():
            if _looks_secret(k.lower()) or k.upper().endswith("_KEY"):
                if not (v.strip().startswith("{{") and v.strip().endswith("}}")):
                    env[k] = "<redacted>"
        out["environment"] = env
        return out

    def merged(self, over: ImageSettings) -> ImageSettings:
        """These settings with `over`'s on top, field by field: lists are joined (without
        repeats), environments merged key by key, any other field `over` sets wins."""
        fields = self.to_dict()
        for name, value in over.to_dict().items():
            if name in ("requirements", "apt_packages"):
                fields[name] = list(dict.fromkeys([*fields[name], *value]))
            elif name == "environment":
                fields[name] = {**fields[name], **value}
            elif value is not None and value is not False:
                fields[name] = value
        return ImageSettings(**fields)


@dataclass(frozen=True)
class KitaruConfig:
    """The process-local overrides set with :func:`configure`."""

    stack: str | None = None
    image: ImageSettings | None = None
    cache: bool | None = None
    retries: int | None = None
    runner: str | None = None


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()
_configured_stack: str | None = None
_configured = KitaruConfig()


def configure(
    *,
    stack: str | None = _UNSET,
    image: Any = _UNSET,
    cache: bool | None = _UNSET,
    retries: int | None = _UNSET,
    project: str | None = _UNSET,
    runner: str | None = _UNSET,
) -> KitaruConfig:
    """Set process-local overrides; returns the overrides now in force. ``None`` clears a
    setting; leaving it out keeps the current value.

    Args:
        stack: the stack every flow started by this process uses, over ``@flow(stack=)``,
            ``.run(stack=)``, pyproject.toml and the active stack (only ``KITARU_STORE``
            beats it).
        image: default image settings (an image name, a mapping or `ImageSettings`) for
            flows that do not set their own; recorded on each execution.
        cache: default of the cross-execution cache for flows that do not set it (on
            unless something turns it off; see the README).
        retries: default flow-level retries for flows that do not set them.
        runner: ``"local"`` or ``"ray"`` for flows that do not set their own (over the
            stack's runner).
        project: a server concept of Kitaru 0.4; kitaru has no server, so a value is
            refused with what to do instead.
    """
    global _configured_stack, _configured
    if project is not _UNSET and project is not None:
        raise KitaruFeatureNotAvailableError(_NO_SERVER)
    if stack is not _UNSET:
        _configured_stack = None if stack is None else check_name(stack, "configure(stack=)")
    changes: dict[str, Any] = {"stack": _configured_stack}
    if image is not _UNSET:
        changes["image"] = ImageSettings.coerce(image, "configure(image=)")
    if cache is not _UNSET:
        if cache is not None and not isinstance(cache, bool):
            raise KitaruUsageError(f"configure(cache=) must be True, False or None, got {cache!r}.")
        changes["cache"] = cache
    if retries is not _UNSET:
        if retries is not None and (
            isinstance(retries, bool) or not isinstance(retries, int) or retries < 0
        ):
            raise KitaruUsageError(f"configure(retries=) must be an int >= 0, got {retries!r}.")
        changes["retries"] = retries
    if runner is not _UNSET:
        changes["runner"] = check_runner(runner, "configure(runner=)")
    _configured = dataclasses.replace(_configured, **changes)
    return _configured


def configured() -> KitaruConfig:
    """The overrides set with `configure()` (what flows that set nothing themselves use)."""
    return dataclasses.replace(_configured, stack=_configured_stack)


_NO_SERVER = (
    "kitaru has no server to connect to: every process reads and writes the store directly. "
    "Point it at a shared store with a stack (`kitaru stack create NAME --artifact-store "
    "s3://bucket/prefix`, then `kitaru stack use NAME`) or KITARU_STORE."
)


def connect(server_url: str, **_options: Any) -> None:
    """Kitaru 0.4's login to a server. kitaru has none: raises with what to do instead."""
    raise KitaruFeatureNotAvailableError(_NO_SERVER)


# --- names, locations, options --------------------------------------------------------


def check_name(name: Any, where: str = "stack name") -> str:
    """A valid stack name, or a `KitaruUsageError` saying what a name may contain."""
    if not isinstance(name, str) or not name.strip():
        raise KitaruUsageError(f"A stack name must be a non-empty string, got {name!r} ({where}).")
    cleaned: str = name.strip()
    if not _NAME.fullmatch(cleaned):
        raise KitaruUsageError(
            f"Invalid stack name {cleaned!r} ({where}): use 1-63 letters, digits, '_', '.' or "
            "'-', starting with a letter or digit."
        )
    return cleaned


def _kind(location: str) -> str:
    from ._kitaru import store_kind

    return store_kind(location)


def _scheme(location: str) -> str | None:
    head, sep, _ = location.partition("://")
    return head.lower() if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", head) else None


def _check_location(location: Any) -> str:
    """The location as stored in a stack: URLs as given, local paths made absolute."""
    if not isinstance(location, str) or not location.strip():
        raise KitaruUsageError(
            f"A stack's artifact store must be a non-empty path or URL, got {location!r}."
        )
    cleaned = str(location).strip()
    scheme = _scheme(cleaned)
    if scheme is None:
        return os.path.abspath(os.path.expanduser(cleaned))
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(cleaned)
    query = {k.lower() for k in parse_qs(parts.query, keep_blank_values=True)}
    if parts.password is not None or query & {"sig", "sv", "token", "secret", "password"}:
        raise KitaruUsageError(
            f"The artifact store URL of a stack must not carry credentials ({scheme}://... with "
            "a password or signed query). Stacks are stored in plain files; set credentials in "
            "the environment (e.g. AWS_SECRET_ACCESS_KEY, AZURE_STORAGE_SAS_KEY)."
        )
    from ._kitaru import redact_urls, store_kind

    try:
        store_kind(cleaned)  # the core's word on which locations it opens
    except KitaruUsageError as exc:
        shown = redact_urls(cleaned)
        raise KitaruUsageError(f"Unsupported artifact store {shown!r}: {exc}") from None
    return cleaned


def _looks_secret(key: str) -> bool:
    if key.endswith(("_file", "_path", "_uri")):  # where a credential is, not the credential
        return False
    words = set(key.split("_"))
    return bool(words & _SECRET_WORDS) or any(part in key for part in _SECRET_PARTS)


def _check_options(options: Any, location: str, where: str) -> dict[str, str]:
    """Object-store options with snake_case keys; credentials are refused."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise KitaruUsageError(
            f"Stack options must be a dict of strings, got {type(options).__name__} ({where})."
        )
    checked: dict[str, str] = {}
    for raw_key, value in options.items():
        key = str(raw_key).strip().lower().replace("-", "_")
        if not _OPTION_KEY.fullmatch(key):
            raise KitaruUsageError(
                f"Invalid stack option {raw_key!r} ({where}): keys are object_store config keys "
                "such as region, endpoint or allow_http."
            )
        if _looks_secret(key):
            env = key.upper() if key.startswith(("aws_", "google_", "azure_")) else None
            hint = f"set {env}" if env else "set the provider's environment variable"
            raise KitaruUsageError(
                f"Stack option {key!r} looks like a credential ({where}). Stacks are stored in "
                f"plain files, so credentials are not accepted: {hint} (e.g. "
                "AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, GOOGLE_SERVICE_ACCOUNT_KEY, "
                "AZURE_STORAGE_SAS_KEY) in the environment of each process that uses the store."
            )
        if not isinstance(value, str) or not value.strip():
            raise KitaruUsageError(
                f"Stack option {key!r} needs a non-empty string value, got {value!r} ({where})."
            )
        checked[key] = value.strip()
    if checked and _kind(location) != "object":
        raise KitaruUsageError(
            f"Stack options ({', '.join(sorted(checked))}) apply to object stores (s3://, gs://, "
            f"az://); {location} is a local store ({where})."
        )
    return checked


# --- the stacks file ------------------------------------------------------------------


def stacks_file() -> str:
    return os.path.join(_files.config_dir(), "stacks.json")


_cache: tuple[tuple[str, int, int, int], dict[str, Any]] | None = None


def _empty() -> dict[str, Any]:
    return {"version": _FILE_VERSION, "active": DEFAULT_STACK, "stacks": {}}


def _load() -> dict[str, Any]:
    """The stacks file's content (validated), or an empty one when there is no file yet."""
    global _cache
    path = stacks_file()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return _empty()
    key = (path, st.st_mtime_ns, st.st_size, st.st_ino)
    if _cache is not None and _cache[0] == key:
        return _cache[1]
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise _malformed(path, str(exc)) from None
    _validate_file(path, data)
    _cache = (key, data)
    return data  # type: ignore[no-any-return]


def _malformed(path: str, why: str) -> KitaruUsageError:
    return KitaruUsageError(
        f"The stacks file {path} is malformed ({why}). Fix it, or move it away and create the "
        "stacks again with `kitaru stack create`."
    )


def _validate_file(path: str, data: Any) -> None:
    if not isinstance(data, dict) or data.get("version") != _FILE_VERSION:
        raise _malformed(path, f'expected a JSON object with "version": {_FILE_VERSION}')
    stacks, active = data.get("stacks"), data.get("active")
    if not isinstance(stacks, dict) or not isinstance(active, str):
        raise _malformed(path, '"stacks" must be an object and "active" a stack name')
    for name, spec in stacks.items():
        if (
            not _NAME.fullmatch(name)
            or name == DEFAULT_STACK
            or not isinstance(spec, dict)
            or not isinstance(spec.get("location"), str)
            or not isinstance(spec.get("options", {}), dict)
        ):
            raise _malformed(path, f'stack {name!r} needs a valid name and a "location" string')
        try:
            where = f"stack {name!r} in {path}"
            spec["options"] = _check_options(spec.get("options", {}), spec["location"], where)
        except KitaruUsageError as exc:
            raise _malformed(path, str(exc)) from None
    if active != DEFAULT_STACK and active not in stacks:
        raise _malformed(path, f"the active stack {active!r} is not defined")


def _save(data: dict[str, Any]) -> None:
    """Write the stacks file owner-only and atomically (a temporary file, then a rename)."""
    _files.write_private_file(stacks_file(), json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextmanager
def _update() -> Iterator[dict[str, Any]]:
    """Read, change and write the stacks file, one process at a time."""
    with _files.config_lock("stacks"):
        data = json.loads(json.dumps(_load()))  # a copy: the cached one stays as read
        yield data
        _save(data)


def _info(name: str, data: dict[str, Any]) -> StackInfo:
    active = data["active"] == name
    if name == DEFAULT_STACK:
        return StackInfo(
            DEFAULT_STACK, _files.default_store_location(), {}, active, is_default=True
        )
    spec = data["stacks"][name]
    labels = spec.get("labels") if isinstance(spec.get("labels"), dict) else {}
    return StackInfo(name, spec["location"], dict(spec.get("options", {})), active,
                     labels=dict(labels), runner=spec.get("runner"))  # fmt: skip


def _unknown(name: str, data: dict[str, Any], where: str | None = None) -> KitaruUsageError:
    known = ", ".join([DEFAULT_STACK, *sorted(data["stacks"])])
    origin = f" (from {where})" if where else ""
    return KitaruUsageError(
        f"Unknown stack {name!r}{origin}. Known stacks: {known}. Create it with "
        f"`kitaru stack create {name} --artifact-store URL`."
    )


# --- the public API -------------------------------------------------------------------


def list_stacks() -> list[StackInfo]:
    """Every stack, `default` first, the active one marked."""
    data = _load()
    return [_info(n, data) for n in [DEFAULT_STACK, *sorted(data["stacks"])]]


def get_stack(name: str) -> StackInfo:
    """One stack by name (`KitaruUsageError` when there is none)."""
    name = check_name(name)
    data = _load()
    if name != DEFAULT_STACK and name not in data["stacks"]:
        raise _unknown(name, data)
    return _info(name, data)


def current_stack() -> StackInfo:
    """The active stack (set with :func:`use_stack`; `default` until then).

    A run may still use another store: see :func:`resolve` for the full precedence.
    """
    data = _load()
    return _info(data["active"], data)


def use_stack(name: str) -> StackInfo:
    """Make `name` the active stack for this user (persisted in the config directory)."""
    name = check_name(name)
    with _update() as data:
        if name != DEFAULT_STACK and name not in data["stacks"]:
            raise _unknown(name, data)
        data["active"] = name
    return _info(name, data)


def create_stack(
    name: str,
    *,
    artifact_store: str | None = None,
    region: str | None = None,
    endpoint: str | None = None,
    allow_http: bool = False,
    options: dict[str, str] | None = None,
    activate: bool = True,
    labels: dict[str, str] | None = None,
    runner: str | None = None,
) -> StackInfo:
    """Create a stack: a named store location with its object-store options.

    Args:
        artifact_store: a directory, or a ``file://``, ``memory://``, ``s3://bucket/prefix``,
            ``gs://…`` or ``az://…`` URL. Default: a new directory ``<config dir>/stores/<name>``.
        region, endpoint, allow_http: shorthands for the ``region``, ``endpoint`` and
            ``allow_http`` options (e.g. an S3-compatible server on ``http://127.0.0.1``).
        options: further object_store config keys (``virtual_hosted_style_request``, ...).
            Credentials are refused: the store reads them from the environment.
        activate: make it the active stack (as ``kitaru stack use`` does).
        labels: free ``key: value`` strings kept with the stack (Kitaru 0.4's labels).
        runner: where flows started on this stack run unless they choose (``"local"``,
            ``"ray"``); a Ray stack needs a store every Ray worker reaches.
    """
    name = check_name(name)
    runner = check_runner(runner, f"stack {name!r}")
    if labels is not None and (
        not isinstance(labels, dict)
        or not all(isinstance(k, str) and k and isinstance(v, str) for k, v in labels.items())
    ):
        raise KitaruUsageError(f"Stack labels must map strings to strings, got {labels!r}.")
    if name == DEFAULT_STACK:
        raise KitaruUsageError(
            f"{DEFAULT_STACK!r} is the built-in local stack; choose another name."
        )
    if artifact_store is None:
        location = os.path.join(_files.config_dir(), "stores", name)
    else:
        location = _check_location(artifact_store)
    if options is not None and not isinstance(options, dict):
        raise KitaruUsageError(
            f"Stack options must be a dict of strings, got {type(options).__name__}."
        )
    merged: dict[str, Any] = dict(options or {})
    for key, value in (("region", region), ("endpoint", endpoint)):
        if value is not None:
            merged[key] = value
    if allow_http:
        merged["allow_http"] = "true"
    opts = _check_options(merged, location, f"stack {name!r}")
    with _update() as data:
        if name in data["stacks"]:
            raise KitaruUsageError(
                f"Stack {name!r} already exists ({data['stacks'][name]['location']}). Delete it "
                f"first with `kitaru stack delete {name}`, or choose another name."
            )
        data["stacks"][name] = {"location": location, "options": opts}
        if labels:
            data["stacks"][name]["labels"] = dict(labels)
        if runner is not None:
            data["stacks"][name]["runner"] = runner
        if activate:
            data["active"] = name
    return _info(name, data)


def delete_stack(name: str, *, recursive: bool = False, force: bool = False) -> StackInfo:
    """Forget a stack (its store and executions stay where they are).

    The active stack is only deleted with ``force=True``; `default` then becomes active.
    ``recursive`` is accepted for Kitaru 0.4 (which also deleted the stack's registered
    components): a kitaru stack has none, and its store's data is never deleted.
    """
    name = check_name(name)
    if name == DEFAULT_STACK:
        raise KitaruUsageError(f"The built-in {DEFAULT_STACK!r} stack cannot be deleted.")
    with _update() as data:
        if name not in data["stacks"]:
            raise _unknown(name, data)
        info = _info(name, data)
        if data["active"] == name:
            if not force:
                raise KitaruUsageError(
                    f"Stack {name!r} is the active stack. Switch first with "
                    f"`kitaru stack use {DEFAULT_STACK}` (or another stack), or delete it with "
                    f"--force to fall back to {DEFAULT_STACK!r}."
                )
            data["active"] = DEFAULT_STACK
        del data["stacks"][name]
    return info


# --- resolution -----------------------------------------------------------------------


_pyproject_cache: dict[tuple[str, int, int], dict[str, Any]] = {}


def _pyproject_tool() -> tuple[dict[str, Any], str] | None:
    """(`[tool.kitaru]`, path) of the nearest pyproject.toml above the cwd, checked."""
    directory = os.getcwd()
    while True:
        path = os.path.join(directory, "pyproject.toml")
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is not None and not os.path.isdir(path):
            key = (path, st.st_mtime_ns, st.st_size)
            if key not in _pyproject_cache:
                _pyproject_cache[key] = _read_pyproject(path)
            return _pyproject_cache[key], path
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def _pyproject_stack() -> tuple[str, str] | None:
    """(stack, path) from `[tool.kitaru] stack` of the nearest pyproject.toml above the cwd."""
    found = _pyproject_tool()
    if found is None or found[0].get("stack") is None:
        return None
    return found[0]["stack"], found[1]


def _read_pyproject(path: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        try:
            import tomli as tomllib
        except ImportError:
            raise KitaruUsageError(
                f"Reading [tool.kitaru] from {path} needs Python 3.11+ or `pip install tomli`."
            ) from None
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise KitaruUsageError(f"{path} cannot be read as TOML: {exc}") from None
    tool = doc.get("tool", {}).get("kitaru", {}) if isinstance(doc.get("tool"), dict) else {}
    if not isinstance(tool, dict):
        raise KitaruUsageError(f"[tool.kitaru] in {path} must be a table.")
    if "runner" in tool:
        raise KitaruUsageError(f'[tool.kitaru] runner in {path} was renamed: use stack = "...".')
    out: dict[str, Any] = {}
    if tool.get("stack") is not None:
        out["stack"] = check_name(tool["stack"], f"[tool.kitaru] stack in {path}")
    where = f"[tool.kitaru] in {path}"
    if "cache" in tool:
        if not isinstance(tool["cache"], bool):
            raise KitaruUsageError(
                f"cache in {where} must be true or false, got {tool['cache']!r}."
            )
        out["cache"] = tool["cache"]
    if "retries" in tool:
        out["retries"] = _retries(tool["retries"], f"retries in {where}")
    if "image" in tool:
        out["image"] = ImageSettings.coerce(tool["image"], f"image in {where}")
    return out


def _retries(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise KitaruUsageError(f"{where} must be an int >= 0, got {value!r}.")
    return value


_TRUE = ("true", "1", "yes", "on", "t", "y")
_FALSE = ("false", "0", "no", "off", "f", "n")


def _env_defaults() -> dict[str, Any]:
    """Execution defaults from ``KITARU_CACHE``, ``KITARU_RETRIES`` and ``KITARU_IMAGE``."""
    out: dict[str, Any] = {}
    if "KITARU_RUNNER" in os.environ:
        raise KitaruUsageError("KITARU_RUNNER was renamed: set KITARU_STACK (or use a stack).")
    raw = os.environ.get("KITARU_CACHE", "").strip()
    if raw:
        if raw.lower() not in _TRUE + _FALSE:
            raise KitaruUsageError(
                f"KITARU_CACHE must be true or false (or 1/0, yes/no), got {raw!r}."
            )
        out["cache"] = raw.lower() in _TRUE
    raw = os.environ.get("KITARU_RETRIES", "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            n = -1
        out["retries"] = _retries(n if n >= 0 else raw, "KITARU_RETRIES")
    raw = os.environ.get("KITARU_IMAGE", "").strip()
    if raw:
        value: Any = raw
        if raw.startswith("{"):
            import json

            try:
                value = json.loads(raw)
            except ValueError as exc:
                raise KitaruUsageError(f"KITARU_IMAGE is not a JSON object: {exc}") from None
        out["image"] = ImageSettings.coerce(value, "KITARU_IMAGE")
    return out


def execution_defaults() -> KitaruConfig:
    """What flows that set nothing themselves use, lowest first: built-in, pyproject.toml
    ``[tool.kitaru]`` (cache, retries, image), ``KITARU_CACHE`` / ``KITARU_RETRIES`` /
    ``KITARU_IMAGE``, then `configure()`. Image settings merge field by field."""
    layers: list[dict[str, Any]] = []
    found = _pyproject_tool()
    if found is not None:
        layers.append(found[0])
    layers.append(_env_defaults())
    layers.append({k: getattr(_configured, k) for k in ("cache", "retries", "image")})
    merged: dict[str, Any] = {"cache": None, "retries": None, "image": None}
    for layer in layers:
        for key in ("cache", "retries"):
            if layer.get(key) is not None:
                merged[key] = layer[key]
        image = layer.get("image")
        if image is not None:
            merged["image"] = image if merged["image"] is None else merged["image"].merged(image)
    return dataclasses.replace(_configured, stack=_configured_stack, **merged)


def resolve(stack: str | None = None, source: str = "stack=") -> StoreChoice:
    """Which store to use (below `KITARU_STORE`, which `_config.resolve_store` checks first).

    `stack` is the caller's choice (a flow's or the CLI's), described by `source` in errors.
    """
    if _configured_stack is not None:
        name, why = _configured_stack, "kitaru.configure(stack=...)"
    elif stack is not None:
        name, why = check_name(stack, source), source
    elif os.environ.get("KITARU_STACK", "").strip():
        name, why = check_name(os.environ["KITARU_STACK"], "KITARU_STACK"), "KITARU_STACK"
    else:
        found = _pyproject_stack()
        if found is not None:
            name, why = found[0], f"[tool.kitaru] in {found[1]}"
        else:
            name = _load()["active"]
            why = "kitaru stack use" if name != DEFAULT_STACK else "default"
    data = _load()
    if name != DEFAULT_STACK and name not in data["stacks"]:
        raise _unknown(name, data, why)
    info = _info(name, data)
    return StoreChoice(info.location, info.options, name, why, info.runner)
