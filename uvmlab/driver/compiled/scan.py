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


@njit(cache=True, inline="always")
def _alloc_min_perm(perm, lo, n):
    """The least permission of pages ``lo .. lo + n``; stops at the first unmapped page."""
    m = 3
    for p in range(lo, lo + n):
        v = perm[p]
        if v < m:
            m = v
            if m == 0:
                break
    return m


@njit(cache=True)
def _chunk_hits(
    alloc,
    kind,
    access,
    start,
    count,
    stride,
    pool,
    alloc_base,
    alloc_pages,
    seg_i,
    off,
    cap,
    perm,
    amin,
    checked,
):
    """Walk the next ``cap`` touches from segment ``seg_i`` at ``off`` (what ``expand`` would
    write into a chunk), checking each against ``perm`` without writing anything. Returns
    (next segment, next offset, touches walked, every one of them hits).

    A segment into an allocation whose every page has the permission it needs hits without
    visiting its touches. ``amin[a]`` caches allocation ``a``'s least permission (-1: not yet
    known); ``perm`` does not change during the caller's compiled call, so the cache holds for
    all of it. It is computed only once ``checked[a]`` touches of ``a`` were checked one by
    one, at least the allocation's page count, so computing it never costs more than the
    touches already checked."""
    n = 0
    nseg = len(alloc)
    while n < cap and seg_i < nseg:
        al = alloc[seg_i]
        base = alloc_base[al]
        a = access[seg_i]
        need = a if a > 0 else 1
        c = count[seg_i]
        take = min(c - off, cap - n)
        if amin[al] < 0 and checked[al] >= alloc_pages[al]:
            amin[al] = _alloc_min_perm(perm, base, alloc_pages[al])
        if amin[al] < need:
            checked[al] += take
            if kind[seg_i] == SEG_RUN:
                p = base + start[seg_i] + off * stride[seg_i]
                st = stride[seg_i]
                for _ in range(take):
                    if perm[p] < need:
                        return seg_i, off, n, False
                    p += st
            else:
                p0 = start[seg_i] + off
                for k in range(take):
                    if perm[base + np.int64(pool[p0 + k])] < need:
                        return seg_i, off, n, False
        n += take
        off += take
        if off == c:
            seg_i += 1
            off = 0
    return seg_i, off, n, True


@njit(cache=True)
def skip_hit_chunks(
    alloc: np.ndarray,
    kind: np.ndarray,
    access: np.ndarray,
    start: np.ndarray,
    count: np.ndarray,
    stride: np.ndarray,
    pool: np.ndarray,
    alloc_base: np.ndarray,
    alloc_pages: np.ndarray,
    seg_i: int,
    off: int,
    cap: int,
    perm: np.ndarray,
    conc: int,
    clock: float,
    ns_per_touch: float,
    remote_touch_ns: float,
) -> tuple[int, int, int, float, bool]:
    """Run whole chunks of ``cap`` touches that all hit, for a kernel with no stalled thread
    and no remote mapping, without expanding them: what ``expand`` then ``gpu_scan`` over
    windows of ``conc`` touches would do, with the same clock additions in the same order
    (so the clock is bit-identical). Stops before the first chunk with a miss, which the caller
    expands and scans as usual. Returns (segment, offset, touches run, clock, stopped at a
    miss)."""
    done = 0
    amin = np.full(len(alloc_base), -1, dtype=np.int8)
    checked = np.zeros(len(alloc_base), dtype=np.int64)
    while True:
        s_i, o, n, ok = _chunk_hits(
            alloc,
            kind,
            access,
            start,
            count,
            stride,
            pool,
            alloc_base,
            alloc_pages,
            seg_i,
            off,
            cap,
            perm,
            amin,
            checked,
        )
        if not ok or n == 0:
            return seg_i, off, done, clock, not ok
        left = n
        while left > 0:  # GpuKernelRun._complete once per window, as the scan loop calls it
            h = min(conc, left)
            clock += h * ns_per_touch + 0 * remote_touch_ns
            left -= h
        done += n
        seg_i, off = s_i, o
        if n < cap:
            return seg_i, off, done, clock, False
