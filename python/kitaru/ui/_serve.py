"""Starting a dashboard: the token, the socket, the printed link, uvicorn."""

from __future__ import annotations

import os
import secrets
import socket
import sys
from typing import Any

_MISSING = (
    "The dashboard needs kitaru's ui extra (Starlette, uvicorn, Jinja2): pip install 'kitaru[ui]'"
)


def serve(
    *, host: str = "127.0.0.1", port: int = 8384, stack: str | None = None,
    open_browser: bool | None = None,
) -> None:  # fmt: skip
    """Serves the dashboard until interrupted; prints the link (with its token) first.

    `port=0` takes a free port. `open_browser` None: open one when stdout is a terminal.
    """
    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as exc:
        from ..errors import KitaruFeatureNotAvailableError

        raise KitaruFeatureNotAvailableError(_MISSING) from exc
    from .._jobs import child_env
    from ._app import Settings, build_app

    env = child_env()
    # Values are shown from their bytes and pickles never loaded here, whatever the
    # environment opts into; the runs the dashboard starts keep the user's setting.
    os.environ.pop("KITARU_ALLOW_PICKLE", None)
    sock = _bind(host, port)
    port = sock.getsockname()[1]
    token = secrets.token_urlsafe(24)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/?token={token}"
    settings = Settings(stack=stack, token=token, host=host, port=port, cwd=os.getcwd(), env=env)
    app = build_app(settings)
    print(f"kitaru ui: {url}", flush=True)
    print("  (the link carries this launch's token; Ctrl-C stops the dashboard)", flush=True)
    if open_browser if open_browser is not None else sys.stdout.isatty():
        import webbrowser

        webbrowser.open(url)
    config: Any = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        from ..errors import KitaruUsageError

        raise KitaruUsageError(
            f"Cannot listen on {host}:{port} ({exc.strerror}); another program (or dashboard) "
            "may have it: pass --port N, or --port 0 for any free port."
        ) from None
    sock.listen(128)
    sock.set_inheritable(False)
    return sock
