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
from ._capture import log_steps
from ._context import (
    FlowCancelled,
    WaitSuspended,
    check_lease,
    current_checkpoint,
    current_flow,
    lease_steps,
    outside_flow_message,
)
from ._steps import run_async, run_sync
from ._types import WaitRequest
from .errors import KitaruContextError, KitaruUsageError, KitaruWaitValidationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Generator
    from typing import Any

    from ._context import FlowRun

__all__ = ["wait"]


def describe_schema(schema: Any) -> tuple[str | None, str | None]:
    """(JSON Schema, importable `module:qualname` of the type) of a wait's `schema`."""
    if schema is None:
        return None, None
    import json

    if isinstance(schema, dict):  # a JSON Schema as it is (e.g. a LangGraph interrupt's)
        import jsonschema

        try:
            schema_json = json.dumps(schema)
            jsonschema.validators.validator_for(
                schema, default=jsonschema.Draft202012Validator
            ).check_schema(schema)
        except (TypeError, ValueError, jsonschema.SchemaError) as exc:
            reason = getattr(exc, "message", None) or str(exc)
            raise KitaruUsageError(
                f"wait() schema {schema!r} is not a usable JSON Schema ({reason}); give a type "
                "(bool, a pydantic model, ...) or a JSON Schema such as {'type': 'boolean'}."
            ) from None
        return schema_json, None

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
    if isinstance(schema, dict):  # a JSON Schema: the answer is the checked JSON value
        from . import _schema

        problems = _schema.errors(schema, value, name)
        if problems:
            raise KitaruWaitValidationError(
                f"The answer to wait {name!r} does not match its schema: {'; '.join(problems[:5])}"
            )
        return value
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
        schema: the type of the answer (``bool``, ``str``, a pydantic model, ...), or a JSON
            Schema (a dict) that the answer must match (it is returned as JSON data).
            ``None`` makes the wait a continue/abort gate that returns ``None``.
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
    seconds = _config.wait_timeout() if timeout is None else float(timeout)
    request = WaitRequest(name=wait_name, question=question, schema_json=schema_json,
                          schema_type=type_ref, metadata_json=meta_json)  # fmt: skip
    steps = _waiting(run, request, schema, seconds)
    if run.tracer is not None:
        from . import _otel

        steps = _otel.wait_steps(run, wait_name, steps, _READ)
    if run.is_async and _on_event_loop():
        # In an async flow, `await kitaru.wait(...)`: other tasks run while it waits.
        return _finish_async(steps, run, schema, wait_name)
    return _finish(run_sync(steps, run.runner, _do_sync), schema, wait_name)


def _finish(answer: tuple[bool, str | None], schema: Any, wait_name: str) -> Any:
    import json

    aborted, value_json = answer
    if aborted:
        raise FlowCancelled(f"wait {wait_name!r} was aborted")
    return coerce(schema, json.loads(value_json) if value_json is not None else None, wait_name)


async def _finish_async(steps: Any, run: FlowRun, schema: Any, wait_name: str) -> Any:
    return _finish(await run_async(steps, run.runner, _do_async), schema, wait_name)


def _on_event_loop() -> bool:
    """Whether this thread runs an asyncio event loop right now."""
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and asyncio._get_running_loop() is not None


def _interactive() -> bool:
    try:
        return sys.stdin.isatty() and sys.stdout.isatty() and os.environ.get("CI") is None
    except (AttributeError, ValueError):
        return False


# The wait, written once: `_waiting` yields what to do next (open the wait and poll for
# the answer: runner steps; sleep or read the terminal: `_SLEEP`, `_READ`) and gets the
# result back (see `kitaru._steps`); `_do_sync` sleeps and reads blocking, `_do_async`
# awaiting, so an async flow's event loop keeps running.
_SLEEP, _READ = object(), object()


def _waiting(
    run: FlowRun, request: WaitRequest, schema: Any, seconds: float
) -> Generator[tuple[Any, Any], Any, tuple[bool, str | None]]:
    name, question, schema_json = request.name, request.question, request.schema_json
    answer = yield "open_wait", (request,)
    if answer is not None:
        return answer  # type: ignore[no-any-return]
    yield from log_steps(run)
    deadline = time.monotonic() + seconds
    prompt = _Prompt(run, name, question, schema, schema_json) if _interactive() else None
    delay = 0.1
    while True:
        answer = yield "poll_answer", (name,)
        if answer is not None:
            return answer  # type: ignore[no-any-return]
        yield from lease_steps(run)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitSuspended(name, question)
        step = min(delay, remaining)
        if prompt is not None:
            typed = yield _READ, (prompt, step)
            if typed is not None:
                return typed  # type: ignore[no-any-return]
        else:
            yield _SLEEP, step
        delay = min(delay * 2, 1.0)


def _do_sync(op: object, arg: Any) -> Any:
    if op is _READ:
        return arg[0].read(arg[1])
    time.sleep(arg)
    return None


async def _do_async(op: object, arg: Any) -> Any:
    import asyncio

    if op is _READ:
        return await asyncio.to_thread(arg[0].read, arg[1])
    await asyncio.sleep(arg)
    return None


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
