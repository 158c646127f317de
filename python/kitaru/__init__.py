"""kitaru: durable execution for Python AI agents.

``@flow`` marks the function that drives an agent, ``@checkpoint`` its expensive steps.
Each finished checkpoint's output is stored; after a crash, ``kitaru executions retry``
runs the flow again from the top and finished checkpoints return their stored output.
"""

from __future__ import annotations

from ._llm import LLMResponse, LLMUsage, ToolCall, allm, llm
from ._metadata import log
from .checkpoint import checkpoint
from .errors import (
    FailureOrigin,
    KitaruBackendError,
    KitaruBudgetExceededError,
    KitaruContextError,
    KitaruDivergenceError,
    KitaruError,
    KitaruExecutionError,
    KitaruFeatureNotAvailableError,
    KitaruLogRetrievalError,
    KitaruRuntimeError,
    KitaruStateError,
    KitaruUsageError,
    KitaruUserCodeError,
    KitaruWaitValidationError,
)
from .flow import VERSION as __version__  # noqa: F401
from .flow import FlowHandle, flow
from .wait import wait

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._models import list_model_aliases, register_model_alias, resolve_model_selection
    from .client import KitaruClient

# The names of Kitaru 0.4 that this release implements (save/load, memory, replay,
# configure/connect and stacks arrive with later releases, see CHANGELOG.md), plus
# kitaru's own: allm, LLMResponse, ToolCall, LLMUsage, KitaruBudgetExceededError.
__all__ = [
    "FailureOrigin",
    "FlowHandle",
    "KitaruBackendError",
    "KitaruBudgetExceededError",
    "KitaruClient",
    "KitaruContextError",
    "KitaruDivergenceError",
    "KitaruError",
    "KitaruExecutionError",
    "KitaruFeatureNotAvailableError",
    "KitaruLogRetrievalError",
    "KitaruRuntimeError",
    "KitaruStateError",
    "KitaruUsageError",
    "KitaruUserCodeError",
    "KitaruWaitValidationError",
    "LLMResponse",
    "LLMUsage",
    "ToolCall",
    "allm",
    "checkpoint",
    "flow",
    "list_model_aliases",
    "llm",
    "log",
    "register_model_alias",
    "resolve_model_selection",
    "wait",
]

_MODEL_REGISTRY_API = ("list_model_aliases", "register_model_alias", "resolve_model_selection")


def __getattr__(name: str) -> Any:
    # The client pulls in more than decorating and running a flow needs: load it on use.
    if name == "KitaruClient":
        from .client import KitaruClient

        return KitaruClient
    if name in _MODEL_REGISTRY_API:
        from . import _models

        return getattr(_models, name)
    raise AttributeError(f"module 'kitaru' has no attribute {name!r}")
