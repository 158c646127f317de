"""Logic written once, run blocking or awaited.

A call, a wait, an `llm()` request or a pass over a flow body is a generator that yields
what it needs done next and receives the result, or has the step's exception thrown in.
A step is ``(method name, args)`` for an I/O call of the Rust runner (``"record_checkpoint"``,
``"settle_call"``, ``"open_wait"``, ...: every such binding takes ``awaitable=True``), or
``(op, arg)`` with any other object as `op` for what the caller does itself (run the body,
send a request, sleep), handed to its `do` function. `run_sync` does each step blocking;
`run_async` awaits it, so an async flow's event loop keeps running. The sync/async
difference lives here and in the callers' small `do` functions only.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator
    from typing import Any

    Steps = Generator[tuple[Any, Any], Any, Any]


def _advance(steps: Steps, result: Any, error: BaseException | None) -> tuple[bool, Any]:
    """Hands `steps` the last step's result (or throws its error in): (False, the next
    step) or (True, what `steps` returned)."""
    try:
        return False, (steps.send(result) if error is None else steps.throw(error))
    except StopIteration as stop:
        return True, stop.value


def run_sync(steps: Steps, runner: Any, do: Callable[[Any, Any], Any] | None = None) -> Any:
    """Drives `steps` to its return value: runner steps on `runner`, others by `do(op, arg)`."""
    done, step = _advance(steps, None, None)
    while not done:
        op, arg = step
        error: BaseException | None = None
        try:
            result = getattr(runner, op)(*arg) if op.__class__ is str else do(op, arg)  # type: ignore[misc]
        except BaseException as exc:  # handed to the logic, which re-raises what it does not handle
            result, error = None, exc
        # Thrown in outside the `except` block: an error the logic raises later is not
        # chained to this one (its traceback would show an unrelated failure).
        done, step = _advance(steps, result, error)
    return step


async def run_async(
    steps: Steps, runner: Any, do: Callable[[Any, Any], Awaitable[Any]] | None = None
) -> Any:
    """`run_sync`, awaiting each step (a runner step with ``awaitable=True``).

    A store write in flight is shielded from the task's cancellation (as the blocking
    write of a sync flow is): a cancelled `arun()` still finishes the record it started,
    so a run that was recording how it ended does not stay `running` until its lease
    lapses. The cancellation is then thrown into the logic as usual.
    """
    from asyncio import shield

    from ._kitaru import Ready

    done, step = _advance(steps, None, None)
    while not done:
        op, arg = step
        error: BaseException | None = None
        try:
            if op.__class__ is str:
                pending = getattr(runner, op)(*arg, awaitable=True)
                result = await (pending if pending.__class__ is Ready else shield(pending))
            else:
                result = await do(op, arg)  # type: ignore[misc]
        except BaseException as exc:
            result, error = None, exc
        done, step = _advance(steps, result, error)
    return step
