"""`kitaru ui`: the dashboard as users get it — the installed CLI serving a store, driven
by a real browser (Debian's Chromium through Playwright), and its token gate probed with
plain HTTP requests. Screenshots go to target/ui-screenshots/ for people to look at."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REPO, write_script
from kitaru.ui import _forms, _render

SHOTS = REPO / "target" / "ui-screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic",
]  # fmt: skip

FLOWS = """
import sys
from typing import Optional

import kitaru
from kitaru import checkpoint, flow
from kitaru.client import KitaruClient
from pydantic import BaseModel, Field


class Review(BaseModel):
    approved: bool
    score: int = Field(ge=1, le=5, description="1 (poor) to 5 (great)")
    comment: Optional[str] = None


@checkpoint
def research(topic: str) -> dict:
    print("researching", topic)
    kitaru.save("sources", ["https://example.org/" + topic])
    return {"topic": topic, "facts": ["tides follow the moon", "<b>not bold</b>"]}


@checkpoint
def summarize(notes: dict) -> str:
    return str(kitaru.llm("Summarize: " + ", ".join(notes["facts"]), model="openai/gpt-4o-mini"))


@checkpoint
def explode(notes: dict) -> str:
    raise RuntimeError("the search tool broke on " + notes["topic"])


@flow
def report(topic: str) -> str:
    return summarize(research(topic))


@flow
def broken(topic: str) -> str:
    return explode(research(topic))


@flow
def approval(topic: str) -> str:
    notes = research(topic)
    review = kitaru.wait(schema=Review, name="review", question="Approve the report on " + topic + "?")
    return f"{notes['topic']}: approved={review.approved} score={review.score}"


if __name__ == "__main__":
    fn = {"report": report, "broken": broken, "approval": approval}[sys.argv[1]]
    try:
        fn.run(sys.argv[2])
    except Exception:
        pass
    print(KitaruClient().executions.list(limit=1)[0].exec_id)
