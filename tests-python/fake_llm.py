"""A local LLM provider for tests: a real HTTP server on 127.0.0.1 that speaks the OpenAI
chat-completions and the Anthropic messages wire formats (text, tool calls, usage,
errors), so kitaru's real client code is what talks to it.

Answers come from a script of queued `Reply`s (status, headers, text, tool calls, usage,
delay); with nothing queued the server answers ``"echo: <last user text>"``. Every request
is recorded (path, headers, JSON body), and checked against the expected API key: a wrong
key gets the provider's 401, which echoes a masked form of the key as real providers do.
With `basic_auth` set the OpenAI routes want those HTTP Basic credentials instead, and a
refusal echoes the Authorization header it got, as some gateways do. With `llamacpp` set
the OpenAI routes refuse what llama.cpp's server (llama-cpp-python) refuses, the same way:
HTTP 500 with a pydantic validation error for a null `content` or a `response_format`
other than text/json_object.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OPENAI_KEY = "sk-test-openai-0123456789abcdefXYZ"
ANTHROPIC_KEY = "sk-ant-test-9876543210fedcbaQRS"
SCHEMA_TOOL_DESCRIPTION = "Give the final answer in this structure."  # kitaru's answer tool


@dataclass
class Reply:
    status: int = 200
    text: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    usage: tuple[int, int] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    error: str | None = None
    body: str | None = None  # sent verbatim (e.g. not JSON)
    cost: float | None = None  # OpenRouter-style usage.cost
    echo_auth: bool = False  # the error message quotes the request's Authorization header


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def last_user_text(self) -> str:
        for m in reversed(self.body.get("messages", [])):
            if m.get("role") == "user":
                c = m.get("content")
                if isinstance(c, str):
                    return c
                if isinstance(c, list):
                    return " ".join(
                        p.get("text", "") or str(p.get("content", ""))
                        for p in c
                        if isinstance(p, dict)
                    )
        return ""


def _words(body: dict[str, Any]) -> int:
    return max(1, len(json.dumps(body.get("messages", []))) // 4)


class FakeLLM:
    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[Request] = []
        self.openai_key: str | None = OPENAI_KEY
        self.anthropic_key: str | None = ANTHROPIC_KEY
        self.basic_auth: tuple[str, str] | None = None
        self.llamacpp = False
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(n)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_invalid": raw.decode(errors="replace")}
                req = Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with server._lock:
                    server.requests.append(req)
                    reply = server.replies.popleft() if server.replies else Reply()
                status, headers, payload = server._answer(req, reply)
                if reply.delay:
                    time.sleep(reply.delay)
                data = payload.encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    # --- addresses for kitaru ---------------------------------------------------------

    @property
    def openai_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment pointing OpenAI and Anthropic (and their keys) at this server."""
        return {
            "OPENAI_BASE_URL": self.openai_base,
            "OPENAI_API_KEY": OPENAI_KEY,
            "ANTHROPIC_BASE_URL": self.anthropic_base,
            "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
            "OLLAMA_HOST": f"127.0.0.1:{self.port}",
            "OPENROUTER_BASE_URL": self.openai_base,
        }

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    # --- answering --------------------------------------------------------------------

    def _answer(self, req: Request, reply: Reply) -> tuple[int, dict[str, str], str]:
        headers = {"content-type": "application/json", **reply.headers}
        anthropic = req.path.rstrip("/").endswith("/messages")
        if reply.body is not None:
            return reply.status, headers, reply.body
        auth = self._check_auth(req, anthropic)
        if auth is not None:
            return 401, headers, auth
        refused = None if anthropic or not self.llamacpp else self._llamacpp_refusal(req)
        if refused is not None:
            return 500, headers, refused
        if reply.status >= 300:
            message = reply.error or f"fake provider error {reply.status}"
            if reply.echo_auth:
                message += f" (request header Authorization: {req.headers.get('authorization')})"
            if anthropic:
                err = {"type": "error", "error": {"type": "api_error", "message": message}}
            else:
                err = {"error": {"message": message, "type": "server_error", "code": None}}
            return reply.status, headers, json.dumps(err)
        text = (
            reply.text
            if (reply.text is not None or reply.tool_calls)
            else f"echo: {req.last_user_text}"
        )
        tin, tout = reply.usage or (_words(req.body), max(1, len((text or "").split())))
        if anthropic:
            return 200, headers, json.dumps(self._anthropic(req, text, reply, tin, tout))
        return 200, headers, json.dumps(self._openai(req, text, reply, tin, tout))

    def _llamacpp_refusal(self, req: Request) -> str | None:
        """llama-cpp-python's answer to a body its pydantic model rejects: HTTP 500, an
        OpenAI-style error of type internal_server_error quoting the validation error."""
        errors = []
        for i, m in enumerate(req.body.get("messages", [])):
            if m.get("content") is None:
                errors.append(
                    f"messages.{i}.typed-dict.content\n  Input should be a valid string "
                    "[type=string_type, input_value=None, input_type=NoneType]"
                )
        kind = (req.body.get("response_format") or {}).get("type", "text")
        if kind not in ("text", "json_object"):
            errors.append(
                "response_format.type\n  Input should be 'text' or 'json_object' "
                f"[type=literal_error, input_value='{kind}', input_type=str]"
            )
        if not errors:
            return None
        n = len(errors)
        message = (
            f"{n} validation error{'s' * (n > 1)} for CreateChatCompletionRequest\n"
            + "\n".join(errors)
        )
        return json.dumps(
            {
                "error": {
                    "message": message,
                    "type": "internal_server_error",
                    "param": None,
                    "code": None,
                }
            }
        )

    def _check_auth(self, req: Request, anthropic: bool) -> str | None:
        if not anthropic and self.basic_auth is not None:
            import base64

            user, password = self.basic_auth
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            got_header = req.headers.get("authorization")
            if got_header == f"Basic {token}":
                return None
            return json.dumps(
                {
                    "error": {
                        "message": f"Unauthorized: bad credentials in Authorization: {got_header}",
                        "type": "invalid_request_error",
                        "code": "unauthorized",
                    }
                }
            )
        if anthropic:
            expected, got = self.anthropic_key, req.headers.get("x-api-key")
        else:
            expected = self.openai_key
            got = (req.headers.get("authorization") or "").removeprefix("Bearer ") or None
        if expected is None or got == expected:
            return None
        masked = f"{got[:6]}***{got[-4:]}" if got and len(got) > 12 else str(got)
        message = f"Incorrect API key provided: {masked}. You can find your API key at the console."
        if anthropic:
            return json.dumps(
                {"type": "error", "error": {"type": "authentication_error", "message": message}}
            )
        return json.dumps(
            {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            }
        )

    def _openai(
        self, req: Request, text: str | None, reply: Reply, tin: int, tout: int
    ) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": text}
        choice = req.body.get("tool_choice")
        forced = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
        schema_tool = any(
            t.get("function", {}).get("name") == forced
            and t.get("function", {}).get("description") == SCHEMA_TOOL_DESCRIPTION
            for t in req.body.get("tools") or ()
        )
        if schema_tool and not reply.tool_calls and text is not None:
            # kitaru's structured output mode `tool` (a forced answer tool): the queued text
            # is the call's arguments, as a model constrained to the tool would answer.
            msg = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_s",
                        "type": "function",
                        "function": {"name": forced, "arguments": text},
                    }
                ],
            }
        if reply.tool_calls:
            msg["tool_calls"] = [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": n, "arguments": json.dumps(a)},
                }
                for i, (n, a) in enumerate(reply.tool_calls)
            ]
        usage: dict[str, Any] = {
            "prompt_tokens": tin,
            "completion_tokens": tout,
            "total_tokens": tin + tout,
        }
        if reply.cost is not None:
            usage["cost"] = reply.cost
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": req.body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": msg,
                    "finish_reason": "tool_calls" if msg.get("tool_calls") else "stop",
                }
            ],
            "usage": usage,
        }

    def _anthropic(
        self, req: Request, text: str | None, reply: Reply, tin: int, tout: int
    ) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if text is not None:
            content.append({"type": "text", "text": text})
        forced = (req.body.get("tool_choice") or {}).get("name")
        for i, (n, a) in enumerate(reply.tool_calls):
            content.append({"type": "tool_use", "id": f"toolu_{i}", "name": n, "input": a})
        if forced and not reply.tool_calls and text is not None:
            # A forced tool (kitaru's structured output): answer with the queued JSON as input.
            try:
                answer = json.loads(text)
            except ValueError:  # not JSON: the model "answered" in prose
                answer = {"value": text}
            content = [{"type": "tool_use", "id": "toolu_s", "name": forced, "input": answer}]
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": req.body.get("model"),
            "content": content,
            "stop_reason": "tool_use"
            if any(c["type"] == "tool_use" for c in content)
            else "end_turn",
            "usage": {"input_tokens": tin, "output_tokens": tout},
        }
