"""Explicit migration: ``UVM_MIGRATE`` / cudaMemPrefetchAsync (uvm_migrate.c).

Each VA block of the range is made resident on the destination with cause *User*: no
prefetcher, no thrashing hint, and the pages' thrashing state is reset. Pages resident nowhere
are populated at the destination. Mapping step (``block_migrate_add_mappings``): pages the
destination does not map get an RWA mapping there; AccessedBy processors are re-mapped. The
two-pass split and the CPU pre-unmap only matter with NVLink/C2C and are not modeled (uvm_migrate.c:
"on the PCIe test platform it never runs").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from uvmlab.driver import va_block as vb
from uvmlab.driver.compiled.state import DONE, NEED_CHUNK
from uvmlab.driver.va_space import BLOCK_SHIFT, PERM_ATOMIC, READ_DUP_ENABLED

if TYPE_CHECKING:
    from uvmlab.driver.uvm import UvmDriver


def migrate(drv: UvmDriver, first_page: int, num_pages: int, dest: int) -> None:
    """Migrate global pages [first_page, first_page + num_pages) to processor ``dest``: block
    by block on the compiled path while it may run (``compiled.migrate``), else here."""
    drv.migrate_calls += 1
    end = first_page + num_pages
    fast = drv.fast if drv.fast is not None and drv.hooks is None and drv.fast.usable() else None
    block, last = first_page >> BLOCK_SHIFT, (end - 1) >> BLOCK_SHIFT
    while block <= last:
        if fast is not None:
            block, status = fast.migrate_blocks(first_page, end, dest, block)
            if status == DONE:
                return
            if status == NEED_CHUNK:  # eviction with re-mapping stays in Python
                vb.ensure_gpu_chunk(drv, block, dest, fast.evict_block_chunk)
                continue
        migrate_block(drv, block, first_page, end, dest)
        block += 1


def migrate_block(drv: UvmDriver, block: int, first_page: int, end: int, dest: int) -> None:
    """The reference path: migrate the pages of ``block`` in [first_page, end) to ``dest``."""
    va = drv.va
    lo, hi = va.block_range(block)
    s, e = max(lo, first_page), min(hi, end)
    if s >= e:
        return
    mask = np.zeros(hi - lo, dtype=bool)
    mask[s - lo : e - lo] = True
    rd = va.read_dup[s:e] == READ_DUP_ENABLED
    if rd.any():
        dup = np.zeros(hi - lo, dtype=bool)
        dup[s - lo : e - lo] = rd
        vb.make_resident(drv, block, dest, dup, "user", read_duplicate=True)
        mask &= ~dup
    if mask.any():
        vb.make_resident(drv, block, dest, mask, "user")
    pages = np.arange(s, e)
    unmapped = va.perm[dest, pages] == 0
    resident_here = (va.residency[pages] >> dest & 1).astype(bool)
    sel = unmapped & resident_here
    # duplicated pages stay read-only everywhere; the others get RWA (one call per
    # permission: a single call with the highest would map duplicates writable)
    for part, perm in ((sel & rd, 1), (sel & ~rd, PERM_ATOMIC)):
        if part.any():
            vb.map_pages(drv, dest, pages[part], perm)
    acc_by = va.accessed_by[pages]
    for q in range(va.n_procs):
        sel = ((acc_by >> q) & 1).astype(bool) & (q != dest)
        if sel.any() and va.can_access(q, dest):
            vb.map_pages(drv, q, pages[sel], vb.accessed_by_permission(va, q, dest))
