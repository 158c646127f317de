"""Logic written once, run blocking or awaited.

A call, a wait or an `llm()` request is a generator that yields what it needs done next
(`(op, arg)`: run the body, store a record, poll the store, send a request, sleep) and
receives the result, or has the step's exception thrown in. `run_sync` does each step
blocking; `run_async` awaits it, so an async flow's event loop keeps running. The
sync/async difference lives only in the small `do` functions the callers pass.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator
    from typing import Any

    Steps = Generator[tuple[Any, Any], Any, Any]


def run_sync(steps: Steps, do: Callable[[Any, Any], Any]) -> Any:
    """Drives `steps` to its return value, doing each step with `do(op, arg)`."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            op, arg = steps.send(result) if error is None else steps.throw(error)
        except StopIteration as stop:
            return stop.value
        try:
            result, error = do(op, arg), None
        except BaseException as exc:  # handed to the logic, which re-raises what it does not handle
            result, error = None, exc


async def run_async(steps: Steps, do: Callable[[Any, Any], Awaitable[Any]]) -> Any:
    """`run_sync`, awaiting each step."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            op, arg = steps.send(result) if error is None else steps.throw(error)
        except StopIteration as stop:
            return stop.value
        try:
            result, error = await do(op, arg), None
        except BaseException as exc:
            result, error = None, exc
