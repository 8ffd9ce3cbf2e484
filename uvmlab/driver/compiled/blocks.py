"""Which blocks and pages the compiled path may service, checked before anything changes:
``block_mode``, ``may_read_dup``, ``remote_by_accessed_by``, ``dest_is_requester`` (residency
selection, uvm_va_block.c), ``plan_pages`` and ``plan_duplicate``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from uvmlab.driver.compiled.state import (
    ADVISED,
    MANAGED,
    NO_STAMP,
    PLAIN,
    READ_DUP_OFF,
    READ_DUP_ON,
    ThrashingState,
    VaArrays,
)
from uvmlab.driver.va_space import CPU, PERM_READ, PERM_WRITE


@njit(cache=True, inline="always")
def block_mode(va: VaArrays, th: ThrashingState, block: int) -> int:
    """How the block may take the compiled path: 0 not at all, PLAIN (advice never touched
    it), ADVISED (advice touched it: preferred location, AccessedBy and read duplication are
    then checked page by page). Always 0 for a block that is not a live managed allocation or
    that has per-page thrashing state (its hints may not be NONE)."""
    block_alloc, alloc_live, alloc_kind = va.block_alloc, va.alloc_live, va.alloc_kind
    a = block_alloc[block]
    if a < 0 or not alloc_live[a] or alloc_kind[a] != MANAGED:
        return 0
    if th.enable and th.block_has_pages[block]:
        return 0
    return ADVISED if va.block_advised[block] else PLAIN


@njit(cache=True, inline="always")
def may_read_dup(rd: int, r: int) -> bool:
    """block_select_processor_residency rules 3-4 apply (hint NONE): read duplication is
    ENABLED, or the page already has copies and it is not DISABLED."""
    return rd == READ_DUP_ON or (rd != READ_DUP_OFF and r & (r - 1) != 0)


@njit(cache=True, inline="always")
def remote_by_accessed_by(accessed_by: int, r: int, requester: int) -> bool:
    """block_select_processor_residency rule 10 for a page with one copy (bits ``r``) and no
    read duplication, after rules 5 and 9: the requester is AccessedBy and can map the holder,
    so the page stays where it is and is mapped remotely (a destination other than the
    requester). PCIe: a GPU maps sysmem, the CPU maps no vidmem."""
    return r != 0 and not r >> requester & 1 and accessed_by >> requester & 1 != 0 and requester != CPU


@njit(cache=True, inline="always")
def dest_is_requester(pref: int, r: int, requester: int) -> bool:
    """block_select_processor_residency for a page with one copy (bits ``r``), no read duplication, no
    AccessedBy and a
    NONE hint: whether the destination is the requester itself. PCIe: a processor maps its
    own memory and sysmem; the CPU maps no vidmem."""
    if pref < 0 or requester == pref:
        return True  # no preferred location (rules 9 / 14), or rule 5
    if r >> requester & 1:
        return True  # the requester holds the copy: rule 14
    # rule 9 (first touch) or 12: the preferred location when the requester can map it, i.e.
    # when it is the CPU (it is not the requester here); else rule 14
    return pref != CPU


@njit(cache=True, inline="always")
def plan_pages(
    va: VaArrays,
    th: ThrashingState,
    block: int,
    lo: int,
    dest: int,
    requester: int,
    pages: np.ndarray,
    now: int,
    dup_ok: int,
    need_copy: np.ndarray,
) -> bool:
    """Checks on the pages to make resident (block-local, ascending): one copy per page (or,
    for the page ``dup_ok``, copies that the MOVE collapses), no revocation to do, no copy of
    a read-duplication page (its perf event resets thrashing state instead), no per-page
    thrashing state created by the copies. Returns whether all hold; ``need_copy`` (as long as
    ``pages``) receives which of them need a copy."""
    residency, perm, read_dup = va.residency, va.perm, va.read_dup
    dbit = 1 << dest
    m = pages.shape[0]
    need_copy[:] = False
    any_copy = False
    # uvm_va_block_service_locked block_service_finish_revoke_prot: the requester maps everything ATOMIC here,
    # which
    # caps the others at READ (GPU requester) or WRITE (CPU requester).
    cap = PERM_READ if requester != CPU else PERM_WRITE
    for k in range(m):
        g = lo + pages[k]
        r = residency[g]
        if r & (r - 1):
            if g != dup_ok or not r & dbit:
                return False  # read duplicates: the reference path
            continue  # MOVE unmaps every copy first: nothing to copy, nothing to revoke
        if r & dbit:
            for q in range(perm.shape[0]):
                if q != requester and perm[q, g] > cap:
                    return False  # a revocation (a perf event) is due
        elif r != 0:
            if read_dup[g] == READ_DUP_ON:
                return False
            need_copy[k] = True
            any_copy = True
    if any_copy and th.enable:
        # thrashing_event_cb: a migration within a lapse of another processor's creates
        # per-page state. Every copy here goes to one destination, so only the first can.
        last_ts = th.block_last_ts[block]
        if (
            last_ts != NO_STAMP
            and th.block_last_proc[block] != dest
            and now >= last_ts
            and now - last_ts <= th.lapse_ns
        ):
            return False
    return True


@njit(cache=True, inline="always")
def plan_duplicate(va: VaArrays, lo: int, dest: int, pages: np.ndarray, need_copy: np.ndarray) -> None:
    """uvm_va_block_make_resident_read_duplicate's plan: the pages with a copy elsewhere and
    none on ``dest`` are copied (COPY: the other copies stay). Nothing to check: the other
    holders only lose WRITE, without a revocation event, and a COPY is no thrashing event."""
    residency = va.residency
    dbit = 1 << dest
    for k in range(pages.shape[0]):
        r = residency[lo + pages[k]]
        need_copy[k] = r != 0 and not r & dbit
