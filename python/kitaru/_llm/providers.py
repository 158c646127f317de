"""LLM providers over plain HTTP (httpx): OpenAI chat completions (also OpenRouter, Ollama
and any OpenAI-compatible server) and Anthropic messages.

Requests are built from kitaru's normalized messages (the OpenAI chat format), responses
are reduced to one normalized dict (text, tool calls, usage, finish reason). Credentials
are read from the environment or the alias's secret into the request headers only; error
messages are scrubbed of them (known values, `Basic`/`Bearer` credentials, the user info
and query of URLs).

Retries: a failure that may pass is retried with backoff, honouring `Retry-After` — a
timeout or dropped connection, HTTP 408, 409, 425, 429, 502, 503, 504, 529, and a 500
unless its body says the request itself failed validation (see `_refused_request`). Every
other answer is deterministic and fails at once: any other 4xx (400, 401, 403, 404, 413,
422, ...), other 5xx such as 501, and a 500 that is a validation error — as the llama.cpp
server and other FastAPI-based servers answer a request they cannot parse.
"""

from __future__ import annotations

import json
import os
import random
import re
import time

from ..errors import KitaruBackendError, KitaruRuntimeError, KitaruUsageError
from .models import split_userinfo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    import httpx

    from .models import ResolvedModel

# provider → (API key variable, base URL variable, default base URL)
_ENDPOINTS: dict[str, tuple[str | None, str, str]] = {
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL", "https://api.openai.com/v1"),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
    "openrouter": ("OPENROUTER_API_KEY", "OPENROUTER_BASE_URL", "https://openrouter.ai/api/v1"),
    "ollama": (None, "OLLAMA_HOST", "http://localhost:11434"),
}
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
# The body of a 500 that is the server refusing the request, not a failure that may pass:
# pydantic's "1 validation error for ChatCompletionRequest", FastAPI's
# RequestValidationError, an OpenAI-style error of type invalid_request_error.
_REFUSED_RE = re.compile(
    r"validation errors? for|RequestValidationError|invalid_request_error|\bvalidation_error\b",
    re.IGNORECASE,
)
SCHEMA_TOOL_DESCRIPTION = "Give the final answer in this structure."
ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_DEFAULT_MAX_TOKENS = 4096


def _env_float(name: str, default: float, low: float, high: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise KitaruUsageError(f"{name}={raw!r} must be a number between {low:g} and {high:g}.")
    return value


def default_timeout() -> float:
    """Seconds one HTTP attempt may take (`KITARU_LLM_TIMEOUT`, default 120)."""
    return _env_float("KITARU_LLM_TIMEOUT", 120.0, 0.01, 3600.0)


def max_retries() -> int:
    """Extra attempts after a transient failure (`KITARU_LLM_MAX_RETRIES`, default 3)."""
    return int(_env_float("KITARU_LLM_MAX_RETRIES", 3, 0, 20))


def max_retry_wait() -> float:
    """The longest `Retry-After` kitaru sleeps for (`KITARU_LLM_MAX_RETRY_WAIT`, 120 s)."""
    return _env_float("KITARU_LLM_MAX_RETRY_WAIT", 120.0, 0.0, 3600.0)


class Endpoint:
    """Where and how one call is sent. `secret_values` are kept only to scrub errors."""

    __slots__ = (
        "credential_source",
        "headers",
        "key_var",
        "provider",
        "redact",
        "secret_name",
        "structured_output",
        "url",
        "what",
    )

    def __init__(
        self,
        provider: str,
        url: str,
        headers: dict[str, str],
        credential_source: str | None,
        key_var: str | None,
        redact: list[str],
        what: str,
    ) -> None:
        self.provider, self.url, self.headers = provider, url, headers
        self.credential_source, self.key_var, self.redact, self.what = (
            credential_source,
            key_var,
            redact,
            what,
        )
        self.secret_name: str | None = None
        self.structured_output = "json_schema"

    def scrub(self, text: str) -> str:
        return scrub(text, self.redact)


# `Authorization: Basic <base64>` / `Bearer <token>` echoed back by a server or a proxy
# (8+ characters, so that prose such as "a Bearer token" stays readable).
_AUTH_RE = re.compile(r"\b(Basic|Bearer)(\s+|%20)[A-Za-z0-9+/=._~\-]{8,}", re.IGNORECASE)
# The user info of a URL (`scheme://user:password@host`); an '@' in the password is
# tolerated, the host ends at the first '/', '?', '#', space or quote after the last '@'.
_USERINFO_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s\"'<>`]*@")


