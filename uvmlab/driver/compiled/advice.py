"""Advice on the compiled path: collapsing read duplicates when read duplication is disabled
(``advice._collapse_duplicates``, UVM_DISABLE_READ_DUPLICATION in uvm_policy.c), block by block with
no Python per block.

Each duplicated page collapses onto its preferred location if that holds a copy, else onto
its first holder in processor-id order (the CPU first); a collapse is a MOVE with cause User
whose pages are already on the target, so nothing is copied or charged: only mappings,
residency and the PMM lists change, in the order the reference path changes them (per block:
the preferred-location pass, then the first-holder pass, each target in processor order).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from uvmlab.driver.compiled.borrow import borrow_pmm, borrow_va
from uvmlab.driver.compiled.state import DONE, SLOW, VaArrays
from uvmlab.driver.pmm_lists import LIST_UNUSED, LIST_USED, PmmArrays, chunk_update_eviction_list
from uvmlab.driver.va_space import BLOCK_SHIFT, CPU, PERM_ATOMIC


@njit(cache=True)
def collapse_duplicates(
    va: VaArrays, pmm: PmmArrays, n_chunks: int, first: int, end: int, block: int
) -> tuple[int, int]:
    """Collapse the duplicated pages of ``[first, end)`` from ``block`` on; return (the block
    the reference path must take, SLOW), or (the block after the last, DONE)."""
    bva, bpmm = borrow_va(va), borrow_pmm(pmm)
    last = (end - 1) >> BLOCK_SHIFT
    while block <= last:
        if not collapse_block(bva, bpmm, n_chunks, first, end, block):
            return block, SLOW
        block += 1
    return block, DONE


@njit(cache=True, inline="always")
def collapse_block(va: VaArrays, pmm: PmmArrays, n_chunks: int, first: int, end: int, block: int) -> bool:
    """One block of ``advice._collapse_duplicates``; False (nothing changed) for a block with a
    duplicate on a GPU that has no root chunk for it, which the model never makes."""
    residency, perm, preferred, gpu_chunk = va.residency, va.perm, va.preferred, va.gpu_chunk
    lo = block << BLOCK_SHIFT
    n = va.block_pages[block]
    s = max(lo, first)
    e = min(lo + n, end)
    n_procs = perm.shape[0]
    for g in range(s, e):
        r = residency[g]
        if r & (r - 1):
            for q in range(1, n_procs):
                if r >> q & 1 and gpu_chunk[q - 1, block] < 0:
                    return False
    for only_preferred in (True, False):
        for target in range(n_procs):
            tbit = np.uint8(1 << target)
            lost = 0  # bit q: GPU q lost a copy to this target
            moved = False
            for g in range(s, e):
                r = residency[g]
                if not (r & (r - 1)) or not r & tbit:
                    continue
                if only_preferred and preferred[g] - 1 != target:
                    continue
                lost |= r & ~tbit & ~1  # GPUs only (bit 0 is the CPU)
                for q in range(n_procs):
                    perm[q, g] = 0  # MOVE: every mapping of a page not only on target goes
                residency[g] = tbit
                perm[target, g] = PERM_ATOMIC  # map_pages: RWA on the target's own copy
                moved = True
            if not moved:
                continue
            if target != CPU:  # block_mark_memory_used
                chunk_update_eviction_list(
                    pmm.state,
                    pmm.prev,
                    pmm.nxt,
                    pmm.list_of,
                    pmm.list_count,
                    n_chunks,
                    gpu_chunk[target - 1, block],
                    LIST_USED,
                )
            for q in range(1, n_procs):  # block_clear_resident_processor for a GPU left without pages
                if not lost >> q & 1:
                    continue
                left = False
                for i in range(lo, lo + n):
                    if residency[i] >> q & 1:
                        left = True
                        break
                c = gpu_chunk[q - 1, block]
                if not left and c >= 0:
                    chunk_update_eviction_list(
                        pmm.state, pmm.prev, pmm.nxt, pmm.list_of, pmm.list_count, n_chunks, c, LIST_UNUSED
                    )
    return True


__all__ = ["DONE", "SLOW", "collapse_duplicates"]
