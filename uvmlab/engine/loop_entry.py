"""Calling ``fault_loop.run_loop`` without numba's typing of its arguments at every call.

numba's dispatcher types every argument of every call to pick the compiled overload: for
``run_loop``'s ~100 arrays in nested tuples and NamedTuples that costs ~0.1 ms a call (measured
on a 2-core VM: ~0.13 ms against ~0.02 ms through the overload's compiled entry point), about a
fifth of the budget of a short workload (``sparse:size=1GiB``: 0.47 ms at 0.1 of its simulated
time). The entry point skips the typing, so it must only ever get arguments of the types it was
compiled for. Two caches find it:

* per driver (its ``FastPath``): a driver's kernel runs pass arrays and scalars of the same
  types, so after its first call each call goes straight to the entry point;
* per argument types, for the first call of each new driver (one per ``simulate``): a
  fingerprint of the arguments that is at least as fine as numba's typing (every array's
  class, dtype, dimensions, contiguity, writability and alignment; every scalar's class; the
  tuples' classes; the typed lists of a compiled policy's kernels by the numba type each
  carries, ``_numba_type_``, which numba's ``typeof`` returns for them), computed in Python in
  ~0.03 ms (a first call with a policy's kernels costs ~0.4 ms of typing otherwise).

A new overload (a first call of new types) goes through the dispatcher, which compiles it.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any

import numpy as np
from numba import types

from uvmlab.engine.fault_loop import run_loop

# run_loop's compiled entry point per driver (its FastPath), for calls without policy kernels
# (False: with a bundle); weak: a driver's arrays go with it
_BY_DRIVER: weakref.WeakKeyDictionary[Any, dict[bool, Any]] = weakref.WeakKeyDictionary()
# the entry point per argument fingerprint
_BY_TYPES: dict[tuple, Any] = {}
# the fingerprint of each driver's bundles (``prime``); weak, like _BY_DRIVER
_BUNDLES_KEY: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


class _Unknown(Exception):
    """An argument whose numba type the fingerprint does not determine."""


# the array flags numba's typing reads, as bits of ``ndarray.flags.num`` (NPY_ARRAY_*): C and
# F contiguous, aligned, writeable (not OWNDATA: a pooled array and a new one type the same)
_TYPED_FLAGS = 0x1 | 0x2 | 0x100 | 0x400


def _fingerprint(x: Any) -> Any:
    """A key that differs wherever numba's ``typeof`` of ``x`` may differ."""
    t = type(x)
    if t is np.ndarray:  # compiled/direct.array_key, inline (~80 arrays a call); a subclass: unknown
        return (x.dtype, x.ndim, x.flags.num & _TYPED_FLAGS)
    if isinstance(x, tuple):  # a NamedTuple's type is its class and its fields' types
        # arrays keyed here, without a call each (~100 leaves a call)
        return (
            t,
            *[
                (e.dtype, e.ndim, e.flags.num & _TYPED_FLAGS) if type(e) is np.ndarray else _fingerprint(e)
                for e in x
            ],
        )
    if t is int:  # numba: int64, or uint64 from 2^63 (typeof._typeof_int)
        return (t, x.bit_length() < 64)
    if t is float or t is bool or x is None or isinstance(x, np.generic):
        return t
    if t.__module__.startswith("numba.typed"):  # typed List / Dict: their numba type
        try:
            return (t, x._numba_type_)
        except TypeError:  # an untyped (empty) one
            raise _Unknown(t) from None
    raise _Unknown(t)


def driver_bundles(fast: Any) -> tuple:
    """``run_loop``'s fourth argument for the driver whose ``FastPath`` is ``fast``: its
    bundles and work cell, fixed for its life (``FastPath.__init__``)."""
    return (*fast.bundles, fast._work)


def prime(fast: Any) -> None:
    """Work out the fingerprint of a new driver's bundles (half of ``run_loop``'s ~100
    arrays) where its engine is built, not in its first kernel: they never change."""
    if fast is not None and fast not in _BUNDLES_KEY:
        with contextlib.suppress(_Unknown):  # then the first call computes it, and fails the same way
            _BUNDLES_KEY[fast] = _fingerprint(driver_bundles(fast))


def fingerprint(args: tuple, fast: Any = None) -> tuple | None:
    """``_fingerprint`` of ``run_loop``'s arguments, None where one has a type it does not
    know (the call then goes through the dispatcher). With ``fast``, the fourth argument is
    its ``driver_bundles``, whose fingerprint ``prime`` may have worked out already."""
    try:
        bundles = _BUNDLES_KEY.get(fast) if fast is not None else None
        if bundles is None:
            return _fingerprint(args)
        return (tuple, *map(_fingerprint, args[:3]), bundles, *map(_fingerprint, args[4:]))
    except _Unknown:
        return None


def call_run_loop(fast: Any, args: tuple) -> int:
    """``run_loop(*args)`` for the driver whose ``FastPath`` is ``fast``."""
    none = args[4] is None  # no policy kernels (hk)
    entries = _BY_DRIVER.get(fast)
    entry = entries.get(none) if entries is not None else None
    if entry is not None:
        return entry(*args)
    key = fingerprint(args, fast)
    entry = _BY_TYPES.get(key) if key is not None else None
    if entry is not None:
        _BY_DRIVER.setdefault(fast, {})[none] = entry
        return entry(*args)
    status = run_loop(*args)
    # the overload this call ran: the only one for its kind of kernels (none, or a bundle)
    mine = [c for sig, c in run_loop.overloads.items() if isinstance(sig[4], types.NoneType) == none]
    if len(mine) == 1:
        _BY_DRIVER.setdefault(fast, {})[none] = mine[0].entry_point
        if key is not None:
            _BY_TYPES[key] = mine[0].entry_point
    return status
