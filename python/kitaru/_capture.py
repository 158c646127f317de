"""Capture of a flow's output: stdout, stderr and `logging`, per checkpoint, into the store.

While a flow runs, `sys.stdout`/`sys.stderr` are wrapped (everything still reaches the
terminal) and a handler sits on the root logger. Lines are buffered with the checkpoint
that printed them and written as one record per batch: after each checkpoint that printed
something, when the flow ends or suspends, and before a wait polls. A checkpoint that
prints nothing costs no extra write.

Records are bounded: a line longer than `LOG_LINE_LIMIT` characters (256 Ki) keeps its
start and says how much was cut, and a batch larger than `LOG_BATCH_BYTES` (8 MiB) is
written as several records.
"""

from __future__ import annotations

import _thread
import sys
import time

from ._context import LOG_LINE_LIMIT, clip, current_checkpoint, current_flow
from ._steps import run_sync

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Generator
    from typing import Any, TextIO

    from ._context import FlowRun

_lock = _thread.allocate_lock()
_entries: dict[int, list[dict[str, Any]]] = {}  # id(FlowRun) -> buffered entries
_installed = 0
_saved: tuple[Any, Any] | None = None
_handler: Any = None

# The most JSON one log record holds (lines are ASCII JSON: one byte per character); a
# record may hold 64 MiB, and one line is at most ~1.6 MB of JSON (LOG_LINE_LIMIT
# characters, each escaped to 6 at worst).
LOG_BATCH_BYTES = 8 << 20


def _record(entry: dict[str, Any]) -> None:
    run = current_flow.get()
    if run is None:
        return
    for key, value in entry.items():
        if isinstance(value, str) and len(value) > LOG_LINE_LIMIT:
            entry[key] = clip(value, LOG_LINE_LIMIT)
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
                try:
                    message = str(record.msg)
                except Exception:
                    message = f"<unprintable log message of type {type(record.msg).__name__}>"
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


def log_steps(run: FlowRun) -> Generator[tuple[str, tuple[str]], Any, None]:
    """Write the buffered lines of `run` to the store (steps of `kitaru._steps`)."""
    with _lock:
        entries = _entries.pop(id(run), None)
    if entries:
        for batch in _batches(entries):
            yield "write_logs", (batch,)


def flush_logs(run: FlowRun | None = None) -> None:
    """Write the buffered lines of `run` (default: the current flow) to the store, blocking."""
    run = run or current_flow.get()
    if run is not None:
        run_sync(log_steps(run), run.runner)


def _batches(entries: list[dict[str, Any]]) -> list[str]:
    """The entries as JSON lines, in batches of at most `LOG_BATCH_BYTES` (one record each)."""
    import json

    batches: list[str] = []
    lines: list[str] = []
    size = 0
    for entry in entries:
        line = json.dumps(entry, default=_safe_repr) + "\n"
        if lines and size + len(line) > LOG_BATCH_BYTES:
            batches.append("".join(lines))
            lines, size = [], 0
        lines.append(line)
        size += len(line)
    if lines:
        batches.append("".join(lines))
    return batches


def _safe_repr(value: Any) -> str:
    try:
        return clip(repr(value), LOG_LINE_LIMIT)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def discard(run: FlowRun) -> None:
    with _lock:
        _entries.pop(id(run), None)
