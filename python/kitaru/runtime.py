"""The helpers Kitaru 0.4's examples import from `kitaru.runtime` (private names, kept so
those examples run unchanged). New code uses `kitaru.current_execution_id()`."""

from __future__ import annotations

from ._context import current_checkpoint, current_execution_id, current_flow

__all__: list[str] = []


def _get_current_execution_id() -> str | None:
    """The id of the execution running in this context, else None."""
    return current_execution_id()


def _get_current_flow() -> str | None:
    """The name of the flow running in this context, else None."""
    run = current_flow.get()
    return None if run is None else run.flow_name


def _get_current_checkpoint_id() -> str | None:
    """The call id of the checkpoint whose body runs in this context, else None."""
    scope = current_checkpoint.get()
    return None if scope is None else scope.call_id


def _is_inside_flow() -> bool:
    return current_flow.get() is not None


def _is_inside_checkpoint() -> bool:
    return current_checkpoint.get() is not None
