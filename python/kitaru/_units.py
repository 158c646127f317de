"""Durable units: checkpoint calls made by framework code instead of a decorated function.

An adapter (`kitaru.adapters.pydantic_ai`, later LangGraph) runs each expensive step of a
framework — a model request, a tool call, a graph node — as one call of the running flow:
its id taken in call order, answered from the store on resume when a finished call with the
same name and input digest is there, recorded when it finishes. It is the same `_Call` a
`@checkpoint` makes, with a `Unit` standing for the decorated function.
"""

from __future__ import annotations

import hashlib
import re

from ._context import FlowRun, current_checkpoint, current_flow
from ._steps import run_async, run_sync
from .checkpoint import _Call

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator
    from typing import Any

    # Steps to run after the body returned and before the call is recorded (e.g. a ledger
    # entry for a model response): given the value and the call.
    After = Callable[[Any, _Call], Generator[tuple[Any, Any], Any, None]]

__all__ = ["Unit", "arun_unit", "flow_body", "run_unit", "unit_name"]

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_BRACKETS = str.maketrans("", "", "<>[](){}'\"")
# Call ids are 1-128 characters; the core appends `_<n>` for repeated calls.
_MAX_NAME = 112


def unit_name(raw: str) -> str:
    """A checkpoint name usable as a call id: brackets and quotes are dropped, ``:`` becomes
    ``.`` (``agent__function_toolset__<agent>.call_tool:search`` →
    ``agent__function_toolset__agent.call_tool.search``), other characters outside
    ``A-Za-z0-9_.-`` become ``_``; a name too long for an id keeps its start plus a digest of
    the whole, so distinct names stay distinct."""
    name = _ID_UNSAFE.sub("_", raw.translate(_BRACKETS).replace(":", ".")).strip("._") or "unit"
    if len(name) > _MAX_NAME:
        tail = hashlib.blake2b(raw.encode(), digest_size=5).hexdigest()
        name = f"{name[: _MAX_NAME - 11]}.{tail}"
    return name


def flow_body() -> FlowRun | None:
    """The flow run whose body (not a checkpoint inside it) is running here, else None."""
    run = current_flow.get()
    if run is None or current_checkpoint.get() is not None:
        return None
    return run


class Unit:
    """The checkpoint a unit's calls belong to (a `kitaru._types.Step`)."""

    __slots__ = ("_code", "allow_pickle", "cache", "checkpoint_type", "name", "retries")

    def __init__(
        self,
        name: str,
        checkpoint_type: str | None,
        *,
        retries: int = 0,
        cache: bool | None = False,
        code: bytes | None = None,
    ) -> None:
        self.name = unit_name(name)
        self.checkpoint_type = checkpoint_type
        self.retries = retries
        # Adapters store typed JSON (a framework's own codec), never pickles.
        self.allow_pickle = False
        self.cache = cache
        self._code = code

    def code_identity(self) -> bytes | None:
        """What decides the output besides the inputs, for the cross-execution cache: the
        adapter's version and the unit's kind (None: never answered from the cache)."""
        return self._code


def _steps(
    call: _Call, digest: bytes | None, after: After | None
) -> Generator[tuple[Any, Any], Any, tuple[bool, Any]]:
    """One unit call (see `kitaru._steps`): returns (reused, value)."""
    found, stored = yield from call.decide(digest)
    if found:
        return True, stored
    value, _ = yield from call.attempts(after)
    yield from call.done()
    return False, value


def _call(run: FlowRun, unit: Unit) -> _Call:
    return _Call(unit, run, run.allocate(unit.name, None), False, run.in_order())


async def arun_unit(
    run: FlowRun,
    unit: Unit,
    digest: bytes | None,
    body: Callable[[], Awaitable[Any]],
    after: After | None = None,
) -> tuple[bool, Any]:
    """Run `body` as one durable call of `run`'s flow body, awaited: (reused, value).

    `value` is what `body` returned (it must be storable by `kitaru.serde` without pickle:
    JSON-like data), or the stored value of an earlier run's call with the same name and
    `digest`. The call's id is taken now, in call order."""
    call = _call(run, unit)

    async def do(_op: object, _arg: None) -> Any:
        return await body()

    return await run_async(call.traced(_steps(call, digest, after)), run.runner, do)  # type: ignore[no-any-return]


def run_unit(
    run: FlowRun,
    unit: Unit,
    digest: bytes | None,
    body: Callable[[], Any],
    after: After | None = None,
) -> tuple[bool, Any]:
    """`arun_unit` for a blocking `body`."""
    call = _call(run, unit)
    return run_sync(  # type: ignore[no-any-return]
        call.traced(_steps(call, digest, after)), run.runner, lambda _op, _arg: body()
    )
