"""OpenTelemetry spans of flow runs, checkpoint calls, waits and `llm()` requests.

Off unless the process has imported ``opentelemetry.trace`` and set a tracer provider (an
SDK's) before a run starts: `tracer` is asked once per run and its answer kept on the
`FlowRun` (``run.tracer``, None when off), so with OpenTelemetry off a call pays one
attribute check and nothing of it is imported. Each span wraps the steps of what it
traces (`kitaru._steps`) and watches them go by (`_relay`), so the traced logic is the
same with and without it; a step's context (the span that is current) is attached in the
generator, so the body of a checkpoint, the calls it makes and the threads of
``.submit()`` (which copy the context) see the span as their parent.

A call answered from the journal or the cross-execution cache is marked ``kitaru.reused``
and carries no ``gen_ai.*`` attribute: only requests that reached a provider are GenAI
operations, so backends that count them count each model call once. Attributes never
hold prompts, answers, wait questions, credentials or headers.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Generator
    from contextvars import Token
    from typing import Any

    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

    from ._context import FlowRun

    Steps = Generator[tuple[Any, Any], Any, Any]

_DESCRIPTION_LIMIT = 1024  # characters of a failure message kept as a span's status


def tracer() -> Tracer | None:
    """The tracer of this process's tracer provider, or None when no SDK set one (the API's
    default provider records nothing). Call only when ``opentelemetry.trace`` is imported."""
    try:
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
            return None
        from ._kitaru import VERSION

        return provider.get_tracer("kitaru", VERSION)
    except Exception:  # observability never stops a run
        return None


class _Watch:
    """What a span learns from the steps it wraps (`_relay`)."""

    def before(self, step: tuple[Any, Any]) -> None:
        pass

    def after(self, step: tuple[Any, Any], result: Any, error: BaseException | None) -> None:
        pass


def _relay(steps: Steps, watch: _Watch) -> Steps:
    """`steps` unchanged (each step handed out, its result or error handed back), with
    `watch` told of each step before and after it is done."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(result) if error is None else steps.throw(error)
        except StopIteration as stop:
            return stop.value
        watch.before(step)
        try:
            result, error = (yield step), None
        except GeneratorExit:
            steps.close()
            raise
        except BaseException as exc:
            result, error = None, exc
        watch.after(step, result, error)


def _started(tracer: Tracer, name: str, attributes: dict[str, Any], kind: Any = None) -> Span:
    from opentelemetry import trace

    return tracer.start_span(
        name,
        kind=trace.SpanKind.INTERNAL if kind is None else kind,
        attributes={k: v for k, v in attributes.items() if v is not None},
    )


def _attach(span: Span) -> Token[Context]:
    from opentelemetry import context, trace

    return context.attach(trace.set_span_in_context(span))


def _detach(token: Token[Context]) -> None:
    from opentelemetry import context

    context.detach(token)


def _error(span: Span, message: str) -> None:
    from opentelemetry.trace import StatusCode

    span.set_status(StatusCode.ERROR, message[:_DESCRIPTION_LIMIT])


def _failed(span: Span, exc: BaseException) -> None:
    """`exc` ends what `span` traces: recorded, and the span's status is an error."""
    span.record_exception(exc)
    _error(span, f"{type(exc).__name__}: {exc}")


# --- a run of a flow -----------------------------------------------------------------------


def _intent(run: FlowRun) -> str:
    """Why this run started: start, replay (a new execution), retry or resume (a claim)."""
    runner = run.runner
    if runner.claim_seq == 0:
        return "replay" if '"replay"' in (runner.options_json or "") else "start"
    try:  # the claim this run made is the execution's last claim event
        from . import _config

        store = run.store if run.store is not None else _config.get_store()
        for event in reversed(store.inspect(run.exec_id, full=False)["events"]):
            if event["event"] in ("retried", "resumed"):
                return "retry" if event["event"] == "retried" else "resume"
    except Exception:
        pass
    return "retry"


