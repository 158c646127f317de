"""`kitaru.llm()` / `kitaru.allm()` against a real local HTTP provider (tests-python/fake_llm.py).

Covers argument validation, the OpenAI / Anthropic / Ollama / OpenRouter wire formats,
tool calls, structured output, retries and timeouts, credentials (environment, secrets,
error scrubbing), the model registry and secrets CLIs, the mock hook and the cost ledger.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kitaru
import pytest
from conftest import stored_files
from fake_llm import ANTHROPIC_KEY, OPENAI_KEY, FakeLLM, Reply
from kitaru import KitaruClient, checkpoint, flow
from kitaru.errors import (
    KitaruBackendError,
    KitaruContextError,
    KitaruRuntimeError,
    KitaruUsageError,
)
from pydantic import BaseModel

MINI = "openai/gpt-4o-mini"
MINI_PRICES = (0.15, 0.60)  # USD per million tokens (genai-prices' table)


# --- flows and tools used by the tests -----------------------------------------------------

_BODY: dict[str, Any] = {}


@flow
def body_flow() -> None:
    """Runs the test's callable in a flow body, keeping its value or its exception."""
    try:
        _BODY["value"] = _BODY["fn"]()
    except Exception as exc:
        _BODY["error"] = exc


@flow
async def abody_flow() -> None:
    try:
        _BODY["value"] = await _BODY["fn"]()
    except Exception as exc:
        _BODY["error"] = exc


def in_flow(fn: Callable[[], Any], *, is_async: bool = False) -> tuple[Any, str]:
    """(what `fn` returned in a flow body, the execution id); re-raises what it raised."""
    _BODY.clear()
    _BODY["fn"] = fn
    handle = (abody_flow if is_async else body_flow).run()
    handle.wait()
    if "error" in _BODY:
        raise _BODY["error"]
    return _BODY["value"], handle.exec_id


def execution(exec_id: str) -> Any:
    return KitaruClient().executions.get(exec_id)


def search(query: str, limit: int = 5) -> list[str]:
    """Search the web for a query.

    This second paragraph is not part of the tool description.
    """
    return [f"{query} #{i}" for i in range(limit)]


class Search(BaseModel):
    """Search the web."""

    query: str
    limit: int = 3


class Fetch(BaseModel):
    """Fetch one URL."""

    url: str


class Plan(BaseModel):
    steps: list[str]
    done: bool = False


@checkpoint
def summarize(text: str) -> str:
    return kitaru.llm(f"Summarize: {text}", model=MINI)


@flow
def inline_flow(text: str) -> str:
    return summarize(text)


@checkpoint
async def asummarize(text: str) -> str:
    return await kitaru.allm(f"Summarize: {text}", model=MINI)


@flow
async def ainline_flow(text: str) -> str:
    return await asummarize(text)


