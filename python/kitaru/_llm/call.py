"""`kitaru.llm()`: a durable, recorded, budgeted model call.

In a flow body a call is its own checkpoint (type ``llm_call``, ids ``llm_1``, ``llm_2``...
or ``name=``): once it finished, a resumed flow gets the stored response and the provider
is not called again. Inside a checkpoint the call runs inline and is recorded on that
checkpoint. Every call that reaches a provider writes a ledger entry (tokens, latency,
cost) to the execution at once, so money spent before a crash is still counted.
"""

from __future__ import annotations

import os
import time

from .._context import (
    CheckpointScope,
    FlowRun,
    current_checkpoint,
    current_flow,
    merge_metadata,
    sanitize_name,
)
from .._steps import run_async, run_sync
from .._types import CallRecord
from ..errors import KitaruContextError, KitaruUsageError
from .models import cost_of
from .request import Prepared
from .response import LLMResponse, LLMUsage, ToolCall

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence
    from typing import Any, ParamSpec, TypeVar

    P = ParamSpec("P")
    R = TypeVar("R")

__all__ = ["LLMResponse", "LLMUsage", "ToolCall", "allm", "llm"]

# --- calling -----------------------------------------------------------------------------


def _mock(prep: Prepared) -> dict[str, Any]:
    return {
        "text": os.environ.get("KITARU_LLM_MOCK_RESPONSE", ""),
        "tool_calls": [],
        "finish_reason": "stop",
        "refusal": None,
        "model": prep.resolved.model,
        "usage": {"input_tokens": None, "output_tokens": None, "total_tokens": None},
        "provider_cost_usd": None,
    }


def _cost(prep: Prepared, resp: dict[str, Any]) -> float | None:
    """The call's cost: the alias's own prices, else the provider's reported cost
    (OpenRouter), else genai-prices' table (`models.cost_of`)."""
    if prep.mock:
        return 0.0
    r = prep.resolved
    explicit = r.alias is not None and r.alias.input_price is not None
    if not explicit and resp.get("provider_cost_usd") is not None:
        return float(resp["provider_cost_usd"])
    usage = resp.get("usage") or {}
    return cost_of(
        r.provider, r.model, r.alias, usage.get("input_tokens"), usage.get("output_tokens")
    )


def _info(
    prep: Prepared, resp: dict[str, Any], latency_ms: float, source: str | None
) -> dict[str, Any]:
    r = prep.resolved
    usage = resp.get("usage") or {}
    info = {
        "requested_model": r.requested,
        "alias": r.alias.alias if r.alias else None,
        "resolved_model": r.target,
        "credential_source": source,
        "latency_ms": round(latency_ms, 3),
        "tokens_input": usage.get("input_tokens"),
        "tokens_output": usage.get("output_tokens"),
        "total_tokens": usage.get("total_tokens"),
        "cost_usd": _cost(prep, resp),
    }
    return {k: v for k, v in info.items() if v is not None}


# The step that sends the request to the provider (`_steps`).
_SEND = object()


def _steps(prep: Prepared, c: _Run) -> Any:
    """One `llm()` call, written once (see kitaru._steps): yields (_SEND, (endpoint, body,
    timeout)) for the request, and runner steps (decide, record) for a flow-body call;
    returns the call's value."""
    if c.call is not None:
        from .. import serde

        c.call.cp.prep = prep
        found, stored = yield from c.call.decide(serde.digest(prep.identity))
        c.call_name = c.call.call_id
        if found:
            return prep.finish(stored, c.call_name, reused=True)
    live = _live(prep, c)
    if c.run.tracer is not None:
        from .. import _otel

        live = _otel.chat_steps(c, live, _SEND)
    value = yield from live
    args = c.record_args()
    if args is not None:
        yield "record_checkpoint", (args,)
        yield from c.call.done()
    return value


def _live(prep: Prepared, c: _Run) -> Any:
    """The part of `_steps` that reaches the provider: last checks, the request, the
    checked answer (with its ledger entry)."""
    yield from c.begin()
    try:
        if prep.mock:
            resp, latency, source = _mock(prep), 0.0, None
        else:
            from . import providers as _providers

            ep = _providers.endpoint_for(prep.resolved, c.call_name)
            body = _providers.build(prep.resolved, prep.req, ep)
            t0 = time.perf_counter()
            data = yield _SEND, (ep, body, prep.timeout or _providers.default_timeout())
            latency = (time.perf_counter() - t0) * 1000
            resp, source = _providers.parse(ep, data, prep.req), ep.credential_source
        return (yield from c.answered(resp, latency, source))
    except Exception as exc:
        yield from c.failed(exc)
        raise
    finally:
        c.end()


