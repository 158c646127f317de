"""Model aliases (`kitaru model ...`), what a call costs, and which model a call uses.

The registry lives in `<config dir>/models.json`; `KITARU_MODEL_REGISTRY` (the same JSON)
is merged over it, so a remote run can carry the aliases of the machine that launched it.
An alias names a `provider/model` and, optionally, a secret holding its credentials, an
OpenAI-compatible base URL, how structured output is asked for (`json_schema`,
`json_object` or `tool`) and prices that override genai-prices' table (`cost_of`).
"""

from __future__ import annotations

import json
import math
import os
import re

from .. import _files
from ..errors import KitaruUsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PROVIDERS = ("openai", "anthropic", "ollama", "openrouter")
# How `schema=` is asked for (see `_providers.openai_body`); Anthropic models always use
# a forced tool, their own way to structured output.
STRUCTURED_OUTPUT_MODES = ("json_schema", "json_object", "tool")
_ALIAS_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_REGISTRY_FILE = "models.json"



class ModelAlias:
    """One registered alias."""

    __slots__ = (
        "alias",
        "base_url",
        "input_price",
        "model",
        "output_price",
        "secret",
        "source",
        "structured_output",
    )

    def __init__(
        self,
        alias: str,
        model: str,
        *,
        secret: str | None = None,
        base_url: str | None = None,
        input_price: float | None = None,
        output_price: float | None = None,
        source: str = "local",
        structured_output: str | None = None,
    ) -> None:
        self.alias, self.model, self.secret, self.base_url = alias, model, secret, base_url
        self.input_price, self.output_price, self.source = input_price, output_price, source
        self.structured_output = structured_output

    def __repr__(self) -> str:
        return f"ModelAlias(alias={self.alias!r}, model={self.model!r}, secret={self.secret!r})"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model}
        for key in ("secret", "base_url", "structured_output", "input_price", "output_price"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def public_json(self) -> dict[str, Any]:
        """`to_json` for display: a password in the base URL is masked."""
        out = self.to_json()
        if self.base_url is not None:
            out["base_url"] = mask_url_password(self.base_url)
        return out


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """(`url` without its user info, user, password) — the user info as written,
    percent-encoding kept. The host part ends at the first '/', '?' or '#' after the last
    '@' of the authority, so an unencoded '@' in a password is still taken out."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#]*)(.*)$", url, re.S)
    if not m or "@" not in m.group(2):
        return url, None, None
    userinfo, _, host = m.group(2).rpartition("@")
    user, _, password = userinfo.partition(":")
    return m.group(1) + host + m.group(3), user, password


def mask_url_password(url: str) -> str:
    """`url` with the password of its user info replaced by ``***``."""
    rest, user, password = split_userinfo(url)
    if user is None:
        return url
    scheme, _, tail = rest.partition("://")
    return f"{scheme}://{user}{':***' if password else ''}@{tail}"


class ResolvedModel:
    """What a call uses: provider, provider's model name and the alias it came from."""

    __slots__ = ("alias", "base_url", "model", "provider", "requested", "secret")

    def __init__(
        self,
        requested: str,
        provider: str,
        model: str,
        alias: ModelAlias | None,
    ) -> None:
        self.requested, self.provider, self.model, self.alias = requested, provider, model, alias
        self.secret = alias.secret if alias else None
        self.base_url = alias.base_url if alias else None

    @property
    def target(self) -> str:
        return f"{self.provider}/{self.model}"

    @property
    def structured_output(self) -> str:
        """How `schema=` is asked for: the alias's choice, else `json_schema` (`tool` for
        Anthropic)."""
        if self.provider == "anthropic":
            return "tool"
        mode = self.alias.structured_output if self.alias is not None else None
        return mode or "json_schema"


def normalize_alias(alias: str) -> str:
    name = (alias or "").strip().lower() if isinstance(alias, str) else ""
    if not _ALIAS_RE.match(name):
        raise KitaruUsageError(
            f"Invalid model alias {alias!r}: use lower-case letters, digits, '-' and '_', "
            "starting with a letter or digit (e.g. 'fast')."
        )
    return name


def split_model(model: str, *, what: str = "model") -> tuple[str, str]:
    """`provider/model` → (provider, model), with errors that say what is accepted."""
    if not isinstance(model, str) or not model.strip():
        raise KitaruUsageError(f"The {what} must be a non-empty 'provider/model' string.")
    provider, sep, name = model.strip().partition("/")
    provider = provider.lower()
    if not sep or not name.strip():
        raise KitaruUsageError(
            f"The {what} {model!r} has no provider: write it as 'provider/model' with a provider "
            f"among {', '.join(PROVIDERS)} (e.g. 'openai/gpt-4o-mini'), or register an alias with "
            "`kitaru model register`. For another SDK, call it inside a @checkpoint."
        )
    if provider not in PROVIDERS:
        raise KitaruUsageError(
            f"Unknown provider {provider!r} in {what} {model!r}; kitaru.llm() speaks "
            f"{', '.join(PROVIDERS)}, and any OpenAI-compatible server through an alias with "
            "--base-url (e.g. `kitaru model register local --model openai/my-model "
            "--base-url http://127.0.0.1:8000/v1`)."
        )
    return provider, name.strip()


def check_structured_output(mode: Any, model: str, where: str = "") -> str | None:
    """`mode` if it is a structured-output mode `model` can use (None: the default)."""
    if mode is None:
        return None
    if mode not in STRUCTURED_OUTPUT_MODES:
        raise KitaruUsageError(
            f"{where}Invalid structured output mode {mode!r}: use one of "
            f"{', '.join(STRUCTURED_OUTPUT_MODES)} (json_object or tool for servers that refuse "
            "response_format json_schema, such as llama.cpp's)."
        )
    provider = model.strip().partition("/")[0].lower()
    if provider == "anthropic" and mode != "tool":
        raise KitaruUsageError(
            f"{where}Anthropic models answer structured output through a forced tool only: "
            f"structured output mode {mode!r} does not apply to {model!r} (use 'tool' or leave "
            "it out)."
        )
    return str(mode)


def cost_of(
    provider: str,
    model: str,
    alias: ModelAlias | None,
    input_tokens: int | None,
    output_tokens: int | None,
) -> float | None:
    """A call's cost in USD, or None when it is not known (never a made-up zero).

    The alias's own prices (USD per million tokens) when it has them; a local Ollama model
    costs nothing; anything else is priced by `genai-prices` (the table pydantic-ai uses,
    kept by Pydantic: tiers, dated snapshots, price changes over time), imported on the
    first priced call, never at `import kitaru`. A model it does not know is unknown.
    """
    if input_tokens is None or output_tokens is None:
        return None
    if alias is not None and alias.input_price is not None and alias.output_price is not None:
        return round(
            (int(input_tokens) * alias.input_price + int(output_tokens) * alias.output_price)
            / 1_000_000,
            10,
        )
    if provider == "ollama":
        return 0.0
    try:
        from genai_prices import Usage, calc_price
    except ImportError:  # pragma: no cover - a dependency of kitaru; unknown without it
        return None
    try:
        priced = calc_price(
            Usage(input_tokens=int(input_tokens), output_tokens=int(output_tokens)),
            model_ref=model,
            provider_id=provider or None,
        )
    except LookupError:
        return None
    return round(float(priced.total_price), 10)


# --- the registry ------------------------------------------------------------------------


def _registry_path() -> str:
    return os.path.join(_files.config_dir(), _REGISTRY_FILE)


def _parse_registry(raw: Any, where: str, source: str) -> tuple[dict[str, ModelAlias], str | None]:
    if not isinstance(raw, dict) or not isinstance(raw.get("aliases", {}), dict):
        raise KitaruUsageError(
            f"{where} is not a model registry: expected "
            '{"aliases": {"<alias>": {"model": "provider/model", ...}}, "default": "<alias>"}.'
        )
    aliases: dict[str, ModelAlias] = {}
    for name, entry in raw.get("aliases", {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
            raise KitaruUsageError(f"{where}: alias {name!r} needs a 'model' string.")
        prices = [entry.get("input_price"), entry.get("output_price")]
        if any(
            p is not None
            and (
                isinstance(p, bool)
                or not isinstance(p, (int, float))
                or not math.isfinite(p)
                or p < 0
            )
            for p in prices
        ):
            raise KitaruUsageError(
                f"{where}: alias {name!r} has prices that are not numbers >= 0 (USD per million tokens)."
            )
        try:
            name = normalize_alias(str(name))
        except KitaruUsageError as exc:
            raise KitaruUsageError(f"{where}: {exc}") from None
        mode = check_structured_output(
            entry.get("structured_output"), entry["model"], f"{where}: alias {name!r}: "
        )
        aliases[name] = ModelAlias(
            name,
            entry["model"],
            secret=entry.get("secret"),
            base_url=entry.get("base_url"),
            input_price=prices[0],
            output_price=prices[1],
            source=source,
            structured_output=mode,
        )
    default = raw.get("default")
    return aliases, default if isinstance(default, str) else None


def _load_local() -> tuple[dict[str, ModelAlias], str | None]:
    path = _registry_path()
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError) as exc:
        raise KitaruUsageError(
            f"Cannot read the model registry {path}: {exc}. Fix or delete the file "
            "(`kitaru model register` writes a new one)."
        ) from None
    return _parse_registry(raw, path, "local")


def load_registry() -> tuple[dict[str, ModelAlias], str | None]:
    """(aliases, default alias): the local file with `KITARU_MODEL_REGISTRY` merged over it."""
    aliases, default = _load_local()
    transported = os.environ.get("KITARU_MODEL_REGISTRY", "").strip()
    if transported:
        try:
            raw = json.loads(transported)
        except ValueError as exc:
            raise KitaruUsageError(f"KITARU_MODEL_REGISTRY is not valid JSON: {exc}.") from None
        env_aliases, env_default = _parse_registry(raw, "KITARU_MODEL_REGISTRY", "environment")
        aliases.update(env_aliases)
        default = env_default or default
    if default not in aliases:
        default = None
    return aliases, default


def _save_local(aliases: dict[str, ModelAlias], default: str | None) -> None:
    data = {
        "version": 1,
        "aliases": {a.alias: a.to_json() for a in sorted(aliases.values(), key=lambda a: a.alias)},
        "default": default,
    }
    _files.write_private_file(_registry_path(), json.dumps(data, indent=2) + "\n")


def register_model_alias(
    alias: str,
    *,
    model: str,
    secret: str | None = None,
    base_url: str | None = None,
    input_price: float | None = None,
    output_price: float | None = None,
    default: bool = False,
    structured_output: str | None = None,
) -> ModelAlias:
    """Register (or replace) `alias` → `model`. The first alias becomes the default.

    `structured_output` says how `llm(schema=...)` asks this model for a structured
    answer: ``"json_schema"`` (the default: ``response_format`` json_schema),
    ``"json_object"`` (``response_format`` json_object, the schema in the system prompt)
    or ``"tool"`` (one forced tool whose parameters are the schema). The answer is
    validated against the schema the same way in every mode."""
    name = normalize_alias(alias)
    provider, model_name = split_model(model)
    structured_output = check_structured_output(structured_output, model)
    if secret is not None:
        from . import secrets as _secrets

        _secrets.validate_name(secret)
    if base_url is not None and not re.match(r"^https?://[^\s]+$", base_url.strip()):
        raise KitaruUsageError(
            f"Invalid base URL {base_url!r}: give an http(s) URL such as http://127.0.0.1:8000/v1."
        )
    if (input_price is None) != (output_price is None):
        raise KitaruUsageError(
            "Give both --input-price and --output-price (USD per million tokens)."
        )
    for price in (input_price, output_price):
        if price is not None and (
            isinstance(price, bool)
            or not isinstance(price, (int, float))
            or not math.isfinite(price)
            or price < 0
        ):
            raise KitaruUsageError(
                f"Prices must be numbers >= 0 (USD per million tokens), got {price!r}."
            )
    entry = ModelAlias(
        name,
        f"{provider}/{model_name}",
        secret=secret,
        base_url=base_url.strip().rstrip("/") if base_url else None,
        input_price=None if input_price is None else float(input_price),
        output_price=None if output_price is None else float(output_price),
        structured_output=structured_output,
    )
    with _files.config_lock("models"):
        aliases, current_default = _load_local()
        aliases[name] = entry
        if default or current_default not in aliases:
            current_default = name
        _save_local(aliases, current_default)
    return entry


def remove_model_alias(alias: str) -> ModelAlias:
    name = normalize_alias(alias)
    with _files.config_lock("models"):
        aliases, default = _load_local()
        entry = aliases.pop(name, None)
        if entry is None:
            known = ", ".join(sorted(aliases)) or "none"
            raise KitaruUsageError(
                f"No model alias {name!r} in {_registry_path()} (known: {known})."
            )
        if default == name:
            default = next(iter(sorted(aliases)), None)
        _save_local(aliases, default)
    return entry


def set_default_alias(alias: str) -> ModelAlias:
    name = normalize_alias(alias)
    with _files.config_lock("models"):
        aliases, _ = _load_local()
        if name not in aliases:
            raise KitaruUsageError(
                f"No model alias {name!r}; register it first with "
                f"`kitaru model register {name} --model provider/model`."
            )
        _save_local(aliases, name)
    return aliases[name]


def list_model_aliases() -> list[dict[str, Any]]:
    """Every alias (local and transported), with `is_default` and where it came from."""
    aliases, default = load_registry()
    return [
        {"alias": a.alias, **a.public_json(), "is_default": a.alias == default, "source": a.source}
        for a in sorted(aliases.values(), key=lambda a: a.alias)
    ]


def resolve_model_selection(model: str | None) -> ResolvedModel:
    """The model a call uses: an alias or a raw `provider/model`; None → the default chain
    (`KITARU_DEFAULT_MODEL`, then the registry's default alias, then a single alias)."""
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise KitaruUsageError(f"model must be an alias or 'provider/model', got {model!r}.")
    aliases, default = load_registry()
    requested = model
    if requested is None:
        env = os.environ.get("KITARU_DEFAULT_MODEL")
        if env is not None:
            if not env.strip():
                raise KitaruUsageError(
                    "KITARU_DEFAULT_MODEL is set but empty; set it to an alias or 'provider/model', or unset it."
                )
            requested = env
        elif default is not None:
            requested = default
        elif len(aliases) == 1:
            requested = next(iter(aliases))
        else:
            raise KitaruUsageError(
                "No model given and no default model alias is configured. Run `kitaru model "
                "register <alias> --model provider/model`, set KITARU_DEFAULT_MODEL, or pass model=."
            )
    key = requested.strip().lower()
    alias = aliases.get(key)
    if alias is not None:
        provider, name = split_model(alias.model, what=f"model of alias {key!r}")
        return ResolvedModel(key, provider, name, alias)
    provider, name = split_model(requested)
    return ResolvedModel(requested.strip(), provider, name, None)
