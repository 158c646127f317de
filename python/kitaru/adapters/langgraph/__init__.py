"""LangGraph on kitaru's store.

```python
from kitaru.adapters.langgraph import KitaruSaver

graph = builder.compile(checkpointer=KitaruSaver())   # the active stack's store: local or s3://
graph.invoke({"messages": [...]}, {"configurable": {"thread_id": "t1"}})

@flow
def support_agent(question: str) -> str:
    return durable(graph).invoke({"question": question})["answer"]   # resumable node by node
```
"""

from __future__ import annotations

try:
    import langgraph.checkpoint.base as _base  # noqa: F401
except ImportError as _exc:  # pragma: no cover - exercised without the extra installed
    from ...errors import KitaruFeatureNotAvailableError

    raise KitaruFeatureNotAvailableError(
        "kitaru.adapters.langgraph needs LangGraph: pip install 'kitaru[langgraph]'."
    ) from _exc

from ._durable import DurableGraph, durable
from ._saver import KitaruSaver

__all__ = ["DurableGraph", "KitaruSaver", "durable"]