class _Step:
    """The synthetic ``llm_call`` checkpoint of a flow-body `llm()` call (a `_types.Step`)."""

    __slots__ = ("allow_pickle", "cache", "checkpoint_type", "name", "prep", "retries")

    def __init__(self, name: str) -> None:
        self.name, self.checkpoint_type, self.retries = name, "llm_call", 0
        self.allow_pickle = False  # an llm() result is typed JSON
        self.cache: bool | None = None  # the flow's
        self.prep: Prepared | None = None

    def code_identity(self) -> bytes | None:
        """For the cross-execution cache. The request is the call's input
        (`Prepared.identity`, where a model alias stays an alias); here is what the alias
        resolves to now (provider, model, endpoint; a mocked call's response), and a version
        of what kitaru makes of a response. None when the model cannot be resolved here
        (then only this execution's own journal can answer the call)."""
        import hashlib

        from .request import _resolve

        prep = self.prep
        if prep is None:
            return None
        try:
            m = _resolve(prep.model, prep.mock)
        except KitaruUsageError:
            return None
        mocked = os.environ.get("KITARU_LLM_MOCK_RESPONSE") if prep.mock else None
        h = hashlib.sha256(b"kitaru.llm() v1\0")
        for part in (m.provider, m.model, m.base_url, mocked):
            data = b"-" if part is None else b"+" + str(part).encode()
            h.update(len(data).to_bytes(8, "little") + data)
        return h.digest()


def _enter(name: str | None) -> tuple[FlowRun, CheckpointScope | None]:
    run = current_flow.get()
    if run is None:
        raise KitaruContextError("kitaru.llm() can only be called inside a @flow.")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise KitaruUsageError(f"LLM call name must be a non-empty string, got {name!r}.")
    return run, current_checkpoint.get()


def _names(run: FlowRun, scope: CheckpointScope | None, name: str | None) -> tuple[str, str]:
    """(checkpoint name, call name) of the next call in this scope."""
    if name is not None:
        if not any(ch.isalnum() for ch in name):
            raise KitaruUsageError(
                f"LLM call name {name!r} has no letters or digits; use a name such as 'summary'."
            )
        cp_name = call = sanitize_name(name, "llm")
    else:
        owner: Any = scope if scope is not None else run
        owner.llm_count += 1
        cp_name, call = "llm", f"llm_{owner.llm_count}"
    if scope is not None:
        # Inline calls are keyed by name in the checkpoint's metadata: the same name twice
        # becomes summary, summary_2, ... (flow-body calls get this from `allocate`).
        taken = scope.metadata.get("llm_calls") or {}
        base, n = call, 1
        while call in taken:
            n += 1
            call = f"{base}_{n}"
    return cp_name, call


class _Run:
    """One `llm()` call in its scope: a durable checkpoint in a flow body, inline in a
    checkpoint. The sync and async entry points differ only in how they wait for I/O."""

    __slots__ = ("call", "call_name", "cp_name", "out", "prep", "run", "scope")

    def __init__(
        self, prep: Prepared, name: str | None, run: FlowRun, scope: CheckpointScope | None
    ) -> None:
        self.prep, self.run, self.scope = prep, run, scope
        self.cp_name, self.call_name = _names(run, scope, name)
        self.call: Any = None
        if scope is None:  # a flow-body call: its own checkpoint, its id taken now
            from ..checkpoint import _Call

            call_id = run.allocate(self.call_name, None)
            self.call = _Call(_Step(self.cp_name), run, call_id, False, run.in_order())

    def begin(self) -> Any:
        """The call is about to reach a provider: last checks, and the checkpoint starts."""
        self.prep.live()
        if self.call is not None:
            yield from self.call.begin()  # checks the budget and the lease
        else:
            self.run.check_budget()

    def answered(self, resp: dict[str, Any], latency: float, source: str | None) -> Any:
        """Ledger first (the money is spent), then the checked value."""
        info = _info(self.prep, resp, latency, source)
        checkpoint = self.scope.call_id if self.scope is not None else None
        yield from self.run.spend_steps(self.call_name, checkpoint, info)
        self.out = out = {"messages": self.prep.req["messages"], "response": resp, "call": info}
        value = self.prep.finish(out, self.call_name, reused=False)
        if self.call is not None:
            merge_metadata(self.call.scope.metadata, {"llm_calls": {self.call_name: info}})
        else:
            entry = dict(info)
            entry["prompt"] = out["messages"]
            entry["response"] = {k: resp.get(k) for k in ("text", "tool_calls", "finish_reason")}
            merge_metadata(self.scope.metadata, {"llm_calls": {self.call_name: entry}})  # type: ignore[union-attr]
        return value

    def failed(self, exc: Exception) -> Any:
        billed = getattr(exc, "billed_usage", None)
        if billed is not None:  # an unusable answer the provider still charges for
            info = _info(self.prep, billed, 0.0, None)
            checkpoint = self.scope.call_id if self.scope is not None else None
            yield from self.run.spend_steps(self.call_name, checkpoint, info)
        if self.call is not None:
            yield from self.call.failed(exc, 0)  # records the attempt, re-raises

    def end(self) -> None:
        if self.call is not None:
            self.call.end()

    def record_args(self) -> CallRecord | None:
        """The record `Runner.record_checkpoint` stores, for a flow-body call."""
        return None if self.call is None else self.call.record(self.out)

    def steps(self) -> Any:
        """This call's steps (`_steps`); a flow-body call's inside its checkpoint's span when
        the run exports OpenTelemetry spans."""
        steps = _steps(self.prep, self)
        return steps if self.call is None else self.call.traced(steps)