"""


# --- the form a wait's schema becomes -----------------------------------------------------


REVIEW_SCHEMA = {
    "$defs": {"Level": {"enum": ["low", "high"], "type": "string"}},
    "properties": {
        "approved": {"type": "boolean"},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "level": {"$ref": "#/$defs/Level"},
        "comment": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        "tags": {"type": "array", "items": {"type": "string"}},
        "owner": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "number"}},
            "required": ["name"],
        },
    },
    "required": ["approved", "score", "level", "owner"],
    "type": "object",
}


def test_a_schema_becomes_fields_and_a_form_becomes_the_value_it_describes() -> None:
    fields = _forms.fields(REVIEW_SCHEMA)
    kinds = {f.name: (f.kind, f.required) for f in fields}
    assert kinds == {
        "approved": ("boolean", True), "score": ("integer", True), "level": ("enum", True),
        "comment": ("text", False), "tags": ("json", False), "owner.name": ("text", True),
        "owner.age": ("number", False),
    }  # fmt: skip
    score = next(f for f in fields if f.name == "score")
    assert (score.minimum, score.maximum) == (1, 5)
    assert next(f for f in fields if f.name == "level").options == ['"low"', '"high"']
    form = {"f:approved": "true", "f:score": "4", "f:level": '"high"', "f:comment": "",
            "f:tags": '["a", "b"]', "f:owner.name": "Ada", "f:owner.age": "36.5"}  # fmt: skip
    assert _forms.value_of(form, fields) == {
        "approved": True, "score": 4, "level": "high", "tags": ["a", "b"],
        "owner": {"name": "Ada", "age": 36.5},
    }  # fmt: skip
    # the raw JSON answer wins over the fields
    assert _forms.value_of({**form, "__json__": '{"approved": false}'}, fields) == {
        "approved": False
    }


def test_a_form_that_cannot_become_a_value_names_the_field() -> None:
    fields = _forms.fields(REVIEW_SCHEMA)
    base = {"f:approved": "true", "f:level": '"low"', "f:owner.name": "Ada"}
    with pytest.raises(_forms.FormError, match=r"Score \(score\) is required"):
        _forms.value_of(base, fields)
    with pytest.raises(_forms.FormError, match=r"Score \(score\): 'four' is not an integer"):
        _forms.value_of({**base, "f:score": "four"}, fields)
    with pytest.raises(_forms.FormError, match=r"Tags \(tags\): .* is not JSON"):
        _forms.value_of({**base, "f:score": "2", "f:tags": "[a"}, fields)
    with pytest.raises(_forms.FormError, match="The JSON answer is not valid JSON"):
        _forms.value_of({"__json__": "{"}, fields)
    # no schema, or one that is not an object: one field for the whole answer
    assert _forms.value_of({"f:": "[1, 2]"}, _forms.fields(None)) == [1, 2]
    assert _forms.value_of({"f:": "false"}, _forms.fields({"type": "boolean"})) is False


def test_values_are_shown_from_their_bytes_and_pickles_are_never_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle

    ran = tmp_path / "ran"

    class Boom:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {ran}",))

    monkeypatch.setenv("KITARU_ALLOW_PICKLE", "1")  # even so
    shown = _render.show("pickle:evil:Boom", pickle.dumps(Boom()))
    assert shown.kind == "note" and "not loaded" in shown.text and not ran.exists()
    shown = _render.show("json", json.dumps({"a": [1, 2]}).encode())
    assert shown.kind == "json" and json.loads(shown.text) == {"a": [1, 2]}
    assert _render.show("pydantic:m:Model", b'{"x": 1}').type_name == "m:Model"
    big = _render.show("str", b"x" * (_render.MAX_SHOWN + 10))
    assert big.truncated and len(big.text) == _render.MAX_SHOWN
    assert _render.show("bytes", b"\xff\x00").kind == "bytes"


# --- a dashboard process ------------------------------------------------------------------


class Dashboard:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc, self.url = proc, url
        m = re.match(r"(http://[^/]+)/\?token=(\S+)", url)
        assert m, url
        self.base, self.token = m.group(1), m.group(2)


def start_dashboard(cwd: Path, env: dict[str, str], *extra: str) -> Dashboard:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kitaru.cli", "ui", "--port", "0", "--no-browser", *extra],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "kitaru ui: " not in line:
        proc.kill()
        rest = proc.communicate(timeout=20)[0]
        raise AssertionError(f"kitaru ui did not start: {line}{rest}")
    return Dashboard(proc, line.split("kitaru ui: ", 1)[1].strip())


@pytest.fixture
def flows(tmp_path: Path, fake_llm: Any) -> tuple[Path, dict[str, str]]:
    write_script(tmp_path, "flows.py", FLOWS)
    env = {**os.environ, **fake_llm.env(), "KITARU_WAIT_TIMEOUT": "0"}
    return tmp_path, env


def run_flow(where: tuple[Path, dict[str, str]], name: str, topic: str) -> str:
    cwd, env = where
    proc = subprocess.run([sys.executable, "flows.py", name, topic], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()[-1]


@pytest.fixture
def dashboard(flows: tuple[Path, dict[str, str]]) -> Iterator[Dashboard]:
    d = start_dashboard(*flows)
    try:
        yield d
    finally:
        d.proc.terminate()
        # what the dashboard printed, shown by pytest when the test failed
        print(d.proc.communicate(timeout=20)[0])


def test_requests_without_the_launch_token_are_refused(
    flows: tuple[Path, dict[str, str]], dashboard: Dashboard
) -> None:
    exec_id = run_flow(flows, "approval", "tides")
    with (
        httpx.Client(base_url=dashboard.base) as plain,
        httpx.Client(base_url=dashboard.base) as user,
    ):
        token_gate(exec_id, dashboard, plain, user)


def token_gate(exec_id: str, dashboard: Dashboard, plain: httpx.Client, user: httpx.Client) -> None:
    for path in ("/", f"/executions/{exec_id}", "/static/kitaru.js"):
        r = plain.get(path)
        assert r.status_code == 403 and "kitaru ui" in r.text, (path, r.status_code)
    assert plain.get("/?token=wrong").status_code == 403
    # a write without the token: refused, and the wait is still pending
    r = plain.post(f"/executions/{exec_id}/input", data={"wait": "review", "__json__": "{}"})
    assert r.status_code == 403
    # the link: a cookie, and the same page without the token in the address
    r = plain.get(f"/?token={dashboard.token}&status=waiting")
    assert r.status_code == 303 and r.headers["location"] == "/?status=waiting"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    user.cookies = r.cookies
    page = user.get("/?status=waiting")
    assert page.status_code == 200 and exec_id in page.text
    assert (
        "content-security-policy" in page.headers
        and page.headers["referrer-policy"] == "same-origin"
    )
    # the cookie alone does not make a write: the form must carry the token too
    r = user.post(f"/executions/{exec_id}/abort", data={"wait": "review"})
    assert r.status_code == 403 and "token" in r.text
    # nor does a form posted from another site
    r = user.post(f"/executions/{exec_id}/abort", data={"wait": "review", "token": dashboard.token},
                  headers={"origin": "http://evil.example"})  # fmt: skip
    assert r.status_code == 403
    # a name of the attacker's that resolves to 127.0.0.1 (DNS rebinding)
    r = user.get("/", headers={"host": f"evil.example:{dashboard.base.rsplit(':', 1)[1]}"})
    assert r.status_code == 421
    from kitaru.client import KitaruClient

    assert KitaruClient().executions.get(exec_id).status.value == "waiting"


def test_the_first_page_of_a_store_and_its_filters(
    flows: tuple[Path, dict[str, str]], dashboard: Dashboard
) -> None:
    done, failed = run_flow(flows, "report", "moon"), run_flow(flows, "broken", "sun")
    with httpx.Client(base_url=dashboard.base) as user:
        user.get(f"/?token={dashboard.token}")
        first_page(done, failed, user)


def first_page(done: str, failed: str, user: httpx.Client) -> None:
    rows = user.get("/?fragment=rows").text
    assert done in rows and failed in rows and "the search tool broke on sun" in rows
    only = user.get("/?status=failed&fragment=rows").text
    assert failed in only and done not in only
    assert done in user.get("/?flow=report").text
    bad = user.get("/?status=lost")
    assert bad.status_code == 400 and "Unknown status &#39;lost&#39;" in bad.text  # escaped
    missing = user.get("/executions/nope")
    assert missing.status_code == 404


# --- in a real browser --------------------------------------------------------------------


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    assert os.path.exists(CHROMIUM), "Chromium is missing: `make dev-deps` installs it with apt"
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_in_a_browser_list_execution_page_wait_form_and_completion(
    flows: tuple[Path, dict[str, str]], dashboard: Dashboard, browser: Any, fake_llm: Any
) -> None:
    from kitaru.client import KitaruClient

    done = run_flow(flows, "report", "moon")
    failed = run_flow(flows, "broken", "sun")
    waiting = run_flow(flows, "approval", "tides")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(dashboard.url)
    assert page.url == dashboard.base + "/", "the token left the address bar"
    rows = page.locator("#executions tbody tr")
    rows.first.wait_for()
    statuses = {r.get_attribute("data-exec"): r.get_attribute("data-status") for r in rows.all()}
    assert statuses == {done: "completed", failed: "failed", waiting: "waiting"}
    assert "Approve the report on tides?" in page.locator(f"tr[data-exec='{waiting}']").inner_text()
    shot(page, "1-executions")

    # the completed execution: its checkpoints, an output opened, the cost ledger
    page.click(f"a[href='/executions/{done}']")
    page.wait_for_selector("#checkpoints")
    calls = page.locator("#checkpoints tr.call")
    assert [c.get_attribute("data-call") for c in calls.all()] == ["research", "summarize"]
    page.locator("#call-research + tr > td > details > summary").click()
    output = page.locator("#call-research + tr > td > details > .loaded pre")
    output.wait_for()
    assert json.loads(output.inner_text())["facts"][1] == "<b>not bold</b>"  # shown, not run
    spent = KitaruClient().executions.get(done).llm_cost
    assert spent is not None and spent.calls == 1 and spent.cost_usd > 0
    from kitaru.ui._app import fmt_usd

    assert f"{fmt_usd(spent.cost_usd)} over 1 call" in page.locator("#spent").inner_text()
    assert "researching moon" in page.locator("table.logs").inner_text()
    shot(page, "2-completed-execution")

    # the failed one shows why
    page.goto(f"{dashboard.base}/executions/{failed}")
    assert "the search tool broke on sun" in page.locator("section.failure").inner_text()
    assert page.locator("#retry").is_visible()
    shot(page, "3-failed-execution")

    # the waiting one: a form from the wait's schema; a bad answer is refused and named
    page.goto(f"{dashboard.base}/executions/{waiting}")
    form = page.locator("form.answer[data-wait='review']")
    assert form.locator("input[type=radio][name='f:approved']").count() == 2
    score = form.locator("input[name='f:score']")
    assert (score.get_attribute("min"), score.get_attribute("max")) == ("1", "5")
    shot(page, "4-wait-form")
    form.locator("input[name='f:approved'][value='true']").check()
    score.evaluate("el => { el.removeAttribute('max'); }")  # past the browser's own check
    score.fill("9")
    form.locator("button[type=submit]").click()
    page.wait_for_selector(".problem")
    assert "score" in page.locator(".problem").inner_text()
    assert KitaruClient().executions.get(waiting).status.value == "waiting"
    shot(page, "5-wait-refused")

    form = page.locator("form.answer[data-wait='review']")
    form.locator("input[name='f:approved'][value='true']").check()
    form.locator("input[name='f:score']").fill("4")
    form.locator("input[name='f:comment']").fill("clear and short")
    form.locator("button[type=submit]").click()
    page.wait_for_selector(".note")
    # resumed by the dashboard in a child process; the page follows it to the end
    page.wait_for_selector("#execution[data-status='completed']", timeout=60_000)
    e = KitaruClient().executions.get(waiting)
    assert e.status.value == "completed"
    assert KitaruClient().executions.result(waiting) == "tides: approved=True score=4"
    assert e.waits[0].value == {"approved": True, "score": 4, "comment": "clear and short"}
    assert "clear and short" in page.locator("body").inner_text()
    shot(page, "6-answered-and-completed")
    assert errors == []


def test_in_a_browser_retry_replay_and_diff(
    flows: tuple[Path, dict[str, str]], dashboard: Dashboard, browser: Any
) -> None:
    from kitaru.client import KitaruClient

    cwd, _ = flows
    failed = run_flow(flows, "broken", "sun")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(dashboard.url)
    page.goto(f"{dashboard.base}/executions/{failed}")
    # mend the code, then retry from the dashboard: research is reused, explode runs again
    flows_py = cwd / "flows.py"
    flows_py.write_text(flows_py.read_text().replace(
        'raise RuntimeError("the search tool broke on " + notes["topic"])',
        'return "fixed: " + notes["topic"]'))  # fmt: skip
    page.click("#retry")
    page.wait_for_selector("#execution[data-status='completed']", timeout=60_000)
    e = KitaruClient().executions.get(failed)
    assert [(c.name, [a.run for a in c.attempts]) for c in e.checkpoints] == [
        ("research", [1]), ("explode", [1, 2]),
    ]  # fmt: skip
    # replay from explode with changed code: a new execution; the page links to it
    flows_py.write_text(flows_py.read_text().replace('"fixed: "', '"fixed again: "'))
    page.locator("tr[data-call='explode'] form.replay button").click()
    link = page.locator("li[data-action='replay'] .job-exec a")
    link.wait_for(timeout=60_000)
    replay = link.inner_text()
    assert replay != failed
    deadline = time.monotonic() + 60
    while KitaruClient().executions.get(replay).status.value != "completed":
        assert time.monotonic() < deadline, "the replay did not complete"
        time.sleep(0.2)
    page.goto(f"{dashboard.base}/diff?a={failed}&b={replay}")
    assert page.locator("#diff tr.d-same td.mono").inner_text() == "research"
    assert page.locator("#diff tr.d-changed td.mono").inner_text() == "explode"
    assert page.locator("#diff pre.udiff .del").inner_text() == "-fixed: sun"
    assert page.locator("#diff pre.udiff .add").inner_text() == "+fixed again: sun"
    shot(page, "7-diff")