def redact_credentials(text: str) -> str:
    """`text` without URL user info, URL query strings, and Basic/Bearer credentials. The
    URL part is the store's own `redact_urls` (the same rule as for store locations)."""
    from .._kitaru import redact_urls

    # the store's marker is "<redacted>"; provider errors say "[redacted]" throughout
    text = redact_urls(_USERINFO_RE.sub(r"\1@", text)).replace("<redacted>", "[redacted]")
    return _AUTH_RE.sub(lambda m: f"{m.group(1)} [redacted]", text)


def scrub(text: str, secrets: list[str]) -> str:
    """`text` without any secret in it, nor any long fragment of one (providers echo
    masked keys such as 'sk-abc***wxyz'), nor credentials in URLs and auth headers."""
    for value in sorted(secrets, key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, "[redacted]")
    text = redact_credentials(text)

    def fragment(m: re.Match[str]) -> str:
        token = m.group(0)
        parts = [p for p in re.split(r"\*+|\.{3,}", token) if len(p) >= 6]
        if any(p in value for p in parts for value in secrets if len(value) >= 8):
            return "[redacted]"
        return token

    return re.sub(r"[A-Za-z0-9_\-*.]{8,}", fragment, text)


def _strip_userinfo(url: str) -> str:
    return _USERINFO_RE.sub(r"\1", url)


def endpoint_for(resolved: ResolvedModel, call: str) -> Endpoint:
    """The URL and headers of a call to `resolved`. The key comes from the alias's secret
    first, then the provider's environment variable — except for an alias with its own
    base URL, which never gets the environment's key for the official service. Credentials
    go into the request only, never into `os.environ`; credentials written into a base URL
    (`http://user:pass@host/v1`) are taken out of it into an Authorization header, so the
    URL that httpx logs and errors quote carries none."""
    provider = resolved.provider
    key_var, base_var, default_base = _ENDPOINTS[provider]
    alias = resolved.alias
    secret: dict[str, str] = {}
    if alias is not None and alias.secret:
        from . import secrets as _secrets

        try:
            secret = _secrets.get_secret(alias.secret)
        except KitaruRuntimeError as exc:
            exc.kitaru_runtime = True  # type: ignore[attr-defined]
            raise
    what = f"kitaru.llm() call {call!r} to {resolved.target}" + (
        f" (model alias {alias.alias!r})" if alias else ""
    )
    base = resolved.base_url or os.environ.get(base_var, "").strip() or secret.get(base_var, "")
    base = (base or default_base).strip().rstrip("/")
    if provider == "ollama":
        if not re.match(r"^https?://", base):
            base = "http://" + base
        if not re.match(r"^https?://(\[[^\]]*\]|[^/:]*):\d+", base):
            # OLLAMA_HOST=0.0.0.0 means Ollama's port, as in Ollama's own client
            base = re.sub(r"^(https?://(\[[^\]]*\]|[^/:]*))", r"\1:11434", base)
        if not base.endswith("/v1"):
            base += "/v1"
    basic = None
    raw_userinfo: list[str] = []
    base, user, password = split_userinfo(base)
    if user is not None:
        from urllib.parse import unquote

        basic = (unquote(user), unquote(password or ""))
        raw_userinfo = [user, password or ""]
    key: str | None = None
    source: str | None = None
    own_base = alias is not None and alias.base_url is not None
    if key_var is not None:
        env_key = os.environ.get(key_var, "").strip()
        if secret.get(key_var, "").strip():
            key, source = secret[key_var].strip(), "secret"
        elif env_key and not own_base:
            key, source = env_key, "environment"
    custom_base = base != default_base
    if key is None and key_var is not None and not custom_base:
        if alias is not None and alias.secret:
            hint = (
                f"secret {alias.secret!r} of alias {alias.alias!r} has no {key_var}: run "
                f"`kitaru secrets set {alias.secret} --{key_var}` (prompts for it), or set "
                f"{key_var}"
            )
        elif alias is not None:
            hint = (
                f"set {key_var}, or store it with `kitaru secrets set <name> --{key_var}` "
                f"(prompts for it) and register the alias with `kitaru model register {alias.alias} --model "
                f"{alias.model} --secret <name>`"
            )
        else:
            hint = (
                f"set {key_var}, or store it with `kitaru secrets set <name> --{key_var}` "
                f"(prompts for it) and call through an alias registered with `kitaru model register <alias> --model "
                f"{resolved.target} --secret <name>`"
            )
        err = KitaruRuntimeError(f"{what} has no API key: {hint}.")
        err.kitaru_runtime = True  # type: ignore[attr-defined]  # a setup problem, not user code
        raise err
    headers = {"content-type": "application/json", "user-agent": "kitaru"}
    if provider == "anthropic":
        if key:
            headers["x-api-key"] = key
        headers["anthropic-version"] = ANTHROPIC_VERSION
        url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")
    else:
        if key:
            headers["authorization"] = f"Bearer {key}"
        url = base + "/chat/completions"
    redact = [v for v in secret.values() if v] + ([key] if key else [])
    if basic is not None:
        import base64

        token = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        if "authorization" not in headers:
            headers["authorization"] = f"Basic {token}"
            source = source or "base_url"
        # The password as written and as sent (decoded, in "user:password", in base64
        # with and without padding); not the user name alone, which may be a plain word —
        # unless there is no password: then the "user" is a token (`https://TOKEN@host`).
        if basic[1]:
            given = [f"{basic[0]}:{basic[1]}", ":".join(raw_userinfo), basic[1], raw_userinfo[1]]
        else:
            given = [basic[0], raw_userinfo[0]]
        redact += [v for v in (*given, token, token.rstrip("=")) if v]
    ep = Endpoint(provider, url, headers, source, key_var, redact, what)
    ep.secret_name = alias.secret if alias is not None and source == "secret" else None
    ep.structured_output = resolved.structured_output
    return ep


