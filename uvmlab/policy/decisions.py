"""Decision validation: what a hook returns or records, coerced once and checked.

A hook's answer is untrusted data. Every value is turned into a plain, bounded Python ``int``
(or ``bool``) **once**, here; the guard then checks that value and applies that same value.
An ``int`` subclass whose ``__eq__``, ``__index__`` or ``__int__`` lies, a number beyond 2^62,
NaN, an object whose ``__int__`` raises, or a container whose ``__len__`` raises are refused
with a reason, never trusted twice. Nothing here touches driver state except to read it.
"""

from __future__ import annotations

import reprlib
from typing import Any

import numpy as np

from uvmlab.policy import base

LIMIT = 1 << 62  #: |value| a decision may have: far above any page, chunk or count
_NP_INTS = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
_EVICTION_LISTS = ("va_block_used", "va_block_unused", "va_block_discarded")
_KINDS = (base.KEEP, base.HINT_NONE, base.HINT_THROTTLE, base.HINT_PIN)
_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40
_repr.maxlist = _repr.maxtuple = 4


class Bad(Exception):
    """A decision or request the hook does not allow; the message is the ejection reason."""


def short(x: Any) -> str:
    """A short description of a hostile value (its own ``__repr__`` is not trusted)."""
    try:
        s = _repr.repr(x)
    except BaseException:  # noqa: BLE001 - a repr that raises anything says nothing of use
        s = f"<{type(x).__name__}>"
    return s if len(s) <= 60 else s[:57] + "..."


def as_int(x: Any, what: str = "value") -> int:
    """``x`` as a plain int in [-2^62, 2^62]; Bad otherwise. Bools are not integers here."""
    t = type(x)
    if t is int:
        v = x
    elif t in _NP_INTS:
        v = int(x)
    elif isinstance(x, int) and not isinstance(x, bool):
        v = int.__int__(x)  # the stored value, not what an overridden __int__ says
    else:
        raise Bad(f"{what} {short(x)} is not an integer")
    if not -LIMIT <= v <= LIMIT:
        raise Bad(f"{what} {short(v)} is out of range")
    return v


def as_opt_int(x: Any, what: str = "returned") -> int | None:
    """None stays None; anything else is ``as_int``."""
    return None if x is None else as_int(x, what)


def as_flag(x: Any, what: str = "returned") -> bool:
    """A yes/no answer: None, bool, numpy bool, or the integers 0 and 1."""
    if x is None or x is False:
        return False
    if x is True:
        return True
    if type(x) is np.bool_:
        return bool(x)
    v = as_int(x, what)
    if v not in (0, 1):
        raise Bad(f"{what} {v}: expected True / False")
    return bool(v)


def _seq(x: Any, n_max: int, what: str) -> list:
    if not isinstance(x, list | tuple):
        raise Bad(f"{what} {short(x)} is not a list or tuple")
    try:
        n = list.__len__(x) if isinstance(x, list) else tuple.__len__(x)
        if n > n_max:
            raise Bad(f"{what} holds {n} entries (at most {n_max})")
        return list(list.__iter__(x) if isinstance(x, list) else tuple.__iter__(x))
    except Bad:
        raise
    except Exception as e:
        raise Bad(f"{what} cannot be read ({type(e).__name__})") from None


def as_region(x: Any, n_pages: int) -> tuple[int, int]:
    """A prefetch region ``(first, outer)`` inside the block's ``[0, n_pages)``."""
    items = _seq(x, 2, "region")
    if len(items) != 2:
        raise Bad(f"returned {short(x)}: not DEFAULT, ENTER_LOOP or a region")
    f, o = as_int(items[0], "region start"), as_int(items[1], "region end")
    if not 0 <= f <= o <= n_pages:
        raise Bad(f"region [{f}, {o}) is outside the VA block's [0, {n_pages})")
    return f, o


def as_moves(x: Any, n_max: int) -> list[tuple[str, Any, Any]]:
    """``[(chunk, "head" | "tail"), ...]`` as raw requests (checked by ``check_requests``)."""
    out = []
    for r in _seq(x, n_max, "returned list"):
        pair = _seq(r, 2, "a move")
        if len(pair) != 2:
            raise Bad(f"returned {short(x)}: expected None, a chunk or [(chunk, 'head'|'tail')]")
        out.append(("move", pair[0], pair[1]))
    return out


def as_kinds(x: Any, n: int) -> np.ndarray:
    """One thrashing hint kind, or ``n`` of them (KEEP, NONE, THROTTLE, PIN)."""
    if isinstance(x, list | tuple):
        items = _seq(x, n, "hint list")
        if len(items) != n:
            raise Bad(f"returned {len(items)} hints for {n} pages")
        kinds = [as_int(v, "hint") for v in items]
    elif isinstance(x, np.ndarray):
        if x.shape != (n,) or x.dtype.kind not in "iu":
            raise Bad(f"returned an array of shape {x.shape} and {x.dtype}: expected {n} ints")
        kinds = [int(v) for v in x.tolist()]
    else:
        kinds = [as_int(x, "hint")] * n
    arr = np.array(kinds, dtype=np.int64)
    if not np.isin(arr, _KINDS).all():
        raise Bad(f"returned a hint kind outside -1 keep, 0 none, 1 throttle, 2 pin ({short(x)})")
    return arr


