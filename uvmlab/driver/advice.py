"""Memory advice: preferred location, accessed-by, read duplication (uvm_policy.c).

The policy is stored per page (see ``va_space``), so advice on any sub-range is exact without
splitting ranges. Immediate effects follow the ioctls 42-47; the effect at fault time is in
``va_block.select_residency``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from uvmlab.driver import va_block as vb
from uvmlab.driver.compiled.state import DONE
from uvmlab.driver.va_space import (
    BLOCK_SHIFT,
    PERM_ATOMIC,
    PERM_READ,
    READ_DUP_DISABLED,
    READ_DUP_ENABLED,
)
from uvmlab.workload.ir import Advice

if TYPE_CHECKING:
    from uvmlab.driver.uvm import UvmDriver


def advise(drv: UvmDriver, first_page: int, num_pages: int, advice: Advice, proc: int) -> None:
    va = drv.va
    sl = slice(first_page, first_page + num_pages)
    blocks = ((first_page + num_pages - 1) >> BLOCK_SHIFT) - (first_page >> BLOCK_SHIFT) + 1
    drv.charge(blocks * drv.profile.advise_block_ns)
    # blocks that may now carry advice: the compiled fault path checks their pages
    va.block_advised[first_page >> BLOCK_SHIFT : (first_page >> BLOCK_SHIFT) + blocks] = True
    if advice == Advice.SET_PREFERRED_LOCATION:
        va.preferred[sl] = proc + 1
        # The preferred processor's remote mappings to pages not resident on it are unmapped,
        # so it faults and pulls the data; nothing migrates now.
        remote = (va.residency[sl] >> proc & 1) == 0
        va.perm[proc, sl][remote] = 0
    elif advice == Advice.UNSET_PREFERRED_LOCATION:
        va.preferred[sl] = 0
    elif advice == Advice.SET_ACCESSED_BY:
        va.accessed_by[sl] |= np.uint8(1 << proc)
        va.accessed_by_procs |= 1 << proc
        # Map the processor now to wherever each page lives (skipped for read-duplicated ranges)
        pages = np.arange(first_page, first_page + num_pages)
        res = va.residency[pages]
        ok = (res != 0) & (va.read_dup[pages] != READ_DUP_ENABLED) & (va.perm[proc, pages] == 0)
        for holder in range(va.n_procs):
            sel = ok & ((res >> holder) & 1).astype(bool) & va.can_access(proc, holder)
            if sel.any():
                vb.map_pages(drv, proc, pages[sel], vb.accessed_by_permission(va, proc, holder))
                ok &= ~sel
    elif advice == Advice.UNSET_ACCESSED_BY:
        va.accessed_by[sl] &= np.uint8(~(1 << proc) & 0xFF)
    elif advice == Advice.SET_READ_MOSTLY:
        va.read_dup[sl] = READ_DUP_ENABLED
        # Existing copies are re-duplicated in place: holders keep read-only mappings, other
        # (remote / AccessedBy) mappings are broken.
        pages = np.arange(first_page, first_page + num_pages)
        res = va.residency[pages]
        drv.charge(int(np.count_nonzero(res)) * drv.profile.read_dup_page_ns)
        for q in range(va.n_procs):
            holds = ((res >> q) & 1).astype(bool)
            pq = va.perm[q, pages]
            va.perm[q, pages] = np.where(holds, np.minimum(pq, PERM_READ), 0)
    elif advice == Advice.UNSET_READ_MOSTLY:
        va.read_dup[sl] = READ_DUP_DISABLED
        _collapse_duplicates(drv, first_page, num_pages)


def _collapse_duplicates(drv: UvmDriver, first_page: int, num_pages: int) -> None:
    """Collapse read-duplicated pages onto the preferred location if it holds a copy, else onto
    the first holder in processor-id order — the CPU (id 0) first. The captures confirm it: after
    UVM_DISABLE_READ_DUPLICATION the next GPU write migrates the pages back from the CPU.
    Block by block on the compiled path while it may run (``compiled.advice``), else here."""
    end = first_page + num_pages
    fast = drv.fast if drv.fast is not None and drv.hooks is None and drv.fast.usable() else None
    block, last = first_page >> BLOCK_SHIFT, (end - 1) >> BLOCK_SHIFT
    while block <= last:
        if fast is not None:
            block, status = fast.collapse_duplicates(first_page, end, block)
            if status == DONE:
                return
        _collapse_block(drv, block, first_page, end)
        block += 1


def _collapse_block(drv: UvmDriver, block: int, first_page: int, end: int) -> None:
    """The reference path: collapse the duplicated pages of ``block`` in [first_page, end)."""
    va = drv.va
    lo, hi = va.block_range(block)
    s, e = max(lo, first_page), min(hi, end)
    res = va.residency[lo:hi]
    dup = np.zeros(hi - lo, dtype=bool)
    dup[s - lo : e - lo] = (res[s - lo : e - lo] & (res[s - lo : e - lo] - 1)) != 0
    if not dup.any():
        return
    pref = va.preferred[lo:hi].astype(np.int16) - 1
    order = range(va.n_procs)
    for only_preferred in (True, False):
        for target in order:
            sel = dup & ((res >> target) & 1).astype(bool)
            if only_preferred:
                sel &= pref == target
            if sel.any():
                vb.make_resident(drv, block, target, sel, "user")
                vb.map_pages(drv, target, np.flatnonzero(sel) + lo, PERM_ATOMIC)
                dup &= ~sel
