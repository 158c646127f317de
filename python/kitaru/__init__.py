"""kitaru: durable execution for Python AI agents.

``@flow`` marks the function that drives an agent, ``@checkpoint`` its expensive steps.
Each finished checkpoint's output is stored; after a crash, ``kitaru executions retry``
runs the flow again from the top and finished checkpoints return their stored output.
"""

from __future__ import annotations

from ._context import current_execution_id
from ._metadata import log
from .checkpoint import checkpoint
from .errors import (
    FailureOrigin,
    KitaruBackendError,
    KitaruBudgetExceededError,
    KitaruCancelledError,
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
from .flow import FlowHandle, flow
from .wait import wait

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from . import memory
    from ._llm.call import LLMResponse, LLMUsage, ToolCall, allm, llm
    from ._llm.models import list_model_aliases, register_model_alias, resolve_model_selection
    from .artifacts import load, save
    from .client import KitaruClient
    from .stacks import (
        ImageSettings,
        KitaruConfig,
        StackInfo,
        configure,
        connect,
        create_stack,
        current_stack,
        delete_stack,
        list_stacks,
        use_stack,
    )

# The names of Kitaru 0.4 (connect explains that there is no server; `memory` is loaded on
# first use, it needs pydantic), plus kitaru's own: allm,
# LLMResponse, ToolCall, LLMUsage, KitaruBudgetExceededError, KitaruCancelledError,
# current_execution_id.
__all__ = [
    "FailureOrigin",
    "FlowHandle",
    "ImageSettings",
    "KitaruBackendError",
    "KitaruBudgetExceededError",
    "KitaruCancelledError",
    "KitaruClient",
    "KitaruConfig",
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
    "StackInfo",
    "ToolCall",
    "allm",
    "checkpoint",
    "configure",
    "connect",
    "create_stack",
    "current_execution_id",
    "current_stack",
    "delete_stack",
    "flow",
    "list_model_aliases",
    "list_stacks",
    "llm",
    "load",
    "log",
    "memory",
    "register_model_alias",
    "resolve_model_selection",
    "save",
    "use_stack",
    "wait",
]

_LLM_NAMES = frozenset({"LLMResponse", "LLMUsage", "ToolCall", "allm", "llm"})
_MODEL_REGISTRY_API = ("list_model_aliases", "register_model_alias", "resolve_model_selection")
_STACK_NAMES = frozenset(
    {
        "ImageSettings",
        "KitaruConfig",
        "connect",
        "StackInfo",
        "configure",
        "create_stack",
        "current_stack",
        "delete_stack",
        "list_stacks",
        "use_stack",
    }
)


def __getattr__(name: str) -> Any:
    # The client, stacks and the LLM feature pull in more than decorating and running a
    # flow needs (json, dataclasses, re): load them on use. `kitaru._llm` is a package
    # named apart from the function `kitaru.llm`, so importing it never rebinds the name.
    if name in _LLM_NAMES:
        from ._llm import call

        value = getattr(call, name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name == "KitaruClient":
        from .client import KitaruClient

        return KitaruClient
    if name in _MODEL_REGISTRY_API:
        from ._llm import models

        return getattr(models, name)
    if name in ("save", "load"):
        from . import artifacts

        value = getattr(artifacts, name)
        globals()[name] = value
        return value
    if name == "memory":
        import importlib

        return importlib.import_module(".memory", __name__)
    if name == "__version__":
        from ._kitaru import VERSION

        return VERSION
    if name in _STACK_NAMES:
        from . import stacks

        return getattr(stacks, name)
    raise AttributeError(f"module 'kitaru' has no attribute {name!r}")
