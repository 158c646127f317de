"""`kitaru.log()`: structured metadata on the execution or the current checkpoint."""

from __future__ import annotations

from ._context import current_checkpoint, current_flow, merge_metadata
from .errors import KitaruContextError, KitaruUsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def log(**kwargs: Any) -> None:
    """Attach metadata: to the running checkpoint inside one, else to the execution.

    Repeated keys with dict values are merged; other repeated keys keep the latest value.
    Values should be JSON-serializable (others are stored as their repr).
    """
    run = current_flow.get()
    if run is None:
        raise KitaruContextError("kitaru.log() can only be called inside a @flow.")
    if not kwargs:
        raise KitaruUsageError("kitaru.log() needs at least one key=value pair.")
    scope = current_checkpoint.get()
    if scope is not None:
        import json

        # Recorded with the checkpoint's result: no extra write.
        merge_metadata(scope.metadata, json.loads(json.dumps(kwargs, default=repr)))
        return
    run.log(kwargs)
