"""The step drivers (`kitaru._steps`): a store write in flight survives the cancellation
of an async flow's task (as a blocking write does), and an error a step raised is not
chained to a later, unrelated one."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import pytest
from kitaru._steps import run_async, run_sync


class SlowStore:
    """Stands in for the Rust runner: `complete` is a write that takes `seconds` on the
    event loop (as a PUT to a remote store does)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.writes: list[asyncio.Future[str]] = []

    def complete(self, value: str, *, awaitable: bool = False) -> Any:
        assert awaitable
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str] = loop.create_future()
        loop.call_later(self.seconds, done.set_result, f"stored {value}")
        self.writes.append(done)
        return done


def test_a_write_in_flight_finishes_when_the_task_is_cancelled() -> None:
    seen: list[BaseException] = []

    def ending() -> Generator[tuple[Any, Any], Any, None]:
        try:
            yield "complete", ("result",)
        except BaseException as exc:
            seen.append(exc)
            raise

    async def main() -> SlowStore:
        store = SlowStore(0.2)
        task = asyncio.create_task(run_async(ending(), store))
        await asyncio.sleep(0.05)  # the write is in flight
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.3)
        return store

    store = asyncio.run(main())
    (write,) = store.writes
    # The record was written all the same; the logic saw the cancellation.
    assert write.done() and not write.cancelled() and write.result() == "stored result"
    assert [type(e) for e in seen] == [asyncio.CancelledError]


class RefusingStore:
    def log_metadata(self, text: str) -> None:
        raise OSError("disk full")


def test_a_swallowed_step_error_is_not_chained_to_a_later_one() -> None:
    def steps() -> Generator[tuple[Any, Any], Any, None]:
        try:
            yield "log_metadata", ("{}",)
        except OSError:
            pass  # the ledger matters less than what follows
        raise ValueError("the result cannot be stored")

    with pytest.raises(ValueError) as caught:
        run_sync(steps(), RefusingStore())
    assert caught.value.__context__ is None, caught.value.__context__
