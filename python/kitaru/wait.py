"""`kitaru.wait()`: suspend a flow until a person (or another agent) answers.

The flow records the wait, then this process polls the store for the answer for
`timeout` seconds (prompting in place on an interactive terminal). An answer in time
continues the flow here; otherwise the flow unwinds, the execution becomes `waiting`,
and the process is free to exit. `kitaru executions input` records the answer later,
`kitaru executions resume` runs the flow again from the top in a new process, and this
call then returns the stored answer at once.
"""

from __future__ import annotations

import os
import sys
import time

from . import _config
from ._context import (
    FlowCancelled,
    WaitSuspended,
    check_lease,
    current_checkpoint,
    current_flow,
    outside_flow_message,
)
from .errors import KitaruContextError, KitaruUsageError, KitaruWaitValidationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._context import FlowRun

__all__ = ["wait"]


def describe_schema(schema: Any) -> tuple[str | None, str | None]:
    """(JSON Schema, importable `module:qualname` of the type) of a wait's `schema`."""
    if schema is None:
        return None, None
    import json

    from pydantic import TypeAdapter

    try:
        schema_json = json.dumps(TypeAdapter(schema).json_schema())
    except Exception as exc:
        raise KitaruUsageError(
            f"wait() schema {schema!r} cannot be described as JSON Schema: {exc}"
        ) from exc
    type_ref = None
    if isinstance(schema, type) and "<locals>" not in schema.__qualname__:
        type_ref = f"{schema.__module__}:{schema.__qualname__}"
    return schema_json, type_ref


def coerce(schema: Any, value: Any, name: str) -> Any:
    """The answer as the schema's type (a dict answer for a pydantic model becomes the model)."""
    if schema is None:
        return None
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(schema).validate_python(value)
    except ValidationError as exc:
        raise KitaruWaitValidationError(
            f"The answer to wait {name!r} does not match its schema: {exc}"
        ) from exc


def wait(
    *,
    schema: Any = None,
    name: str | None = None,
    question: str | None = None,
    timeout: float | None = None,
    metadata: dict[str, Any] | None = None,
) -> Any:
    """Wait for input from outside the flow; returns the answer validated against `schema`.

    Args:
        schema: the type of the answer (``bool``, ``str``, a pydantic model, ...). ``None``
            makes the wait a continue/abort gate that returns ``None``.
        name: unique within the execution; default ``wait_1``, ``wait_2``, ... in call order.
        question: shown by ``kitaru executions list/get/input`` and the prompt.
        timeout: seconds this process polls for the answer before it suspends the flow
            (default ``KITARU_WAIT_TIMEOUT`` or 600). Not an expiry: input can come any time.
        metadata: JSON-able data stored with the wait.
    """
    run = current_flow.get()
    if run is None:
        raise KitaruContextError(outside_flow_message("wait()"))
    if current_checkpoint.get() is not None:
        raise KitaruContextError(
            "wait() cannot be called inside a @checkpoint. Call wait() in the flow body instead."
        )
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
    ):
        raise KitaruUsageError(f"wait() timeout must be a number of seconds >= 0, got {timeout!r}.")
    if metadata is not None and not isinstance(metadata, dict):
        raise KitaruUsageError(f"wait() metadata must be a dict, got {type(metadata).__name__}.")
    if question is not None and not isinstance(question, str):
        raise KitaruUsageError(f"wait() question must be a string, got {type(question).__name__}.")
    import json

    wait_name = run.allocate_wait(name)
    schema_json, type_ref = describe_schema(schema)
    meta_json = json.dumps(metadata or {}, default=repr)
    answer = run.runner.open_wait(wait_name, question, schema_json, type_ref, meta_json)
    if answer is None:
        seconds = _config.wait_timeout() if timeout is None else float(timeout)
        answer = _poll(run, wait_name, question, schema, schema_json, seconds)
    aborted, value_json = answer
    if aborted:
        raise FlowCancelled(f"wait {wait_name!r} was aborted")
    return coerce(schema, json.loads(value_json) if value_json is not None else None, wait_name)


def _interactive() -> bool:
    try:
        return sys.stdin.isatty() and sys.stdout.isatty() and os.environ.get("CI") is None
    except (AttributeError, ValueError):
        return False


def _poll(
    run: FlowRun,
    name: str,
    question: str | None,
    schema: Any,
    schema_json: str | None,
    seconds: float,
) -> tuple[bool, str | None]:
    """Poll (and prompt, on a terminal) until an answer arrives or `seconds` pass."""
    from ._capture import flush_logs

    flush_logs()
    deadline = time.monotonic() + seconds
    prompt = _Prompt(run, name, question, schema, schema_json) if _interactive() else None
    delay = 0.1
    while True:
        answer = run.runner.poll_answer(name)
        if answer is not None:
            return answer
        check_lease(run)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitSuspended(name, question)
        step = min(delay, remaining)
        if prompt is not None:
            typed = prompt.read(step)
            if typed is not None:
                return typed
        else:
            time.sleep(step)
        delay = min(delay * 2, 1.0)


class _Prompt:
    """Asks on the terminal while the store is polled; a typed answer is recorded like any input."""

    def __init__(
        self, run: FlowRun, name: str, question: str | None, schema: Any, schema_json: str | None
    ):
        self.run, self.name, self.schema = run, name, schema
        hint = (
            "press Enter to continue, or type 'abort'"
            if schema is None
            else f"a JSON value matching {schema_json}"
        )
        print(
            f"\n[kitaru] {question or name}\n[kitaru] ({hint}; {name} of execution {run.exec_id})",
            flush=True,
        )
        self._show()

    def _show(self) -> None:
        print("> ", end="", flush=True)

    def read(self, seconds: float) -> tuple[bool, str | None] | None:
        import select

        ready, _, _ = select.select([sys.stdin], [], [], seconds)
        if not ready:
            return None
        line = sys.stdin.readline()
        if not line:  # end of input: stop prompting, keep polling
            time.sleep(seconds)
            return None
        text = line.strip()
        if text.lower() == "abort":
            check_lease(self.run)
            _store(self.run).answer(self.run.exec_id, self.name, None, aborted=True)
            return True, None
        try:
            value = parse_value(text) if text or self.schema is not None else None
            coerce(self.schema, value, self.name)
        except KitaruWaitValidationError as exc:
            print(f"[kitaru] {exc}", flush=True)
            self._show()
            return None
        import json

        value_json = json.dumps(value)
        _store(self.run).answer(self.run.exec_id, self.name, value_json)
        return False, value_json


def parse_value(text: str) -> Any:
    """A typed answer: JSON when it parses, else the text itself."""
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text
    except RecursionError:
        raise KitaruWaitValidationError(
            "The answer nests lists or objects too deeply to read; give a flatter JSON value."
        ) from None


def _store(run: FlowRun) -> Any:
    """The store the run's execution lives in."""
    return run.store if run.store is not None else _config.get_store()