class _FlowWatch(_Watch):
    """How the run ends, read from the runner steps that record it."""

    def __init__(self, span: Span) -> None:
        self.span = span
        self.passes = 0
        self.status: str | None = None
        self.cancelled = False
        self.waiting_for: str | None = None
        self.failure: str | None = None

    def after(self, step: tuple[Any, Any], result: Any, error: BaseException | None) -> None:
        from ._context import FlowCancelled, WaitSuspended
        from .errors import KitaruCancelledError

        op = step[0]
        if op.__class__ is not str:  # a pass over the flow body
            self.passes += 1
            if isinstance(error, WaitSuspended):
                self.waiting_for = error.name
            elif isinstance(error, (FlowCancelled, KitaruCancelledError)):
                self.cancelled = True
            elif error is not None:
                self.span.record_exception(error)
            return
        if error is not None:
            self.cancelled = self.cancelled or isinstance(error, KitaruCancelledError)
            return
        if op == "complete":
            self.status = "completed"
        elif op == "fail":
            self.status, self.failure = "failed", step[1][0].message
        elif op == "suspend":
            self.status = "waiting"
        elif op == "release" and self.status is None:
            # cancelled by another process, or taken over by one
            self.status = "cancelled" if self.cancelled else "released"


def flow_steps(run: FlowRun, steps: Steps) -> Steps:
    """`steps` (the passes of a run, `FlowDefinition._passes`) inside a ``flow <name>`` span."""
    span = _started(run.tracer, f"flow {run.flow_name}", {
        "kitaru.execution.id": run.exec_id,
        "kitaru.flow.name": run.flow_name,
        "kitaru.flow.intent": _intent(run),
    })  # fmt: skip
    token = _attach(span)
    watch = _FlowWatch(span)
    try:
        return (yield from _relay(steps, watch))
    except BaseException as exc:
        if watch.status is None and isinstance(exc, Exception):
            _failed(span, exc)
        raise
    finally:
        _detach(token)
        span.set_attribute("kitaru.flow.passes", watch.passes)
        if watch.status is not None:
            span.set_attribute("kitaru.execution.status", watch.status)
        if watch.status == "waiting" and watch.waiting_for is not None:
            span.set_attribute("kitaru.wait.name", watch.waiting_for)
        if watch.status == "failed":
            _error(span, watch.failure or "failed")
        span.end()


# --- a checkpoint call ---------------------------------------------------------------------


class _CallWatch(_Watch):
    def __init__(self, span: Span) -> None:
        self.span = span
        self.attempts = 0
        self.recorded: BaseException | None = None

    def after(self, step: tuple[Any, Any], result: Any, error: BaseException | None) -> None:
        op = step[0]
        if op == "record_checkpoint" or op == "record_failed_attempt":
            self.attempts += 1
        elif op.__class__ is not str and isinstance(error, Exception):
            # the body (or the provider request) failed: an attempt's exception
            self.span.record_exception(error)
            self.recorded = error


