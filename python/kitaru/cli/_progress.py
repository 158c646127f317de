"""Progress of a long command on a terminal: one line on stderr, rewritten in place.

Shown only when stderr is a terminal (never in a pipe, a log or ``--output json``, whose
stdout stays clean either way) and only once the work has taken longer than a moment, so
quick commands print nothing extra. The core counts the work (`kitaru._kitaru.Progress`,
plain atomics it bumps with the GIL released); a thread here reads it four times a second.
A dozen lines do this; a progress-bar library would add an import to every command for
what one ``\\r`` does.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

SHOW_AFTER = 0.5  # seconds before the first line
EVERY = 0.25


def on_terminal(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def _line(what: str, phase: str, done: int, total: int) -> str:
    count = f"{done:,}/{total:,}" if total else f"{done:,}"
    return f"{what}: {phase} {count}" if phase else f"{what}: {count}"


@contextmanager
def progress(what: str, stream: TextIO | None = None) -> Iterator[Any]:
    """Yields a `Progress` for a core call to count on, or None when nothing is shown."""
    out = stream or sys.stderr
    if not on_terminal(out):
        yield None
        return
    from .._kitaru import Progress

    p = Progress()
    stop = threading.Event()

    def show() -> None:
        if stop.wait(SHOW_AFTER):
            return
        width = 0
        while True:
            phase, done, total, _ = p.read()
            text = _line(what, phase, done, total)
            out.write("\r" + text.ljust(width))
            out.flush()
            width = len(text)
            if stop.wait(EVERY):
                out.write("\r" + " " * width + "\r")
                out.flush()
                return

    thread = threading.Thread(target=show, name="kitaru-progress", daemon=True)
    thread.start()
    try:
        yield p
    finally:
        stop.set()
        thread.join()


class StatusLine:
    """A line under streamed output (``logs --follow``) that says what the stream waits
    for; cleared before each new output line, so the output itself stays as it is."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.out = stream or sys.stderr
        self.live = on_terminal(self.out)
        self.width = 0

    def show(self, text: str) -> None:
        if self.live:
            self.out.write("\r" + text.ljust(self.width))
            self.out.flush()
            self.width = len(text)

    def clear(self) -> None:
        if self.live and self.width:
            self.out.write("\r" + " " * self.width + "\r")
            self.out.flush()
            self.width = 0


def timed(start: float) -> str:
    secs = time.monotonic() - start
    return f"{secs:.0f}s" if secs < 120 else f"{secs / 60:.0f}m"


__all__ = ["StatusLine", "on_terminal", "progress", "timed"]
