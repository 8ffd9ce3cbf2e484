"""Compiled hot loops: expanding touch segments into pages, and scanning touches that hit.

These are the only per-touch loops in the model. Everything a touch needs to decide "hit or
fault" is one byte of permission per page, so a hit costs a load and a compare.
"""

from __future__ import annotations

import numpy as np
from numba import njit

SEG_RUN = 0


@njit(cache=True)
def expand(
    alloc: np.ndarray,
    kind: np.ndarray,
    access: np.ndarray,
    start: np.ndarray,
    count: np.ndarray,
    stride: np.ndarray,
    pool: np.ndarray,
    alloc_base: np.ndarray,
    seg_i: int,
    off: int,
    out_page: np.ndarray,
    out_acc: np.ndarray,
) -> tuple[int, int, int]:
    """Fill ``out_page``/``out_acc`` with global pages from segment ``seg_i`` at offset ``off``
    onward; return (next segment, next offset, touches written)."""
    n = 0
    cap = len(out_page)
    nseg = len(alloc)
    while n < cap and seg_i < nseg:
        base = alloc_base[alloc[seg_i]]
        a = access[seg_i]
        c = count[seg_i]
        take = min(c - off, cap - n)
        if kind[seg_i] == SEG_RUN:
            s = start[seg_i]
            st = stride[seg_i]
            for k in range(take):
                out_page[n + k] = base + s + (off + k) * st
                out_acc[n + k] = a
        else:
            p0 = start[seg_i] + off
            for k in range(take):
                out_page[n + k] = base + np.int64(pool[p0 + k])
                out_acc[n + k] = a
        n += take
        off += take
        if off == c:
            seg_i += 1
            off = 0
    return seg_i, off, n


@njit(cache=True)
def gpu_scan(
    page: np.ndarray,
    acc: np.ndarray,
    pos: int,
    end: int,
    perm: np.ndarray,
    residency: np.ndarray,
    gbit: int,
    max_faults: int,
    out_idx: np.ndarray,
) -> tuple[int, int, int, int]:
    """Run touches from ``pos`` until ``max_faults`` of them miss or ``end`` is reached.

    Returns (next position, faults recorded in ``out_idx``, hits, hits on remote mappings).
    A touch needs permission >= its access type (read 1, write 2, atomic 3). ``gbit`` 0 means
    the caller knows no page is mapped remotely: then residency is not read at all.
    """
    nf = 0
    hits = 0
    remote = 0
    i = pos
    while i < end:
        p = page[i]
        need = acc[i] if acc[i] > 0 else 1
        if perm[p] >= need:
            hits += 1
            if gbit != 0 and residency[p] & gbit == 0:
                remote += 1
        else:
            out_idx[nf] = i
            nf += 1
            if nf == max_faults:
                i += 1
                break
        i += 1
    return i, nf, hits, remote


@njit(cache=True, inline="always")
def cpu_scan(page: np.ndarray, acc: np.ndarray, pos: int, end: int, perm: np.ndarray) -> int:
    """Index of the first touch from ``pos`` that the CPU's mappings cannot satisfy, or ``end``."""
    for i in range(pos, end):
        need = acc[i] if acc[i] > 0 else 1
        if perm[page[i]] < need:
            return i
    return end


def segment_columns(segments: np.ndarray) -> tuple[np.ndarray, ...]:
    """Contiguous per-field arrays of a segment slice, in ``expand``'s argument order."""
    return tuple(
        np.ascontiguousarray(segments[f]) for f in ("alloc", "kind", "access", "start", "count", "stride")
    )
