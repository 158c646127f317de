"""Lineage: which earlier checkpoint calls' outputs flowed into a call's inputs.

A run remembers the objects its checkpoint calls returned (run live or reused) by
identity; a call whose argument is one of them (or an element of a list, tuple, set or
dict argument) names that call as a parent. Identity alone could be fooled by a recycled
`id()`, so each remembered output keeps a weak reference, or, for objects that take none
(str, list, dict, ...), the digest of its stored bytes, checked against the argument's
digest. Scalars (None, bools, numbers) are not remembered: equal small values are shared
objects, so identity would invent parents. A derived value (``notes.upper()``) has no
parent: only an output passed on as it is.
"""

from __future__ import annotations

import weakref

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

_SCALARS = (type(None), bool, int, float, complex)
_ELEMENTS_LIMIT = 1000  # elements of one container argument looked at


class Lineage:
    """The outputs of one run by identity, mixed into `FlowRun`."""

    def init_lineage(self) -> None:
        self._outputs: dict[int, tuple[str, Any]] = {}

    def note_output(self, value: Any, call_id: str, tag: str, data: bytes) -> None:
        """`value` is the output of `call_id`, stored as (`tag`, `data`)."""
        if isinstance(value, _SCALARS):
            return
        check: Any = None
        if type(value).__weakrefoffset__:  # str, list, dict... take none: no raise and catch
            try:
                check = weakref.ref(value)
            except TypeError:
                pass
        if check is None:
            from ._kitaru import blake3_digest

            check = blake3_digest(tag.encode() + b"\0" + data)
        self._outputs[id(value)] = (call_id, check)

    def parents_of(self, values: Iterable[Any]) -> list[str]:
        """The calls whose outputs are among `values` (or their elements), in order."""
        if not self._outputs:
            return []
        found: list[str] = []
        for v in values:
            self._match(v, found)
            if isinstance(v, (list, tuple, set, frozenset)) and len(v) <= _ELEMENTS_LIMIT:
                for x in v:
                    self._match(x, found)
            elif isinstance(v, dict) and len(v) <= _ELEMENTS_LIMIT:
                for x in v.values():
                    self._match(x, found)
        return found

    def _match(self, v: Any, found: list[str]) -> None:
        hit = self._outputs.get(id(v))
        if hit is None:
            return
        call_id, check = hit
        if isinstance(check, bytes):
            from .serde import digest

            same = digest(v) == check
        else:
            same = check() is v
        if same and call_id not in found:
            found.append(call_id)