# --- request bodies ----------------------------------------------------------------------


def _openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as sent: a missing or null `content` (an assistant message that only
    calls tools) becomes "" — OpenAI takes both, but common OpenAI-compatible servers
    (llama.cpp's) refuse null with a validation error. The recorded messages keep null."""
    return [{**m, "content": ""} if m.get("content") is None else m for m in messages]


def schema_instruction(schema: dict[str, Any]) -> str:
    """The system-prompt text that asks for a structured answer when the server is only
    told to answer JSON (structured output mode `json_object`)."""
    return (
        "Answer with a single JSON object and nothing else (no prose, no code fence). "
        f"It must match this JSON Schema:\n{json.dumps(schema['json'], separators=(',', ':'))}"
    )


def _with_system_text(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """`messages` with `text` appended to the leading system message (one is inserted when
    there is none: some chat templates take a single system message, at the start)."""
    if messages and messages[0].get("role") == "system":
        first = messages[0]
        content = first.get("content")
        if isinstance(content, list):
            content = [*content, {"type": "text", "text": text}]
        else:
            content = f"{content}\n\n{text}" if content else text
        return [{**first, "content": content}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def openai_body(
    resolved: ResolvedModel,
    req: dict[str, Any],
    official: bool,
    structured_output: str = "json_schema",
) -> dict[str, Any]:
    """The chat-completions body. A `schema` is asked for per `structured_output`:
    `json_schema` (response_format json_schema), `json_object` (response_format
    json_object, the schema in the system prompt) or `tool` (one forced tool whose
    parameters are the schema; its arguments are the answer)."""
    messages = _openai_messages(req["messages"])
    schema = req.get("schema")
    if schema and structured_output == "json_object":
        messages = _with_system_text(messages, schema_instruction(schema))
    body: dict[str, Any] = {"model": resolved.model, "messages": messages}
    if req.get("temperature") is not None:
        body["temperature"] = req["temperature"]
    if req.get("max_tokens") is not None:
        # OpenAI's own API wants max_completion_tokens (reasoning models reject max_tokens);
        # compatible servers know max_tokens.
        body["max_completion_tokens" if official else "max_tokens"] = req["max_tokens"]
    tools = req.get("tools")
    if tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t["name"],
                    "description": t.get("description", ""),
                    "parameters": t["parameters"],
                },
            }
            for t in tools
        ]
        choice = req.get("tool_choice")
        if choice in ("auto", "required", "none"):
            body["tool_choice"] = choice
        elif choice:
            body["tool_choice"] = {"type": "function", "function": {"name": choice}}
    if schema and structured_output == "tool":
        # schema= and tools= never come together: this is the call's only tool.
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": schema["name"],
                    "description": SCHEMA_TOOL_DESCRIPTION,
                    "parameters": schema["json"],
                },
            }
        ]
        body["tool_choice"] = {"type": "function", "function": {"name": schema["name"]}}
    elif schema and structured_output == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif schema:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": schema["name"], "schema": schema["json"], "strict": False},
        }
    return body


