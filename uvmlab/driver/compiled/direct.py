"""Calling a compiled function without numba's per-call typing, where the argument types are known.

numba's dispatcher types every argument at every call to pick the compiled version; for the
fault service's nested tuples of arrays (``VaArrays``, ``PmmArrays``, ...) that costs ~15-20 µs
a call, several times the work of servicing one block. A run with a Python allocation hook
calls the service once per allocation as well as once per batch (``replayable_faults.
service_sorted``), so the typing alone was a large part of what such a policy cost
(docs/performance.md, "What a policy costs").

``DirectCall`` calls the compiled version's entry point directly, but only for a *key* the
caller vouches for: the caller keys on everything about the arguments that can change between
calls (``array_key`` of each array that varies, the type of each scalar), and holds the parts
that cannot (its own bundles of driver arrays, made once) fixed for the life of the
``DirectCall``. An unknown key goes through the dispatcher, which compiles or picks the version
as always; the version it picked is remembered for that key only when the arguments' own types
name exactly one compiled signature. The entry point does not check its arguments' types, so a
key that left out something that varies would be unsafe: keep the keys complete.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
from numba import typeof
from numba.core.typing.typeof import Purpose


def array_key(a: np.ndarray) -> tuple[Any, ...]:
    """What numba's type of an array argument depends on: class, dtype, dimensions, layout,
    whether it is writeable and aligned."""
    f = a.flags
    return (type(a), a.dtype, a.ndim, f.c_contiguous, f.f_contiguous, f.writeable, f.aligned)


class DirectCall:
    """``fn(*args)`` for a numba dispatcher ``fn``, through its entry point once known for ``key``."""

    __slots__ = ("fn", "_entries")

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self._entries: dict[Hashable, Any] = {}

    def __call__(self, key: Hashable, *args: Any) -> Any:
        entry = self._entries.get(key)
        if entry is not None:
            return entry(*args)
        out = self.fn(*args)
        sig = tuple(typeof(a, Purpose.argument) for a in args)
        cres = self.fn.overloads.get(sig)
        if cres is not None:
            self._entries[key] = cres.entry_point
        return out
