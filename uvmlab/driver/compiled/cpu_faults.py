"""CPU faults on the compiled path: the engine's CPU loop and one fault's service
(``uvm_va_space_cpu_fault``, uvm_va_block.c).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from uvmlab.driver.compiled.blocks import block_mode, dest_is_requester, plan_pages
from uvmlab.driver.compiled.borrow import borrow_pmm, borrow_sc, borrow_th, borrow_va, view
from uvmlab.driver.compiled.prefetch import prefetch_pages
from uvmlab.driver.compiled.residency import make_resident_and_map, map_accessed_by
from uvmlab.driver.compiled.scan import cpu_scan
from uvmlab.driver.compiled.state import (
    ADVISED,
    CPU_FAULTS,
    DONE,
    PAUSE,
    READ_DUP_ON,
    SLOW,
    Costs,
    Scratch,
    ThrashingState,
    VaArrays,
)
from uvmlab.driver.perf.prefetch import PrefetchParams
from uvmlab.driver.pmm_lists import PmmArrays
from uvmlab.driver.va_space import BLOCK_SHIFT, CPU, PERM_WRITE


@njit(cache=True)
def cpu_touches(
    va: VaArrays,
    pmm: PmmArrays,
    n_chunks: int,
    th: ThrashingState,
    pf: PrefetchParams,
    costs: Costs,
    ctr: np.ndarray,
    sc: Scratch,
    page: np.ndarray,
    acc: np.ndarray,
    pos: int,
    n: int,
    clock: float,
    per_touch: float,
    max_faults: int,
) -> tuple[int, float, int, int, int, int]:
    """The CPU phase loop of ``Engine._run_cpu`` (scan to the next miss, advance the clock by
    the hits' compute share, service the fault synchronously), with the same arithmetic."""
    work_arr = np.zeros(1)
    # borrowed views (compiled.borrow): the per-fault helpers bind them without atomics
    bva, bpmm, bth, bsc = borrow_va(va), borrow_pmm(pmm), borrow_th(th), borrow_sc(sc)
    bctr, work = view(ctr), view(work_arr)
    perm = bva.perm[CPU]
    touches = 0
    faults = 0
    now = 0
    while True:
        hit_end = cpu_scan(page, acc, pos, n, perm)
        clock += (hit_end - pos) * per_touch
        touches += hit_end - pos
        pos = hit_end
        if hit_end == n:
            return pos, clock, touches, faults, now, DONE
        if faults == max_faults:
            return pos, clock, touches, faults, now, PAUSE
        t = int(clock)
        work[0] = 0.0
        if cpu_fault(bva, bpmm, n_chunks, bth, pf, costs, bctr, bsc, work, t, page[pos], acc[pos]) != DONE:
            return pos, clock, touches, faults, now, SLOW
        now = t
        clock += 0.0 + work[0]  # cpu_fault returns waited (0.0: never throttled) + the work
        faults += 1


@njit(cache=True, inline="always")
def cpu_fault(
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
    page: int,
    access: int,
) -> int:
    """the CPU fault path of uvm_va_block.c for one CPU fault (never throttled: the block has no per-page
    thrashing state). The CPU maps no vidmem, so AccessedBy CPU never keeps a page remote
    (rule 10); AccessedBy GPUs map the pages made resident afterwards."""
    block = page >> BLOCK_SHIFT
    lo = block << BLOCK_SHIFT
    n = va.block_pages[block]
    mode = block_mode(va, th, block)
    if mode == 0:
        return SLOW
    r = va.residency[page]
    dup_ok = -1
    if mode == ADVISED:
        rd = va.read_dup[page]
        if r & (r - 1) or rd == READ_DUP_ON:
            # block_select_processor_residency rules 3-4: a write collapses the copies onto the CPU, a read
            # duplicates
            if access < PERM_WRITE:
                return SLOW
            dup_ok = page
        elif not dest_is_requester(va.preferred[page] - 1, r, CPU):
            return SLOW
    elif r & (r - 1):
        return SLOW
    sc.fpages[0] = page - lo
    m, pf_count = prefetch_pages(va, pf, block, lo, n, CPU, 1, mode, sc, sc.extra, False)
    if m > 1 and va.read_dup[lo] == READ_DUP_ON:
        return SLOW  # prefetched pages would be read-duplicated
    pages, extra, need_copy = sc.pages[:m], sc.extra[:m], sc.need_copy[:m]
    if not plan_pages(va, th, block, lo, CPU, CPU, pages, now, dup_ok, need_copy):
        return SLOW
    ctr[CPU_FAULTS] += 1
    # a page already on the CPU copies nothing: the fault only revokes the other copies
    work[0] += costs.cpu_fault_resident_ns if r & 1 else costs.cpu_fault_ns
    if pf.enable:
        va.prefetch_last_proc[block] = CPU
        va.prefetch_fault_migrations[block] = pf_count
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
        CPU,
        CPU,
        pages,
        need_copy,
        extra,
        now,
        False,
        False,
    )
    if mode == ADVISED:
        map_accessed_by(va, ctr, lo, pages)
    return DONE
