"""Resolving the tokens kitaru hands to PydanticAI's `ask` callbacks.

A wait for an external event in a flow (`wait_for_external_event`, PydanticAI's
`RequestInput`) is a `kitaru.wait()`; its token is ``kitaru:<execution id>:<wait name>``.
Whoever gets the token (an approval endpoint, a Slack bot) answers with `resolve_event`,
from any process that sees the store, then ``kitaru executions resume <id>`` continues the
flow (or a runner still polling picks the answer up).
"""

from __future__ import annotations

from typing import Any

from ...errors import KitaruUsageError

__all__ = ["FAILURE_KEY", "fail_event", "parse_token", "resolve_event"]

# An answer that is a failure, not a payload: the wait raises ExternalEventError(reason).
FAILURE_KEY = "__kitaru_external_event_error__"


def parse_token(token: str) -> tuple[str, str]:
    """(execution id, wait name) of a token made by kitaru."""
    parts = token.split(":", 2) if isinstance(token, str) else []
    if len(parts) != 3 or parts[0] != "kitaru" or not parts[1] or not parts[2]:
        raise KitaruUsageError(
            f"{token!r} is not a token kitaru handed out (expected 'kitaru:<execution id>:"
            "<wait name>', as given to the `ask` callback of a wait in a flow)."
        )
    return parts[1], parts[2]


def resolve_event(token: str, payload: Any) -> None:
    """Answer the wait `token` names with `payload` (JSON-able), from any process."""
    from pydantic_core import to_jsonable_python

    from ...client import KitaruClient

    exec_id, wait = parse_token(token)
    KitaruClient().executions.input(exec_id, wait=wait, value=to_jsonable_python(payload))


def fail_event(token: str, reason: str) -> None:
    """End the wait `token` names without a payload: in the flow it raises PydanticAI's
    `ExternalEventError(reason)` (`RequestInput` then denies the pending calls)."""
    from ...client import KitaruClient

    if not isinstance(reason, str) or not reason:
        raise KitaruUsageError("fail_event() needs a reason: a non-empty string.")
    exec_id, wait = parse_token(token)
    KitaruClient().executions.input(exec_id, wait=wait, value={FAILURE_KEY: reason})
