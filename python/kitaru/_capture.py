"""Capture of a flow's output: stdout, stderr and `logging`, per checkpoint, into the store.

While a flow runs, `sys.stdout`/`sys.stderr` are wrapped (everything still reaches the
terminal) and a handler sits on the root logger. Lines are buffered with the checkpoint
that printed them and written as one record per batch: after each checkpoint that printed
something, when the flow ends or suspends, and before a wait polls. A checkpoint that
prints nothing costs no extra write.
"""

from __future__ import annotations

import _thread
import sys
import time

from ._context import current_checkpoint, current_flow

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Any, TextIO

    from ._context import FlowRun

_lock = _thread.allocate_lock()
_entries: dict[int, list[dict[str, Any]]] = {}  # id(FlowRun) -> buffered entries
_installed = 0
_saved: tuple[Any, Any] | None = None
_handler: Any = None


def _record(entry: dict[str, Any]) -> None:
    run = current_flow.get()
    if run is None:
        return
    scope = current_checkpoint.get()
    entry["checkpoint"] = scope.call_id if scope is not None else None
    with _lock:
        _entries.setdefault(id(run), []).append(entry)


class _Tee:
    """A text stream that writes through and records whole lines of the running flow."""

    def __init__(self, inner: TextIO, source: str) -> None:
        self._inner, self._source = inner, source
        self._partial: dict[int, str] = {}

    def write(self, s: str) -> int:
        n = self._inner.write(s)
        if current_flow.get() is not None and s:
            key = _thread.get_ident()
            text = self._partial.pop(key, "") + s
            *lines, rest = text.split("\n")
            if rest:
                self._partial[key] = rest
            for line in lines:
                _record(
                    {
                        "ts": time.time(),
                        "source": self._source,
                        "level": self._source.upper(),
                        "message": line,
                    }
                )
        return n

    def flush(self) -> None:
        self._inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _make_handler() -> logging.Handler:
    import logging

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if current_flow.get() is None:
                return
            try:
                message = record.getMessage()
            except Exception:  # a bad format string must not break the flow
                message = str(record.msg)
            _record({
                "ts": record.created, "source": "logging", "level": record.levelname, "message": message,
                "module": record.module, "filename": record.filename, "lineno": record.lineno,
                "logger": record.name,
            })  # fmt: skip

    return Handler()


def install() -> None:
    """Start capturing (nested flows in one process share one installation)."""
    global _installed, _saved, _handler
    with _lock:
        _installed += 1
        if _installed > 1:
            return
        _saved = (sys.stdout, sys.stderr)
    sys.stdout = _Tee(sys.stdout, "stdout")
    sys.stderr = _Tee(sys.stderr, "stderr")
    import logging

    _handler = _make_handler()
    logging.getLogger().addHandler(_handler)


def uninstall() -> None:
    global _installed, _saved, _handler
    with _lock:
        _installed -= 1
        if _installed > 0 or _saved is None:
            return
        saved, _saved = _saved, None
    if isinstance(sys.stdout, _Tee):
        sys.stdout = saved[0]
    if isinstance(sys.stderr, _Tee):
        sys.stderr = saved[1]
    if _handler is not None:
        import logging

        logging.getLogger().removeHandler(_handler)
        _handler = None


def flush_logs(run: FlowRun | None = None) -> None:
    """Write the buffered lines of `run` (default: the current flow) to the store."""
    run = run or current_flow.get()
    if run is None:
        return
    with _lock:
        entries = _entries.pop(id(run), None)
    if entries:
        import json

        run.runner.write_logs("".join(json.dumps(e, default=repr) + "\n" for e in entries))


def discard(run: FlowRun) -> None:
    with _lock:
        _entries.pop(id(run), None)