def _anthropic_content(content: Any) -> Any:
    if isinstance(content, str) or content is None:
        return content or ""
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            url = part.get("image_url", {})
            url = url.get("url") if isinstance(url, dict) else url
            m = re.match(r"^data:([^;]+);base64,(.*)$", url or "", re.S)
            if m:
                blocks.append(
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": m.group(1), "data": m.group(2)},
                    }
                )
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
        else:
            blocks.append(part)
    return blocks


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text of its text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" for p in content
    ):
        return "\n".join(str(p.get("text", "")) for p in content)
    return json.dumps(content)


def anthropic_body(resolved: ResolvedModel, req: dict[str, Any]) -> dict[str, Any]:
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for i, m in enumerate(req["messages"]):
        role = m["role"]
        if role == "system":
            if messages:
                raise KitaruUsageError(
                    f"Message {i} is a system message after the conversation started; Anthropic "
                    "models take system messages only at the start."
                )
            system.append(_text_of(m["content"]))
            continue
        if role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": m.get("tool_call_id", ""),
                # a string, or text/image blocks (Anthropic takes both in a tool result)
                "content": _anthropic_content(m["content"])
                if isinstance(m["content"], (str, list))
                else json.dumps(m["content"]),
            }
            if messages and messages[-1]["role"] == "user" and isinstance(messages[-1]["content"], list) \
                    and messages[-1]["content"] and messages[-1]["content"][0].get("type") == "tool_result":  # fmt: skip
                messages[-1]["content"].append(block)
            else:
                messages.append({"role": "user", "content": [block]})
            continue
        if role == "assistant" and m.get("tool_calls"):
            blocks: list[dict[str, Any]] = []
            if m.get("content"):
                text = m["content"]
                if isinstance(text, str):
                    blocks.append({"type": "text", "text": text})
                else:
                    blocks.extend(_anthropic_content(text))
            for tc in m["tool_calls"]:
                fn = tc.get("function", {})
                args = fn.get("arguments") or "{}"
                try:
                    parsed = json.loads(args) if isinstance(args, str) else args
                except ValueError:
                    parsed = {"_raw": args}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": tc.get("id", ""),
                        "name": fn.get("name", ""),
                        "input": parsed,
                    }
                )
            messages.append({"role": "assistant", "content": blocks})
            continue
        messages.append({"role": role, "content": _anthropic_content(m.get("content"))})
    body: dict[str, Any] = {
        "model": resolved.model,
        "messages": messages,
        "max_tokens": req.get("max_tokens") or ANTHROPIC_DEFAULT_MAX_TOKENS,
    }
    if system:
        body["system"] = "\n\n".join(system)
    if req.get("temperature") is not None:
        body["temperature"] = req["temperature"]
    tools = [
        {
            "name": t["name"],
            "description": t.get("description", ""),
            "input_schema": t["parameters"],
        }
        for t in req.get("tools") or ()
    ]
    choice = req.get("tool_choice")
    schema = req.get("schema")
    if schema:
        # Anthropic's way to a structured answer: one tool whose input is the answer.
        tools.append(
            {
                "name": schema["name"],
                "description": SCHEMA_TOOL_DESCRIPTION,
                "input_schema": schema["json"],
            }
        )
        choice = schema["name"]
    if tools:
        body["tools"] = tools
        if choice == "auto":
            body["tool_choice"] = {"type": "auto"}
        elif choice == "required":
            body["tool_choice"] = {"type": "any"}
        elif choice == "none":
            body["tool_choice"] = {"type": "none"}
        elif choice:
            body["tool_choice"] = {"type": "tool", "name": choice}
    return body


