"""The root-chunk states and lists of the GPU's PMM (uvm_pmm_gpu.c), as arrays, with the
compiled list primitives that both ``pmm.Pmm`` and the compiled fault path move chunks with.

Lists are doubly linked over int32 ``prev`` / ``nxt`` arrays with one sentinel node per list
(node ``n_root_chunks + L`` is list L's), so every move is O(1) and no chunk is a Python object.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

import numpy as np
from numba import njit


class ChunkState(IntEnum):
    FREE = 0
    TEMP_PINNED = 1
    ALLOCATED = 2
    IN_EVICTION = 3
    RESERVED = 4


FREE, TEMP_PINNED, ALLOCATED, IN_EVICTION, RESERVED = (int(s) for s in ChunkState)

# List ids. The first four are the driver's lists; "reserved" holds chunks taken by other PMA
# clients so that release() can hand back exactly the chunks it took.
LIST_FREE, LIST_USED, LIST_UNUSED, LIST_DISCARDED, LIST_RESERVED = range(5)
N_LISTS = 5
NO_LIST = -1

LIST_NAMES: dict[str, int] = {
    "free": LIST_FREE,
    "va_block_used": LIST_USED,
    "va_block_unused": LIST_UNUSED,
    "va_block_discarded": LIST_DISCARDED,
    "reserved": LIST_RESERVED,
}
# Short aliases, for policies and tests.
LIST_ALIASES = {"used": LIST_USED, "unused": LIST_UNUSED, "discarded": LIST_DISCARDED}
LIST_LABEL = {v: k for k, v in LIST_NAMES.items()}

# Order in which pick_root_chunk_to_evict looks for a victim.
EVICTION_ORDER = (LIST_FREE, LIST_UNUSED, LIST_DISCARDED, LIST_USED)


class PmmArrays(NamedTuple):
    """A PMM's root-chunk arrays, named, as the compiled fault path receives them."""

    state: np.ndarray  # per chunk: ChunkState
    owner: np.ndarray  # per chunk: the VA block it backs (-1: none)
    list_of: np.ndarray  # per chunk: the list it is on (NO_LIST: none)
    prev: np.ndarray  # per node (chunks, then one sentinel per list): previous node
    nxt: np.ndarray  # per node: next node
    list_count: np.ndarray  # per list: chunks on it


@njit(cache=True, inline="always")
def chunk_unlink(prev: np.ndarray, nxt: np.ndarray, list_of: np.ndarray, count: np.ndarray, c: int) -> None:
    p, q = prev[c], nxt[c]
    nxt[p] = q
    prev[q] = p
    count[list_of[c]] -= 1
    list_of[c] = NO_LIST


@njit(cache=True, inline="always")
def chunk_insert_between(
    prev: np.ndarray,
    nxt: np.ndarray,
    list_of: np.ndarray,
    count: np.ndarray,
    a: int,
    b: int,
    c: int,
    lst: int,
) -> None:
    """Link chunk ``c`` between adjacent nodes ``a`` and ``b`` of list ``lst``."""
    nxt[a] = c
    prev[c] = a
    nxt[c] = b
    prev[b] = c
    list_of[c] = lst
    count[lst] += 1


@njit(cache=True, inline="always")
def chunk_push_tail(
    prev: np.ndarray,
    nxt: np.ndarray,
    list_of: np.ndarray,
    count: np.ndarray,
    n: int,
    c: int,
    lst: int,
) -> None:
    s = n + lst
    chunk_insert_between(prev, nxt, list_of, count, prev[s], s, c, lst)


@njit(cache=True, inline="always")
def chunk_update_eviction_list(
    state: np.ndarray,
    prev: np.ndarray,
    nxt: np.ndarray,
    list_of: np.ndarray,
    count: np.ndarray,
    n: int,
    c: int,
    lst: int,
) -> bool:
    """root_chunk_update_eviction_list: an ALLOCATED chunk moves to the tail of ``lst``; a
    pinned or in-eviction one stays put. False for a chunk that is not UVM's."""
    st = state[c]
    if st == ALLOCATED:
        chunk_unlink(prev, nxt, list_of, count, c)
        chunk_push_tail(prev, nxt, list_of, count, n, c, lst)
        return True
    return st == TEMP_PINNED or st == IN_EVICTION  # noqa: SIM109 (numba: no tuple `in`)


@njit(cache=True)
def chunk_list_walk(nxt: np.ndarray, n: int, lst: int, count: int) -> np.ndarray:
    """List ``lst``'s chunks, head to tail, as a new array."""
    out = np.empty(count, np.int32)
    s = n + lst
    c = nxt[s]
    i = 0
    while c != s and i < count:
        out[i] = c
        i += 1
        c = nxt[c]
    return out


@njit(cache=True, inline="always")
def chunk_peek_victim(nxt: np.ndarray, n: int) -> int:
    """The chunk pick_root_chunk_to_evict takes: the head of the first non-empty list in
    EVICTION_ORDER, or -1. Nothing is unlinked (the compiled fault path checks the victim
    before it commits to evicting it)."""
    for lst in EVICTION_ORDER:
        c = nxt[n + lst]
        if c != n + lst:
            return c
    return -1


@njit(cache=True, inline="always")
def chunk_pop_head(
    prev: np.ndarray,
    nxt: np.ndarray,
    list_of: np.ndarray,
    count: np.ndarray,
    n: int,
    lst: int,
) -> int:
    """Unlink and return the head of list ``lst``; -1 when it is empty."""
    s = n + lst
    c = nxt[s]
    if c == s:
        return -1
    chunk_unlink(prev, nxt, list_of, count, c)
    return c


@njit(cache=True)
def walk_lists(
    nxt: np.ndarray, prv: np.ndarray, n: int, n_lists: int, counts: np.ndarray
) -> tuple[np.ndarray, int, int, int, int]:
    """Walk every circular list from its sentinel; return (list id per chunk, the list being
    walked, error code (0 = fine), the offending node, chunks counted on that list)."""
    seen = np.full(n, -1, np.int8)
    for lst in range(n_lists):
        s = n + lst
        c = nxt[s]
        prev = s
        k = 0
        while c != s:
            if c < 0 or c >= n:
                return seen, lst, 1, c, k
            if prv[c] != prev:
                return seen, lst, 2, c, k
            if seen[c] != -1:
                return seen, lst, 3, c, k
            seen[c] = lst
            prev = c
            c = nxt[c]
            k += 1
            if k > n:
                return seen, lst, 4, c, k
        if prv[s] != prev:
            return seen, lst, 5, s, k
        if k != counts[lst]:
            return seen, lst, 6, s, k
    return seen, -1, 0, -1, 0
