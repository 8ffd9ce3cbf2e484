"""Making pages resident and mapping them on the compiled path (uvm_va_block.c): the copies,
counted per contiguous run, the root chunk taken or evicted for, the new residency and mappings.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.driver.compiled.eviction import count_migration, evict_block_chunk
from uvmlab.driver.compiled.state import (
    DTOH,
    DTOH_FAULT,
    DTOH_PREFETCH,
    HTOD,
    HTOD_FAULT,
    HTOD_PREFETCH,
    READ_DUP_ON,
    READ_DUPLICATES,
    REMOTE_MAPS,
    Costs,
    ThrashingState,
    VaArrays,
)
from uvmlab.driver.pmm_lists import (
    ALLOCATED,
    LIST_FREE,
    LIST_UNUSED,
    LIST_USED,
    TEMP_PINNED,
    PmmArrays,
    chunk_peek_victim,
    chunk_pop_head,
    chunk_push_tail,
    chunk_unlink,
    chunk_update_eviction_list,
)
from uvmlab.driver.va_space import CPU, PERM_ATOMIC, PERM_READ


@njit(cache=True, inline="always")
def record_copies(
    th: ThrashingState,
    costs: Costs,
    ctr: np.ndarray,
    work: np.ndarray,
    block: int,
    dest: int,
    pages: np.ndarray,
    need_copy: np.ndarray,
    extra: np.ndarray,
    now: int,
    stamp: bool,
) -> None:
    """``block_copy.record_copies``: one latency, then one migration per run of contiguous pages, the
    faulted pages' runs first, then the prefetched ones'; each run bumps the block's
    thrashing stamp (the block-level branch of the callback) when ``stamp``: a COPY (read
    duplication) is no thrashing event (thrashing_event_cb)."""
    work[0] += costs.copy_latency_ns
    to_gpu = dest != CPU
    bw = costs.htod_gbps if to_gpu else costs.dtoh_gbps
    m = pages.shape[0]
    for which in range(2):  # 0: pages that faulted, 1: prefetched pages
        k = 0
        while k < m:
            if not (need_copy[k] and extra[k] == (which == 1)):
                k += 1
                continue
            j = k + 1
            while j < m and need_copy[j] and extra[j] == (which == 1) and pages[j] == pages[j - 1] + 1:
                j += 1
            if to_gpu:
                count_migration(
                    ctr, work, (j - k) * PAGE_SIZE, HTOD, HTOD_PREFETCH if which else HTOD_FAULT, bw
                )
            else:
                count_migration(
                    ctr, work, (j - k) * PAGE_SIZE, DTOH, DTOH_PREFETCH if which else DTOH_FAULT, bw
                )
            if stamp and th.enable:
                th.block_last_ts[block] = now
                th.block_last_proc[block] = dest
            k = j


@njit(cache=True, inline="always")
def prepare_dest(
    va: VaArrays,
    pmm: PmmArrays,
    n_chunks: int,
    costs: Costs,
    ctr: np.ndarray,
    work: np.ndarray,
    block: int,
    lo: int,
    dest: int,
    pages: np.ndarray,
    need_copy: np.ndarray,
) -> None:
    """make_resident's first step: on the CPU, the populate and per-page map charges; on a GPU,
    the block's root chunk (block_alloc_gpu_chunk, evicting the LRU victim when none is free;
    the caller made sure one can be had and that the victim is plain)."""
    residency, gpu_chunk = va.residency, va.gpu_chunk
    state, owner, list_of, prev, nxt, count = (
        pmm.state,
        pmm.owner,
        pmm.list_of,
        pmm.prev,
        pmm.nxt,
        pmm.list_count,
    )
    m = pages.shape[0]
    if dest == CPU:
        populate = 0
        migrated = 0
        for k in range(m):
            if residency[lo + pages[k]] == 0:
                populate += 1
            elif need_copy[k]:
                migrated += 1
        work[0] += populate * PAGE_SIZE * costs.cpu_populate_ns_per_byte + migrated * costs.cpu_map_page_ns
    else:
        g = dest - 1
        if gpu_chunk[g, block] < 0:
            c = chunk_pop_head(prev, nxt, list_of, count, n_chunks, LIST_FREE)
            if c < 0:  # evict_for_allocation: the victim checked by victim_is_plain
                c = chunk_peek_victim(pmm.nxt, n_chunks)
                chunk_unlink(prev, nxt, list_of, count, c)  # IN_EVICTION: off every list
                evict_block_chunk(va, costs, ctr, work, owner[c], dest)
            state[c] = TEMP_PINNED
            owner[c] = block
            gpu_chunk[g, block] = c
            work[0] += costs.chunk_zero_ns
            state[c] = ALLOCATED  # unpin_allocated at the end of the operation
            chunk_push_tail(prev, nxt, list_of, count, n_chunks, c, LIST_USED)


@njit(cache=True, inline="always")
def update_lists(
    va: VaArrays,
    pmm: PmmArrays,
    n_chunks: int,
    block: int,
    lo: int,
    n: int,
    dest: int,
    hooked: bool,
    left_gpu: bool,
) -> None:
    """make_resident's PMM list upkeep: block_mark_memory_used for a GPU destination (with hooks
    the caller runs chunk_used), block_clear_resident_processor for a GPU that lost its last
    page of the block (``left_gpu``: a GPU lost pages)."""
    residency, gpu_chunk = va.residency, va.gpu_chunk
    state, list_of, prev, nxt, count = pmm.state, pmm.list_of, pmm.prev, pmm.nxt, pmm.list_count
    if dest != CPU:
        if not hooked:  # block_mark_memory_used; with hooks the caller runs chunk_used
            chunk_update_eviction_list(
                state, prev, nxt, list_of, count, n_chunks, gpu_chunk[dest - 1, block], LIST_USED
            )
    elif left_gpu:  # the GPU lost pages: if it has none of the block left, va_block_unused
        for q in range(1, va.perm.shape[0]):
            qbit = 1 << q
            left = False
            for i in range(n):
                if residency[lo + i] & qbit:
                    left = True
                    break
            c = gpu_chunk[q - 1, block]
            if not left and c >= 0:
                chunk_update_eviction_list(state, prev, nxt, list_of, count, n_chunks, c, LIST_UNUSED)


@njit(cache=True, inline="always")
def unmap_for_move(
    residency: np.ndarray, perm: np.ndarray, dbit: np.uint8, lo: int, pages: np.ndarray, need_copy: np.ndarray
) -> tuple[bool, bool]:
    """A MOVE to the processor of ``dbit``: every processor is unmapped from the pages
    ``lo + pages`` that are not only on the destination. Returns (a GPU held one of them, one
    of them needs a copy)."""
    left_gpu = False
    has_copy = False
    for k in range(pages.shape[0]):
        g = lo + pages[k]
        if residency[g] != dbit:
            if residency[g] >> 1:  # held by a GPU before (bits 1.. are GPUs)
                left_gpu = True
            for q in range(perm.shape[0]):
                if perm[q, g]:  # a zero written to an untouched page would commit it
                    perm[q, g] = 0
        has_copy |= need_copy[k]
    return left_gpu, has_copy


@njit(cache=True, inline="always")
def make_resident_and_map(
    va: VaArrays,
    pmm: PmmArrays,
    n_chunks: int,
    th: ThrashingState,
    costs: Costs,
    ctr: np.ndarray,
    work: np.ndarray,
    block: int,
    lo: int,
    n: int,
    dest: int,
    requester: int,
    pages: np.ndarray,
    need_copy: np.ndarray,
    extra: np.ndarray,
    now: int,
    hooked: bool,
    duplicate: bool,
) -> None:
    """``make_resident`` to ``dest`` then ``_finish``'s mappings, for a checked plan: a MOVE, or
    with ``duplicate`` a COPY (uvm_va_block_make_resident_read_duplicate: the other holders keep
    a read-only copy, the requester maps READ)."""
    residency, perm = va.residency, va.perm
    dbit = np.uint8(1 << dest)
    m = pages.shape[0]
    prepare_dest(va, pmm, n_chunks, costs, ctr, work, block, lo, dest, pages, need_copy)
    left_gpu = False
    has_copy = False
    if duplicate:
        for k in range(m):
            g = lo + pages[k]
            r = residency[g]
            if not r & dbit:  # everyone but a holder is unmapped, a holder loses WRITE
                for q in range(perm.shape[0]):
                    if q == dest:
                        continue
                    if r >> q & 1:
                        if perm[q, g] > PERM_READ:
                            perm[q, g] = PERM_READ
                    else:
                        perm[q, g] = 0
            if need_copy[k]:
                has_copy = True
                ctr[READ_DUPLICATES] += 1
    else:
        # unmap_for_move and the new residency and mapping in one pass (the copies' counters
        # read neither)
        for k in range(m):
            g = lo + pages[k]
            r = residency[g]
            if r != dbit:
                if r >> 1:  # held by a GPU before (bits 1.. are GPUs)
                    left_gpu = True
                for q in range(perm.shape[0]):
                    # written only where mapped: a first write to an untouched page of the
                    # array costs a page fault (~2 us on a VM) and commits 4 KiB; a read, half
                    if perm[q, g]:
                        perm[q, g] = 0
            has_copy |= need_copy[k]
            residency[g] = dbit
            perm[requester, g] = PERM_ATOMIC  # compute_new_permission: RW upgraded to RWA on local memory
    if has_copy:
        record_copies(th, costs, ctr, work, block, dest, pages, need_copy, extra, now, not duplicate)
    if duplicate:
        for k in range(m):
            residency[lo + pages[k]] |= dbit
            perm[requester, lo + pages[k]] = PERM_READ  # compute_new_permission: a duplicate stays READ
    update_lists(va, pmm, n_chunks, block, lo, n, dest, hooked, left_gpu)


@njit(cache=True, inline="always")
def map_accessed_by(va: VaArrays, ctr: np.ndarray, lo: int, pages: np.ndarray) -> None:
    """block_service_finish_map_accessed_by after pages were made resident on the CPU (the
    requester): every AccessedBy GPU maps them, pages of ranges with read duplication ENABLED
    excepted, with the highest permission (``block_copy.accessed_by_permission``: a GPU's
    mapping of sysmem allows atomics); each contiguous run of remote mappings counts one
    MapRemote. PCIe: a CPU-resident page is the only kind a GPU other than the requester maps
    after a compiled service (the CPU maps no vidmem)."""
    residency, perm, accessed_by, read_dup = va.residency, va.perm, va.accessed_by, va.read_dup
    for q in range(1, perm.shape[0]):
        last = -2  # the last remote page mapped: a page right after it extends its run
        for k in range(pages.shape[0]):
            g = lo + pages[k]
            if accessed_by[g] >> q & 1 and read_dup[g] != READ_DUP_ON:
                perm[q, g] = PERM_ATOMIC
                if not residency[g] >> q & 1:
                    if g != last + 1:
                        ctr[REMOTE_MAPS] += 1
                    last = g