# --- responses ---------------------------------------------------------------------------


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def parse_openai(data: Any, schema_tool: str | None = None) -> dict[str, Any]:
    """The normalized answer. With `schema_tool` (structured output mode `tool`) the
    answer's text is the arguments of the first call of that tool."""
    try:
        choice = data["choices"][0]
        msg = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise KitaruBackendError(
            f"the provider's answer has no choices[0].message: {json.dumps(data)[:300]}"
        ) from None
    content = msg.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    calls = [
        {
            "id": tc.get("id") or f"call_{i}",
            "name": (tc.get("function") or {}).get("name", ""),
            "arguments": (tc.get("function") or {}).get("arguments") or "{}",
        }
        for i, tc in enumerate(msg.get("tool_calls") or ())
    ]
    if schema_tool is not None:
        forced = next((c for c in calls if c["name"] == schema_tool), None)
        if forced is not None:
            calls.remove(forced)
            args = forced["arguments"]
            content = args if isinstance(args, str) else json.dumps(args)
    usage = data.get("usage") or {}
    tin, tout = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
    cost = usage.get("cost")
    return {
        "text": content if isinstance(content, str) else None,
        "tool_calls": calls,
        "finish_reason": choice.get("finish_reason"),
        "refusal": msg.get("refusal"),
        "model": data.get("model"),
        "usage": {
            "input_tokens": tin,
            "output_tokens": tout,
            "total_tokens": _int(usage.get("total_tokens"))
            or (tin + tout if tin is not None and tout is not None else None),
        },
        "provider_cost_usd": float(cost) if isinstance(cost, (int, float)) else None,
    }


def parse_anthropic(data: Any, schema_tool: str | None) -> dict[str, Any]:
    blocks = data.get("content") if isinstance(data, dict) else None
    if not isinstance(blocks, list):
        raise KitaruBackendError(
            f"the provider's answer has no content blocks: {json.dumps(data)[:300]}"
        )
    texts, calls = [], []
    structured: str | None = None
    for b in blocks:
        if b.get("type") == "text":
            texts.append(b.get("text", ""))
        elif b.get("type") == "tool_use":
            if schema_tool and b.get("name") == schema_tool and structured is None:
                # The structured answer is the forced tool's input, whatever text came with it.
                structured = json.dumps(b.get("input"))
            else:
                calls.append(
                    {
                        "id": b.get("id", ""),
                        "name": b.get("name", ""),
                        "arguments": json.dumps(b.get("input", {})),
                    }
                )
    usage = data.get("usage") or {}
    tin = _int(usage.get("input_tokens"))
    if tin is not None:
        tin += (_int(usage.get("cache_creation_input_tokens")) or 0) + (
            _int(usage.get("cache_read_input_tokens")) or 0
        )
    tout = _int(usage.get("output_tokens"))
    return {
        "text": structured if structured is not None else ("".join(texts) if texts else None),
        "tool_calls": calls,
        "finish_reason": data.get("stop_reason"),
        "refusal": None,
        "model": data.get("model"),
        "usage": {
            "input_tokens": tin,
            "output_tokens": tout,
            "total_tokens": tin + tout if tin is not None and tout is not None else None,
        },
        "provider_cost_usd": None,
    }


