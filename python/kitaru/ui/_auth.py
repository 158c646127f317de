"""Who may use a dashboard: whoever has the link `kitaru ui` printed.

The link carries a token made for this launch. Opening it sets a cookie (HttpOnly,
SameSite=Strict, named after the port, since cookies are shared across a host's ports)
and redirects to the same page without the token, so the token is not left in the
address bar or history. Every request needs the cookie; a request that changes anything
(every POST) also needs the token in its form or an ``X-Kitaru-Token`` header, and an
``Origin``, when the browser sends one, of the dashboard itself. On a loopback address
the ``Host`` header must name it too, so a web page cannot reach the dashboard through a
name of its own that resolves to 127.0.0.1 (DNS rebinding).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")

SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # "no-referrer" makes form posts send Origin: null
    (b"cache-control", b"no-store"),
]  # fmt: skip


def same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


class TokenGate:
    """ASGI middleware: refuses what lacks the launch token (see the module's text)."""

    def __init__(self, app: ASGIApp, token: str, host: str, port: int) -> None:
        self.app, self.token, self.port = app, token, port
        self.cookie = f"kitaru_ui_{port}"
        self.hosts = (
            {f"{h}:{port}" for h in LOOPBACK} if host in LOOPBACK else None
        )  # None: any Host (the user chose a public address; the token still guards)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if self.hosts is not None and headers.get("host") not in self.hosts:
            await _refuse(send, 421, "This dashboard answers only on its own address.")
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = next((v for k, v in query if k == "token"), None)
        if given is not None:
            if not same(given, self.token):
                await _refuse(send, 403, _WRONG_TOKEN)
                return
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            where = scope["path"] + (f"?{rest}" if rest else "")
            await _redirect_with_cookie(send, where, self.cookie, self.token)
            return
        if not same(_cookie(headers.get("cookie", ""), self.cookie), self.token):
            await _refuse(send, 403, _NO_TOKEN)
            return
        if scope["method"] not in ("GET", "HEAD"):
            origin = headers.get("origin")
            if origin is not None and origin.split("://", 1)[-1] != headers.get("host"):
                await _refuse(send, 403, "Refused: this request came from another site.")
                return
            scope.setdefault("state", {})["needs_form_token"] = not same(
                headers.get("x-kitaru-token"), self.token
            )
        await self.app(scope, receive, _with_headers(send))


_NO_TOKEN = (
    "This dashboard needs the link that `kitaru ui` printed when it started (it carries a "
    "token made for that launch). Open that link, or start `kitaru ui` again for a new one."
)
_WRONG_TOKEN = "That token is not this dashboard's. Open the link `kitaru ui` printed."


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
        await send(message)

    return sending


async def _refuse(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


async def _redirect_with_cookie(send: Send, where: str, name: str, token: str) -> None:
    cookie = f"{name}={token}; HttpOnly; SameSite=Strict; Path=/"
    await send({"type": "http.response.start", "status": 303, "headers": [
        (b"location", where.encode("latin-1")), (b"set-cookie", cookie.encode()),
        (b"content-length", b"0"), *SECURITY_HEADERS]})  # fmt: skip
    await send({"type": "http.response.body", "body": b""})