def _call(
    prompt: str | list[dict[str, Any]],
    *,
    model: str | None = None,
    system: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    name: str | None = None,
    schema: Any = None,
    tools: Sequence[Callable[..., Any] | type | dict[str, Any]] | None = None,
    tool_choice: str | None = None,
    timeout: float | None = None,
) -> Any:
    """The parameters of `llm()` and `allm()` (documented on `llm`), taken in: the call
    with its id, checked request and scope (a `_Run`)."""
    run, scope = _enter(name)
    prep = Prepared(
        prompt, model, system, temperature, max_tokens, schema, tools, tool_choice, timeout
    )
    return _Run(prep, name, run, scope)


def _parameters_of(spec: Callable[P, Any]) -> Callable[[Callable[..., R]], Callable[P, R]]:
    """Gives a function written as ``(*args, **kwargs)`` the parameters of `spec`, for type
    checkers and for `inspect.signature` (which follows ``__wrapped__``)."""

    def apply(impl: Callable[..., R]) -> Callable[P, R]:
        impl.__wrapped__ = spec  # type: ignore[attr-defined]
        return impl

    return apply


@_parameters_of(_call)
def llm(*args: Any, **kwargs: Any) -> Any:
    """Call a model and record the call (durable in a flow body, inline in a checkpoint).

    Args:
        prompt: a string, or a list of ``{"role", "content"}`` messages (roles system,
            user, assistant, tool; an `LLMResponse` may stand for its assistant message).
        model: a registered alias or ``provider/model`` (openai, anthropic, ollama,
            openrouter); default: ``KITARU_DEFAULT_MODEL``, then the default alias.
        system: a system prompt put before the messages.
        temperature, max_tokens: sampling settings sent to the provider.
        name: the call's name (default ``llm_1``, ``llm_2``, ... in call order).
        schema: a type (pydantic model, dataclass, ``list[str]``...): the answer is asked
            for as JSON of that schema and returned validated.
        tools: functions, pydantic models or tool dicts the model may call; the call then
            returns an `LLMResponse` (text, tool calls, usage, cost).
        tool_choice: ``"auto"``, ``"required"``, ``"none"`` or a tool's name.
        timeout: seconds per HTTP attempt (default ``KITARU_LLM_TIMEOUT``, 120).

    Returns:
        The answer's text; the validated value with ``schema=``; an `LLMResponse` with ``tools=``.
    """
    c = _call(*args, **kwargs)

    def send(_op: object, arg: Any) -> Any:
        from . import providers as _providers

        return _providers.send(*arg)

    return run_sync(c.steps(), c.run.runner, send)


@_parameters_of(_call)
def allm(*args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
    """`llm()` for async flows and checkpoints (the same parameters): the event loop runs
    while the call is out.

    Like an async checkpoint, the call takes its id when it is made, not when it is
    awaited, so ``asyncio.gather(allm(a), allm(b))`` numbers ``a`` then ``b`` every time.
    """
    c = _call(*args, **kwargs)
    return _allm(c.run, c.prep, c)


async def _allm(run: FlowRun, prep: Prepared, c: _Run) -> Any:
    async def send(_op: object, arg: Any) -> Any:
        from . import providers as _providers

        return await _providers.send_async(*arg)

    return await run_async(c.steps(), run.runner, send)