def call_steps(call: Any, steps: Steps) -> Steps:
    """`steps` of one call (a `checkpoint._Call`: a checkpoint, a flow-body `llm()` call, an
    adapter's unit) inside a ``checkpoint <name>`` span."""
    run, cp = call.run, call.cp
    span = _started(run.tracer, f"checkpoint {cp.name}", {
        "kitaru.execution.id": run.exec_id,
        "kitaru.checkpoint.name": cp.name,
        "kitaru.checkpoint.type": cp.checkpoint_type,
    })  # fmt: skip
    token = _attach(span)
    watch = _CallWatch(span)
    try:
        return (yield from _relay(steps, watch))
    except BaseException as exc:
        if isinstance(exc, Exception):
            if exc is not watch.recorded:
                span.record_exception(exc)
            _error(span, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        _detach(token)
        decision: Any = getattr(call, "decision", None)  # none when the core refused the call
        reused = decision is not None and decision.reuse
        span.set_attribute("kitaru.checkpoint.call_id", call.call_id)
        span.set_attribute("kitaru.checkpoint.attempts", watch.attempts)
        span.set_attribute("kitaru.checkpoint.reused", reused)
        if reused:
            span.set_attribute("kitaru.reused", True)
            cached = decision.cached_from  # (execution, call) of the cross-execution cache
            if cached is not None:
                span.set_attribute("kitaru.checkpoint.cached_from", cached[0])
                span.set_attribute("kitaru.checkpoint.cached_call_id", cached[1])
        span.end()


# --- a wait --------------------------------------------------------------------------------


class _WaitWatch(_Watch):
    def __init__(self, read: object) -> None:
        self.read = read
        self.outcome: str | None = None

    def after(self, step: tuple[Any, Any], result: Any, error: BaseException | None) -> None:
        if result is None or self.outcome is not None:
            return
        op = step[0]
        if op == "open_wait":
            self.outcome = "stored"  # answered before this run got here
        elif op == "poll_answer" or op is self.read:
            self.outcome = "answered"  # while this process waited (or typed at its prompt)


def wait_steps(run: FlowRun, name: str, steps: Steps, read: object) -> Steps:
    """`steps` of one `kitaru.wait()` (`wait._waiting`) inside a ``wait <name>`` span;
    `read` is the step that reads the terminal."""
    from ._context import FlowCancelled, WaitSuspended

    span = _started(run.tracer, f"wait {name}",
                    {"kitaru.execution.id": run.exec_id, "kitaru.wait.name": name})  # fmt: skip
    watch = _WaitWatch(read)
    outcome = None
    try:
        answer = yield from _relay(steps, watch)
        outcome = "aborted" if answer[0] else watch.outcome
        return answer
    except WaitSuspended:
        outcome = "suspended"  # the execution becomes `waiting`
        raise
    except FlowCancelled:
        outcome = "cancelled"
        raise
    except Exception as exc:
        _failed(span, exc)
        raise
    finally:
        if outcome is not None:
            span.set_attribute("kitaru.wait.outcome", outcome)
        span.end()


# --- an llm() request ----------------------------------------------------------------------


class _ChatWatch(_Watch):
    """The ``chat <model>`` span of an `llm()` call: started when the request is sent."""

    def __init__(self, c: Any, send: object) -> None:
        self.c, self.send = c, send
        self.span: Span | None = None
        self.token: Token[Context] | None = None

    def before(self, step: tuple[Any, Any]) -> None:
        if step[0] is not self.send or self.span is not None:
            return
        from opentelemetry.trace import SpanKind

        c = self.c
        prep, r = c.prep, c.prep.resolved
        self.span = _started(c.run.tracer, f"chat {r.model}", {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": r.provider,
            "gen_ai.request.model": r.model,
            "gen_ai.request.temperature": prep.req.get("temperature"),
            "gen_ai.request.max_tokens": prep.req.get("max_tokens"),
            "kitaru.execution.id": c.run.exec_id,
            "kitaru.llm.call": c.call_name,
            "kitaru.llm.alias": r.alias.alias if r.alias is not None else None,
        }, SpanKind.CLIENT)  # fmt: skip
        self.token = _attach(self.span)  # an instrumented HTTP client's spans nest here

    def after(self, step: tuple[Any, Any], result: Any, error: BaseException | None) -> None:
        if step[0] is self.send and self.token is not None:
            _detach(self.token)
            self.token = None

    def end(self, exc: BaseException | None) -> None:
        span = self.span
        if span is None:  # the request was never sent (a budget stop, a mocked call)
            return
        out = getattr(self.c, "out", None)
        resp, info = (out["response"], out["call"]) if out is not None else (None, None)
        billed = getattr(exc, "billed_usage", None)  # an unusable answer, still paid for
        if info is None and isinstance(billed, dict):
            resp, info = billed, _usage_info(billed)
        if resp is not None:
            reason = resp.get("finish_reason")
            attributes = {
                "gen_ai.response.model": resp.get("model"),
                "gen_ai.response.finish_reasons": [reason] if reason else None,
                "gen_ai.usage.input_tokens": (info or {}).get("tokens_input"),
                "gen_ai.usage.output_tokens": (info or {}).get("tokens_output"),
                "kitaru.llm.cost_usd": (info or {}).get("cost_usd"),
            }
            span.set_attributes({k: v for k, v in attributes.items() if v is not None})
        if isinstance(exc, Exception):
            _failed(span, exc)
        span.end()


def _usage_info(resp: dict[str, Any]) -> dict[str, Any]:
    usage = resp.get("usage") or {}
    return {"tokens_input": usage.get("input_tokens"), "tokens_output": usage.get("output_tokens")}


def chat_steps(c: Any, steps: Steps, send: object) -> Steps:
    """`steps` of an `llm()` call's live part (an `_llm.call._Run`: checks, the request, its
    answer) with a ``chat <model>`` span (GenAI semantic conventions) around the request
    from when it is sent; `send` is the step that sends it."""
    watch = _ChatWatch(c, send)
    error: BaseException | None = None
    try:
        return (yield from _relay(steps, watch))
    except BaseException as exc:
        error = exc
        raise
    finally:
        if watch.token is not None:  # the request step never came back (closed)
            _detach(watch.token)
        watch.end(error)
