"""The dashboard's pages and actions: a Starlette app over `KitaruClient`.

Pages read the store directly (no server of kitaru's own between them and it); actions
answer waits and cancel through the client, and start runs (retry, resume, replay) as
child processes (`_jobs`). Values are shown by `_render`, never unpickled. Everything is
behind the launch token (`_auth.TokenGate`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .._jobs import Jobs
from ..cli._common import fmt_seconds, fmt_time
from ..client import Execution, ExecutionsAPI, KitaruClient
from ..errors import KitaruError, KitaruWaitValidationError
from . import _forms, _render
from ._auth import TokenGate, same

HERE = Path(__file__).parent
STATUSES = ("running", "waiting", "completed", "failed", "cancelled")
PAGE = 50  # executions on the first page of the list; "more" adds as many again
MAX_LOG_LINES = 500


@dataclass
class Settings:
    stack: str | None
    token: str
    host: str
    port: int
    cwd: str
    env: dict[str, str]


def _seconds(a: datetime | None, b: datetime | None) -> float | None:
    if a is None:
        return None
    return ((b or datetime.now(timezone.utc)) - a).total_seconds()


def _fmt_secs(s: float | None) -> str:
    return "–" if s is None else fmt_seconds(s)


def fmt_usd(v: float | None) -> str:
    """Dollars to a precision a small LLM bill still shows ($0.0000078, not $0.0000)."""
    if v is None:
        return "–"
    if v == 0 or v >= 1:
        return f"${v:,.2f}"
    if v >= 0.01:
        return f"${v:.4f}"
    import math

    places = min(-math.floor(math.log10(v)) + 1, 12)  # two significant digits
    return f"${v:.{places}f}"


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=fmt_time, secs=_fmt_secs, usd=fmt_usd)
    env.globals["statuses"] = STATUSES
    return env


def build_app(settings: Settings) -> TokenGate:
    """The dashboard as an ASGI app (wrapped in its token gate)."""
    templates = _env()
    jobs = Jobs(settings.stack, settings.env, settings.cwd)
    executions = ExecutionsAPI(settings.stack, "kitaru ui --stack")

    def where() -> dict[str, Any]:
        from .._kitaru import redact_urls

        choice = executions.store_choice()
        return {"stack": choice.stack, "store": redact_urls(choice.location)}

    def page(name: str, code: int = 200, **ctx: Any) -> HTMLResponse:
        html = templates.get_template(name).render(
            token=settings.token, where=where(), now=time.time(), **ctx
        )
        return HTMLResponse(html, status_code=code)

    # --- the list ---------------------------------------------------------------------

    def list_context(q: dict[str, str]) -> dict[str, Any]:
        flow = q.get("flow") or None
        status = q.get("status") or None
        if status not in (None, *STATUSES):
            raise KitaruError(f"Unknown status {status!r}; use one of {', '.join(STATUSES)}.")
        limit = _int(q.get("limit"), PAGE, 1, 100_000)
        found = executions.list(flow=flow, status=status, limit=limit + 1)
        rows = [_row(e) for e in found[:limit]]
        more = urlencode({**{k: v for k, v in q.items() if v}, "limit": limit + PAGE})
        return {"rows": rows, "flow": flow or "", "status": status or "", "limit": limit,
                "more": more if len(found) > limit else None}  # fmt: skip

    async def index(request: Request) -> Response:
        q = dict(request.query_params)
        try:
            ctx = await run_in_threadpool(list_context, q)
        except KitaruError as exc:
            return page("error.html", 400, message=str(exc))
        name = "_rows.html" if q.get("fragment") == "rows" else "index.html"
        return page(name, **ctx)

    # --- one execution ----------------------------------------------------------------

    def execution_context(exec_id: str) -> dict[str, Any]:
        e = executions.get(exec_id)
        return {"e": e, **_execution_parts(e, executions), "jobs": jobs.of(exec_id),
                "forms": [(w, _forms.fields(w.schema)) for w in e.pending_waits]}  # fmt: skip

    async def execution(request: Request) -> Response:
        exec_id = request.path_params["exec_id"]
        try:
            ctx = await run_in_threadpool(execution_context, exec_id)
        except (KitaruError, LookupError, ValueError) as exc:
            return page("error.html", 404, message=str(exc))
        return page("execution.html", request_note=request.query_params.get("note"), **ctx)

    async def state(request: Request) -> Response:
        """What the execution page polls: a fingerprint that changes when the page would."""
        exec_id = request.path_params["exec_id"]

        def read() -> dict[str, Any]:
            e = executions.get(exec_id)
            running = [j.number for j in jobs.of(exec_id) if j.returncode is None]
            mark = f"{e.status.value}/{len(e.checkpoints)}/{len(e.events)}/{len(e.pending_waits)}"
            return {"status": e.status.value, "fingerprint": f"{mark}/{running}"}

        try:
            return JSONResponse(await run_in_threadpool(read))
        except (KitaruError, LookupError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)

    async def output(request: Request) -> Response:
        exec_id, call_id = request.path_params["exec_id"], request.path_params["call_id"]

        def read() -> _render.Shown | None:
            found = executions._store.checkpoint_output(exec_id, call_id)
            return None if found is None else _render.show(*found)

        try:
            shown = await run_in_threadpool(read)
        except (KitaruError, LookupError, ValueError) as exc:
            return page("_value.html", 404, shown=_render.Shown(str(exc), "note", "", False))
        if shown is None:
            shown = _render.Shown("No stored output.", "note", "", False)
        return page("_value.html", shown=shown)

    async def artifact(request: Request) -> Response:
        artifact_id = request.path_params["artifact_id"]

        def read() -> _render.Shown:
            ref = KitaruClient(stack=settings.stack).artifacts.get(artifact_id)
            if ref.save_type == "step_output":
                exec_id = artifact_id.split("/", 1)[0]
                found = executions._store.checkpoint_output(exec_id, ref.producing_call)
                return _render.show(*found) if found else _render.Shown("–", "note", "", False)
            if "pickle" in str(ref.metadata.get("serializer", "")):
                return _render.show(str(ref.metadata["serializer"]), b"")
            return _render.show_value(ref.load())

        try:
            shown = await run_in_threadpool(read)
        except (KitaruError, LookupError, ValueError) as exc:
            shown = _render.Shown(f"Not shown: {exc}", "note", "", False)
        return page("_value.html", shown=shown)

    async def diff(request: Request) -> Response:
        a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
        if not a or not b:
            return page("diff.html", d=None, a=a, b=b)
        try:
            d = await run_in_threadpool(executions.diff, a, b)
        except (KitaruError, LookupError, ValueError) as exc:
            return page("error.html", 404, message=str(exc))
        return page("diff.html", d=d, a=a, b=b)

    # --- actions ------------------------------------------------------------------------

    def action(
        fn: Callable[[Request, dict[str, str]], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            form = _form(await request.body())
            if request.scope.get("state", {}).get("needs_form_token", True) and not same(
                form.get("token"), settings.token
            ):
                return page("error.html", 403, message="Refused: the form lacks this "
                            "dashboard's token. Reload the page and try again.")  # fmt: skip
            try:
                return await fn(request, form)
            except (KitaruError, LookupError, ValueError) as exc:
                return page("error.html", 400, message=str(exc))

        return guarded

    def back(exec_id: str, note: str = "") -> Response:
        where_to = f"/executions/{exec_id}" + (f"?{urlencode({'note': note})}" if note else "")
        return RedirectResponse(where_to, status_code=303)

    @action
    async def answer(request: Request, form: dict[str, str]) -> Response:
        exec_id = request.path_params["exec_id"]
        wait = form.get("wait") or None

        def submit() -> tuple[Execution, str | None]:
            pending = {w.name: w for w in executions.pending_waits(exec_id)}
            w = pending.get(wait or "") if wait else next(iter(pending.values()), None)
            if w is None:
                raise LookupError(f"Execution {exec_id} has no pending wait {wait!r} (any more).")
            try:
                value = _forms.value_of(form, _forms.fields(w.schema))
                e = executions.input(exec_id, wait=w.name, value=value)
            except (_forms.FormError, KitaruWaitValidationError) as exc:
                return executions.get(exec_id), str(exc)
            return e, None

        e, problem = await run_in_threadpool(submit)
        if problem is not None:
            ctx = await run_in_threadpool(execution_context, exec_id)
            return page("execution.html", 400, problem=problem, problem_wait=wait,
                        submitted=form, **ctx)  # fmt: skip
        if e.status.value == "waiting" and not e.pending_waits:
            jobs.start("resume", exec_id, detail="after the answer to " + (wait or "its wait"))
            return back(exec_id, "Answer recorded; resuming the execution.")
        return back(exec_id, "Answer recorded.")

    @action
    async def abort(request: Request, form: dict[str, str]) -> Response:
        exec_id = request.path_params["exec_id"]
        await run_in_threadpool(
            lambda: executions.abort_wait(exec_id, wait=form.get("wait") or None)
        )
        return back(exec_id, "Wait aborted: the execution is cancelled.")

    @action
    async def cancel(request: Request, form: dict[str, str]) -> Response:
        exec_id = request.path_params["exec_id"]
        await run_in_threadpool(executions.cancel, exec_id)
        return back(exec_id, "Cancelled.")

    @action
    async def rerun(request: Request, form: dict[str, str]) -> Response:
        exec_id, what = request.path_params["exec_id"], request.path_params["what"]
        if what not in ("retry", "resume"):
            return page("error.html", 404, message=f"No action {what!r}.")
        await run_in_threadpool(executions.get, exec_id)  # an unknown id fails here
        jobs.start(what, exec_id)
        return back(exec_id, f"Started: {what}.")

    @action
    async def replay(request: Request, form: dict[str, str]) -> Response:
        exec_id = request.path_params["exec_id"]
        start = form.get("from", "")
        e = await run_in_threadpool(executions.get, exec_id)
        if start not in {c.name for c in e.checkpoints}:
            raise LookupError(f"Execution {exec_id} has no checkpoint call {start!r}.")
        extra = ["--from", start]
        for key in ("overrides", "args"):
            text = form.get(key, "").strip()
            if text:
                try:
                    json.loads(text)
                except ValueError as exc:
                    raise ValueError(f"{key} is not valid JSON: {exc}.") from None
                extra += [f"--{key}", text]
        jobs.start("replay", exec_id, *extra, detail=f"from {start}")
        return back(exec_id, f"Replay from {start} started.")

    async def job(request: Request) -> Response:
        """A started run: its state and, for a replay, the execution it made once seen."""
        found = jobs.get(_int(request.path_params["number"], 0, 0, 1 << 30))
        if found is None:
            return JSONResponse({"error": "no such job"}, status_code=404)
        if found.action == "replay" and found.found is None:
            found.found = await run_in_threadpool(_replay_of, executions, found)
        return JSONResponse({"state": found.state, "execution": found.found})

    routes = [
        Route("/", index),
        Route("/diff", diff),
        Route("/executions/{exec_id}", execution),
        Route("/executions/{exec_id}/state", state),
        Route("/executions/{exec_id}/outputs/{call_id}", output),
        Route("/artifacts/{artifact_id:path}", artifact),
        Route("/executions/{exec_id}/input", answer, methods=["POST"]),
        Route("/executions/{exec_id}/abort", abort, methods=["POST"]),
        Route("/executions/{exec_id}/cancel", cancel, methods=["POST"]),
        Route("/executions/{exec_id}/replay", replay, methods=["POST"]),
        Route("/executions/{exec_id}/run/{what}", rerun, methods=["POST"]),
        Route("/jobs/{number}", job),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        jobs.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    return TokenGate(app, settings.token, settings.host, settings.port)


def _replay_of(executions: ExecutionsAPI, job: Any) -> str | None:
    """The execution a replay job made: the newest replay of its source started after it."""
    for e in executions.list(limit=20):
        started = e.started_at.timestamp() if e.started_at else 0.0
        if e.original_exec_id == job.exec_id and started >= job.started - 1:
            return e.exec_id
    return None


def _form(body: bytes) -> dict[str, str]:
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def _int(text: Any, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(text), low), high)
    except (TypeError, ValueError):
        return default


def _row(e: Execution) -> dict[str, Any]:
    # A summary (one listing's worth of reads) has no checkpoints or ledger: the
    # execution's page shows those.
    return {
        "e": e,
        "took": _seconds(e.started_at, e.ended_at),
        "wait": e.pending_wait.question or e.pending_wait.name if e.pending_wait else None,
    }


def _execution_parts(e: Execution, executions: ExecutionsAPI) -> dict[str, Any]:
    """What the execution page shows besides the execution: the timeline, costs per
    checkpoint, logs and the answered waits."""
    start = e.started_at.timestamp() if e.started_at else None
    ends = [c.ended_at.timestamp() for c in e.checkpoints if c.ended_at]
    end = e.ended_at.timestamp() if e.ended_at else max([time.time(), *ends])
    span = max((end - start) if start else 0.0, 1e-6)
    cost_of: dict[str, float] = {}
    for call in e.llm_calls:
        if call.checkpoint and call.cost_usd:
            cost_of[call.checkpoint] = cost_of.get(call.checkpoint, 0.0) + call.cost_usd
    timeline = []
    for c in e.checkpoints:
        began = c.started_at.timestamp() if c.started_at else start or 0.0
        took = _seconds(c.started_at, c.ended_at) if c.ended_at else None
        timeline.append({
            "c": c,
            "left": 100 * max(began - (start or began), 0.0) / span,
            "width": max(100 * (took or 0.0) / span, 0.4),
            "took": took,
            "runs": sorted({a.run for a in c.attempts}),
            "cost": cost_of.get(c.name),
        })  # fmt: skip
    logs = executions.logs(e.exec_id)
    return {
        "timeline": timeline,
        "took": _seconds(e.started_at, e.ended_at),
        "logs": logs[-MAX_LOG_LINES:],
        "logs_cut": max(len(logs) - MAX_LOG_LINES, 0),
        "answered": [(w, _render.show_value(w.value)) for w in e.waits if w.status != "pending"],
        "spec": _render.as_json_text(e.frozen_execution_spec) if e.frozen_execution_spec else None,
    }
