"""A replayable fault batch's blocks on the compiled path (uvm_gpu_replayable_faults.c)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from uvmlab.driver.compiled.blocks import (
    block_mode,
    dest_is_requester,
    may_read_dup,
    plan_duplicate,
    plan_pages,
    remote_by_accessed_by,
)
from uvmlab.driver.compiled.borrow import borrow_pmm, borrow_sc, borrow_th, borrow_va, view
from uvmlab.driver.compiled.eviction import evict_block_chunk, victim_is_plain
from uvmlab.driver.compiled.policy_calls import choose_if_live, note_block
from uvmlab.driver.compiled.prefetch import prefetch_pages
from uvmlab.driver.compiled.residency import make_resident_and_map
from uvmlab.driver.compiled.state import (
    ADVISED,
    CHUNK_USED,
    DONE,
    NEED_CHUNK,
    READ_DUP_ON,
    SLOW,
    Costs,
    Scratch,
    ThrashingState,
    VaArrays,
)
from uvmlab.driver.perf.prefetch import PrefetchParams
from uvmlab.driver.pmm_lists import LIST_FREE, PmmArrays
from uvmlab.driver.va_space import BLOCK_SHIFT, PERM_READ


@njit(cache=True, inline="always")
def service_block(
    va: VaArrays,
    pmm: PmmArrays,
    n_chunks: int,
    th: ThrashingState,
    pf: PrefetchParams,
    costs: Costs,
    ctr: np.ndarray,
    sc: Scratch,
    work: np.ndarray,
    now: int,
    gpu: int,
    page: np.ndarray,
    access: np.ndarray,
    keep: np.ndarray,
    s: int,
    e: int,
    may_evict: bool,
    stop_alloc: bool,
    stop_used: bool,
    pf_row: np.ndarray,
    use_row: bool,
    fresh: int,
    victim: Any,
    state_victim: Any,
    kst: Any,
) -> int:
    """service_fault_batch_block_locked for one block: (DONE | SLOW | NEED_CHUNK | CHUNK_USED).
    ``stop_alloc``: a root chunk is allocated by the caller (NEED_CHUNK: its policy hooks);
    ``stop_used``: a block that used a chunk it already had stops as CHUNK_USED, serviced but
    for its ``chunk_used`` hook (a chunk allocated by this operation is still pinned: no hook);
    ``use_row``: a policy's batch decision, ``pf_row``, replaces the prefetch hint; ``fresh``:
    the block whose chunk the caller just allocated (NEED_CHUNK): still pinned, not moved;
    ``victim``, ``state_victim``, ``kst``: a policy's compiled victim choice (``policy_calls``),
    asked before any victim is taken, or None."""
    block = page[s] >> BLOCK_SHIFT
    lo = block << BLOCK_SHIFT
    n = va.block_pages[block]
    mode = block_mode(va, th, block)
    if mode == 0:
        return SLOW
    residency, perm, preferred, read_dup, accessed_by = (
        va.residency,
        va.perm,
        va.preferred,
        va.read_dup,
        va.accessed_by,
    )
    fpages = sc.fpages  # the batch is sorted and its duplicates dropped: ascending, unique
    nf = 0
    ndup = 0  # faulted pages that block_select_processor_residency read-duplicates (rules 3-4)
    for j in range(s, e):
        if not keep[j]:
            continue
        p = page[j]
        need = access[j] if access[j] > PERM_READ else PERM_READ
        if perm[gpu, p] >= need:
            continue  # service_fault_batch_block_locked step 4: already authorized (stale)
        r = residency[p]
        if mode == ADVISED:
            if may_read_dup(read_dup[p], r):
                if access[j] > PERM_READ:
                    return SLOW  # a write collapses the copies: MOVE next to duplicates
                ndup += 1
            elif r & (r - 1):
                return SLOW
            elif preferred[p] - 1 != gpu and remote_by_accessed_by(accessed_by[p], r, gpu):
                return SLOW  # rule 10: a remote mapping of the holder
            elif not dest_is_requester(preferred[p] - 1, r, gpu):
                return SLOW  # a remote mapping of the preferred location
        elif r & (r - 1):
            return SLOW
        fpages[nf] = p - lo
        nf += 1
    if nf == 0:
        return DONE
    duplicate = ndup > 0
    if duplicate and ndup != nf:
        return SLOW  # duplicates and moves in one block: two make_resident calls
    m, pf_count = prefetch_pages(va, pf, block, lo, n, gpu, nf, mode, sc, pf_row, use_row)
    pages, extra, need_copy = sc.pages[:m], sc.extra[:m], sc.need_copy[:m]
    # only advice sets read duplication, and it marks the block ADVISED first (advice.py): a
    # PLAIN block's read_dup is not read (first touches far apart would each fault its page)
    if m > nf and mode == ADVISED and read_dup[lo] == READ_DUP_ON:
        # va_block.service_locked: prefetched pages of a read-duplication range are duplicated
        if not duplicate:
            return SLOW
        for k in range(m):
            if extra[k] and read_dup[lo + pages[k]] != READ_DUP_ON:
                return SLOW  # moved next to duplicates
    elif m > nf and duplicate:
        return SLOW  # prefetched pages are moved next to duplicates
    if duplicate:
        plan_duplicate(va, lo, gpu, pages, need_copy)
    elif not plan_pages(va, th, block, lo, gpu, gpu, pages, now, -1, need_copy):
        return SLOW
    had_chunk = va.gpu_chunk[gpu - 1, block] >= 0
    if not had_chunk and pmm.list_count[LIST_FREE] == 0:
        choose_if_live(victim, state_victim, kst, gpu, now, pmm)  # the policy's victim to the head
    if not had_chunk and (
        stop_alloc
        or pmm.list_count[LIST_FREE] == 0
        and not (may_evict and victim_is_plain(va, pmm, n_chunks, gpu))
    ):
        return NEED_CHUNK  # nothing changed yet: the caller evicts, then calls again
    if pf.enable:  # update_prefetch_info
        va.prefetch_last_proc[block] = gpu
        va.prefetch_fault_migrations[block] = pf_count
    hooked = stop_used and had_chunk or block == fresh  # the caller's chunk_used, or none
    make_resident_and_map(
        va,
        pmm,
        n_chunks,
        th,
        costs,
        ctr,
        work,
        block,
        lo,
        n,
        gpu,
        gpu,
        pages,
        need_copy,
        extra,
        now,
        hooked,
        duplicate,
    )
    return CHUNK_USED if stop_used and had_chunk and block != fresh else DONE


@njit(cache=True)
def service_blocks(
    va: VaArrays,
    pmm: PmmArrays,
    n_chunks: int,
    th: ThrashingState,
    pf: PrefetchParams,
    costs: Costs,
    ctr: np.ndarray,
    sc: Scratch,
    work: np.ndarray,
    now: int,
    gpu: int,
    page: np.ndarray,
    access: np.ndarray,
    keep: np.ndarray,
    starts: np.ndarray,
    stops: np.ndarray,
    k: int,
    may_evict: bool,
    stop_alloc: bool,
    stop_used: bool,
    pf_mask: np.ndarray,
    pf_set: np.ndarray,
    reference: np.ndarray,
    fresh: int,
    victim: Any = None,
    state_victim: Any = None,
    kst: Any = None,
) -> tuple[int, int]:
    """Blocks ``k, k+1, ...`` of a batch. Policies' batch decisions (``uvmlab.driver.hooks``),
    one entry per block or none at all: ``pf_set[i]``: row ``pf_mask[i]`` replaces block i's
    prefetch hint; ``reference[i]``: block i goes to the reference path (SLOW). ``victim``:
    a policy's compiled victim choice (``policy_calls.PolicyKernels``), or None."""
    nb = starts.shape[0]
    n_pf, n_ref = pf_set.shape[0], reference.shape[0]
    # borrowed views (compiled.borrow): the per-block service binds them without atomics
    bva, bpmm, bth, bsc = borrow_va(va), borrow_pmm(pmm), borrow_th(th), borrow_sc(sc)
    bctr, bwork, bpage, baccess, bkeep = view(ctr), view(work), view(page), view(access), view(keep)
    while k < nb:
        if k < n_ref and reference[k]:
            return k, SLOW
        use_row = k < n_pf and pf_set[k]
        note_block(kst, k, False)
        status = service_block(
            bva,
            bpmm,
            n_chunks,
            bth,
            pf,
            costs,
            bctr,
            bsc,
            bwork,
            now,
            gpu,
            bpage,
            baccess,
            bkeep,
            starts[k],
            stops[k],
            may_evict,
            stop_alloc,
            stop_used,
            pf_mask[k if use_row else 0],
            use_row,
            fresh,
            victim,
            state_victim,
            kst,
        )
        note_block(kst, k, status != NEED_CHUNK)
        if status != DONE:
            return k, status
        work[0] += costs.fault_block_ns
        k += 1
    return k, DONE


@njit(cache=True)
def evict_if_plain(va: VaArrays, costs: Costs, ctr: np.ndarray, work: np.ndarray, vb: int, gpu: int) -> bool:
    """Evict ``vb``'s chunk on ``gpu`` in compiled code unless one of its GPU-resident pages has an
    AccessedBy mapping to re-create (then False: ``eviction.evict_block_chunk`` does it)."""
    if va.block_advised[vb]:
        lo = vb << BLOCK_SHIFT
        for i in range(lo, lo + va.block_pages[vb]):
            if va.residency[i] >> gpu & 1 and va.accessed_by[i] >> gpu & 1:
                return False
    evict_block_chunk(va, costs, ctr, work, vb, gpu)
    return True
