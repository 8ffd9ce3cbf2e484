"""Eviction of GPU root chunks under oversubscription (uvm_pmm_gpu.c, uvm_va_block.c).

A full 2 MiB VA block is backed by exactly one root chunk, so evicting a chunk moves that block's
GPU-resident pages to the CPU in one go (``uvm_va_block_evict_chunks``), with cause EVICTION.
Evictions never feed thrashing detection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.driver import tools
from uvmlab.driver.block_copy import accessed_by_permission, map_pages, record_copies
from uvmlab.driver.va_space import CPU

if TYPE_CHECKING:
    from uvmlab.driver.uvm import UvmDriver


class NoEvictableMemory(Exception):
    """No victim exists (uvm_pmm_gpu.c): the fault service fails with NV_ERR_NO_MEMORY, a global error
    that cancels the batch and ends the context (not a user error: the engine records it)."""


#: evicts one block's chunk: (driver, gpu, block, chunk); ``evict_block_chunk`` or the
#: compiled fault path's equivalent (``FastPath.evict_block_chunk``)
Evictor = Callable[["UvmDriver", int, int, int], None]


def evict_for_allocation(drv: UvmDriver, gpu: int, for_block: int, evict: Evictor | None = None) -> int:
    """``UVM_PMM_ALLOC_FLAGS_EVICT``: pick a victim root chunk, evict it, hand it to ``for_block``."""
    pmm = drv.pmm[gpu - 1]
    victim = pick_victim(drv, gpu)
    if victim < 0:
        raise NoEvictableMemory(f"gpu{gpu - 1}: no GPU memory left and nothing evictable")
    owner = int(pmm.owner[victim])
    if owner >= 0:
        if drv.share is None:
            (evict or evict_block_chunk)(drv, gpu, owner, victim)
        else:  # the victim may be another VA space's block (one PMM per GPU, pmm_share.py)
            _evict_shared(drv, gpu, owner, victim)
    pmm.finish_eviction(victim, drv.owner_base + for_block)
    return victim


def _evict_shared(drv: UvmDriver, gpu: int, owner: int, victim: int) -> None:
    """Evict a chunk of whichever VA space owns it; the work is done for ``drv``'s fault."""
    assert drv.share is not None  # only drivers on a shared PMM get here
    space, block = drv.share.space_of(owner)
    space.now_ns = drv.now_ns
    before = space.counters["bytes_dtoh_eviction"]
    evict_block_chunk(space, gpu, block, victim)
    drv.share.record_eviction(drv.tenant, space.tenant, space.counters["bytes_dtoh_eviction"] - before)
    if space is not drv:
        drv.charge(space.take_work())  # the faulting process waits for the eviction


def pick_victim(drv: UvmDriver, gpu: int) -> int:
    """``pick_root_chunk_to_evict`` (uvm_pmm_gpu.c); an eviction policy hook may reorder the lists first."""
    pmm = drv.pmm[gpu - 1]
    if drv.hooks is not None:
        drv.hooks.eviction_prepare(drv, gpu)
    return pmm.pick_root_chunk_to_evict()


def evict_block_chunk(drv: UvmDriver, gpu: int, block: int, chunk: int) -> None:
    """``evict_root_chunk_from_va_block`` (uvm_pmm_gpu.c): move the block's pages on ``gpu`` to the CPU."""
    va = drv.va
    lo, hi = va.block_range(block)
    res = va.residency[lo:hi]
    gbit = np.uint8(1 << gpu)
    on_gpu = (res & gbit) != 0
    only_gpu = on_gpu & (res == gbit)  # duplicates already on the CPU need no copy
    drv.counters["evictions"] += 1
    drv.counters["pages_evicted"] += int(on_gpu.sum())
    drv.charge(drv.profile.evict_chunk_ns)
    drv.log.add(
        drv.now_ns, tools.EVICTION, gpu, lo * PAGE_SIZE, int(on_gpu.sum()) * PAGE_SIZE, tools.CAUSE_EVICTION
    )
    if only_gpu.any():
        record_copies(drv, block, lo, CPU, gpu, only_gpu, None, "eviction")
    # make_resident's unmap step: every mapping of the evicted copy goes. Another GPU holding
    # its own (read-duplicated) copy maps that one and keeps it; there is none with one GPU.
    for q in range(va.n_procs):
        drop = on_gpu if q in (CPU, gpu) else on_gpu & ~((res >> q) & 1).astype(bool)
        va.perm[q, lo:hi][drop] = 0
    res[on_gpu] &= ~gbit
    res[only_gpu] = 1 << CPU
    va.gpu_chunk[gpu - 1, block] = -1
    # Deferred block_add_eviction_mappings: AccessedBy GPUs are re-mapped to the closest copy
    # left (sysmem, or a peer's duplicate). map_remote_on_eviction only applies with
    # access-counter migrations on (uvm_va_block.c).
    acc_by = va.accessed_by[lo:hi]
    for q in range(1, va.n_procs):
        remap = on_gpu & ((acc_by >> q) & 1).astype(bool) & (va.perm[q, lo:hi] == 0)
        if q == gpu and drv.access_counters.migration_enabled and drv.params.uvm_perf_map_remote_on_eviction:
            remap |= on_gpu
        if not remap.any():
            continue  # the common case: nothing to re-map (topology_order is not free)
        for holder in va.topology_order(q):
            sel = remap & ((res >> holder) & 1).astype(bool)
            if sel.any() and va.can_access(q, holder):
                map_pages(
                    drv, q, np.flatnonzero(sel) + lo, accessed_by_permission(va, q, holder), cause="Eviction"
                )
            remap = remap & ~sel
