"""Explicit migration on the compiled path: ``UVM_MIGRATE`` / cudaMemPrefetchAsync (uvm_migrate.c),
block by block as ``driver.migrate`` does it, with no Python per block.

A block is made resident on the destination with cause *User* (a MOVE: no prefetcher, no
thrashing hint) and mapped (``block_migrate_add_mappings``). The compiled path takes blocks
without read duplication ENABLED on the migrated pages (a COPY next to a MOVE: two
make_resident calls) and without per-page thrashing state (a User migration resets it); a block
that needs a root chunk when none is free and whose victim has AccessedBy mappings to re-create
is handed back (NEED_CHUNK), any other it does not take as SLOW: the caller migrates it on the
reference path and resumes at the next block.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.driver.compiled.blocks import block_mode
from uvmlab.driver.compiled.borrow import borrow_pmm, borrow_sc, borrow_th, borrow_va, view
from uvmlab.driver.compiled.eviction import count_migration, victim_is_plain
from uvmlab.driver.compiled.residency import map_accessed_by, prepare_dest, unmap_for_move, update_lists
from uvmlab.driver.compiled.state import (
    ADVISED,
    DONE,
    DTOH,
    DTOH_USER,
    HTOD,
    HTOD_USER,
    NEED_CHUNK,
    READ_DUP_ON,
    SLOW,
    Costs,
    Scratch,
    ThrashingState,
    VaArrays,
)
from uvmlab.driver.pmm_lists import LIST_FREE, PmmArrays
from uvmlab.driver.va_space import BLOCK_SHIFT, CPU, PERM_ATOMIC


@njit(cache=True)
def migrate_blocks(
    va: VaArrays,
    pmm: PmmArrays,
    n_chunks: int,
    th: ThrashingState,
    costs: Costs,
    ctr: np.ndarray,
    sc: Scratch,
    work: np.ndarray,
    first: int,
    end: int,
    dest: int,
    block: int,
    may_evict: bool,
) -> tuple[int, int]:
    """Migrate the pages ``[first, end)`` of blocks ``block, block+1, ...`` to ``dest`` until
    one needs the reference path; return (that block, SLOW / NEED_CHUNK), or (the block after
    the last, DONE)."""
    bva, bpmm, bth, bsc = borrow_va(va), borrow_pmm(pmm), borrow_th(th), borrow_sc(sc)
    bctr, bwork = view(ctr), view(work)
    last = (end - 1) >> BLOCK_SHIFT
    while block <= last:
        status = migrate_block(
            bva, bpmm, n_chunks, bth, costs, bctr, bsc, bwork, first, end, dest, block, may_evict
        )
        if status != DONE:
            return block, status
        block += 1
    return block, DONE


@njit(cache=True, inline="always")
def migrate_block(
    va: VaArrays,
    pmm: PmmArrays,
    n_chunks: int,
    th: ThrashingState,
    costs: Costs,
    ctr: np.ndarray,
    sc: Scratch,
    work: np.ndarray,
    first: int,
    end: int,
    dest: int,
    block: int,
    may_evict: bool,
) -> int:
    """``driver.migrate`` for one block: make_resident (MOVE, cause User), then the destination
    maps what it does not map yet (RWA) and the AccessedBy processors are re-mapped."""
    lo = block << BLOCK_SHIFT
    n = va.block_pages[block]
    s = max(lo, first)
    e = min(lo + n, end)
    if s >= e:
        return DONE
    mode = block_mode(va, th, block)
    if mode == 0:
        return SLOW
    residency, perm, read_dup = va.residency, va.perm, va.read_dup
    dbit = np.uint8(1 << dest)
    m = e - s
    pages, need_copy = sc.pages[:m], sc.need_copy[:m]
    for k in range(m):
        g = s + k
        if mode == ADVISED and read_dup[g] == READ_DUP_ON:
            return SLOW  # uvm_va_block_make_resident_read_duplicate next to the MOVE
        pages[k] = g - lo
        r = residency[g]
        need_copy[k] = r != 0 and not r & dbit
    if (
        dest != CPU
        and va.gpu_chunk[dest - 1, block] < 0
        and pmm.list_count[LIST_FREE] == 0
        and not (may_evict and victim_is_plain(va, pmm, n_chunks, dest))
    ):
        return NEED_CHUNK  # nothing changed yet: the caller evicts, then calls again
    prepare_dest(va, pmm, n_chunks, costs, ctr, work, block, lo, dest, pages, need_copy)
    # MOVE: every processor is unmapped from the pages not only on dest (pages[k] = s - lo + k)
    left_gpu, has_copy = unmap_for_move(residency, perm, dbit, lo, pages, need_copy)
    if has_copy:
        record_user_copies(costs, ctr, work, dest, need_copy)
    for k in range(m):
        residency[s + k] = dbit
    update_lists(va, pmm, n_chunks, block, lo, n, dest, False, left_gpu)
    # block_migrate_add_mappings: RWA where dest has no mapping (every page is on dest now)
    for k in range(m):
        if perm[dest, s + k] == 0:
            perm[dest, s + k] = PERM_ATOMIC
    if mode == ADVISED and dest == CPU:  # the CPU maps no vidmem: only a CPU copy is mapped by others
        map_accessed_by(va, ctr, lo, pages)
    return DONE


@njit(cache=True, inline="always")
def record_user_copies(
    costs: Costs, ctr: np.ndarray, work: np.ndarray, dest: int, need_copy: np.ndarray
) -> None:
    """``block_copy.record_copies`` for cause User: the block's migrate cost, then one migration
    per run of contiguous pages at the prefetch bandwidth (no thrashing event: user commands
    take precedence over the heuristics)."""
    work[0] += costs.migrate_block_ns
    m = need_copy.shape[0]
    k = 0
    while k < m:
        if not need_copy[k]:
            k += 1
            continue
        j = k + 1
        while j < m and need_copy[j]:
            j += 1
        if dest != CPU:
            count_migration(ctr, work, (j - k) * PAGE_SIZE, HTOD, HTOD_USER, costs.prefetch_htod_gbps)
        else:
            count_migration(ctr, work, (j - k) * PAGE_SIZE, DTOH, DTOH_USER, costs.prefetch_dtoh_gbps)
        k = j