@flow
def plan_flow() -> list[str]:
    return kitaru.llm("Make a plan", model=MINI, schema=Plan).steps


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def _server() -> Iterator[FakeLLM]:
    # One server for the module (stopping one takes its 0.5 s poll interval); `llm` resets it.
    server = FakeLLM()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def llm(_server: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLM]:
    """The fake provider, with the provider variables pointing at it and fast retries."""
    _server.requests.clear()
    _server.replies.clear()
    _server.openai_key, _server.anthropic_key = OPENAI_KEY, ANTHROPIC_KEY
    _server.basic_auth, _server.llamacpp = None, False
    for key, value in _server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KITARU_LLM_MAX_RETRIES", "2")
    yield _server


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`kitaru ARGS` in this process: (exit code, stdout, stderr)."""
    from kitaru.cli import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def cli_ok(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code, out, err = cli(capsys, *args, "-o", "json")
    assert code == 0, err
    return json.loads(out)


def cli_err(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code, out, err = cli(capsys, *args, "-o", "json")
    assert code == 1, out
    return json.loads(err)["error"]


def price(tin: int, tout: int, prices: tuple[float, float]) -> float:
    return (tin * prices[0] + tout * prices[1]) / 1_000_000


def store_files(store: Path) -> Iterator[bytes]:
    for _, data in stored_files(store):
        yield data


# --- usage and context errors --------------------------------------------------------------


def test_outside_a_flow_is_a_context_error(llm: FakeLLM) -> None:
    with pytest.raises(KitaruContextError, match=r"only be called inside a @flow"):
        kitaru.llm("hi", model=MINI)
    with pytest.raises(KitaruContextError, match=r"only be called inside a @flow"):
        asyncio.run(kitaru.allm("hi", model=MINI))
    assert llm.requests == []


BAD_CALLS: dict[str, tuple[dict[str, Any], str]] = {
    "empty prompt": ({"prompt": "   "}, "Prompt cannot be empty"),
    "empty list": ({"prompt": []}, "message list cannot be empty"),
    "not a prompt": ({"prompt": 42}, "Prompt must be a string or a list"),
    "no role": ({"prompt": [{"content": "hi"}]}, "'role' and 'content'"),
    "no content": ({"prompt": [{"role": "user"}]}, "has no 'content'"),
    "bad role": ({"prompt": [{"role": "robot", "content": "hi"}]}, "role 'robot'"),
    "tool without id": ({"prompt": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
    "blank system": ({"system": "  "}, "system must be a non-empty string"),
    "temperature too high": ({"temperature": 3}, "temperature"),
    "temperature not a number": ({"temperature": "hot"}, "temperature"),
    "max_tokens zero": ({"max_tokens": 0}, "max_tokens"),
    "max_tokens bool": ({"max_tokens": True}, "max_tokens"),
    "timeout zero": ({"timeout": 0}, "timeout"),
    "schema and tools": ({"schema": Plan, "tools": [search]}, "cannot be combined"),
    "unknown tool_choice": ({"tools": [Fetch], "tool_choice": "sometimes"}, "tool_choice must be"),
    "tool_choice without tools": ({"tool_choice": "auto"}, "tool_choice needs tools"),
    "duplicate tools": ({"tools": [Fetch, Fetch]}, "unique"),
    "bad tool": ({"tools": [42]}, r"tools\[0\]"),
    "blank name": ({"name": " "}, "name must be a non-empty string"),
    "model without provider": ({"model": "gpt-4o"}, "has no provider"),
    "unknown provider": ({"model": "acme/rocket-1"}, "Unknown provider 'acme'"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS), ids=list(BAD_CALLS))
def test_bad_calls_are_usage_errors_and_send_nothing(llm: FakeLLM, case: str) -> None:
    kwargs, message = BAD_CALLS[case]
    kwargs = {"prompt": "hi", "model": MINI, **kwargs}
    prompt = kwargs.pop("prompt")
    with pytest.raises(KitaruUsageError, match=message):
        in_flow(lambda: kitaru.llm(prompt, **kwargs))
    assert llm.requests == []


def test_no_model_configured_is_a_usage_error(llm: FakeLLM) -> None:
    with pytest.raises(KitaruUsageError, match="No model given and no default model alias"):
        in_flow(lambda: kitaru.llm("hi"))
    assert llm.requests == []


# --- OpenAI request shaping and responses --------------------------------------------------


def test_openai_request_shape_and_text_answer(llm: FakeLLM) -> None:
    value, exec_id = in_flow(
        lambda: kitaru.llm(
            "  Hello there  ", model=MINI, system="Be brief.", temperature=0.2, max_tokens=50
        )
    )
    assert value == "echo: Hello there"
    [req] = llm.requests
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert req.body == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there"},
        ],
        "temperature": 0.2,
        "max_tokens": 50,  # an OpenAI-compatible base URL gets max_tokens
    }
    ex = execution(exec_id)
    [cp] = ex.checkpoints
    assert (cp.name, cp.checkpoint_type) == ("llm_1", "llm_call")
    entry = cp.metadata["llm_calls"]["llm_1"]
    assert entry["resolved_model"] == MINI and entry["credential_source"] == "environment"
    assert OPENAI_KEY not in json.dumps(cp.metadata)


def test_calls_are_numbered_or_named_checkpoints(llm: FakeLLM) -> None:
    def body() -> list[str]:
        return [
            kitaru.llm("one", model=MINI),
            kitaru.llm("two", model=MINI, name="research step"),
            kitaru.llm("three", model=MINI),
        ]

    value, exec_id = in_flow(body)
    assert value == ["echo: one", "echo: two", "echo: three"]
    cps = execution(exec_id).checkpoints
    assert [c.name for c in cps] == ["llm_1", "research_step", "llm_2"]
    assert {c.checkpoint_type for c in cps} == {"llm_call"}


def test_message_list_is_sent_as_given(llm: FakeLLM) -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
    ]
    value, _ = in_flow(lambda: kitaru.llm(messages, model=MINI, system="sys"))
    assert value == "echo: second"
    assert llm.requests[0].body["messages"] == [{"role": "system", "content": "sys"}, *messages]


def test_the_official_openai_endpoint_gets_max_completion_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kitaru._llm import models as _models
    from kitaru._llm import providers as _providers

    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    resolved = _models.resolve_model_selection(MINI)
    ep = _providers.endpoint_for(resolved, "llm_1")
    assert ep.url == "https://api.openai.com/v1/chat/completions"
    req = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 9}
    body = _providers.build(resolved, req, ep)
    assert body["max_completion_tokens"] == 9 and "max_tokens" not in body


def test_tool_definitions_from_a_plain_function(llm: FakeLLM) -> None:
    llm.queue(Reply(text="ok"))
    value, _ = in_flow(lambda: kitaru.llm("q", model=MINI, tools=[search], tool_choice="search"))
    assert value.text == "ok"
    body = llm.requests[0].body
    [tool] = body["tools"]
    assert tool["type"] == "function"
    fn = tool["function"]
    assert fn["name"] == "search"
    assert fn["description"] == "Search the web for a query."  # first paragraph of the docstring
    params = fn["parameters"]
    assert params["type"] == "object" and params["required"] == ["query"]
    assert params["properties"]["query"]["type"] == "string"
    assert params["properties"]["limit"]["type"] == "integer"
    assert params["properties"]["limit"]["default"] == 5
    assert body["tool_choice"] == {"type": "function", "function": {"name": "search"}}


def test_invoking_a_plain_function_tool(llm: FakeLLM) -> None:
    llm.queue(Reply(tool_calls=[("search", {"query": "kitaru", "limit": 2})]))

    def body() -> Any:
        resp = kitaru.llm("go", model=MINI, tools=[search])
        return resp.tool_calls[0].invoke([search])

    value, _ = in_flow(body)
    assert value == ["kitaru #0", "kitaru #1"]


def test_tools_from_pydantic_models_and_dicts(llm: FakeLLM) -> None:
    weather = {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    llm.queue(Reply(text="no tools needed"), Reply(text="fine"), Reply(text="ok"))

    def body() -> Any:
        kitaru.llm("q", model=MINI, tools=[Search, Fetch, weather])
        kitaru.llm("q", model=MINI, tools=[Search, Fetch], tool_choice="Fetch")
        return kitaru.llm("q", model=MINI, tools=[Search], tool_choice="required")

    value, _ = in_flow(body)
    assert isinstance(value, kitaru.LLMResponse)
    assert value.text == "ok" and value.tool_calls == [] and str(value) == "ok"
    first, second, third = (r.body for r in llm.requests)
    s_tool, f_tool, w_tool = first["tools"]
    assert s_tool["type"] == "function"
    fn = s_tool["function"]
    assert fn["name"] == "Search" and fn["description"] == "Search the web."
    assert fn["parameters"]["type"] == "object"
    assert fn["parameters"]["required"] == ["query"]
    assert fn["parameters"]["properties"]["query"]["type"] == "string"
    assert fn["parameters"]["properties"]["limit"]["default"] == 3
    assert f_tool["function"]["name"] == "Fetch"
    assert f_tool["function"]["description"] == "Fetch one URL."
    assert f_tool["function"]["parameters"]["required"] == ["url"]
    assert w_tool == weather
    assert "tool_choice" not in first
    assert second["tool_choice"] == {"type": "function", "function": {"name": "Fetch"}}
    assert third["tool_choice"] == "required"


def test_tool_call_response_and_a_two_turn_tool_loop(llm: FakeLLM) -> None:
    llm.queue(
        Reply(
            tool_calls=[
                ("Search", {"query": "kitaru", "limit": 2}),
                ("Fetch", {"url": "https://x"}),
            ],
            usage=(100, 20),
        ),
        Reply(text="Kitaru is a durable runtime.", usage=(150, 10)),
    )
    seen: dict[str, Any] = {}

    def body() -> str:
        messages: list[Any] = [{"role": "user", "content": "What is kitaru?"}]
        resp = kitaru.llm(messages, model=MINI, tools=[Search, Fetch])
        seen["first"] = resp
        calls = resp.tool_calls
        seen["names"] = [c.name for c in calls]
        seen["arguments"] = [c.arguments for c in calls]
        results = [c.invoke([Search, Fetch]) for c in calls]
        seen["results"] = results
        messages.append(resp.message)
        messages.append(calls[0].result(["kitaru #0", "kitaru #1"]))
        messages.append(calls[1].result(results[1].url))
        final = kitaru.llm(messages, model=MINI, tools=[Search, Fetch])
        seen["final"] = final
        return str(final)

    value, exec_id = in_flow(body)
    first = seen["first"]
    assert first.text is None
    assert seen["names"] == ["Search", "Fetch"]
    assert seen["arguments"] == [{"query": "kitaru", "limit": 2}, {"url": "https://x"}]
    assert seen["results"] == [Search(query="kitaru", limit=2), Fetch(url="https://x")]
    assert (first.usage.input_tokens, first.usage.output_tokens, first.usage.total_tokens) == (
        100,
        20,
        120,
    )
    assert first.cost_usd == pytest.approx(price(100, 20, MINI_PRICES))
    assert first.finish_reason == "tool_calls"
    assert first.message["role"] == "assistant"
    assert [tc["function"]["name"] for tc in first.message["tool_calls"]] == ["Search", "Fetch"]
    assert value == "Kitaru is a durable runtime."
    assert seen["final"].tool_calls == []

    second = llm.requests[1].body["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "tool", "tool"]
    search_args = json.dumps({"query": "kitaru", "limit": 2})
    assert second[1]["tool_calls"] == [
        {
            "id": "call_0",
            "type": "function",
            "function": {"name": "Search", "arguments": search_args},
        },
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "Fetch", "arguments": '{"url": "https://x"}'},
        },
    ]
    assert second[2] == {
        "role": "tool",
        "tool_call_id": "call_0",
        "content": json.dumps(["kitaru #0", "kitaru #1"]),
    }
    assert second[3] == {"role": "tool", "tool_call_id": "call_1", "content": "https://x"}

    ex = execution(exec_id)
    assert [c.tokens_input for c in ex.llm_calls] == [100, 150]
    assert ex.llm_cost.cost_usd == pytest.approx(price(250, 30, MINI_PRICES))


def test_an_llm_response_stands_for_its_message(llm: FakeLLM) -> None:
    llm.queue(Reply(tool_calls=[("Fetch", {"url": "u"})]), Reply(text="done"))

    def body() -> str:
        resp = kitaru.llm("go", model=MINI, tools=[Fetch])
        [tc] = resp.tool_calls
        return kitaru.llm([{"role": "user", "content": "go"}, resp, tc.result("page")], model=MINI)

    value, _ = in_flow(body)
    assert value == "done"
    assert [m["role"] for m in llm.requests[1].body["messages"]] == ["user", "assistant", "tool"]


def test_an_unusable_tool_call_is_not_stored_and_a_retry_asks_again(llm: FakeLLM) -> None:
    llm.queue(
        Reply(tool_calls=[("delete_everything", {})]),
        Reply(body=json.dumps(_openai_tool_call("Fetch", "{not json"))),
        Reply(tool_calls=[("Fetch", {"nope": 1})]),
    )
    seen: dict[str, Any] = {}

    def body() -> None:
        with pytest.raises(KitaruBackendError, match=r"delete_everything.*not among the tools"):
            kitaru.llm("go", model=MINI, tools=[Fetch])
        with pytest.raises(KitaruBackendError, match="not JSON"):
            kitaru.llm("go", model=MINI, tools=[Fetch])
        # a well-formed call to a known tool is stored; invoking it validates the arguments
        resp = kitaru.llm("go", model=MINI, tools=[Fetch])
        try:
            resp.tool_calls[0].invoke([Fetch])
        except Exception as exc:
            seen["error"] = exc

    _, exec_id = in_flow(body)
    assert "url" in str(seen["error"])  # pydantic's validation error names the missing field
    calls = {c.name: c for c in execution(exec_id).checkpoints}
    # the two unusable answers are failed attempts, not finished calls
    assert calls["llm_1"].status.value == "failed" and calls["llm_2"].status.value == "failed"
    assert calls["llm_3"].status.value == "completed"


def _openai_tool_call(name: str, arguments: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "finish_reason": "length",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": name, "arguments": arguments},
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }


def test_structured_output_with_a_pydantic_schema(llm: FakeLLM) -> None:
    llm.queue(Reply(text=json.dumps({"steps": ["read", "write"]})))
    value, _ = in_flow(lambda: kitaru.llm("Plan it", model=MINI, schema=Plan))
    assert value == Plan(steps=["read", "write"], done=False)
    fmt = llm.requests[0].body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Plan"
    assert fmt["json_schema"]["schema"]["type"] == "object"
    assert fmt["json_schema"]["schema"]["required"] == ["steps"]
    assert set(fmt["json_schema"]["schema"]["properties"]) == {"steps", "done"}


def test_a_non_object_schema_is_wrapped_and_unwrapped(llm: FakeLLM) -> None:
    llm.queue(Reply(text=json.dumps({"value": ["a", "b"]})))
    value, _ = in_flow(lambda: kitaru.llm("List two letters", model=MINI, schema=list[str]))
    assert value == ["a", "b"]
    schema = llm.requests[0].body["response_format"]["json_schema"]["schema"]
    assert schema == {
        "type": "object",
        "properties": {"value": {"type": "array", "items": {"type": "string"}}},
        "required": ["value"],
    }


@pytest.mark.parametrize(
    "answer", ["this is not JSON", json.dumps({"steps": "not a list"}), json.dumps(["read"])]
)
def test_an_answer_not_matching_the_schema_is_a_backend_error(llm: FakeLLM, answer: str) -> None:
    llm.queue(Reply(text=answer))
    with pytest.raises(KitaruBackendError, match="does not match schema Plan"):
        in_flow(lambda: kitaru.llm("Plan it", model=MINI, schema=Plan))


def test_an_invalid_answer_is_not_stored_so_a_retry_asks_again(llm: FakeLLM) -> None:
    llm.queue(Reply(text="sorry, no JSON today"), Reply(text=json.dumps({"steps": ["a"]})))
    handle = plan_flow.run()
    assert handle.status == "failed"
    with pytest.raises(kitaru.KitaruError, match="does not match schema Plan"):
        handle.wait()
    [cp] = execution(handle.exec_id).checkpoints
    assert cp.name == "llm_1" and cp.status != "completed"
    KitaruClient().executions.retry(handle.exec_id)
    assert handle.wait() == ["a"]
    assert len(llm.requests) == 2


# --- OpenAI-compatible servers that refuse what OpenAI takes (llama.cpp's) --------------------


@flow
def local_plan_flow() -> list[str]:
    return kitaru.llm("Make a plan", model="local", schema=Plan).steps


def _local_alias(llm: FakeLLM, monkeypatch: pytest.MonkeyPatch, *extra: str) -> None:
    """A llama.cpp-like server behind alias `local` (no key, its own base URL)."""
    from kitaru.cli import main

    llm.openai_key, llm.llamacpp = None, True
    monkeypatch.delenv("OPENAI_API_KEY")
    args = ["model", "register", "local", "--model", "openai/qwen", "--base-url", llm.openai_base]
    assert main([*args, *extra]) == 0


def test_an_assistant_message_without_content_is_sent_with_an_empty_string(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    # llama.cpp's server refuses `content: null` beside tool_calls (HTTP 500, validation
    # error); kitaru sends "" — and records the conversation as it was given.
    _local_alias(llm, monkeypatch)
    llm.queue(Reply(tool_calls=[("search", {"query": "kitaru"})]), Reply(text="done"))

    def body() -> str:
        messages: list[Any] = [{"role": "user", "content": "find kitaru"}]
        reply = kitaru.llm(messages, model="local", tools=[search])
        assert reply.message["content"] is None
        messages.append(reply)
        messages += [c.result(c.invoke([search])) for c in reply.tool_calls]
        messages.append({"role": "assistant", "tool_calls": reply.message["tool_calls"]})
        messages.append({"role": "user", "content": "and now?"})
        return kitaru.llm(messages, model="local", tools=[search]).text or ""

    value, exec_id = in_flow(body)
    assert value == "done"
    assert len(llm.requests) == 2
    sent = llm.requests[1].body["messages"]
    assert [m.get("content") for m in sent if m["role"] == "assistant"] == ["", ""]
    assert all(m["tool_calls"] for m in sent if m["role"] == "assistant")
    prompt = execution(exec_id).artifacts
    stored = next(a for a in prompt if a.name == "llm_2_prompt").load()
    assert stored[1]["content"] is None  # the conversation as the caller wrote it


@pytest.mark.parametrize("is_async", [False, True])
def test_a_500_that_is_a_request_validation_error_is_not_retried(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch, is_async: bool
) -> None:
    # response_format json_schema (the default) is refused by llama.cpp's server with a
    # pydantic validation error in a 500: the same answer every time, so one request only.
    _local_alias(llm, monkeypatch)
    with pytest.raises(KitaruBackendError) as info:
        if is_async:

            async def call() -> Plan:
                return await kitaru.allm("Plan it", model="local", schema=Plan)

            in_flow(call, is_async=True)
        else:
            in_flow(lambda: kitaru.llm("Plan it", model="local", schema=Plan))
    assert len(llm.requests) == 1
    message = str(info.value)
    assert "HTTP 500" in message and "1 validation error for CreateChatCompletionRequest" in message
    assert "not retried" in message and "attempts" not in message
    assert "--structured-output json_object" in message  # what to do about it


@pytest.mark.parametrize(
    ("status", "error", "attempts"),
    [
        (500, "2 validation errors for ChatRequest: messages.0.content Field required", 1),
        (500, "RequestValidationError: body -> tools", 1),
        (500, "invalid_request_error: unknown parameter", 1),
        (500, "CUDA out of memory, try again", 3),  # may pass: retried
        (404, "model 'qwen' not found", 1),
        (422, "Unprocessable Entity", 1),
        (403, "forbidden", 1),
    ],
)
def test_which_errors_are_retried(llm: FakeLLM, status: int, error: str, attempts: int) -> None:
    llm.queue(*[Reply(status=status, error=error, headers={"Retry-After": "0"})] * 3)
    with pytest.raises(KitaruBackendError, match=f"HTTP {status}"):
        in_flow(lambda: kitaru.llm("hi", model=MINI))
    assert len(llm.requests) == attempts


def test_structured_output_mode_json_object(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _local_alias(llm, monkeypatch, "--structured-output", "json_object")
    item = next(a for a in cli_ok(capsys, "model", "list")["items"] if a["alias"] == "local")
    assert item["structured_output"] == "json_object"
    llm.queue(Reply(text=json.dumps({"steps": ["read"]})), Reply(text=json.dumps({"steps": 1})))
    value, _ = in_flow(
        lambda: kitaru.llm("Plan it", model="local", schema=Plan, system="Be brief.")
    )
    assert value == Plan(steps=["read"])
    body = llm.requests[0].body
    assert body["response_format"] == {"type": "json_object"} and "tools" not in body
    system = body["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("Be brief.\n\n")
    assert json.dumps(Plan.model_json_schema(), separators=(",", ":")) in system["content"]
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    # validation is the same as in the other modes
    with pytest.raises(KitaruBackendError, match="does not match schema Plan"):
        in_flow(lambda: kitaru.llm("Plan it", model="local", schema=Plan))
    assert llm.requests[1].body["messages"][0]["role"] == "system"  # inserted: none was given


@flow
def two_plans_flow() -> list[str]:
    first = kitaru.llm("Plan it", model="local", schema=Plan, name="first")
    second = kitaru.llm("Plan again", model="local", schema=Plan, name="second")
    return first.steps + second.steps


def test_structured_output_mode_tool_from_python(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    _local_alias(llm, monkeypatch)
    kitaru.register_model_alias(
        "local", model="openai/qwen", base_url=llm.openai_base, structured_output="tool"
    )
    llm.queue(Reply(text=json.dumps({"value": ["a", "b"]})))
    value, _ = in_flow(lambda: kitaru.llm("Two letters", model="local", schema=list[str]))
    assert value == ["a", "b"]
    body = llm.requests[0].body
    assert "response_format" not in body
    [tool] = body["tools"]
    assert tool["function"]["name"] == "list"
    assert tool["function"]["parameters"]["required"] == ["value"]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "list"}}
    # validation is the same as in the other modes
    llm.queue(Reply(text=json.dumps({"value": "not a list"})))
    with pytest.raises(KitaruBackendError, match="does not match schema"):
        # (another prompt: the same one would be answered by the cross-execution cache)
        in_flow(lambda: kitaru.llm("Two more letters", model="local", schema=list[str]))

    # The mode is how the answer is asked for, not part of the call: after switching it, a
    # retry reuses the stored answer and asks only for the missing one, the new way.
    llm.requests.clear()
    llm.queue(Reply(text=json.dumps({"steps": ["a"]})), Reply(status=404, error="gone"))
    handle = two_plans_flow.run()
    assert handle.status == "failed"
    kitaru.register_model_alias(
        "local", model="openai/qwen", base_url=llm.openai_base, structured_output="json_object"
    )
    llm.queue(Reply(text=json.dumps({"steps": ["b"]})))
    KitaruClient().executions.retry(handle.exec_id)
    assert handle.wait() == ["a", "b"]
    assert len(llm.requests) == 3
    assert llm.requests[2].body["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize(
    ("model", "mode", "message"),
    [
        ("openai/qwen", "xml", "Invalid structured output mode 'xml'"),
        ("anthropic/claude-3-5-haiku", "json_object", "forced tool only"),
    ],
)
def test_structured_output_mode_errors(
    monkeypatch: pytest.MonkeyPatch, model: str, mode: str, message: str
) -> None:
    with pytest.raises(KitaruUsageError, match=message):
        kitaru.register_model_alias("x", model=model, structured_output=mode)
    registry = {"aliases": {"x": {"model": model, "structured_output": mode}}}
    with monkeypatch.context() as m:
        m.setenv("KITARU_MODEL_REGISTRY", json.dumps(registry))
        with pytest.raises(KitaruUsageError, match=f"KITARU_MODEL_REGISTRY.*{message}"):
            kitaru.list_model_aliases()
    assert (
        kitaru.register_model_alias(
            "x", model="anthropic/claude-3-5-haiku", structured_output="tool"
        ).structured_output
        == "tool"
    )


def test_a_text_call_answered_without_text_is_a_backend_error(llm: FakeLLM) -> None:
    llm.queue(Reply(tool_calls=[("search", {"query": "x"})]))
    with pytest.raises(KitaruBackendError, match="without text"):
        in_flow(lambda: kitaru.llm("hi", model=MINI))


# --- Anthropic -------------------------------------------------------------------------------

HAIKU = "anthropic/claude-3-5-haiku-20241022"


def test_anthropic_request_shape_and_usage(llm: FakeLLM) -> None:
    llm.queue(Reply(text="Hello!", usage=(11, 7)))
    messages = [
        {"role": "system", "content": "Rule one."},
        {"role": "system", "content": "Rule two."},
        {"role": "user", "content": "hi"},
    ]
    value, exec_id = in_flow(
        lambda: kitaru.llm(messages, model=HAIKU, system="Be brief.", temperature=0.5)
    )
    assert value == "Hello!"
    [req] = llm.requests
    assert req.path == "/v1/messages"
    assert req.headers["x-api-key"] == ANTHROPIC_KEY
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in req.headers
    assert req.body == {
        "model": "claude-3-5-haiku-20241022",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4096,
        "system": "Be brief.\n\nRule one.\n\nRule two.",
        "temperature": 0.5,
    }
    [call] = execution(exec_id).llm_calls
    assert (call.tokens_input, call.tokens_output, call.total_tokens) == (11, 7, 18)
    # dated model name → the claude-3-5-haiku price by prefix
    assert call.cost_usd == pytest.approx(price(11, 7, (0.80, 4.0)))


def test_anthropic_max_tokens_is_passed_through(llm: FakeLLM) -> None:
    in_flow(lambda: kitaru.llm("hi", model=HAIKU, max_tokens=10))
    assert llm.requests[0].body["max_tokens"] == 10


def test_anthropic_system_message_after_the_start_is_a_usage_error(llm: FakeLLM) -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "system", "content": "late"}]
    with pytest.raises(KitaruUsageError, match="system message after the conversation started"):
        in_flow(lambda: kitaru.llm(messages, model=HAIKU))
    assert llm.requests == []


def test_anthropic_tools_and_tool_results(llm: FakeLLM) -> None:
    llm.queue(
        Reply(text="Let me search.", tool_calls=[("Search", {"query": "kitaru"})], usage=(30, 5)),
        Reply(text="Done."),
    )
    seen: dict[str, Any] = {}

    def body() -> str:
        messages: list[Any] = [{"role": "user", "content": "What is kitaru?"}]
        resp = kitaru.llm(messages, model=HAIKU, tools=[Search], tool_choice="auto")
        seen["first"] = resp
        [tc] = resp.tool_calls
        found = tc.invoke([Search])
        messages += [resp.message, tc.result([f"{found.query} #{i}" for i in range(found.limit)])]
        return kitaru.llm(messages, model=HAIKU, tools=[Search]).text

    value, _ = in_flow(body)
    assert value == "Done."
    first = seen["first"]
    assert first.text == "Let me search."
    assert first.tool_calls[0].id == "toolu_0"
    assert first.tool_calls[0].arguments == {"query": "kitaru"}
    assert (first.usage.input_tokens, first.usage.output_tokens) == (30, 5)

    b1, b2 = (r.body for r in llm.requests)
    [tool] = b1["tools"]
    assert tool["name"] == "Search" and tool["description"] == "Search the web."
    assert tool["input_schema"]["required"] == ["query"]
    assert b1["tool_choice"] == {"type": "auto"}
    assert b2["messages"] == [
        {"role": "user", "content": "What is kitaru?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me search."},
                {
                    "type": "tool_use",
                    "id": "toolu_0",
                    "name": "Search",
                    "input": {"query": "kitaru"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_0",
                    "content": json.dumps([f"kitaru #{i}" for i in range(3)]),
                }
            ],
        },
    ]


def test_anthropic_structured_output_uses_a_forced_tool(llm: FakeLLM) -> None:
    llm.queue(Reply(text=json.dumps({"steps": ["x", "y"], "done": True})))
    value, _ = in_flow(lambda: kitaru.llm("Plan", model=HAIKU, schema=Plan))
    assert value == Plan(steps=["x", "y"], done=True)
    body = llm.requests[0].body
    assert body["tool_choice"] == {"type": "tool", "name": "Plan"}
    assert [t["name"] for t in body["tools"]] == ["Plan"]
    assert body["tools"][0]["input_schema"]["required"] == ["steps"]


def test_anthropic_content_parts_in_system_and_tool_results(llm: FakeLLM) -> None:
    messages = [
        {
            "role": "system",
            "content": [{"type": "text", "text": "Rule A."}, {"type": "text", "text": "Rule B."}],
        },
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "Fetch", "arguments": '{"url": "u"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": [{"type": "text", "text": "page text"}]},
    ]
    in_flow(lambda: kitaru.llm(messages, model=HAIKU, tools=[Fetch]))
    body = llm.requests[0].body
    assert body["system"] == "Rule A.\nRule B."
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "t1", "name": "Fetch", "input": {"url": "u"}}
    ]
    assert body["messages"][2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "t1",
            "content": [{"type": "text", "text": "page text"}],
        }
    ]


def test_anthropic_structured_answer_ignores_text_around_the_tool(llm: FakeLLM) -> None:
    answer = {
        "content": [
            {"type": "text", "text": "Here is the plan:"},
            {"type": "tool_use", "id": "toolu_1", "name": "Plan", "input": {"steps": ["only"]}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }
    llm.queue(Reply(body=json.dumps(answer)))
    value, _ = in_flow(lambda: kitaru.llm("Plan", model=HAIKU, schema=Plan))
    assert value == Plan(steps=["only"])


def test_anthropic_tool_choices_and_images(llm: FakeLLM) -> None:
    image = {"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]}  # fmt: skip

    # the fake answers a forced tool with the queued JSON as the tool's input
    llm.queue(Reply(text="a"), Reply(text="b"), Reply(text=json.dumps({"query": "forced"})))

    def body() -> Any:
        kitaru.llm("q", model=HAIKU, tools=[Search], tool_choice="required")
        kitaru.llm("q", model=HAIKU, tools=[Search], tool_choice="none")
        forced = kitaru.llm("q", model=HAIKU, tools=[Search], tool_choice="Search")
        kitaru.llm([image], model=HAIKU)
        return forced.tool_calls[0].invoke([Search])

    assert in_flow(body)[0] == Search(query="forced")
    choices = [r.body.get("tool_choice") for r in llm.requests[:3]]
    assert choices == [{"type": "any"}, {"type": "none"}, {"type": "tool", "name": "Search"}]
    assert llm.requests[3].body["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    ]


def test_anthropic_wrong_key_names_the_variable(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "sk-ant-wrong-key-000011112222"
    monkeypatch.setenv("ANTHROPIC_API_KEY", wrong)
    with pytest.raises(KitaruBackendError, match="HTTP 401") as info:
        in_flow(lambda: kitaru.llm("hi", model=HAIKU))
    message = str(info.value)
    assert "ANTHROPIC_API_KEY" in message
    assert wrong not in message and f"{wrong[:6]}***{wrong[-4:]}" not in message


# --- Ollama, OpenRouter, OpenAI-compatible servers -------------------------------------------


def test_ollama_host_without_scheme_and_no_key(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm.openai_key = None
    monkeypatch.delenv("OPENAI_API_KEY")
    llm.queue(Reply(text="llama says hi", usage=(5, 3)))
    value, exec_id = in_flow(lambda: kitaru.llm("hi", model="ollama/llama3"))
    assert value == "llama says hi"
    [req] = llm.requests
    assert req.path == "/v1/chat/completions"
    assert "authorization" not in req.headers
    assert req.body["model"] == "llama3"
    [call] = execution(exec_id).llm_calls
    assert call.model == "ollama/llama3" and call.cost_usd == 0.0


def test_openrouter_key_and_provider_cost(llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("OPENROUTER_API_KEY", OPENAI_KEY)  # what the fake server expects
    llm.queue(Reply(text="routed", usage=(1000, 1000), cost=0.0123))
    value, exec_id = in_flow(lambda: kitaru.llm("hi", model="openrouter/openai/gpt-4o"))
    assert value == "routed"
    [req] = llm.requests
    assert req.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert req.body["model"] == "openai/gpt-4o"
    ex = execution(exec_id)
    assert ex.llm_calls[0].cost_usd == pytest.approx(0.0123)  # the provider's, not the table's
    assert ex.llm_cost.cost_usd == pytest.approx(0.0123)


def test_alias_with_a_base_url_needs_no_key(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    llm.openai_key = None
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    item = cli_ok(
        capsys,
        "model",
        "register",
        "local",
        "--model",
        "openai/my-model",
        "--base-url",
        llm.openai_base + "/",
    )["item"]
    assert item["base_url"] == llm.openai_base
    value, exec_id = in_flow(lambda: kitaru.llm("hi", model="local", max_tokens=7))
    assert value == "echo: hi"
    [req] = llm.requests
    assert "authorization" not in req.headers
    assert req.body["model"] == "my-model" and req.body["max_tokens"] == 7
    ex = execution(exec_id)
    assert ex.llm_calls[0].alias == "local" and ex.llm_calls[0].cost_usd is None
    assert ex.llm_cost.unpriced_calls == 1


@pytest.mark.parametrize(
    ("variable", "value", "model", "path"),
    [
        ("OLLAMA_HOST", "http://127.0.0.1:{port}", "ollama/llama3", "/v1/chat/completions"),
        ("OLLAMA_HOST", "http://127.0.0.1:{port}/v1/", "ollama/llama3", "/v1/chat/completions"),
        ("OPENAI_BASE_URL", "http://127.0.0.1:{port}/v1/", MINI, "/v1/chat/completions"),
        ("ANTHROPIC_BASE_URL", "http://127.0.0.1:{port}/v1", HAIKU, "/v1/messages"),
        ("ANTHROPIC_BASE_URL", "http://127.0.0.1:{port}/", HAIKU, "/v1/messages"),
    ],
)
def test_base_url_forms(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, model: str, path: str
) -> None:
    monkeypatch.setenv(variable, value.format(port=llm.port))
    if variable == "OLLAMA_HOST":
        llm.openai_key = None  # ollama takes no key
    assert in_flow(lambda: kitaru.llm("hi", model=model))[0] == "echo: hi"
    assert llm.requests[0].path == path


# --- retries, errors and timeouts --------------------------------------------------------------


def test_429_with_retry_after_is_retried(llm: FakeLLM) -> None:
    llm.queue(Reply(status=429, headers={"Retry-After": "0"}, error="slow down"))
    value, exec_id = in_flow(lambda: kitaru.llm("hi", model=MINI))
    assert value == "echo: hi"
    assert len(llm.requests) == 2
    assert llm.requests[0].body == llm.requests[1].body
    assert len(execution(exec_id).llm_calls) == 1


def test_retry_after_ms_is_honoured(llm: FakeLLM) -> None:
    llm.queue(
        Reply(status=529, headers={"retry-after-ms": "0"}, error="overloaded"),
        Reply(status=500, headers={"retry-after-ms": "1", "Retry-After": "9999"}, error="oops"),
    )
    value, _ = in_flow(lambda: kitaru.llm("hi", model=HAIKU))
    assert value == "echo: hi"
    assert len(llm.requests) == 3


def test_retry_after_as_an_http_date(llm: FakeLLM) -> None:
    llm.queue(Reply(status=503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    value, _ = in_flow(lambda: kitaru.llm("hi", model=MINI))
    assert value == "echo: hi" and len(llm.requests) == 2


def test_transient_errors_beyond_the_retry_limit(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_LLM_MAX_RETRIES", "2")
    llm.queue(*[Reply(status=503, headers={"Retry-After": "0"}, error="service unavailable")] * 4)
    with pytest.raises(KitaruBackendError) as info:
        in_flow(lambda: kitaru.llm("hi", model=MINI))
    message = str(info.value)
    assert "HTTP 503" in message and "service unavailable" in message
    assert "after 3 attempts" in message
    assert len(llm.requests) == 3


def test_a_400_is_not_retried(llm: FakeLLM) -> None:
    llm.queue(Reply(status=400, error="max_tokens is too large for this model"))
    with pytest.raises(KitaruBackendError, match=r"HTTP 400.*max_tokens is too large") as info:
        in_flow(lambda: kitaru.llm("hi", model=MINI))
    assert "attempts" not in str(info.value)
    assert len(llm.requests) == 1


def test_retry_after_longer_than_the_cap_fails_at_once(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_LLM_MAX_RETRY_WAIT", "5")
    llm.queue(Reply(status=429, headers={"Retry-After": "3600"}, error="quota exhausted"))
    with pytest.raises(KitaruBackendError, match="KITARU_LLM_MAX_RETRY_WAIT") as info:
        in_flow(lambda: kitaru.llm("hi", model=MINI))
    assert "quota exhausted" in str(info.value)
    assert len(llm.requests) == 1


def test_a_slow_provider_times_out(llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_LLM_TIMEOUT", "0.2")
    monkeypatch.setenv("KITARU_LLM_MAX_RETRIES", "0")
    llm.queue(Reply(text="too late", delay=1.0))
    with pytest.raises(KitaruBackendError, match="timed out") as info:
        in_flow(lambda: kitaru.llm("hi", model=MINI))
    assert "after 1 attempt" in str(info.value)


def test_the_timeout_argument_overrides_the_environment(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_LLM_MAX_RETRIES", "0")
    llm.queue(Reply(text="too late", delay=1.0))
    with pytest.raises(KitaruBackendError, match="timed out"):
        in_flow(lambda: kitaru.llm("hi", model=MINI, timeout=0.2))


def test_bad_retry_settings_are_usage_errors(llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_LLM_MAX_RETRIES", "many")
    with pytest.raises(KitaruUsageError, match="KITARU_LLM_MAX_RETRIES"):
        in_flow(lambda: kitaru.llm("hi", model=MINI))
    assert llm.requests == []


def test_an_unreachable_server_is_a_backend_error(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("KITARU_LLM_MAX_RETRIES", "0")
    with pytest.raises(KitaruBackendError, match="could not connect"):
        in_flow(lambda: kitaru.llm("hi", model=MINI))


def test_a_non_json_answer_is_a_backend_error(llm: FakeLLM) -> None:
    llm.queue(Reply(body="<html>gateway</html>"))
    with pytest.raises(KitaruBackendError, match="not JSON"):
        in_flow(lambda: kitaru.llm("hi", model=MINI))


def test_provider_errors_are_scrubbed_of_the_key(llm: FakeLLM) -> None:
    llm.queue(Reply(status=400, error=f"header was 'Bearer {OPENAI_KEY}', which we log"))
    with pytest.raises(KitaruBackendError, match="HTTP 400") as info:
        in_flow(lambda: kitaru.llm("hi", model=MINI))
    message = str(info.value)
    assert OPENAI_KEY not in message and "[redacted]" in message
    assert "which we log" in message  # the rest of the provider's message is kept


@pytest.mark.parametrize(
    "answer",
    [
        {"error": "the server is confused"},  # 200 without choices
        {"choices": ["not a message"]},
        [1, 2, 3],
    ],
)
def test_a_malformed_answer_is_a_backend_error_naming_the_call(llm: FakeLLM, answer: Any) -> None:
    llm.queue(Reply(body=json.dumps(answer)))
    with pytest.raises(
        KitaruBackendError, match=r"kitaru\.llm\(\) call 'llm_1' to openai/gpt-4o-mini"
    ):
        in_flow(lambda: kitaru.llm("hi", model=MINI))


def test_a_malformed_anthropic_answer_is_a_backend_error(llm: FakeLLM) -> None:
    llm.queue(Reply(body=json.dumps({"content": ["not a block"]})))
    with pytest.raises(KitaruBackendError, match="call 'llm_1' to anthropic/"):
        in_flow(lambda: kitaru.llm("hi", model=HAIKU))


def test_openai_content_parts_and_missing_usage(llm: FakeLLM) -> None:
    answer = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
                "finish_reason": "stop",
            }
        ]
    }
    llm.queue(Reply(body=json.dumps(answer)))
    value, exec_id = in_flow(lambda: kitaru.llm("hi", model=MINI))
    assert value == "ab"
    ex = execution(exec_id)
    [call] = ex.llm_calls
    assert call.tokens_input is None and call.cost_usd is None
    assert ex.llm_cost.unpriced_calls == 1


def test_anthropic_cache_tokens_count_as_input(llm: FakeLLM) -> None:
    answer = {
        "content": [{"type": "text", "text": "cached"}],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 100,
            "cache_read_input_tokens": 1000,
            "output_tokens": 5,
        },
    }
    llm.queue(Reply(body=json.dumps(answer)))
    value, exec_id = in_flow(lambda: kitaru.llm("hi", model=HAIKU))
    assert value == "cached"
    [call] = execution(exec_id).llm_calls
    assert (call.tokens_input, call.tokens_output, call.total_tokens) == (1110, 5, 1115)


# --- credentials -------------------------------------------------------------------------------


def test_a_wrong_key_names_alias_and_variable_not_the_key(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "sk-wrong-abcdefghijklmnop-7777"
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    cli_ok(capsys, "model", "register", "fast", "--model", MINI)
    with pytest.raises(KitaruBackendError) as info:
        in_flow(lambda: kitaru.llm("hi", model="fast"))
    message = str(info.value)
    assert "HTTP 401" in message and "Incorrect API key" in message
    assert "'fast'" in message and "OPENAI_API_KEY" in message
    assert wrong not in message
    assert f"{wrong[:6]}***{wrong[-4:]}" not in message  # the fragment the server echoed
    assert len(llm.requests) == 1  # a 401 is not retried


def test_a_missing_key_for_the_official_endpoint(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    with pytest.raises(KitaruRuntimeError, match="has no API key") as info:
        in_flow(lambda: kitaru.llm("hi", model=MINI))
    assert "OPENAI_API_KEY" in str(info.value) and "kitaru secrets set" in str(info.value)
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    monkeypatch.delenv("ANTHROPIC_BASE_URL")
    with pytest.raises(KitaruRuntimeError, match="ANTHROPIC_API_KEY"):
        in_flow(lambda: kitaru.llm("hi", model=HAIKU))
    assert llm.requests == []


def test_a_missing_key_of_an_alias_says_how_to_store_it(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    cli_ok(capsys, "model", "register", "fast", "--model", MINI)
    with pytest.raises(KitaruRuntimeError) as info:
        in_flow(lambda: kitaru.llm("hi", model="fast"))
    message = str(info.value)
    assert "'fast'" in message and "OPENAI_API_KEY" in message
    assert "kitaru secrets set" in message and "--secret" in message


# --- model registry ----------------------------------------------------------------------------


def test_model_register_list_default_remove(
    capsys: pytest.CaptureFixture[str], isolated_store: Path
) -> None:
    assert cli_ok(capsys, "model", "list") == {"command": "model.list", "items": [], "count": 0}
    out = cli_ok(capsys, "model", "register", "Fast", "--model", MINI)
    assert out["command"] == "model.register"
    assert out["item"] == {"alias": "fast", "model": MINI, "is_default": True, "source": "local"}
    out = cli_ok(
        capsys, "model", "register", "smart", "--model", "anthropic/claude-sonnet-4-5", "--secret", "anthropic",
        "--input-price", "2", "--output-price", "9",
    )  # fmt: skip
    assert out["item"]["is_default"] is False
    assert out["item"]["secret"] == "anthropic"
    assert (out["item"]["input_price"], out["item"]["output_price"]) == (2.0, 9.0)
    items = cli_ok(capsys, "model", "list")["items"]
    assert [(i["alias"], i["is_default"]) for i in items] == [("fast", True), ("smart", False)]

    assert cli_ok(capsys, "model", "default", "smart")["item"]["alias"] == "smart"
    items = cli_ok(capsys, "model", "list")["items"]
    assert [(i["alias"], i["is_default"]) for i in items] == [("fast", False), ("smart", True)]

    code, text, _ = cli(capsys, "model", "list")
    assert (
        code == 0 and "* smart" in text and "anthropic/claude-sonnet-4-5" in text and "2/9" in text
    )

    assert cli_ok(capsys, "model", "remove", "smart")["item"]["alias"] == "smart"
    items = cli_ok(capsys, "model", "list")["items"]
    assert [(i["alias"], i["is_default"]) for i in items] == [("fast", True)]

    registry = isolated_store.parent / "config" / "models.json"
    assert stat.S_IMODE(registry.stat().st_mode) == 0o600
    assert json.loads(registry.read_text())["default"] == "fast"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("register", "bad alias", "--model", MINI), "Invalid model alias"),
        (("register", "_x", "--model", MINI), "Invalid model alias"),
        (("register", "x", "--model", "gpt-4o"), "has no provider"),
        (("register", "x", "--model", "acme/rocket"), "Unknown provider"),
        (("register", "x", "--model", MINI, "--base-url", "ftp://host"), "Invalid base URL"),
        (
            ("register", "x", "--model", MINI, "--input-price", "1"),
            "both --input-price and --output-price",
        ),
        (
            ("register", "x", "--model", MINI, "--input-price", "-1", "--output-price", "1"),
            "Prices must be",
        ),
        (
            ("register", "x", "--model", MINI, "--input-price", "nan", "--output-price", "1"),
            "Prices must be",
        ),
        (("register", "x", "--model", MINI, "--secret", "bad/name"), "Invalid secret name"),
        (("remove", "nope"), "No model alias 'nope'"),
        (("default", "nope"), "No model alias 'nope'"),
    ],
)
def test_model_command_errors(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    error = cli_err(capsys, "model", *args)
    assert message in error["message"]
    assert error["type"] == "KitaruUsageError"
    assert cli_ok(capsys, "model", "list")["items"] == []


def test_default_model_from_the_registry_and_the_environment(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_ok(capsys, "model", "register", "fast", "--model", MINI)
    cli_ok(capsys, "model", "register", "smart", "--model", HAIKU)

    def body() -> list[str]:
        return [kitaru.llm("hi")]

    in_flow(body)  # the first alias is the default
    assert llm.requests[-1].path == "/v1/chat/completions"
    monkeypatch.setenv("KITARU_DEFAULT_MODEL", "SMART")  # an alias
    in_flow(body)
    assert llm.requests[-1].path == "/v1/messages"
    monkeypatch.setenv("KITARU_DEFAULT_MODEL", "openai/gpt-4.1")  # a raw model
    _, exec_id = in_flow(body)
    assert llm.requests[-1].body["model"] == "gpt-4.1"
    assert execution(exec_id).llm_calls[0].alias is None
    monkeypatch.setenv("KITARU_DEFAULT_MODEL", " ")
    with pytest.raises(KitaruUsageError, match="KITARU_DEFAULT_MODEL"):
        in_flow(body)
    assert len(llm.requests) == 3


def test_a_single_alias_is_used_without_a_default(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_MODEL_REGISTRY", json.dumps({"aliases": {"only": {"model": HAIKU}}}))
    value, exec_id = in_flow(lambda: kitaru.llm("hi"))
    assert value == "echo: hi" and llm.requests[0].path == "/v1/messages"
    assert execution(exec_id).llm_calls[0].alias == "only"


def test_transported_registry_is_merged_over_the_local_one(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_ok(capsys, "model", "register", "fast", "--model", MINI)
    cli_ok(capsys, "model", "register", "keep", "--model", "openai/gpt-4.1")
    registry = {
        "aliases": {"fast": {"model": HAIKU}, "remote": {"model": "openai/gpt-5-mini"}},
        "default": "remote",
    }
    monkeypatch.setenv("KITARU_MODEL_REGISTRY", json.dumps(registry))
    items = {i["alias"]: i for i in cli_ok(capsys, "model", "list")["items"]}
    assert items["fast"]["model"] == HAIKU and items["fast"]["source"] == "environment"
    assert items["keep"]["source"] == "local"
    assert items["remote"]["is_default"] and not items["keep"]["is_default"]

    def body() -> None:
        kitaru.llm("a", model="fast")
        kitaru.llm("b", model="keep")
        kitaru.llm("c")

    in_flow(body)
    assert [r.path for r in llm.requests] == [
        "/v1/messages",
        "/v1/chat/completions",
        "/v1/chat/completions",
    ]
    assert [r.body["model"] for r in llm.requests] == [
        "claude-3-5-haiku-20241022",
        "gpt-4.1",
        "gpt-5-mini",
    ]

    monkeypatch.setenv("KITARU_MODEL_REGISTRY", "{not json")
    with pytest.raises(KitaruUsageError, match="KITARU_MODEL_REGISTRY is not valid JSON"):
        in_flow(lambda: kitaru.llm("hi", model="fast"))
    monkeypatch.setenv("KITARU_MODEL_REGISTRY", json.dumps({"aliases": {"x": {}}}))
    with pytest.raises(KitaruUsageError, match="needs a 'model'"):
        in_flow(lambda: kitaru.llm("hi", model="fast"))
    assert len(llm.requests) == 3


def test_price_override_per_alias_is_used_for_the_cost(
    llm: FakeLLM, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_ok(
        capsys,
        "model",
        "register",
        "cheap",
        "--model",
        MINI,
        "--input-price",
        "1",
        "--output-price",
        "2",
    )
    llm.queue(Reply(text="a", usage=(1000, 500)), Reply(text="b", usage=(1000, 500)))

    def body() -> None:
        kitaru.llm("hi", model="cheap")
        kitaru.llm("hi", model=MINI)

    _, exec_id = in_flow(body)
    ex = execution(exec_id)
    assert [c.cost_usd for c in ex.llm_calls] == pytest.approx(
        [0.002, price(1000, 500, MINI_PRICES)]
    )
    assert ex.llm_cost.cost_usd == pytest.approx(0.002 + price(1000, 500, MINI_PRICES))
    assert (ex.llm_cost.tokens_input, ex.llm_cost.tokens_output) == (2000, 1000)
    assert [c.alias for c in ex.llm_calls] == ["cheap", None]


def test_prices_come_from_genai_prices_and_unknown_models_stay_unknown(llm: FakeLLM) -> None:
    from kitaru._llm import models as _models

    def per_million(provider: str, model: str) -> float | None:
        return _models.cost_of(provider, model, None, 1_000_000, 1_000_000)

    # dated snapshots priced as their model (genai-prices matches them)
    assert per_million("openai", "gpt-4o-mini-2024-07-18") == pytest.approx(sum(MINI_PRICES))
    assert per_million("openai", "gpt-4o-2024-08-06") == pytest.approx(2.50 + 10.0)
    assert per_million("anthropic", "claude-opus-4-1-20250805") == pytest.approx(15.0 + 75.0)
    assert per_million("openrouter", "openai/gpt-4o-mini") == pytest.approx(sum(MINI_PRICES))
    # a model that merely starts with a known name is unknown, never priced as zero
    assert per_million("openai", "gpt-4o-minimal") is None
    assert per_million("openai", "no-such-model") is None
    assert per_million("ollama", "anything") == 0.0  # a local model costs nothing
    assert _models.cost_of("openai", "gpt-4o-mini", None, None, 10) is None  # no usage
    # an alias's own prices win over the table
    alias = _models.ModelAlias("mine", "openai/gpt-4o-mini", input_price=1.0, output_price=2.0)
    assert _models.cost_of("openai", "gpt-4o-mini", alias, 1_000_000, 500_000) == 2.0
    llm.queue(Reply(text="x", usage=(2_000_000, 1_000_000)))
    _, exec_id = in_flow(lambda: kitaru.llm("hi", model="openai/gpt-4o-mini-2024-07-18"))
    [call] = execution(exec_id).llm_calls
    assert call.cost_usd == pytest.approx(2 * 0.15 + 0.60)


# --- secrets -----------------------------------------------------------------------------------


def test_secrets_set_update_replace_show_list_delete(
    capsys: pytest.CaptureFixture[str], isolated_store: Path
) -> None:
    out = cli_ok(capsys, "secrets", "set", "openai", "--OPENAI_API_KEY=sk-one", "--EXTRA=x=y")
    assert out == {
        "command": "secrets.set",
        "item": {"name": "openai", "keys": ["EXTRA", "OPENAI_API_KEY"]},
    }
    directory = isolated_store.parent / "config" / "secrets"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "openai.json").stat().st_mode) == 0o600

    shown = cli_ok(capsys, "secrets", "show", "openai")["item"]
    assert shown == {"name": "openai", "values": {"EXTRA": "***", "OPENAI_API_KEY": "***"}}
    code, text, _ = cli(capsys, "secrets", "show", "openai")
    assert code == 0 and "OPENAI_API_KEY" in text and "sk-one" not in text
    values = cli_ok(capsys, "secrets", "show", "openai", "--show-values")["item"]["values"]
    assert values == {"EXTRA": "x=y", "OPENAI_API_KEY": "sk-one"}

    # an update merges keys
    assert cli_ok(capsys, "secrets", "set", "openai", "--EXTRA=z", "--NEW=n")["item"]["keys"] == [
        "EXTRA", "NEW", "OPENAI_API_KEY",
    ]  # fmt: skip
    values = cli_ok(capsys, "secrets", "show", "openai", "--show-values")["item"]["values"]
    assert values == {"EXTRA": "z", "NEW": "n", "OPENAI_API_KEY": "sk-one"}
    # --replace drops the keys not given
    assert cli_ok(capsys, "secrets", "set", "openai", "--replace", "--ONLY=1")["item"]["keys"] == [
        "ONLY"
    ]

    cli_ok(capsys, "secrets", "set", "anthropic", "--ANTHROPIC_API_KEY=sk-ant")
    listed = cli_ok(capsys, "secrets", "list")
    assert listed["items"] == [
        {"name": "anthropic", "keys": ["ANTHROPIC_API_KEY"]},
        {"name": "openai", "keys": ["ONLY"]},
    ]
    assert "sk-ant" not in json.dumps(listed)

    assert cli_ok(capsys, "secrets", "delete", "openai")["item"] == {
        "name": "openai",
        "deleted": True,
    }
    assert "No secret named 'openai'" in cli_err(capsys, "secrets", "show", "openai")["message"]
    assert "No secret named 'openai'" in cli_err(capsys, "secrets", "delete", "openai")["message"]
    assert [s["name"] for s in cli_ok(capsys, "secrets", "list")["items"]] == ["anthropic"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("bad/name", "--K=v"), "Invalid secret name"),
        ((".hidden", "--K=v"), "Invalid secret name"),
        (("s", "--1BAD=v"), "Invalid secret key"),
        (("s", "--BAD-KEY=v"), "Invalid secret key"),
        (("s", "KEY=v"), "Expected --KEY=value"),
        (("s", "--K=1", "--K=2"), "given twice"),
        (("s",), "at least one value"),
    ],
)
def test_secrets_set_errors(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    error = cli_err(capsys, "secrets", "set", *args)
    assert message in error["message"]
    assert cli_ok(capsys, "secrets", "list")["items"] == []


def test_secrets_set_reads_a_bare_key_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("from-stdin-value\n"))
    out = cli_ok(capsys, "secrets", "set", "tok", "--TOKEN", "--OTHER=given")
    assert out["item"]["keys"] == ["OTHER", "TOKEN"]
    values = cli_ok(capsys, "secrets", "show", "tok", "--show-values")["item"]["values"]
    assert values == {"OTHER": "given", "TOKEN": "from-stdin-value"}
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert (
        "No value given for EMPTY" in cli_err(capsys, "secrets", "set", "tok", "--EMPTY")["message"]
    )


def test_secrets_set_warns_about_values_on_the_command_line_and_reads_dash_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = cli(capsys, "secrets", "set", "tok", "--TOKEN=sk-visible", "--OTHER=x")
    assert code == 0
    assert "warning" in err and "TOKEN, OTHER" in err and "process list" in err
    assert "kitaru secrets set tok --TOKEN`" in err and "--TOKEN=-" in err
    assert "sk-visible" not in err
    # `--KEY=-` reads the value from stdin; neither stdin form warns
    monkeypatch.setattr(sys, "stdin", io.StringIO("from-stdin\nbare-line\n"))
    code, _, err = cli(capsys, "secrets", "set", "tok", "--TOKEN=-", "--BARE")
    assert code == 0 and err == ""
    values = cli_ok(capsys, "secrets", "show", "tok", "--show-values")["item"]["values"]
    assert values == {"BARE": "bare-line", "OTHER": "x", "TOKEN": "from-stdin"}
    # with -o json the warning comes after the saved item; a failure stays one JSON error
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert (
        "No value given for TOKEN"
        in cli_err(capsys, "secrets", "set", "tok", "--TOKEN=-")["message"]
    )


def test_a_malformed_secret_can_be_replaced_and_does_not_hide_the_others(
    capsys: pytest.CaptureFixture[str], isolated_store: Path
) -> None:
    cli_ok(capsys, "secrets", "set", "good", "--K=v")
    (isolated_store.parent / "config" / "secrets" / "broken.json").write_text("{not json")
    items = cli_ok(capsys, "secrets", "list")["items"]
    assert [i["name"] for i in items] == ["broken", "good"]
    assert items[0]["keys"] == [] and "--replace" in items[0]["error"]
    assert items[1] == {"name": "good", "keys": ["K"]}
    # the error's advice works: --replace does not read the broken file
    assert "--replace" in cli_err(capsys, "secrets", "set", "broken", "--K=v")["message"]
    assert cli_ok(capsys, "secrets", "set", "broken", "--replace", "--K=v")["item"]["keys"] == ["K"]
    assert [i["keys"] for i in cli_ok(capsys, "secrets", "list")["items"]] == [["K"], ["K"]]


def test_an_alias_secret_supplies_the_key(
    llm: FakeLLM,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    isolated_store: Path,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    cli_ok(capsys, "secrets", "set", "openai", f"--OPENAI_API_KEY={OPENAI_KEY}")
    cli_ok(capsys, "model", "register", "fast", "--model", MINI, "--secret", "openai")
    seen: dict[str, Any] = {}

    def body() -> str:
        before = dict(os.environ)
        value = kitaru.llm("hi", model="fast")
        seen["environ_unchanged"] = dict(os.environ) == before
        return value

    value, exec_id = in_flow(body)
    assert value == "echo: hi"
    assert seen["environ_unchanged"] and "OPENAI_API_KEY" not in os.environ
    assert llm.requests[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    ex = execution(exec_id)
    entry = ex.checkpoints[0].metadata["llm_calls"]["llm_1"]
    assert entry["credential_source"] == "secret" and entry["alias"] == "fast"
    assert ex.llm_calls[0].alias == "fast"
    for data in store_files(isolated_store):
        assert OPENAI_KEY.encode() not in data


def test_a_secret_can_carry_the_base_url(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    cli_ok(
        capsys,
        "secrets",
        "set",
        "gw",
        f"--OPENAI_API_KEY={OPENAI_KEY}",
        f"--OPENAI_BASE_URL={llm.openai_base}",
    )
    cli_ok(capsys, "model", "register", "gw", "--model", MINI, "--secret", "gw")
    value, _ = in_flow(lambda: kitaru.llm("hi", model="gw"))
    assert value == "echo: hi" and len(llm.requests) == 1


def test_the_aliases_secret_wins_over_the_environment(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # An explicit alias configuration beats an ambient variable (Kitaru 0.4 did the reverse).
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stale-shell-key-0000000000")
    cli_ok(capsys, "secrets", "set", "openai", f"--OPENAI_API_KEY={OPENAI_KEY}")
    cli_ok(capsys, "model", "register", "fast", "--model", MINI, "--secret", "openai")
    value, exec_id = in_flow(lambda: kitaru.llm("hi", model="fast"))
    assert value == "echo: hi"
    assert llm.requests[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    entry = execution(exec_id).checkpoints[0].metadata["llm_calls"]["llm_1"]
    assert entry["credential_source"] == "secret"


def test_an_alias_with_its_own_base_url_never_gets_the_environments_key(
    llm: FakeLLM, capsys: pytest.CaptureFixture[str]
) -> None:
    llm.openai_key = None  # the "third-party" server needs no key
    cli_ok(capsys, "model", "register", "box", "--model", "openai/m", "--base-url", llm.openai_base)
    value, _ = in_flow(lambda: kitaru.llm("hi", model="box"))
    assert value == "echo: hi"
    assert "authorization" not in llm.requests[0].headers  # OPENAI_API_KEY stayed home


def test_credentials_in_a_base_url_go_to_a_header_not_to_logs_or_the_store(
    llm: FakeLLM, capsys: pytest.CaptureFixture[str], isolated_store: Path
) -> None:
    import logging

    llm.openai_key = None
    url = llm.openai_base.replace("http://", "http://bob:TopSecretPassw0rd@")
    cli_ok(capsys, "model", "register", "box", "--model", "openai/m", "--base-url", url)
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.INFO)  # httpx logs every request's URL at INFO: captured by kitaru
    try:
        value, exec_id = in_flow(lambda: kitaru.llm("hi", model="box"))
    finally:
        root.setLevel(old)
    assert value == "echo: hi"
    assert llm.requests[0].headers["authorization"].startswith("Basic ")
    logs = [e.message for e in KitaruClient().executions.logs(exec_id)]
    assert any("HTTP Request: POST http://127.0.0.1" in m for m in logs), logs
    for path, data in stored_files(isolated_store):
        assert b"TopSecretPassw0rd" not in data, path


@flow
def box_flow() -> str:
    return kitaru.llm("hi", model="box")


def _leaks(
    capsys: pytest.CaptureFixture[str], store: Path, exec_id: str, *secrets: str
) -> list[str]:
    """Where any of `secrets` shows up: a file under the store, `executions get/list -o json`."""
    found = [
        f"{path}: {s}" for path, data in stored_files(store) for s in secrets if s.encode() in data
    ]
    for args in (("executions", "get", exec_id), ("executions", "list")):
        code, out, err = cli(capsys, *args, "-o", "json")
        assert code == 0, err
        found += [f"{' '.join(args)}: {s}" for s in secrets if s in out + err]
    return found


def test_basic_credentials_echoed_by_a_provider_reach_no_error_store_or_cli(
    llm: FakeLLM, capsys: pytest.CaptureFixture[str], isolated_store: Path
) -> None:
    import base64

    # The server wants other credentials and echoes the Authorization header it got.
    llm.openai_key, llm.basic_auth = None, ("bob", "RightPassw0rd")
    password = "Wr0ngPass"
    token = base64.b64encode(f"bob:{password}".encode()).decode()
    url = llm.openai_base.replace("http://", f"http://bob:{password}@")
    cli_ok(capsys, "model", "register", "box", "--model", "openai/m", "--base-url", url)
    handle = box_flow.run()
    assert handle.status == "failed"
    with pytest.raises(kitaru.KitaruError, match="HTTP 401") as info:
        handle.wait()
    message = str(info.value)
    assert llm.requests[0].headers["authorization"] == f"Basic {token}"
    assert "Authorization: Basic [redacted]" in message
    assert "user info of the base URL" in message  # which credentials, not "set OPENAI_API_KEY"
    assert len(llm.requests) == 1
    secrets = (password, token, token.rstrip("="))
    assert not [s for s in secrets if s in message]
    assert _leaks(capsys, isolated_store, handle.exec_id, *secrets) == []
    # the model list shows the user, not the password
    [alias] = cli_ok(capsys, "model", "list")["items"]
    assert alias["base_url"] == llm.openai_base.replace("http://", "http://bob:***@")
    code, text, _ = cli(capsys, "model", "list")
    assert code == 0 and password not in text


def test_right_basic_credentials_echoed_in_an_error_and_short_passwords_in_urls(
    llm: FakeLLM, capsys: pytest.CaptureFixture[str], isolated_store: Path
) -> None:
    import base64

    # An '@' in the password, unencoded, and a password too short to be scrubbed by value:
    # the user info of URLs quoted by the provider is removed whatever it holds.
    llm.openai_key, llm.basic_auth = None, ("bob", "p@9")
    token = base64.b64encode(b"bob:p@9").decode()
    url = llm.openai_base.replace("http://", "http://bob:p@9@")
    cli_ok(capsys, "model", "register", "box", "--model", "openai/m", "--base-url", url)
    assert in_flow(lambda: kitaru.llm("hi", model="box"))[0] == "echo: hi"
    assert llm.requests[0].headers["authorization"] == f"Basic {token}"
    llm.queue(Reply(status=400, error=f"upstream {url} refused", echo_auth=True))
    handle = box_flow.run()
    with pytest.raises(kitaru.KitaruError, match="HTTP 400") as info:
        handle.wait()
    message = str(info.value)
    assert "upstream http://[redacted]@127.0.0.1" in message and "Basic [redacted]" in message
    assert "p@9" not in message and token not in message
    assert _leaks(capsys, isolated_store, handle.exec_id, "bob:p@9", token) == []


def test_an_ollama_host_without_a_port_means_ollamas_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kitaru._llm import models as _models
    from kitaru._llm import providers as _providers

    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0")
    ep = _providers.endpoint_for(_models.resolve_model_selection("ollama/llama3"), "llm_1")
    assert ep.url == "http://0.0.0.0:11434/v1/chat/completions"


def test_a_wrong_key_in_a_secret_is_scrubbed_and_explained(
    llm: FakeLLM,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    isolated_store: Path,
) -> None:
    wrong = "sk-secret-wrong-key-123456789"
    monkeypatch.delenv("OPENAI_API_KEY")
    cli_ok(capsys, "secrets", "set", "openai", f"--OPENAI_API_KEY={wrong}")
    cli_ok(capsys, "model", "register", "fast", "--model", MINI, "--secret", "openai")
    with pytest.raises(KitaruBackendError) as info:
        in_flow(lambda: kitaru.llm("hi", model="fast"))
    message = str(info.value)
    assert "'fast'" in message and "kitaru secrets set openai --OPENAI_API_KEY` (prompts" in message
    assert wrong not in message and f"{wrong[:6]}***{wrong[-4:]}" not in message
    for data in store_files(isolated_store):
        assert wrong.encode() not in data and wrong[-12:].encode() not in data


def test_a_secret_without_the_key_says_which_key(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    cli_ok(capsys, "secrets", "set", "openai", "--ANTHROPIC_API_KEY=sk-ant-elsewhere-000000")
    cli_ok(capsys, "model", "register", "fast", "--model", MINI, "--secret", "openai")
    with pytest.raises(
        KitaruRuntimeError, match="secret 'openai' of alias 'fast' has no OPENAI_API_KEY"
    ) as info:
        in_flow(lambda: kitaru.llm("hi", model="fast"))
    assert "sk-ant-elsewhere" not in str(info.value)
    assert llm.requests == []


def test_a_missing_secret_is_a_runtime_error(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    cli_ok(capsys, "model", "register", "fast", "--model", MINI, "--secret", "nosuch")
    with pytest.raises(KitaruRuntimeError, match="No secret named 'nosuch'"):
        in_flow(lambda: kitaru.llm("hi", model="fast"))
    assert llm.requests == []


# --- the mock hook -----------------------------------------------------------------------------


def test_mock_response_reaches_no_provider(llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_LLM_MOCK_RESPONSE", "mocked answer")

    def body() -> list[str]:
        return [
            kitaru.llm("hi"),
            kitaru.llm("hi", model="acme/unknown-provider"),
            kitaru.llm("hi", model=MINI),
        ]

    value, exec_id = in_flow(body)
    assert value == ["mocked answer"] * 3
    assert llm.requests == []
    ex = execution(exec_id)
    assert [c.cost_usd for c in ex.llm_calls] == [0.0, 0.0, 0.0]
    assert ex.llm_cost.cost_usd == 0 and ex.llm_cost.unpriced_calls == 0
    assert [c.checkpoint_type for c in ex.checkpoints] == ["llm_call"] * 3


def test_mock_response_still_validates_arguments(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_LLM_MOCK_RESPONSE", "x")
    with pytest.raises(KitaruUsageError, match="Prompt cannot be empty"):
        in_flow(lambda: kitaru.llm(""))


def test_mock_response_with_schema_and_tools(llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_LLM_MOCK_RESPONSE", json.dumps({"steps": ["mocked"]}))

    def body() -> list[Any]:
        plan = kitaru.llm("p", schema=Plan)
        resp = kitaru.llm("t", tools=[Fetch])
        return [plan, resp.text, resp.tool_calls, resp.cost_usd]

    value, _ = in_flow(body)
    assert value == [Plan(steps=["mocked"]), json.dumps({"steps": ["mocked"]}), [], 0.0]
    assert llm.requests == []


# --- async -------------------------------------------------------------------------------------


def test_allm_in_an_async_flow(llm: FakeLLM) -> None:
    llm.queue(Reply(text=json.dumps({"steps": ["s"]})))

    async def body() -> list[Any]:
        plan = await kitaru.allm("Plan", model=MINI, schema=Plan)
        text = await kitaru.allm("hi", model=HAIKU, system="Be brief.")
        return [plan, text]

    value, exec_id = in_flow(body, is_async=True)
    assert value == [Plan(steps=["s"]), "echo: hi"]
    assert [r.path for r in llm.requests] == ["/v1/chat/completions", "/v1/messages"]
    cps = execution(exec_id).checkpoints
    assert [(c.name, c.checkpoint_type) for c in cps] == [
        ("llm_1", "llm_call"),
        ("llm_2", "llm_call"),
    ]


def test_allm_retries_and_errors(llm: FakeLLM) -> None:
    llm.queue(
        Reply(status=429, headers={"Retry-After": "0"}),
        Reply(status=401, error="no"),
    )

    async def body() -> str:
        return await kitaru.allm("hi", model=MINI)

    with pytest.raises(KitaruBackendError, match=r"HTTP 401.*after 2 attempts"):
        in_flow(body, is_async=True)
    assert len(llm.requests) == 2


def test_allm_inside_an_async_checkpoint(llm: FakeLLM) -> None:
    handle = ainline_flow.run("the text")
    assert handle.wait() == "echo: Summarize: the text"
    [cp] = execution(handle.exec_id).checkpoints
    assert cp.name == "asummarize"
    assert cp.metadata["llm_calls"]["llm_1"]["response"]["text"] == "echo: Summarize: the text"


# --- inline in a checkpoint --------------------------------------------------------------------


def test_a_call_inside_a_checkpoint_is_recorded_on_it(llm: FakeLLM) -> None:
    llm.queue(Reply(text="short", usage=(40, 2)))
    handle = inline_flow.run("a long text")
    assert handle.wait() == "short"
    ex = execution(handle.exec_id)
    assert [c.name for c in ex.checkpoints] == ["summarize"]  # no llm_* checkpoint of its own
    [cp] = ex.checkpoints
    entry = cp.metadata["llm_calls"]["llm_1"]
    assert entry["prompt"] == [{"role": "user", "content": "Summarize: a long text"}]
    assert entry["response"]["text"] == "short"
    assert (entry["tokens_input"], entry["tokens_output"]) == (40, 2)
    assert entry["cost_usd"] == pytest.approx(price(40, 2, MINI_PRICES))
    [call] = ex.llm_calls
    assert call.call == "llm_1" and call.checkpoint == cp.name == "summarize"
    assert ex.llm_cost.cost_usd == pytest.approx(price(40, 2, MINI_PRICES))


@checkpoint
def several(text: str) -> list[str]:
    return [
        kitaru.llm(f"a {text}", model=MINI),
        kitaru.llm(f"b {text}", model=HAIKU),
        kitaru.llm(f"c {text}", model=MINI, name="final"),
    ]


@flow
def several_flow(text: str) -> list[str]:
    first = several(text)
    return [*first, kitaru.llm("after", model=MINI)]


def test_several_calls_in_a_checkpoint_and_the_counter_per_scope(llm: FakeLLM) -> None:
    handle = several_flow.run("x")
    assert handle.wait() == ["echo: a x", "echo: b x", "echo: c x", "echo: after"]
    ex = execution(handle.exec_id)
    # no llm_* checkpoints for the inline calls; the flow body's own counter starts at 1
    assert [c.name for c in ex.checkpoints] == ["several", "llm_1"]
    assert [c.checkpoint_type == "llm_call" for c in ex.checkpoints] == [False, True]
    assert list(ex.checkpoints[0].metadata["llm_calls"]) == ["llm_1", "llm_2", "final"]
    assert ex.checkpoints[0].metadata["llm_calls"]["llm_2"]["resolved_model"] == HAIKU
    assert [(c.call, c.checkpoint) for c in ex.llm_calls] == [
        ("llm_1", "several"),
        ("llm_2", "several"),
        ("final", "several"),
        ("llm_1", None),
    ]


@checkpoint
def same_name_twice() -> list[str]:
    return [
        kitaru.llm("a", model=MINI, name="summary"),
        kitaru.llm("b", model=MINI, name="summary"),
    ]


@flow
def same_name_flow() -> list[str]:
    return same_name_twice()


def test_a_repeated_name_inside_a_checkpoint_matches_the_ledger(llm: FakeLLM) -> None:
    handle = same_name_flow.run()
    assert handle.wait() == ["echo: a", "echo: b"]
    ex = execution(handle.exec_id)
    assert list(ex.checkpoints[0].metadata["llm_calls"]) == ["summary", "summary_2"]
    assert [c.call for c in ex.llm_calls] == ["summary", "summary_2"]
