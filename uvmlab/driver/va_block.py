"""Residency selection, make-resident and mapping for one VA block (uvm_va_block.c).

All functions take the driver and work on numpy slices of one block's pages (at most 512), so
the Python overhead is per block operation, never per page.

Driver functions modelled here (uvm_va_block.c): ``uvm_va_block_select_residency``,
``compute_new_permission``, ``uvm_va_block_service_locked``, ``uvm_va_block_make_resident_copy``,
``uvm_va_block_make_resident_read_duplicate`` and ``block_alloc_gpu_chunk`` (chunk allocation,
with eviction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.driver.block_copy import accessed_by_permission, copy_to, map_pages
from uvmlab.driver.eviction import Evictor, evict_for_allocation
from uvmlab.driver.perf import events as pe
from uvmlab.driver.perf import prefetch as pf
from uvmlab.driver.perf.thrashing_state import HINT_NONE, HINT_PIN, Hint
from uvmlab.driver.va_space import (
    BLOCK_SHIFT,
    CPU,
    PERM_ATOMIC,
    PERM_READ,
    PERM_WRITE,
    READ_DUP_DISABLED,
    READ_DUP_ENABLED,
)
from uvmlab.workload.ir import Access

if TYPE_CHECKING:
    from uvmlab.driver.uvm import UvmDriver


def select_residency(
    drv: UvmDriver, page: int, requester: int, access: int, hint: Hint | None
) -> tuple[int, bool]:
    """``block_select_processor_residency`` (uvm_va_block.c): (destination, read-duplicate?) for one page."""
    va = drv.va
    rd_policy = int(va.read_dup[page])
    resident = int(va.residency[page])
    hint_kind = HINT_NONE if hint is None else hint.kind
    duplicated = resident & (resident - 1) != 0  # on more than one processor
    may_read_dup = rd_policy == READ_DUP_ENABLED or (
        rd_policy != READ_DUP_DISABLED and duplicated and hint_kind != HINT_PIN
    )
    if may_read_dup:
        return requester, access <= Access.READ  # rules 3 and 4
    pref = int(va.preferred[page]) - 1
    if requester == pref:  # rule 5
        return requester, False
    if hint is not None and hint.kind == HINT_PIN:  # rule 7
        return hint.residency, False
    if resident == 0:  # rule 9: first touch
        if pref >= 0 and va.can_access(requester, pref):
            return pref, False
        return requester, False
    closest = va.closest_resident(resident, requester)
    if va.accessed_by[page] >> requester & 1 and va.can_access(requester, closest):
        return closest, False  # rule 10: keep in place, map remotely
    if closest != requester and pref >= 0 and va.can_access(requester, pref):
        return pref, False  # rule 12
    return requester, False  # rule 14


def new_permissions(
    drv: UvmDriver, requester: int, residency: int, access: np.ndarray, read_dup: np.ndarray
) -> np.ndarray:
    """``compute_new_permission`` (uvm_va_block.c) for many pages. CPU writes arrive as ATOMIC
    (ATOMIC_STRONG)."""
    perm = np.where(
        access <= Access.READ, PERM_READ, np.where(access == Access.WRITE, PERM_WRITE, PERM_ATOMIC)
    ).astype(np.uint8)
    perm[(perm == PERM_READ) & ~read_dup] = PERM_WRITE  # so that a later write needs no fault
    if drv.va.has_native_atomics(requester, residency):
        perm[perm == PERM_WRITE] = PERM_ATOMIC
    return perm


def ensure_gpu_chunk(drv: UvmDriver, block: int, gpu: int, evict: Evictor | None = None) -> bool:
    """``block_alloc_gpu_chunk`` (uvm_va_block.c): back the block on ``gpu`` with a 2 MiB root chunk,
    evicting the victim the PMM's list rules pick when no free chunk is left. Returns whether a
    chunk was allocated now. ``evict``: how the victim's pages leave (``evict_block_chunk``;
    the compiled fault path passes its own)."""
    g = gpu - 1
    if drv.va.gpu_chunk[g, block] >= 0:
        return False
    pmm = drv.pmm[g]
    chunk = pmm.alloc_root_chunk(drv.owner_base + block)
    if chunk < 0:
        chunk = evict_for_allocation(drv, gpu, block, evict)
    drv.va.gpu_chunk[g, block] = chunk
    drv.charge(drv.profile.chunk_zero_ns)  # block_zero_new_gpu_chunk: CE memset
    # The chunk stays TEMP_PINNED until the operation ends (uvm_va_block_retry_deinit).
    pmm.unpin_allocated(chunk)
    if drv.hooks is not None:  # chunk_update_lists_locked: tail of the used list, then the hook
        drv.hooks.chunk_activate(drv, gpu, block, chunk)
    return True


def make_resident(
    drv: UvmDriver,
    block: int,
    dest: int,
    mask: np.ndarray,
    cause: str,
    prefetched: np.ndarray | None = None,
    read_duplicate: bool = False,
) -> None:
    """uvm_va_block_make_resident_copy / uvm_va_block_make_resident_read_duplicate: make the pages of
    ``mask`` (block-local) resident on ``dest``.

    MOVE (default) leaves ``dest`` as the only copy; ``read_duplicate`` COPYs and keeps the
    other copies (revoking their write rights).
    """
    va = drv.va
    lo, hi = va.block_range(block)
    res = va.residency[lo:hi]
    bit = np.uint8(1 << dest)
    on_dest = (res & bit) != 0
    # Pages resident nowhere are populated without a copy (first touch); the rest are copied
    # from the closest holder dest can copy from (block_copy.copy_to).
    need_copy = mask & ~on_dest & (res != 0)
    if dest == CPU:  # first touch: the kernel zeroes pages; migrated ones are mapped one by one
        prof = drv.profile
        drv.charge(
            int(np.count_nonzero(mask & (res == 0))) * PAGE_SIZE * prof.cpu_populate_ns_per_byte
            + int(np.count_nonzero(need_copy)) * prof.cpu_map_page_ns
        )
    fresh = dest != CPU and ensure_gpu_chunk(drv, block, dest)
    if read_duplicate:
        # uvm_va_block_make_resident_read_duplicate: everyone but the holder is unmapped, the holder loses
        # write; then copy.
        moving = mask & ~on_dest
        perm = va.perm[:, lo:hi]
        for q in range(va.n_procs):
            if q != dest:
                pq = perm[q]
                holder = (res >> q & 1).astype(bool)
                pq[moving & ~holder] = 0
                np.minimum(pq, PERM_READ, out=pq, where=moving & holder)
        new_dup = need_copy.copy()
        drv.counters["read_duplicates"] += int(new_dup.sum())
    else:
        # MOVE: unmap every processor from pages that are not only on dest (this also
        # invalidates read duplicates, ReadDuplicateInvalidate)
        moving = mask & (res != bit)
        va.perm[:, lo:hi][:, moving] = 0  # dest is re-mapped by the caller
    copy_to(drv, block, lo, dest, need_copy, res, prefetched, cause, transfer_copy=read_duplicate)
    left_gpus = []
    if read_duplicate:
        res[mask] |= bit
    else:
        for q in range(1, va.n_procs):
            if q != dest and np.any(res[moving] >> q & 1):
                left_gpus.append(q)
        res[mask] = bit
    # PMM list upkeep: block_mark_memory_used for the destination GPU (uvm_pmm_gpu.c) ...
    if dest != CPU:
        if drv.hooks is None:
            drv.pmm[dest - 1].mark_used(int(va.gpu_chunk[dest - 1, block]))
        else:  # a chunk allocated by this operation is still pinned in the driver: no hook
            drv.hooks.chunk_used(drv, dest, block, int(va.gpu_chunk[dest - 1, block]), fresh)
    # ... and block_clear_resident_processor for GPUs that lost their last page here.
    for q in left_gpus:
        if not np.any(res >> q & 1):
            chunk = int(va.gpu_chunk[q - 1, block])
            if chunk >= 0:
                drv.pmm[q - 1].mark_unused(chunk)


def revoke_others(drv: UvmDriver, block: int, requester: int, pages: np.ndarray, perm: int) -> None:
    """``block_service_finish_revoke_prot`` (uvm_va_block.c) for pages that kept their residency and that the
    requester now maps with >= RW: other processors lose WRITE (requester RWA) or ATOMIC."""
    va = drv.va
    cap = PERM_READ if (perm == PERM_ATOMIC and requester != CPU) else PERM_WRITE
    for q in range(va.n_procs):
        if q == requester:
            continue
        pq = va.perm[q, pages]
        hit = pq > cap
        if hit.any():
            va.perm[q, pages[hit]] = cap
            local = pages[hit] - (block << BLOCK_SHIFT)
            drv.perf_events.notify(pe.REVOCATION, block=block, pages=local, processor=q, now_ns=drv.now_ns)


def service_locked(
    drv: UvmDriver,
    block: int,
    requester: int,
    new_res: dict[int, np.ndarray],
    access: np.ndarray,
    read_dup: np.ndarray,
    pin: np.ndarray,
    cause: str = "fault",
) -> None:
    """``uvm_va_block_service_locked`` (uvm_va_block.c): prefetch, copy and finish for each destination.

    ``new_res`` maps destination -> block-local boolean mask; ``access`` holds the serviced
    access type per block-local page; ``read_dup`` and ``pin`` are block-local masks.
    """
    va = drv.va
    lo, hi = va.block_range(block)
    n = hi - lo
    prefetched = None
    if cause == "fault" and drv.perf_events.has_listeners(pe.FAULT):
        faulted = np.flatnonzero(np.logical_or.reduce(list(new_res.values())))
        drv.perf_events.notify(pe.FAULT, block=block, pages=faulted, processor=requester, now_ns=drv.now_ns)
    if len(new_res) == 1:  # the prefetcher only runs with a single destination (uvm_perf_prefetch.c)
        ((dest, faulted),) = new_res.items()
        extra = prefetch_pages(drv, block, dest, faulted)
        if extra is not None and extra.any():
            prefetched = extra & ~faulted
            new_res = {dest: faulted | prefetched}
            access = access.copy()
            access[prefetched] = Access.PREFETCH
            if int(va.read_dup[lo]) == READ_DUP_ENABLED:
                read_dup = read_dup | (prefetched & (va.read_dup[lo:hi] == READ_DUP_ENABLED))
    for dest, mask in new_res.items():
        dup = mask & read_dup
        plain = mask & ~read_dup
        if dup.any():
            make_resident(drv, block, dest, dup, cause, prefetched, read_duplicate=True)
        if plain.any():
            unchanged = plain & ((va.residency[lo:hi] >> dest & 1).astype(bool))
            make_resident(drv, block, dest, plain, cause, prefetched)
        else:
            unchanged = np.zeros(n, dtype=bool)
        _finish(drv, block, requester, dest, mask, access, dup, pin, unchanged)


def _finish(
    drv: UvmDriver,
    block: int,
    requester: int,
    dest: int,
    mask: np.ndarray,
    access: np.ndarray,
    dup: np.ndarray,
    pin: np.ndarray,
    unchanged: np.ndarray,
) -> None:
    """``uvm_va_block_service_finish`` (uvm_va_block.c): permissions, revocation, mappings."""
    va = drv.va
    lo = block << BLOCK_SHIFT
    idx = np.flatnonzero(mask)
    perms = new_permissions(drv, requester, dest, access[idx], dup[idx])
    # group pages by their new permission (RO / RW / RWA), as the driver does
    for perm in (PERM_READ, PERM_WRITE, PERM_ATOMIC):
        sel = perms == perm
        if not sel.any():
            continue
        pages = idx[sel] + lo
        if perm >= PERM_WRITE:
            kept = unchanged[idx[sel]]
            if kept.any():
                revoke_others(drv, block, requester, pages[kept], perm)
        pinned = pin[idx[sel]]
        if pinned.any():
            map_pages(drv, requester, pages[pinned], perm, cause="Thrashing")
        map_pages(drv, requester, pages[~pinned], perm, cause="Policy")
    # block_service_finish_map_accessed_by: AccessedBy processors that can reach the new
    # residency get mapped (skipped for ranges with read duplication ENABLED).
    acc_by = va.accessed_by[idx + lo]
    if acc_by.any():
        for q in range(va.n_procs):
            if q == requester or not va.can_access(q, dest):
                continue
            sel = ((acc_by >> q) & 1).astype(bool) & (va.read_dup[idx + lo] != READ_DUP_ENABLED)
            if sel.any():
                map_pages(drv, q, idx[sel] + lo, accessed_by_permission(va, q, dest))


def prefetch_pages(drv: UvmDriver, block: int, dest: int, faulted: np.ndarray) -> np.ndarray | None:
    """uvm_perf_prefetch.c: the prefetch hint (``uvm_va_block_get_prefetch_hint``) for one destination, or
    None."""
    va = drv.va
    pp = drv.prefetch_params
    lo, hi = va.block_range(block)
    res = va.residency[lo:hi]
    resident = (res >> dest & 1).astype(bool)
    cpu_readable = None
    if dest == CPU:
        cpu_readable = resident & (va.perm[CPU, lo:hi] >= PERM_READ)
    thrashing = drv.thrashing.thrashing_mask(block)[: hi - lo]
    if drv.hooks is not None and drv.hooks.prefetch_active:
        mask = drv.hooks.prefetch_hint(drv, block, dest, faulted, resident, thrashing, cpu_readable)
        if mask is not None:
            return mask if mask.any() else None
    mask = pf.prefetch_hint(
        faulted,
        resident,
        thrashing,
        block=block,
        dest=dest,
        last_proc=va.prefetch_last_proc,
        fault_migrations=va.prefetch_fault_migrations,
        block_first_page_va=lo,
        resident_anywhere_count=int(np.count_nonzero(res)),
        preferred_location=int(va.preferred[lo]) - 1,
        enable=pp.enable,
        min_faults=pp.min_faults,
        big_page_pages=pp.big_page_pages,
        threshold=pp.threshold,
        cpu_resident_readable=cpu_readable,
    )
    return mask if mask.any() else None
