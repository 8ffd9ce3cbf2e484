"""Copies and mappings of one VA block's pages (uvm_va_block.c): counting a block's copies by
cause and charging their time, and mapping pages for a processor.

Used by the block's fault service (``va_block``) and by eviction, which both move and map pages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.driver import tools
from uvmlab.driver.perf import events as pe
from uvmlab.driver.va_space import (
    BLOCK_SHIFT,
    CPU,
    PERM_ATOMIC,
    PERM_WRITE,
    READ_DUP_ENABLED,
    VaSpace,
)

if TYPE_CHECKING:
    from uvmlab.driver.uvm import UvmDriver

# migration cause (the driver's uvm_make_resident_cause_t) -> (counter suffix, Tools cause)
CAUSES = {
    "fault": ("fault", tools.CAUSE_COHERENCE),
    "prefetch": ("prefetch", tools.CAUSE_PREFETCH),
    "eviction": ("eviction", tools.CAUSE_EVICTION),
    "user": ("user", tools.CAUSE_USER),
    "access_counter": ("access_counter", tools.CAUSE_ACCESS_COUNTERS),
}


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) runs of True in a boolean array."""
    if not mask.any():
        return []
    d = np.diff(np.concatenate(([0], mask.view(np.int8), [0])))
    starts = np.flatnonzero(d == 1)
    stops = np.flatnonzero(d == -1)
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def record_copies(
    drv: UvmDriver,
    block: int,
    lo: int,
    dest: int,
    src: int,
    copied: np.ndarray,
    prefetched: np.ndarray | None,
    cause: str,
    transfer_copy: bool = False,
    notify: bool = True,
) -> None:
    """Count one migration per contiguous run of one cause (uvm_va_block_make_resident_copy step 4)
    and charge its time.

    A copy between two GPUs (``dtod``) runs over their peer link at the topology's peer copy
    bandwidth and is counted per ordered pair; ``notify=False`` for the first leg of a copy
    staged through sysmem, which is not a migration of its own to the thrashing detector.
    """
    to_gpu = dest != CPU
    peer = to_gpu and src != CPU
    direction = "dtod" if peer else ("htod" if to_gpu else "dtoh")
    prof = drv.profile
    c = drv.counters
    # The block's copies are pushed together and waited for once: one latency, then bandwidth.
    drv.charge(prof.copy_latency_ns if cause != "user" else prof.migrate_block_ns)
    for which, mask in (
        ("main", copied & ~prefetched if prefetched is not None else copied),
        ("prefetch", copied & prefetched if prefetched is not None else None),
    ):
        if mask is None:
            continue
        run_cause = "prefetch" if which == "prefetch" else cause
        suffix, tools_cause = CAUSES[run_cause]
        for s, e in _runs(mask):
            nbytes = (e - s) * PAGE_SIZE
            c["bytes_" + direction] += nbytes
            c[f"bytes_{direction}_{suffix}"] += nbytes
            c["migrations"] += 1
            if peer:
                c[f"bytes_gpu{src - 1}_to_gpu{dest - 1}"] += nbytes
                bw = drv.topology.peer_gbps
            elif cause != "user":
                bw = prof.htod_gbps if to_gpu else prof.dtoh_gbps
            else:
                bw = prof.prefetch_htod_gbps if to_gpu else prof.prefetch_dtoh_gbps
            drv.charge(nbytes / bw)
            drv.log.add(drv.now_ns, tools.MIGRATION, dest, (lo + s) * PAGE_SIZE, nbytes, tools_cause, src)
            if notify and run_cause not in ("eviction",):
                drv.perf_events.notify(
                    pe.MIGRATION,
                    block=block,
                    pages=np.arange(s, e) + (lo - (block << BLOCK_SHIFT)),
                    dst=dest,
                    cause=run_cause,
                    now_ns=drv.now_ns,
                    transfer_copy=transfer_copy,
                    read_dup_enabled=bool(drv.va.read_dup[lo + s] == READ_DUP_ENABLED),
                )


def copy_to(
    drv: UvmDriver,
    block: int,
    lo: int,
    dest: int,
    need_copy: np.ndarray,
    res: np.ndarray,
    prefetched: np.ndarray | None,
    cause: str,
    transfer_copy: bool = False,
) -> None:
    """``block_copy_resident_pages``: copy the pages of ``need_copy`` to ``dest``, each from the
    closest holder ``dest`` can copy from directly (the CPU, a peer with a copy mode); pages
    only held by GPUs that ``dest`` cannot reach are staged through sysmem (down, then up)."""
    left = need_copy
    for src in drv.topology.copy_sources(dest):
        from_src = left & ((res >> src) & 1).astype(bool)
        if from_src.any():
            record_copies(drv, block, lo, dest, src, from_src, prefetched, cause, transfer_copy)
            left = left & ~from_src
    for src in range(1, drv.va.n_procs):
        staged = left & ((res >> src) & 1).astype(bool)
        if staged.any():
            record_copies(drv, block, lo, CPU, src, staged, prefetched, cause, transfer_copy, notify=False)
            record_copies(drv, block, lo, dest, CPU, staged, prefetched, cause, transfer_copy)
            left = left & ~staged


def accessed_by_permission(va: VaSpace, proc: int, residency: int) -> int:
    """The permission of an AccessedBy mapping (``uvm_va_block_add_mappings_after_migration``:
    the highest possible). A GPU's mapping of sysmem allows atomics: on the H100/H200 captures,
    GPU atomics through a SetAccessedBy mapping to CPU memory raised no faults."""
    if va.has_native_atomics(proc, residency) or (proc != CPU and residency == CPU):
        return PERM_ATOMIC
    return PERM_WRITE


def map_pages(drv: UvmDriver, proc: int, pages: np.ndarray, perm: int, cause: str = "Policy") -> None:
    """Give ``proc`` a mapping with permission ``perm`` on global ``pages`` (sorted); count the
    mappings that point at another processor's memory as MapRemote (one per contiguous run)."""
    if len(pages) == 0:
        return
    va = drv.va
    va.perm[proc, pages] = perm
    remote = (va.residency[pages] >> proc & 1) == 0
    if remote.any():
        rp = pages[remote]
        n_runs = 1 + int(np.count_nonzero(np.diff(rp) != 1))
        drv.counters["remote_maps"] += n_runs
        drv.log.add(drv.now_ns, tools.MAP_REMOTE, proc, int(rp[0]) * PAGE_SIZE, len(rp) * PAGE_SIZE, cause)
