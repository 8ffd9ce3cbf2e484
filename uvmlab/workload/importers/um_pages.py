"""Page, event and allocation arithmetic of the trace import (``um_import``), over arrays.

Records cover byte ranges; the IR counts 4 KiB pages inside allocations. These functions map one
to the other without a Python object per page: pages of migration records, first touches per
page, the 2 MiB blocks a fault makes fresh, allocations found or inferred for an address, and
the touch segments of one op.
"""

from __future__ import annotations

import numpy as np

from uvmlab.core.sizes import PAGE_SIZE, VA_BLOCK_SIZE
from uvmlab.workload.importers.um_trace import ALLOC_DTYPE
from uvmlab.workload.ir import SEG_RUN, SEGMENT_DTYPE, Access, AllocKind


def pages_of(records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(record index, virtual page number) of every page a migration record covers."""
    first = records["address"] // PAGE_SIZE
    last = (records["address"] + np.maximum(records["value"], 1) - 1) // PAGE_SIZE
    n = (last - first + 1).astype(np.int64)
    idx = np.repeat(np.arange(len(records)), n)
    offs = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    return idx, first[idx].astype(np.int64) + offs


def first_time(pages: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct page and the earliest time it appears."""
    o = np.argsort(t, kind="stable")
    uniq, first = np.unique(pages[o], return_index=True)
    return uniq, t[o][first]


def lookup_first(pages: np.ndarray, ev_pages: np.ndarray, ev_t: np.ndarray) -> np.ndarray:
    """Earliest time of each of ``pages`` among the events (the maximum uint64 when absent)."""
    uniq, first = first_time(ev_pages, ev_t)
    out = np.full(len(pages), np.iinfo(np.uint64).max, dtype=np.uint64)
    if len(uniq):
        i = np.minimum(np.searchsorted(uniq, pages), len(uniq) - 1)
        hit = uniq[i] == pages
        out[hit] = first[i[hit]]
    return out


def add_events(ev: list[np.ndarray], t: np.ndarray, pages: np.ndarray, proc: int) -> int:
    """Append estimated writes (time, page) by ``proc`` to the event arrays, kept in time order."""
    if len(pages) == 0:
        return 0
    n = len(pages)
    add = [
        t.astype(np.uint64),
        pages.astype(np.int64),
        np.full(n, proc, np.uint8),
        np.full(n, Access.WRITE, np.uint8),
        np.zeros(n, bool),
    ]
    merged = [np.concatenate([a, b]) for a, b in zip(ev, add, strict=True)]
    o = np.lexsort((~merged[4], merged[0]))
    ev[:] = [x[o] for x in merged]
    return n


def fill_fresh_blocks(ev: list[np.ndarray], allocs: np.ndarray) -> int:
    """A GPU fault that is the first event in its 2 MiB block: count the block's pages (inside
    its allocation) as touched by that kernel, at the fault's time.

    A kernel that first touches fresh memory leaves a few fault records per block (one per fault
    group) while the driver populates the region it services, and no migration record, since
    nothing moves: without this, a kernel writing a fresh 64 MiB array would replay as a few
    dozen touches. Kernels that write fresh arrays write them whole; a sparse kernel on fresh
    memory is over-counted (time and footprint, not bytes moved).
    """
    t, vpage, proc, _, fault = ev
    blk = vpage * PAGE_SIZE // VA_BLOCK_SIZE
    _, first = np.unique(blk, return_index=True)  # events are in time order
    first = first[(proc[first] == 1) & fault[first]]
    if len(first) == 0:
        return 0
    where = locate(allocs, vpage[first] * PAGE_SIZE, t[first])
    first, where = first[where >= 0], where[where >= 0]
    lo = np.maximum(
        blk[first] * (VA_BLOCK_SIZE // PAGE_SIZE), (allocs["address"][where] // PAGE_SIZE).astype(np.int64)
    )
    hi = np.minimum(
        (blk[first] + 1) * (VA_BLOCK_SIZE // PAGE_SIZE),
        ((allocs["address"][where] + allocs["bytes"][where]) // PAGE_SIZE).astype(np.int64),
    )
    n = np.maximum(hi - lo, 0)
    idx = np.repeat(np.arange(len(first)), n)
    pages = lo[idx] + np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    return add_events(ev, t[first][idx], pages, 1)


def regions(allocs: np.ndarray) -> np.ndarray:
    """Allocations as the model's VA ranges: each starts at its 2 MiB block boundary, and
    allocations that share a block are one range.

    The CUDA driver hands small managed allocations out of shared 2 MiB blocks (PyTorch's
    tensors of a few KiB start mid-page), while the model places every range at a 2 MiB-aligned
    base; rounding down keeps each page at its offset inside its real block, so the prefetcher
    sees the same blocks. A range lives from the first allocation in it to the last release.
    """
    if len(allocs) == 0:
        return allocs
    lo = allocs["address"] // VA_BLOCK_SIZE * VA_BLOCK_SIZE
    hi = -(-(allocs["address"] + np.maximum(allocs["bytes"], 1)) // PAGE_SIZE) * PAGE_SIZE
    o = np.argsort(lo, kind="stable")
    lo, hi, a = lo[o], hi[o], allocs[o]
    # a new range starts where an allocation begins in a block past every earlier one's end
    reach = np.maximum.accumulate(-(-hi // VA_BLOCK_SIZE) * VA_BLOCK_SIZE)
    new = np.ones(len(lo), dtype=bool)
    new[1:] = lo[1:] >= reach[:-1]
    gid = np.cumsum(new) - 1
    n = int(gid[-1]) + 1
    out = np.zeros(n, dtype=ALLOC_DTYPE)
    out["address"] = lo[new]
    end = np.zeros(n, dtype=np.uint64)
    np.maximum.at(end, gid, hi)
    out["bytes"] = end - out["address"]
    out["kind"] = AllocKind.MANAGED
    out["start"] = np.full(n, np.iinfo(np.uint64).max, dtype=np.uint64)
    np.minimum.at(out["start"], gid, a["start"])
    rel = np.zeros(n, dtype=np.uint64)
    np.maximum.at(rel, gid, a["end"])
    never = np.zeros(n, dtype=bool)
    np.logical_or.at(never, gid, a["end"] == 0)
    out["end"] = np.where(never, 0, rel)
    return out


def infer_allocs(vpages: np.ndarray) -> np.ndarray:
    """Allocations covering the touched pages: runs of contiguous touched 2 MiB blocks."""
    blocks = np.unique(vpages * PAGE_SIZE // VA_BLOCK_SIZE)
    if len(blocks) == 0:
        return np.zeros(0, dtype=ALLOC_DTYPE)
    cut = np.flatnonzero(np.diff(blocks) != 1) + 1
    firsts = blocks[np.r_[0, cut]]
    lasts = blocks[np.r_[cut - 1, len(blocks) - 1]]
    out = np.zeros(len(firsts), dtype=ALLOC_DTYPE)
    out["address"] = firsts * VA_BLOCK_SIZE
    out["bytes"] = (lasts - firsts + 1) * VA_BLOCK_SIZE
    out["kind"] = AllocKind.MANAGED
    return out


def locate(allocs: np.ndarray, addr: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the allocation live at time ``t`` that holds ``addr`` (-1 if none).

    Allocations are sorted by (address, start). A released range can be handed out again at the
    same address, so among allocations with the same base the latest one made at or before ``t``
    is the candidate; the rare event that misses it is resolved one by one.
    """
    if len(allocs) == 0:
        return np.full(len(addr), -1, dtype=np.int64)
    base = allocs["address"]
    i = np.searchsorted(base, addr, side="right").astype(np.int64) - 1
    ok = i >= 0
    j = np.where(ok, i, 0)
    inside = ok & (addr < base[j] + allocs["bytes"][j])
    live = (allocs["start"][j] <= t) & ((allocs["end"][j] == 0) | (t <= allocs["end"][j]))
    good = inside & live
    out = np.where(good, i, -1)
    # a base handed out again: the candidates are the allocations made at that same base
    for e in np.flatnonzero(~good & ok):
        lo = int(np.searchsorted(base, base[i[e]], side="left"))
        cand = np.arange(lo, int(i[e]) + 1)
        hit = cand[
            (addr[e] < base[cand] + allocs["bytes"][cand])
            & (allocs["start"][cand] <= t[e])
            & ((allocs["end"][cand] == 0) | (t[e] <= allocs["end"][cand]))
        ]
        if len(hit):
            out[e] = hit[-1]
    return out


def segments(alloc: np.ndarray, page: np.ndarray, access: np.ndarray) -> np.ndarray:
    """Touches (in order) as run segments: consecutive pages of one allocation and access."""
    n = len(page)
    if n == 0:
        return np.zeros(0, dtype=SEGMENT_DTYPE)
    brk = np.ones(n, dtype=bool)
    brk[1:] = (alloc[1:] != alloc[:-1]) | (access[1:] != access[:-1]) | (page[1:] != page[:-1] + 1)
    starts = np.flatnonzero(brk)
    counts = np.diff(np.r_[starts, n])
    seg = np.zeros(len(starts), dtype=SEGMENT_DTYPE)
    seg["alloc"], seg["kind"], seg["access"] = alloc[starts], SEG_RUN, access[starts]
    seg["start"], seg["count"], seg["stride"] = page[starts], counts, 1
    return seg


def first_per_page(alloc: np.ndarray, page: np.ndarray, access: np.ndarray) -> np.ndarray:
    """Keep each (allocation, page) once, at its first touch, with its most intrusive access."""
    key = alloc.astype(np.int64) << 40 | page.astype(np.int64)
    uniq, first, inv = np.unique(key, return_index=True, return_inverse=True)
    strongest = np.zeros(len(uniq), dtype=np.uint8)
    np.maximum.at(strongest, inv, access)
    keep = np.sort(first)
    access[keep] = strongest[inv[keep]]
    return keep
