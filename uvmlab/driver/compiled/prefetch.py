"""The prefetch hint of one block on the compiled path (uvm_perf_prefetch.c), without side effects."""

from __future__ import annotations

import numpy as np
from numba import njit

from uvmlab.driver.compiled.state import ADVISED, Scratch, VaArrays
from uvmlab.driver.perf.prefetch import PrefetchParams, _prefetch_kernel
from uvmlab.driver.va_space import CPU, PERM_READ


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
    faulted = sc.faulted[:n]
    faulted[:] = False
    for k in range(nf):
        faulted[fpages[k]] = True
    if use_row:
        return _with_mask(row, faulted, n, nf, count, pf.min_faults, sc)
    resident = sc.resident[:n]
    cpu_rr = sc.cpu_rr[: n if dest == CPU else 0]  # empty: not a CPU destination
    all_rr = dest == CPU  # every page not faulted is resident and readable on the CPU
    for i in range(n):
        resident[i] = (residency[lo + i] >> dest) & 1 != 0
        if dest == CPU:
            cpu_rr[i] = resident[i] and perm[CPU, lo + i] >= PERM_READ
            all_rr &= cpu_rr[i] or faulted[i]
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
    # no thrashing pages: the block has no per-page thrashing state (an empty mask reads the
    # same as one of all False)
    mask = _prefetch_kernel(
        faulted,
        resident,
        sc.cpu_rr[:0],
        cpu_rr,
        lo,
        pf.big_page_pages,
        pf.threshold,
        0,
        n,
        dest == CPU,
        True,
        first_touch,
    )
    return _with_mask(mask, faulted, n, nf, count, pf.min_faults, sc)


@njit(cache=True, inline="always")
def _with_mask(
    mask: np.ndarray, faulted: np.ndarray, n: int, nf: int, count: int, min_faults: int, sc: Scratch
) -> tuple[int, int]:
    """The pages to make resident, faulted plus ``mask``'s where the hint is allowed, in one
    pass over the block."""
    if count < min_faults:
        return _faulted_only(nf, count, sc)
    pages, extra = sc.pages, sc.extra
    k = 0
    for i in range(n):
        f = faulted[i]
        if f or mask[i]:
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
