"""A research agent on `kitaru.llm()`: a tool loop, a structured answer, a budget, and
crash safety for every model call.

Configure a model once (any provider; see README "Calling models"):

    kitaru secrets set openai --OPENAI_API_KEY            # prompts for the key
    kitaru model register fast --model openai/gpt-4o-mini --secret openai

then run it:

    python examples/research_agent.py "durable agents"

Kill it at any point (Ctrl-C, `kill -9`) and run `kitaru executions retry <id>`: finished
model calls and tool calls come from the store and are not paid for again.
`kitaru executions get <id>` shows every call's tokens, latency and cost.
"""

from __future__ import annotations

import sys

import kitaru
from kitaru import checkpoint, flow
from pydantic import BaseModel


class Outline(BaseModel):
    title: str
    sections: list[str]


@checkpoint(type="tool_call")
def search(query: str) -> list[str]:
    """Search the team's notes for a query."""
    return [f"{query}: note {i}" for i in range(3)]  # stand-in for a real search API


@flow(budget_usd=0.50)
def research(topic: str) -> str:
    messages: list[dict[str, object]] = [
        {"role": "user", "content": f"Find material on {topic}. Use the search tool."}
    ]
    reply = kitaru.llm(
        messages, model="fast", system="You are a careful researcher.", tools=[search]
    )
    for _ in range(5):  # at most five rounds of tool calls
        if not reply.tool_calls:
            break
        messages.append(reply.message)
        for call in reply.tool_calls:
            messages.append(call.result(call.invoke([search])))  # each search is a checkpoint
        reply = kitaru.llm(messages, model="fast", tools=[search])
    outline: Outline = kitaru.llm(
        f"Outline a short report on {topic} from these findings:\n{reply.text}",
        model="fast",
        schema=Outline,
    )
    return outline.title + "\n" + "\n".join(f"- {s}" for s in outline.sections)


if __name__ == "__main__":
    handle = research.run(sys.argv[1] if len(sys.argv) > 1 else "durable agents")
    print(handle.wait())
    print(f"\nkitaru executions get {handle.exec_id}    # every call: tokens, latency, cost")
