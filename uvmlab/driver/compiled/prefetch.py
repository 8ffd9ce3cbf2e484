"""The prefetch hint of one block on the compiled path (uvm_perf_prefetch.c), without side effects."""

from __future__ import annotations

import numpy as np
from numba import njit

from uvmlab.core.bitwords import ONE, ZERO, gather_bit, gather_nonzero, range_bits, trailing_zeros
from uvmlab.driver.compiled.state import ADVISED, PLAIN, Scratch, VaArrays
from uvmlab.driver.perf.prefetch import PrefetchParams
from uvmlab.driver.perf.prefetch_tree import CPU_RR, FAULT, LEAF, NWORDS, OUT, THR, tree_fill
from uvmlab.driver.va_space import CPU, PERM_NONE, PERM_READ

# gather_nonzero reads a permission of at least PERM_READ as a byte that is not 0
assert PERM_NONE == 0 and PERM_READ == 1


@njit(cache=True, inline="always")
def prefetch_pages(
    va: VaArrays,
    pf: PrefetchParams,
    block: int,
    lo: int,
    n: int,
    dest: int,
    nf: int,
    mode: int,
    sc: Scratch,
    row: np.ndarray,
    use_row: bool,
) -> tuple[int, int]:
    """uvm_perf_prefetch.c ``uvm_va_block_get_prefetch_hint`` without side effects. From the
    faulted pages ``sc.fpages[:nf]`` (ascending, block-local), writes the pages to make resident
    — faulted plus prefetched, ascending — to ``sc.pages[:m]`` and which of them are prefetched
    to ``sc.extra[:m]``; returns (m, the new prefetch_info counter). Mirrors
    ``va_block.prefetch_pages``; with prefetch off or nothing to add the cost is O(faults).
    ``use_row``: a policy's batch decision ``row`` (block pages) replaces the hint, as
    ``Guard.prefetch_hint`` applies it on the reference path: the faulted pages are taken out,
    the min_faults rule still holds."""
    residency, perm = va.residency, va.perm
    fpages = sc.fpages
    last_proc, fault_migrations = va.prefetch_last_proc, va.prefetch_fault_migrations
    if not pf.enable:
        return _faulted_only(nf, 0, sc)
    count = nf if last_proc[block] != dest else fault_migrations[block] + nf
    count &= 0xFFFF
    if count < pf.min_faults:
        return _faulted_only(nf, count, sc)  # the min_faults gate: no hint
    w = sc.words
    fault, leaf, cpu_rr = w[FAULT], w[LEAF], w[CPU_RR]
    for j in range(NWORDS):
        fault[j] = ZERO
    for k in range(nf):
        p = fpages[k]
        fault[p >> 6] |= ONE << np.uint64(p & 63)
    if use_row:
        return _with_row(row, fault, n, count, sc)
    # The leaves' input: resident on dest, or faulted; for a CPU destination also the pages
    # resident and readable there (the post-filter drops them). One word of 64 pages at a time.
    all_rr = dest == CPU  # every page not faulted is resident and readable on the CPU
    for j in range(NWORDS):
        count_j = min(64, n - 64 * j)
        if count_j <= 0:
            leaf[j] = ZERO
            cpu_rr[j] = ZERO
            continue
        res = gather_bit(residency, lo + 64 * j, count_j, dest)
        leaf[j] = res | fault[j]
        if dest == CPU:
            rr = res & gather_nonzero(perm, CPU * perm.shape[1] + lo + 64 * j, count_j)
            all_rr &= (rr | fault[j]) == range_bits(j, 0, n)
            cpu_rr[j] = rr
        else:
            cpu_rr[j] = ZERO
    if all_rr:
        # the post-filter drops faulted and CPU-readable pages from any region: no hint
        return _faulted_only(nf, count, sc)
    # uvm_perf_prefetch.c step 3, the first-touch shortcut: resident nowhere and dest is the preferred
    # location
    first_touch = False
    if mode == ADVISED and va.preferred[lo] - 1 == dest:
        first_touch = True
        for i in range(lo, lo + n):
            if residency[i] != 0:
                first_touch = False
                break
    thr = w[THR]  # no thrashing pages: the block has no per-page thrashing state
    for j in range(NWORDS):
        thr[j] = ZERO
    tree_fill(w, lo, pf.big_page_pages, pf.threshold, 0, n, True, first_touch)
    return _with_words(fault, w[OUT], count, sc)


@njit(cache=True, inline="always")
def _with_words(fault: np.ndarray, out: np.ndarray, count: int, sc: Scratch) -> tuple[int, int]:
    """The pages to make resident, faulted plus prefetched (``out``), ascending: one step per
    page of either."""
    pages, extra = sc.pages, sc.extra
    k = 0
    for j in range(NWORDS):
        todo = fault[j] | out[j]
        while todo:
            b = trailing_zeros(todo)
            bit = ONE << b
            todo ^= bit
            pages[k] = 64 * j + int(b)
            extra[k] = (fault[j] & bit) == ZERO
            k += 1
    return k, count


@njit(cache=True, inline="always")
def _with_row(row: np.ndarray, fault: np.ndarray, n: int, count: int, sc: Scratch) -> tuple[int, int]:
    """The pages to make resident, faulted plus a policy's ``row`` (block pages)."""
    pages, extra = sc.pages, sc.extra
    k = 0
    for i in range(n):
        f = (fault[i >> 6] >> np.uint64(i & 63)) & ONE != ZERO
        if f or row[i]:
            pages[k] = i
            extra[k] = not f
            k += 1
    return k, count


@njit(cache=True, inline="always")
def _faulted_only(nf: int, count: int, sc: Scratch) -> tuple[int, int]:
    """No hint: the pages to make resident are the faulted ones."""
    fpages, pages, extra = sc.fpages, sc.pages, sc.extra
    for k in range(nf):
        pages[k] = fpages[k]
        extra[k] = False
    return nf, count


@njit(cache=True)
def prefetch_pages_call(
    va: VaArrays, pf: PrefetchParams, block: int, lo: int, n: int, dest: int, nf: int, sc: Scratch
) -> int:
    """:func:`prefetch_pages` for a plain block with no policy, called from Python (tests):
    returns ``m``, the pages being in ``sc.pages[:m]`` / ``sc.extra[:m]``."""
    m, _count = prefetch_pages(va, pf, block, lo, n, dest, nf, PLAIN, sc, sc.extra, False)
    return m
