"""kitaru keeps working in a child process forked after it was used (multiprocessing on
Linux, prefork servers): the child gets its own I/O runtime."""

from __future__ import annotations

import os
import select
import signal
import sys
import warnings

import pytest
from kitaru import KitaruClient, checkpoint, flow


@checkpoint
def square(x: int) -> int:
    return x * x


@flow
def squares(n: int) -> list[int]:
    return [square(i) for i in range(n)]


@pytest.mark.both_stores
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_after_use() -> None:
    assert squares.run(3).wait() == [0, 1, 4]  # the parent's runtime is up
    read, write = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads (kitaru's I/O runtime) is
        # risky in general: that risk is what this test checks kitaru handles.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(read)
            handle = squares.run(4)
            ok = handle.wait() == [0, 1, 4, 9] and len(KitaruClient().executions.list()) == 2
            os.write(write, b"ok" if ok else b"wrong")
            code = 0
        except BaseException as exc:  # report anything to the parent
            os.write(write, repr(exc).encode()[:500])
        finally:
            os._exit(code)
    os.close(write)
    # A child whose I/O hangs (a runtime or connection inherited across fork) never
    # answers: give up after a generous bound instead of hanging the suite.
    ready, _, _ = select.select([read], [], [], 120)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read)
        pytest.fail("the forked child hung using kitaru (no answer in 120 s)")
    with os.fdopen(read, "rb") as f:
        message = f.read()
    _, status = os.waitpid(pid, 0)
    assert message == b"ok", message
    assert os.waitstatus_to_exitcode(status) == 0
    # and the parent still works after the child used kitaru
    assert squares.run(2).wait() == [0, 1]
    assert len(KitaruClient().executions.list()) == 3
    sys.stdout.flush()