def _block_array(x: Any, shape: tuple[int, ...], kinds: str, what: str) -> np.ndarray:
    """An array of exactly ``shape`` whose dtype kind is in ``kinds``, as a fresh copy (the
    policy keeps no handle on what the driver uses)."""
    # exactly an ndarray: a subclass's own methods would run here, outside the guarded call
    if type(x) is not np.ndarray or x.shape != shape or x.dtype.kind not in kinds:
        desc = f"an array of shape {x.shape} and {x.dtype}" if type(x) is np.ndarray else short(x)
        raise Bad(f"returned {desc}: expected {what} of shape {shape}")
    return np.array(x, copy=True)


def as_block_mask(x: Any, n_blocks: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``prefetch_batch``'s decision: a bool mask ``[n_blocks, width]`` (every block's prefetch
    pages), or ``(mask, rows)`` with ``rows`` a bool ``[n_blocks]`` (the blocks it decides; the
    others keep the driver's hint). Returns (mask, rows) as fresh bool arrays."""
    rows = None
    if isinstance(x, tuple):
        items = _seq(x, 2, "returned tuple")
        if len(items) != 2:
            raise Bad(f"returned {short(x)}: expected a mask or (mask, rows)")
        x, rows = items
        rows = _block_array(rows, (n_blocks,), "b", "a bool array")
    mask = _block_array(x, (n_blocks, width), "b", "a bool array")
    if rows is None:
        rows = np.ones(n_blocks, dtype=np.bool_)
    return np.ascontiguousarray(mask, dtype=np.bool_), rows.astype(np.bool_)


def as_block_kinds(x: Any, n_blocks: int, width: int) -> np.ndarray:
    """``thrashing_batch``'s decision: hint kinds ``[n_blocks, width]`` (KEEP, NONE, THROTTLE,
    PIN), as a fresh int8 array."""
    kinds = _block_array(x, (n_blocks, width), "iu", "an int array")
    if kinds.size and not np.isin(kinds, _KINDS).all():
        raise Bad("returned a hint kind outside -1 keep, 0 none, 1 throttle, 2 pin")
    return kinds.astype(np.int8)


def check_chunk(pmm: Any, chunk: Any, what: str) -> int:
    """A chunk a policy may move or pick: one on an eviction list. Returns it as a plain int."""
    c = as_int(chunk, f"{what}: chunk")
    if not 0 <= c < pmm.n_root_chunks:
        raise Bad(f"{what}: chunk {c} does not exist (0..{pmm.n_root_chunks - 1})")
    lst = pmm.list_of(c)
    if lst not in _EVICTION_LISTS:
        raise Bad(f"{what}: chunk {c} is not evictable (it is {lst or 'on no list'})")
    return c


def check_migration(va: Any, first: Any, n: Any) -> tuple[int, int]:
    """A UVM_MIGRATE request: pages of one live managed allocation."""
    f, k = as_int(first, "migrate: page"), as_int(n, "migrate: count")
    if k < 1 or f < 0 or f >= va.total_pages:
        raise Bad(f"migrate({f}, {k}): not a page range of the address space")
    a = int(va.block_alloc[f >> 9])
    if a < 0 or not va.alloc_live[a] or not va.is_managed(a):
        raise Bad(f"migrate({f}, {k}): not in a live managed allocation")
    lo = int(va.alloc_base[a])
    if f < lo or f + k > lo + int(va.alloc_pages[a]):
        raise Bad(f"migrate({f}, {k}): runs past its allocation")
    return f, k


def check_requests(req: list, pmm: Any, va: Any) -> list[tuple[str, int, Any]]:
    """Every request a call recorded, coerced and checked: ``("move", chunk, "head"|"tail")``
    or ``("migrate", first_page, n_pages)``. Raises Bad at the first one not allowed."""
    n_max = 4 * pmm.n_root_chunks + 64
    if len(req) > n_max:
        raise Bad(f"recorded {len(req)} requests in one call")
    out: list[tuple[str, int, Any]] = []
    for r in req:
        if not (type(r) is tuple and len(r) == 3 and r[0] in ("move", "migrate")):
            raise Bad(f"malformed request {short(r)}")
        if r[0] == "move":
            c = check_chunk(pmm, r[1], "move")
            pos = r[2]
            if type(pos) is not str or pos not in ("head", "tail"):
                raise Bad(f"list position {short(pos)} is neither 'head' nor 'tail'")
            out.append(("move", c, "head" if pos == "head" else "tail"))
        else:
            f, k = check_migration(va, r[1], r[2])
            out.append(("migrate", f, k))
    return out
