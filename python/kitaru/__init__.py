"""kitaru: durable execution for Python AI agents.

``@flow`` marks the function that drives an agent, ``@checkpoint`` its expensive steps.
Each finished checkpoint's output is stored; after a crash, ``kitaru executions retry``
runs the flow again from the top and finished checkpoints return their stored output.
"""

from __future__ import annotations

from ._metadata import log
from .checkpoint import checkpoint
from .errors import (
    FailureOrigin,
    KitaruBackendError,
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

    from .client import KitaruClient

# The names of Kitaru 0.4 that this release implements; llm, save/load, memory,
# replay, configure/connect and stacks arrive with later releases (see CHANGELOG.md).
__all__ = [
    "FailureOrigin",
    "FlowHandle",
    "KitaruBackendError",
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
    "checkpoint",
    "flow",
    "log",
    "wait",
]


def __getattr__(name: str) -> Any:
    # The client pulls in more than decorating and running a flow needs: load it on use.
    if name == "KitaruClient":
        from .client import KitaruClient

        return KitaruClient
    raise AttributeError(f"module 'kitaru' has no attribute {name!r}")