def build(resolved: ResolvedModel, req: dict[str, Any], ep: Endpoint) -> dict[str, Any]:
    if ep.provider == "anthropic":
        return anthropic_body(resolved, req)
    official = ep.provider == "openai" and ep.url.startswith(_ENDPOINTS["openai"][2])
    return openai_body(resolved, req, official, ep.structured_output)


def parse(ep: Endpoint, data: Any, req: dict[str, Any]) -> dict[str, Any]:
    """The normalized answer; an answer of an unexpected shape is a `KitaruBackendError`
    that names the call (and, like every error here, holds no credential)."""
    try:
        if ep.provider == "anthropic":
            schema = req.get("schema")
            return parse_anthropic(data, schema["name"] if schema else None)
        schema = req.get("schema") if ep.structured_output == "tool" else None
        return parse_openai(data, schema["name"] if schema else None)
    except KitaruBackendError as exc:
        err = KitaruBackendError(f"{ep.what}: {ep.scrub(str(exc))}")
    except (AttributeError, TypeError, ValueError, KeyError):
        err = KitaruBackendError(
            f"{ep.what}: the provider's answer is not a {ep.provider} response: "
            f"{ep.scrub(json.dumps(data, default=str)[:300])}"
        )
    # An answer we cannot use may still be billed (a content filter's empty choices):
    # keep its usage so the ledger counts it.
    err.billed_usage = _usage_only(data)  # type: ignore[attr-defined]
    raise err


def _usage_only(data: Any) -> dict[str, Any] | None:
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    tin = _int(usage.get("prompt_tokens", usage.get("input_tokens")))
    tout = _int(usage.get("completion_tokens", usage.get("output_tokens")))
    if tin is None and tout is None:
        return None
    cost = usage.get("cost")
    return {
        "usage": {"input_tokens": tin, "output_tokens": tout,
                  "total_tokens": (tin or 0) + (tout or 0)},
        "provider_cost_usd": float(cost) if isinstance(cost, (int, float)) else None,
    }  # fmt: skip


# --- sending, with retries ---------------------------------------------------------------


def _retry_after(resp: httpx.Response) -> float | None:
    ms = resp.headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    raw = resp.headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _provider_message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:500].strip() or resp.reason_phrase
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])[:1000]
    if isinstance(err, str):
        return err[:1000]
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])[:1000]
    return json.dumps(data)[:500]


def _refused_request(resp: httpx.Response) -> bool:
    """Whether a 500 is the server refusing the request itself — a validation error, the
    same for every attempt — rather than a failure that may pass. The rule: the body (its
    first 4 KB) names a validation error ("N validation error(s) for ...",
    RequestValidationError, `validation_error`) or an OpenAI-style `invalid_request_error`."""
    return resp.status_code == 500 and bool(_REFUSED_RE.search(resp.text[:4096]))


def _retryable(resp: httpx.Response) -> bool:
    return resp.status_code in _RETRY_STATUS and not _refused_request(resp)


def _http_error(
    ep: Endpoint, resp: httpx.Response, attempts: int, body: dict[str, Any] | None = None
) -> KitaruBackendError:
    message = ep.scrub(_provider_message(resp))
    status = resp.status_code
    text = f"{ep.what} failed: HTTP {status} from {_strip_userinfo(ep.url)}: {message}"
    if _refused_request(resp):
        text += " (the server refused the request itself, so it was not retried)"
    sent_format = ((body or {}).get("response_format") or {}).get("type")
    if (
        400 <= status < 600
        and status not in (401, 403, 429)
        and sent_format
        and ("response_format" in message or sent_format in message)
    ):
        alt = "tool" if sent_format == "json_object" else "json_object"
        text += (
            f" This server may not support response_format {sent_format!r}: register its model "
            f"alias again with `--structured-output {alt}` (or `register_model_alias(..., "
            f"structured_output={alt!r})`)."
        )
    if status in (401, 403) and ep.key_var:
        if ep.credential_source == "secret":
            text += (
                f" The API key came from secret {ep.secret_name!r}: update it with "
                f"`kitaru secrets set {ep.secret_name} --{ep.key_var}` (prompts for it)."
            )
        elif ep.credential_source == "environment":
            text += f" The API key came from {ep.key_var}: set it to a valid key."
        elif ep.credential_source == "base_url":
            text += " The credentials came from the user info of the base URL: check them."
        else:
            text += f" No API key was sent: set {ep.key_var}."
    if attempts > 1:
        text += f" (after {attempts} attempts)"
    err = KitaruBackendError(text)
    err.status_code = status  # type: ignore[attr-defined]
    return err


