"""The compiled fault path: GPU fault batches, CPU faults and evictions, in numba.

The reference path (``replayable_faults.service_block_faults``, ``cpu_fault.cpu_fault``,
``va_block`` and ``eviction``) handles every case the model knows, in numpy-per-block Python.
Most blocks of most workloads need only a fixed sequence — filter stale faults, ask the
prefetcher, take a root chunk (evicting the LRU victim if none is free), copy, map — which this
module runs as compiled loops over the driver's arrays, with no Python per block. It takes
blocks with no AccessedBy page and no per-page thrashing state (so every thrashing hint is
NONE), whose faulted pages have one copy or, for a CPU write, copies the write collapses, and
whose preferred location (if any) does not send a page elsewhere (§4.1); and only runs whose
per-block decisions nothing steers or observes: no prefetch or thrashing policy, no event log,
no extra perf-event listeners. Eviction and replay policies are fine: with hooks attached the
caller allocates every root chunk (``chunk_activate``, ``eviction_prepare``) and calls
``chunk_used`` where the compiled service stops for it (CHUNK_USED).

Contract: for every block it accepts, the compiled path leaves the model in exactly the state
the reference path would (residency, mappings, prefetch info, PMM lists, thrashing block stamps,
counters) and charges the same costs in the same order, so simulated times are bit-identical
(``tests/test_fast_path.py`` runs every generator, the advice workloads and the parameters that
change the service both ways). It checks everything it needs *before* changing anything; a
block it does not accept is handed back to the caller (SLOW), which services it with the
reference path and resumes at the next block. A block that needs a root chunk when none is free
and whose LRU victim must be re-mapped after eviction (AccessedBy, or map_remote_on_eviction
with access-counter migrations) is handed back as NEED_CHUNK: the caller runs
``ensure_gpu_chunk`` and resumes at the same block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from uvmlab.driver.compiled.scan import cpu_scan
from uvmlab.driver.perf import events as pe
from uvmlab.driver.perf.prefetch import _prefetch_kernel
from uvmlab.driver.pmm import (
    ALLOCATED,
    LIST_FREE,
    LIST_UNUSED,
    LIST_USED,
    TEMP_PINNED,
    chunk_peek_victim,
    chunk_pop_head,
    chunk_push_tail,
    chunk_unlink,
    chunk_update_eviction_list,
)
from uvmlab.driver.va_space import (
    BLOCK_SHIFT,
    CPU,
    PERM_ATOMIC,
    PERM_READ,
    PERM_WRITE,
    READ_DUP_ENABLED,
)
from uvmlab.workload.ir import AllocKind

if TYPE_CHECKING:
    from uvmlab.driver.uvm import UvmDriver

# Outcome of a compiled call.
DONE, SLOW, NEED_CHUNK, PAUSE, CHUNK_USED = 0, 1, 2, 3, 4
# How a block may take the compiled path (see _block_mode).
PLAIN, ADVISED = 1, 2

# Counter deltas returned by the compiled code, in this order.
COUNTERS = (
    "bytes_htod",
    "bytes_htod_fault",
    "bytes_htod_prefetch",
    "bytes_dtoh",
    "bytes_dtoh_fault",
    "bytes_dtoh_prefetch",
    "migrations",
    "cpu_faults",
    "bytes_dtoh_eviction",
    "evictions",
    "pages_evicted",
)
(
    _HTOD,
    _HTOD_FAULT,
    _HTOD_PREFETCH,
    _DTOH,
    _DTOH_FAULT,
    _DTOH_PREFETCH,
    _MIGRATIONS,
    _CPU_FAULTS,
    _DTOH_EVICTION,
    _EVICTIONS,
    _PAGES_EVICTED,
) = range(len(COUNTERS))

# Cost constants passed as one float array, in this order.
_COSTS = (
    "chunk_zero_ns",
    "copy_latency_ns",
    "htod_gbps",
    "dtoh_gbps",
    "fault_block_ns",
    "cpu_fault_ns",
    "cpu_populate_ns_per_byte",
    "cpu_map_page_ns",
    "evict_chunk_ns",
)
_ZERO, _LAT, _HTOD_BW, _DTOH_BW, _BLOCK_NS, _CPU_FAULT_NS, _POPULATE, _MAP, _EVICT = range(len(_COSTS))

_NO_STAMP = -1
_READ_DUP_ENABLED = READ_DUP_ENABLED
_MANAGED = int(AllocKind.MANAGED)


class FastPath:
    """The driver state the compiled code works on, bundled once per driver."""

    def __init__(self, drv: UvmDriver) -> None:
        va, p, th = drv.va, drv.params, drv.thrashing
        self.drv = drv
        self.va = (
            va.residency,
            va.perm,
            va.preferred,
            va.accessed_by,
            va.read_dup,
            va.block_alloc,
            va.block_pages,
            va.alloc_live,
            va.alloc_kind,
            va.gpu_chunk,
            va.prefetch_last_proc,
            va.prefetch_fault_migrations,
            va.block_advised,
        )
        self.pmm = drv.pmm[0].arrays()
        self.n_chunks = drv.pmm[0].n_root_chunks
        self.th = (bool(th.enable), th.lapse_ns, th.block_last_ts, th.block_last_proc, th.block_has_pages)
        self.pf = (
            bool(p.uvm_perf_prefetch_enable),
            int(p.uvm_perf_prefetch_min_faults),
            int(p.uvm_perf_prefetch_threshold),
            drv.gpu.big_page_size // 4096,
        )
        self.costs = np.array([getattr(drv.profile, c) for c in _COSTS], dtype=np.float64)
        self.ctr = np.zeros(len(COUNTERS), dtype=np.int64)
        self._builtin_migration = drv.perf_events.listeners(pe.MIGRATION)

    def usable(self) -> bool:
        """Whether the compiled path may run now: nothing observes or steers the service."""
        drv = self.drv
        ev = drv.perf_events
        return (
            (drv.hooks is None or not drv.hooks.steers_block_service)
            and not drv.log.enabled
            and drv.va.n_procs == 2
            and ev.listeners(pe.MIGRATION) == self._builtin_migration
            and not ev.has_listeners(pe.FAULT)
        )

    def flush_counters(self) -> None:
        """Add the compiled code's counter deltas to the driver's counters."""
        c = self.drv.counters
        for i in np.flatnonzero(self.ctr).tolist():
            c[COUNTERS[i]] += int(self.ctr[i])
        self.ctr[:] = 0

    def service_blocks(
        self,
        gpu: int,
        page: np.ndarray,
        access: np.ndarray,
        keep: np.ndarray,
        starts: np.ndarray,
        stops: np.ndarray,
        k: int,
    ) -> tuple[int, int]:
        """Service the batch's blocks ``k, k+1, ...`` (each followed by its fault_block_ns)
        until one needs the reference path; return (that block's index, SLOW / NEED_CHUNK), or
        (len(starts), DONE). With policy hooks attached, chunks are allocated by the caller
        (NEED_CHUNK: ``chunk_activate``) and a block whose pages were made resident stops as
        CHUNK_USED, serviced but for its ``chunk_used`` hook and its fault_block_ns."""
        drv = self.drv
        work = np.array([drv.work_ns])
        # Evictions whose victims must be re-mapped remotely (AccessedBy, or
        # map_remote_on_eviction with access-counter migrations) stay in Python.
        remap_all = bool(drv.access_counters.migration_enabled and drv.params.uvm_perf_map_remote_on_eviction)
        k, status = _service_blocks(
            self.va,
            self.pmm,
            self.n_chunks,
            self.th,
            self.pf,
            self.costs,
            self.ctr,
            work,
            drv.now_ns,
            gpu,
            page,
            access,
            keep,
            starts,
            stops,
            k,
            not remap_all,
            drv.hooks is not None,
        )
        drv.work_ns = float(work[0])
        self.flush_counters()
        return int(k), int(status)

    def run_cpu_touches(
        self,
        page: np.ndarray,
        acc: np.ndarray,
        pos: int,
        n: int,
        clock: float,
        per_touch: float,
        max_faults: int,
    ) -> tuple[int, float, int, int, int]:
        """Run CPU touches ``pos..n`` as the engine's CPU loop does, servicing faults on plain
        blocks in compiled code. Stops at the end (DONE), before a fault the reference path
        must service (SLOW; the clock includes the touches up to it), or before the fault after
        ``max_faults`` serviced ones (PAUSE). Returns (position, clock, touches completed,
        faults serviced, status); ``drv.now_ns`` is left at the last serviced fault's time."""
        drv = self.drv
        pos, clock, touches, faults, now, status = _cpu_touches(
            self.va,
            self.pmm,
            self.n_chunks,
            self.th,
            self.pf,
            self.costs,
            self.ctr,
            page,
            acc,
            pos,
            n,
            clock,
            per_touch,
            max_faults,
        )
        if faults:
            drv.now_ns = int(now)
            self.flush_counters()
        return int(pos), float(clock), int(touches), int(faults), int(status)


# ---------------------------------------------------------------------------------------------
# compiled helpers
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def _block_mode(va, th, block, lo, n):
    """How the block may take the compiled path: 0 not at all, PLAIN (advice never touched
    it), ADVISED (advice touched it but no page has AccessedBy: preferred location and read
    duplication are then checked page by page). Always 0 for a block that is not a live
    managed allocation or that has per-page thrashing state (its hints may not be NONE)."""
    block_alloc, alloc_live, alloc_kind = va[5], va[7], va[8]
    a = block_alloc[block]
    if a < 0 or not alloc_live[a] or alloc_kind[a] != _MANAGED:
        return 0
    if th[0] and th[4][block]:
        return 0
    if not va[12][block]:
        return PLAIN
    accessed_by = va[3]
    for i in range(lo, lo + n):
        if accessed_by[i] != 0:
            return 0  # AccessedBy mappings after the service: the reference path
    return ADVISED


@njit(cache=True)
def _dest_is_requester(pref, r, requester):
    """§4.1 for a page with one copy (bits ``r``), no read duplication, no AccessedBy and a
    NONE hint: whether the destination is the requester itself. PCIe: a processor maps its
    own memory and sysmem; the CPU maps no vidmem."""
    if pref < 0 or requester == pref:
        return True  # no preferred location (rules 9 / 14), or rule 5
    if r >> requester & 1:
        return True  # the requester holds the copy: rule 14
    # rule 9 (first touch) or 12: the preferred location when the requester can map it, i.e.
    # when it is the CPU (it is not the requester here); else rule 14
    return pref != CPU


@njit(cache=True)
def _prefetch(va, pf, block, lo, n, dest, fpages, nf, mode):
    """§5 ``uvm_va_block_get_prefetch_hint`` without side effects: (the pages to make
    resident — faulted ``fpages[:nf]`` (ascending, block-local) plus the prefetched ones,
    ascending —, which of them are prefetched, the new prefetch_info counter). Mirrors
    ``va_block.prefetch_pages``; with prefetch off or nothing to add the cost is O(faults)."""
    residency, perm = va[0], va[1]
    last_proc, fault_migrations = va[10], va[11]
    enable, min_faults, threshold, big = pf
    if not enable:
        return fpages[:nf], np.zeros(nf, np.bool_), 0
    count = nf if last_proc[block] != dest else fault_migrations[block] + nf
    count &= 0xFFFF
    faulted = np.zeros(n, np.bool_)
    for k in range(nf):
        faulted[fpages[k]] = True
    resident = np.empty(n, np.bool_)
    cpu_rr = np.zeros(n if dest == CPU else 0, np.bool_)  # empty: not a CPU destination
    for i in range(n):
        resident[i] = (residency[lo + i] >> dest) & 1 != 0
        if dest == CPU:
            cpu_rr[i] = resident[i] and perm[CPU, lo + i] >= PERM_READ
    # §5.3 step 3, the first-touch shortcut: resident nowhere and dest is the preferred location
    first_touch = False
    if mode == ADVISED and va[2][lo] - 1 == dest:
        first_touch = True
        for i in range(lo, lo + n):
            if residency[i] != 0:
                first_touch = False
                break
    # no thrashing pages: the block has no per-page thrashing state
    mask = _prefetch_kernel(
        faulted,
        resident,
        np.zeros(n, np.bool_),
        cpu_rr,
        lo,
        big,
        threshold,
        0,
        n,
        dest == CPU,
        True,
        first_touch,
    )
    m = nf
    if count >= min_faults:
        for i in range(n):
            if mask[i] and not faulted[i]:
                m += 1
    if m == nf:
        return fpages[:nf], np.zeros(nf, np.bool_), count
    pages = np.empty(m, np.int64)
    extra = np.empty(m, np.bool_)
    k = 0
    for i in range(n):
        if faulted[i] or mask[i]:
            pages[k] = i
            extra[k] = not faulted[i]
            k += 1
    return pages, extra, count


@njit(cache=True)
def _plan(va, th, block, lo, dest, requester, pages, now, dup_ok):
    """Checks on the pages to make resident (block-local, ascending): one copy per page (or,
    for the page ``dup_ok``, copies that the MOVE collapses), no revocation to do, no copy of
    a read-duplication page (its perf event resets thrashing state instead), no per-page
    thrashing state created by the copies. Returns (ok, which of them need a copy)."""
    residency, perm, read_dup = va[0], va[1], va[4]
    dbit = 1 << dest
    m = pages.shape[0]
    need_copy = np.zeros(m, np.bool_)
    any_copy = False
    # §4.3 block_service_finish_revoke_prot: the requester maps everything ATOMIC here, which
    # caps the others at READ (GPU requester) or WRITE (CPU requester).
    cap = PERM_READ if requester != CPU else PERM_WRITE
    for k in range(m):
        g = lo + pages[k]
        r = residency[g]
        if r & (r - 1):
            if g != dup_ok or not r & dbit:
                return False, need_copy  # read duplicates: the reference path
            continue  # MOVE unmaps every copy first: nothing to copy, nothing to revoke
        if r & dbit:
            for q in range(perm.shape[0]):
                if q != requester and perm[q, g] > cap:
                    return False, need_copy  # a revocation (a perf event) is due
        elif r != 0:
            if read_dup[g] == _READ_DUP_ENABLED:
                return False, need_copy
            need_copy[k] = True
            any_copy = True
    if any_copy and th[0]:
        # thrashing_event_cb: a migration within a lapse of another processor's creates
        # per-page state. Every copy here goes to one destination, so only the first can.
        last_ts = th[2][block]
        if last_ts != _NO_STAMP and th[3][block] != dest and now >= last_ts and now - last_ts <= th[1]:
            return False, need_copy
    return True, need_copy


@njit(cache=True)
def _count_migration(ctr, work, nbytes, total, by_cause, bw):
    """One migration of ``nbytes`` (one contiguous run): the direction's byte counter, its
    by-cause counter, the migration count, and its copy time at ``bw``."""
    ctr[total] += nbytes
    ctr[by_cause] += nbytes
    ctr[_MIGRATIONS] += 1
    work[0] += nbytes / bw


@njit(cache=True)
def _copies(th, costs, ctr, work, block, dest, pages, need_copy, extra, now):
    """``block_copy.record_copies``: one latency, then one migration per run of contiguous pages, the
    faulted pages' runs first, then the prefetched ones'; each run bumps the block's
    thrashing stamp (the block-level branch of the callback)."""
    work[0] += costs[_LAT]
    to_gpu = dest != CPU
    bw = costs[_HTOD_BW] if to_gpu else costs[_DTOH_BW]
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
                _count_migration(
                    ctr, work, (j - k) * 4096, _HTOD, _HTOD_PREFETCH if which else _HTOD_FAULT, bw
                )
            else:
                _count_migration(
                    ctr, work, (j - k) * 4096, _DTOH, _DTOH_PREFETCH if which else _DTOH_FAULT, bw
                )
            if th[0]:
                th[2][block] = now
                th[3][block] = dest
            k = j


@njit(cache=True)
def _make_resident_and_map(
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
    dest,
    requester,
    pages,
    need_copy,
    extra,
    now,
    hooked,
):
    """``make_resident`` (MOVE) to ``dest`` then ``_finish``'s mappings, for a checked plan."""
    residency, perm = va[0], va[1]
    gpu_chunk = va[9]
    state, owner, list_of, prev, nxt, count = pmm
    dbit = np.uint8(1 << dest)
    m = pages.shape[0]
    if dest == CPU:
        populate = 0
        migrated = 0
        for k in range(m):
            if residency[lo + pages[k]] == 0:
                populate += 1
            elif need_copy[k]:
                migrated += 1
        work[0] += populate * 4096 * costs[_POPULATE] + migrated * costs[_MAP]
    else:
        g = dest - 1
        if gpu_chunk[g, block] < 0:  # block_alloc_gpu_chunk; the caller made sure one can be had
            c = chunk_pop_head(prev, nxt, list_of, count, n_chunks, LIST_FREE)
            if c < 0:  # evict_for_allocation: the victim checked by _victim_is_plain
                c = chunk_peek_victim(pmm[4], n_chunks)
                chunk_unlink(prev, nxt, list_of, count, c)  # IN_EVICTION: off every list
                _evict_block_chunk(va, costs, ctr, work, owner[c], dest)
            state[c] = TEMP_PINNED
            owner[c] = block
            gpu_chunk[g, block] = c
            work[0] += costs[_ZERO]
            state[c] = ALLOCATED  # unpin_allocated at the end of the operation
            chunk_push_tail(prev, nxt, list_of, count, n_chunks, c, LIST_USED)
    left_gpu = False
    has_copy = False
    for k in range(m):
        g = lo + pages[k]
        if residency[g] != dbit:
            if residency[g] >> 1:  # held by a GPU before (bits 1.. are GPUs)
                left_gpu = True
            for q in range(perm.shape[0]):
                perm[q, g] = 0
        has_copy |= need_copy[k]
    if has_copy:
        _copies(th, costs, ctr, work, block, dest, pages, need_copy, extra, now)
    for k in range(m):
        residency[lo + pages[k]] = dbit
        perm[requester, lo + pages[k]] = PERM_ATOMIC  # §4.2: RW upgraded to RWA on local memory
    if dest != CPU:
        if not hooked:  # block_mark_memory_used; with hooks the caller runs chunk_used
            chunk_update_eviction_list(
                state, prev, nxt, list_of, count, n_chunks, gpu_chunk[dest - 1, block], LIST_USED
            )
    elif left_gpu:  # the GPU lost pages: if it has none of the block left, va_block_unused
        for q in range(1, perm.shape[0]):
            qbit = 1 << q
            left = False
            for i in range(n):
                if residency[lo + i] & qbit:
                    left = True
                    break
            c = gpu_chunk[q - 1, block]
            if not left and c >= 0:
                chunk_update_eviction_list(state, prev, nxt, list_of, count, n_chunks, c, LIST_UNUSED)


@njit(cache=True)
def _victim_is_plain(va, pmm, n_chunks, gpu):
    """The chunk eviction would pick belongs to a block none of whose GPU-resident pages has an
    AccessedBy mapping to re-create (``evict_block_chunk``'s deferred mappings)."""
    c = chunk_peek_victim(pmm[4], n_chunks)
    if c < 0:
        return False  # nothing evictable: the reference path raises the out-of-memory error
    vb = pmm[1][c]
    if vb < 0 or not va[12][vb]:
        return True
    lo = vb << BLOCK_SHIFT
    residency, accessed_by = va[0], va[3]
    for i in range(lo, lo + va[6][vb]):  # noqa: SIM110 (a loop: numba has no generator all())
        if residency[i] >> gpu & 1 and accessed_by[i] >> gpu & 1:
            return False
    return True


@njit(cache=True)
def _evict_block_chunk(va, costs, ctr, work, vb, gpu):
    """§7.6 ``evict_root_chunk_from_va_block`` for a victim without AccessedBy mappings: its
    GPU-resident pages move to the CPU (cause EVICTION: no thrashing event), one copy per run of
    pages that have no CPU copy, every mapping of them goes, the block loses its chunk."""
    residency, perm, gpu_chunk = va[0], va[1], va[9]
    lo = vb << BLOCK_SHIFT
    n = va[6][vb]
    gbit = 1 << gpu
    on_gpu = 0
    only_gpu = 0
    for i in range(lo, lo + n):
        if residency[i] & gbit:
            on_gpu += 1
            if residency[i] == gbit:
                only_gpu += 1
    ctr[_EVICTIONS] += 1
    ctr[_PAGES_EVICTED] += on_gpu
    work[0] += costs[_EVICT]
    if only_gpu:
        work[0] += costs[_LAT]
        i = lo
        while i < lo + n:
            if residency[i] != gbit:
                i += 1
                continue
            j = i + 1
            while j < lo + n and residency[j] == gbit:
                j += 1
            _count_migration(ctr, work, (j - i) * 4096, _DTOH, _DTOH_EVICTION, costs[_DTOH_BW])
            i = j
    for i in range(lo, lo + n):
        if residency[i] & gbit:
            for q in range(perm.shape[0]):
                perm[q, i] = 0
            residency[i] = 1 << CPU
    gpu_chunk[gpu - 1, vb] = -1


@njit(cache=True)
def _service_block(
    va, pmm, n_chunks, th, pf, costs, ctr, work, now, gpu, page, access, keep, s, e, may_evict, hooked
):
    """§3.7 for one block: (DONE | SLOW | NEED_CHUNK)."""
    block = page[s] >> BLOCK_SHIFT
    lo = block << BLOCK_SHIFT
    n = va[6][block]
    mode = _block_mode(va, th, block, lo, n)
    if mode == 0:
        return SLOW
    residency, perm, preferred, read_dup = va[0], va[1], va[2], va[4]
    fpages = np.empty(e - s, np.int64)  # the batch is sorted: ascending within the block
    nf = 0
    for j in range(s, e):
        if not keep[j]:
            continue
        p = page[j]
        need = access[j] if access[j] > PERM_READ else PERM_READ
        if perm[gpu, p] >= need:
            continue  # §3.7 step 4: already authorized (stale)
        r = residency[p]
        if r & (r - 1):
            return SLOW
        if mode == ADVISED and (
            read_dup[p] == _READ_DUP_ENABLED or not _dest_is_requester(preferred[p] - 1, r, gpu)
        ):
            return SLOW  # read duplication, or a remote mapping of the preferred location
        fpages[nf] = p - lo
        nf += 1
    if nf == 0:
        return DONE
    pages, extra, pf_count = _prefetch(va, pf, block, lo, n, gpu, fpages, nf, mode)
    if pages.shape[0] > nf and read_dup[lo] == _READ_DUP_ENABLED:
        return SLOW  # prefetched pages would be read-duplicated
    ok, need_copy = _plan(va, th, block, lo, gpu, gpu, pages, now, -1)
    if not ok:
        return SLOW
    if va[9][gpu - 1, block] < 0 and (
        hooked or pmm[5][LIST_FREE] == 0 and not (may_evict and _victim_is_plain(va, pmm, n_chunks, gpu))
    ):
        return NEED_CHUNK  # nothing changed yet: the caller evicts, then calls again
    if pf[0]:  # update_prefetch_info
        va[10][block] = gpu
        va[11][block] = pf_count
    _make_resident_and_map(
        va, pmm, n_chunks, th, costs, ctr, work, block, lo, n, gpu, gpu, pages, need_copy, extra, now, hooked
    )
    return CHUNK_USED if hooked else DONE


@njit(cache=True)
def _service_blocks(
    va,
    pmm,
    n_chunks,
    th,
    pf,
    costs,
    ctr,
    work,
    now,
    gpu,
    page,
    access,
    keep,
    starts,
    stops,
    k,
    may_evict,
    hooked,
):
    nb = starts.shape[0]
    while k < nb:
        status = _service_block(
            va,
            pmm,
            n_chunks,
            th,
            pf,
            costs,
            ctr,
            work,
            now,
            gpu,
            page,
            access,
            keep,
            starts[k],
            stops[k],
            may_evict,
            hooked,
        )
        if status != DONE:
            return k, status
        work[0] += costs[_BLOCK_NS]
        k += 1
    return k, DONE


@njit(cache=True)
def _cpu_touches(va, pmm, n_chunks, th, pf, costs, ctr, page, acc, pos, n, clock, per_touch, max_faults):
    """The CPU phase loop of ``Engine._run_cpu`` (scan to the next miss, advance the clock by
    the hits' compute share, service the fault synchronously), with the same arithmetic."""
    perm = va[1][CPU]
    touches = 0
    faults = 0
    now = 0
    work = np.zeros(1)
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
        if _cpu_fault(va, pmm, n_chunks, th, pf, costs, ctr, work, t, page[pos], acc[pos]) != DONE:
            return pos, clock, touches, faults, now, SLOW
        now = t
        clock += 0.0 + work[0]  # cpu_fault returns waited (0.0: never throttled) + the work
        faults += 1


@njit(cache=True)
def _cpu_fault(va, pmm, n_chunks, th, pf, costs, ctr, work, now, page, access):
    """§10 for one CPU fault (never throttled: the block has no per-page thrashing state)."""
    block = page >> BLOCK_SHIFT
    lo = block << BLOCK_SHIFT
    n = va[6][block]
    mode = _block_mode(va, th, block, lo, n)
    if mode == 0:
        return SLOW
    r = va[0][page]
    dup_ok = -1
    if mode == ADVISED:
        rd = va[4][page]
        if r & (r - 1) or rd == _READ_DUP_ENABLED:
            # §4.1 rules 3-4: a write collapses the copies onto the CPU, a read duplicates
            if access < PERM_WRITE:
                return SLOW
            dup_ok = page
        elif not _dest_is_requester(va[2][page] - 1, r, CPU):
            return SLOW
    elif r & (r - 1):
        return SLOW
    fpages = np.empty(1, np.int64)
    fpages[0] = page - lo
    pages, extra, pf_count = _prefetch(va, pf, block, lo, n, CPU, fpages, 1, mode)
    if pages.shape[0] > 1 and va[4][lo] == _READ_DUP_ENABLED:
        return SLOW  # prefetched pages would be read-duplicated
    ok, need_copy = _plan(va, th, block, lo, CPU, CPU, pages, now, dup_ok)
    if not ok:
        return SLOW
    ctr[_CPU_FAULTS] += 1
    work[0] += costs[_CPU_FAULT_NS]
    if pf[0]:
        va[10][block] = CPU
        va[11][block] = pf_count
    _make_resident_and_map(
        va, pmm, n_chunks, th, costs, ctr, work, block, lo, n, CPU, CPU, pages, need_copy, extra, now, False
    )
    return DONE


__all__ = ["CHUNK_USED", "DONE", "NEED_CHUNK", "PAUSE", "SLOW", "FastPath"]