def _delay(attempt: int, resp: httpx.Response | None, ep: Endpoint) -> float:
    if resp is not None:
        asked = _retry_after(resp)
        if asked is not None:
            cap = max_retry_wait()
            if asked > cap:
                raise KitaruBackendError(
                    f"{ep.what}: the provider asked to retry after {asked:.0f} s, longer than "
                    f"KITARU_LLM_MAX_RETRY_WAIT ({cap:.0f} s). HTTP {resp.status_code}: "
                    f"{ep.scrub(_provider_message(resp))}"
                )
            return asked
    return min(0.5 * (2.0**attempt), 30.0) * (0.5 + random.random() / 2)


def _network_error(ep: Endpoint, exc: Exception, attempts: int) -> KitaruBackendError:
    kind = "timed out" if "Timeout" in type(exc).__name__ else "could not connect"
    return KitaruBackendError(
        f"{ep.what} {kind}: {type(exc).__name__} talking to {_strip_userinfo(ep.url)}: "
        f"{ep.scrub(str(exc)) or 'no details'} (after {attempts} attempt{'s' * (attempts > 1)})."
    )


_clients: dict[int, httpx.Client] = {}


def _client() -> httpx.Client:
    import httpx

    client = _clients.get(os.getpid())
    if client is None:
        import atexit

        client = httpx.Client(follow_redirects=False, trust_env=True)
        _clients[os.getpid()] = client
        atexit.register(client.close)  # pooled connections closed, not left to the GC
    return client


# The steps of a request (`_sending`): post it, sleep before a retry.
_POST, _SLEEP = object(), object()


def _sending(ep: Endpoint, body: dict[str, Any], timeout: float) -> Any:
    """POST `body`, retrying transient failures, written once (see kitaru._steps): yields
    (_POST, kwargs) and (_SLEEP, seconds); returns the decoded JSON answer."""
    import httpx

    retries = max_retries()
    for attempt in range(retries + 1):
        try:
            resp = yield _POST, {"json": body, "headers": ep.headers, "timeout": timeout}
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            if attempt == retries:
                raise _network_error(ep, exc, attempt + 1) from None
            yield _SLEEP, _delay(attempt, None, ep)
            continue
        if resp.status_code < 300:
            return _decode(ep, resp)
        if _retryable(resp) and attempt < retries:
            yield _SLEEP, _delay(attempt, resp, ep)
            continue
        raise _http_error(ep, resp, attempt + 1, body)
    raise AssertionError("unreachable")  # pragma: no cover


def send(ep: Endpoint, body: dict[str, Any], timeout: float) -> Any:
    """POST `body`, retrying transient failures; the decoded JSON answer."""
    from .._steps import run_sync

    client = _client()

    def do(op: object, arg: Any) -> Any:
        return client.post(ep.url, **arg) if op is _POST else time.sleep(arg)

    return run_sync(_sending(ep, body, timeout), None, do)


async def send_async(ep: Endpoint, body: dict[str, Any], timeout: float) -> Any:
    """`send` for async flows: the event loop keeps running while the call is in flight."""
    import asyncio

    import httpx

    from .._steps import run_async

    async with httpx.AsyncClient(follow_redirects=False, trust_env=True) as client:

        async def do(op: object, arg: Any) -> Any:
            if op is _POST:
                return await client.post(ep.url, **arg)
            return await asyncio.sleep(arg)

        return await run_async(_sending(ep, body, timeout), None, do)


def _decode(ep: Endpoint, resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise KitaruBackendError(
            f"{ep.what}: the provider answered HTTP {resp.status_code} with a body that is not JSON: "
            f"{ep.scrub(resp.text[:300])!r}"
        ) from None
