"""The compiled fault path: GPU fault batches, CPU faults, evictions, explicit migrations
(cudaMemPrefetchAsync) and the collapse of read duplicates, in numba.

The reference path (``replayable_faults.service_block_faults``, ``cpu_fault.cpu_fault``,
``va_block`` and ``eviction``) handles every case the model knows, in numpy-per-block Python.
Most blocks of most workloads need only a fixed sequence — filter stale faults, ask the
prefetcher, take a root chunk (evicting the LRU victim if none is free), copy, map — which this
module runs as compiled loops over the driver's arrays, with no Python per block. It takes
blocks with no per-page thrashing state (so every thrashing hint is NONE) whose faulted pages
go to the requester (block_select_processor_residency: no remote mapping of a preferred
location or, rule 10, of an AccessedBy holder) and either all move — one copy each or, for a
CPU write, copies the write collapses — or, for GPU reads under read duplication, are all
duplicated; AccessedBy GPUs then map what the CPU made resident. It only takes runs whose
per-block decisions nothing steers or observes: no prefetch or thrashing policy, no event log,
no extra perf-event listeners. Policies are fine but for the per-page prefetch and per-block
thrashing hooks: the compiled service stops only where a live hook must be called — the caller
allocates every root chunk when ``chunk_activate`` or ``eviction_prepare`` is live, and calls
``chunk_used`` where the service stops for it (CHUNK_USED) — and the batch-level decisions
(``prefetch_batch``, ``thrashing_batch``) arrive as arrays, one row per block of the batch.

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

from uvmlab.core.sizes import PAGES_PER_BLOCK
from uvmlab.driver import eviction
from uvmlab.driver.compiled.advice import collapse_duplicates
from uvmlab.driver.compiled.cpu_faults import cpu_touches
from uvmlab.driver.compiled.direct import DirectCall, array_key
from uvmlab.driver.compiled.gpu_faults import evict_if_plain, service_blocks
from uvmlab.driver.compiled.migrate import migrate_blocks
from uvmlab.driver.compiled.policy_calls import BAD, CALLING, VICTIM, K
from uvmlab.driver.compiled.state import (
    CHUNK_USED,
    COUNTERS,
    DONE,
    NEED_CHUNK,
    PAUSE,
    SLOW,
    Costs,
    ThrashingState,
    VaArrays,
    new_scratch,
)
from uvmlab.driver.hooks import BatchDecisions
from uvmlab.driver.perf import events as pe

if TYPE_CHECKING:
    from uvmlab.driver.uvm import UvmDriver


class FastPath:
    """The driver state the compiled code works on, bundled once per driver."""

    def __init__(self, drv: UvmDriver) -> None:
        va, th = drv.va, drv.thrashing
        self.drv = drv
        self.va = VaArrays(*(getattr(va, f) for f in VaArrays._fields))
        self.pmm = drv.pmm[0].arrays()
        self.n_chunks = drv.pmm[0].n_root_chunks
        self.th = ThrashingState(
            bool(th.enable), th.lapse_ns, th.block_last_ts, th.block_last_proc, th.block_has_pages
        )
        self.pf = drv.prefetch_params
        self.costs = Costs(*(float(getattr(drv.profile, f)) for f in Costs._fields))
        self.ctr = np.zeros(len(COUNTERS), dtype=np.int64)
        self.sc = new_scratch()
        # the driver bundles the block service, the CPU touch loop and the fault loop take first
        self.bundles = (self.va, self.pmm, self.n_chunks, self.th, self.pf, self.costs, self.ctr, self.sc)
        self._work = np.zeros(1)  # the driver's work_ns, passed in and out of the compiled loops
        self._builtin_migration = drv.perf_events.listeners(pe.MIGRATION)
        self._undecided = BatchDecisions(
            np.zeros((1, PAGES_PER_BLOCK), np.bool_), np.zeros(0, np.bool_), np.zeros(0, np.bool_)
        )
        # the service and the eviction called past numba's typing (compiled.direct): their
        # driver bundles above are fixed for this object's life, the rest is in each call's key
        self._service = DirectCall(service_blocks)
        self._batch_types: tuple = (None,) * 6  # the last batch's arrays and their array_key
        self._evict = DirectCall(evict_if_plain)

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
        ctr = self.ctr
        if not np.count_nonzero(ctr):  # (count_nonzero: a fifth of any()'s cost on 15 ints)
            return
        c = self.drv.counters
        for name, v in zip(COUNTERS, ctr.tolist(), strict=True):
            if v:
                c[name] += v
        ctr.fill(0)

    def service_blocks(
        self,
        gpu: int,
        page: np.ndarray,
        access: np.ndarray,
        keep: np.ndarray,
        starts: np.ndarray,
        stops: np.ndarray,
        k: int,
        decided: BatchDecisions | None = None,
        fresh: int = -1,
    ) -> tuple[int, int]:
        """Service the batch's blocks ``k, k+1, ...`` (each followed by its fault_block_ns)
        until one needs the reference path; return (that block's index, SLOW / NEED_CHUNK), or
        (len(starts), DONE). With an allocation hook live, chunks are allocated by the caller
        (NEED_CHUNK: ``chunk_activate``, ``eviction_prepare``); with ``chunk_used`` live a block
        whose pages were made resident in a chunk it had stops as CHUNK_USED, serviced but for
        that hook and its fault_block_ns. ``decided``: the policies' batch decisions
        (``DriverHooks.begin_batch``), applied in compiled code; ``fresh``: the block whose
        chunk the caller allocated (NEED_CHUNK), which the driver does not move on use."""
        drv = self.drv
        hooks = drv.hooks
        d = decided if decided is not None else self._undecided
        work = self._work
        work[0] = drv.work_ns
        # Evictions whose victims must be re-mapped remotely (AccessedBy, or
        # map_remote_on_eviction with access-counter migrations) stay in Python.
        remap_all = bool(drv.access_counters.migration_enabled and drv.params.uvm_perf_map_remote_on_eviction)
        kern = hooks.kernels if hooks is not None else None
        if kern is not None and kern.on[VICTIM]:  # a policy's compiled victim choice (policy_calls)
            victim: tuple = (kern.victim, kern.state_victim, kern.status)
        else:
            kern, victim = None, (None, None, None)  # compiled without it
        stop_alloc = hooks is not None and hooks.stops_for_allocation
        stop_used = hooks is not None and hooks.stops_for_use
        now = drv.now_ns
        args = (
            *self.bundles,
            work,
            now,
            gpu,
            page,
            access,
            keep,
            starts,
            stops,
            k,
            not remap_all,
            stop_alloc,
            stop_used,
            d.prefetch,
            d.prefetch_set,
            d.reference,
            fresh,
            *victim,
        )
        try:
            if kern is None:  # the types of all that varies (a victim kernel: numba's own typing)
                got = self._batch_types
                if (
                    got[0] is not page
                    or got[1] is not access
                    or got[2] is not keep
                    or got[3] is not starts
                    or got[4] is not stops
                ):  # a new batch (a batch with allocation stops comes back once per allocation
                    # with the same arrays, its own, which nothing makes read-only)
                    arrays = (page, access, keep, starts, stops)
                    got = self._batch_types = (*arrays, tuple(map(array_key, arrays)))
                key = (
                    type(now), type(gpu), type(k), type(fresh), type(stop_alloc), type(stop_used), got[5],
                    None if decided is None else (
                        array_key(d.prefetch), array_key(d.prefetch_set), array_key(d.reference)
                    ),
                )  # fmt: skip
                k, status = self._service(key, *args)
            else:
                k, status = service_blocks(*args)
        except Exception as e:
            if kern is None or kern.status[CALLING] != VICTIM:
                raise
            # the victim kernel raised: nothing of that block has changed yet; the caller
            # allocates its chunk (NEED_CHUNK) with the driver's choice
            assert hooks is not None  # kernels come from hooks
            k, status = int(kern.status[K]), NEED_CHUNK
            hooks.kernel_failed(VICTIM, e)
        finally:
            drv.work_ns = float(work[0])
            self.flush_counters()
        if kern is not None and kern.status[BAD] >= 0:
            assert hooks is not None
            hooks.kernel_failed(VICTIM, None)
        return int(k), int(status)

    def evict_block_chunk(self, drv: UvmDriver, gpu: int, block: int, chunk: int) -> None:
        """``eviction.evict_block_chunk`` for an allocation the caller makes (NEED_CHUNK): a
        victim with nothing to re-map is evicted by the compiled code, as the compiled service
        evicts its own victims, instead of the interpreted reference."""
        remap_all = bool(drv.access_counters.migration_enabled and drv.params.uvm_perf_map_remote_on_eviction)
        if drv is self.drv and not remap_all:
            work = self._work
            work[0] = drv.work_ns
            if self._evict((type(block), type(gpu)), self.va, self.costs, self.ctr, work, block, gpu):
                drv.work_ns = float(work[0])
                self.flush_counters()
                return
        eviction.evict_block_chunk(drv, gpu, block, chunk)

    def migrate_blocks(self, first: int, end: int, dest: int, block: int) -> tuple[int, int]:
        """Migrate pages ``[first, end)`` to ``dest`` from ``block`` on (``compiled.migrate``):
        returns (the block to go on with, DONE / SLOW / NEED_CHUNK)."""
        drv = self.drv
        work = self._work
        work[0] = drv.work_ns
        remap_all = bool(drv.access_counters.migration_enabled and drv.params.uvm_perf_map_remote_on_eviction)
        block, status = migrate_blocks(
            self.va,
            self.pmm,
            self.n_chunks,
            self.th,
            self.costs,
            self.ctr,
            self.sc,
            work,
            first,
            end,
            dest,
            block,
            not remap_all,
        )
        drv.work_ns = float(work[0])
        self.flush_counters()
        return int(block), int(status)

    def collapse_duplicates(self, first: int, end: int, block: int) -> tuple[int, int]:
        """Collapse the read duplicates of pages ``[first, end)`` from ``block`` on
        (``compiled.advice``): returns (the block to go on with, DONE / SLOW)."""
        block, status = collapse_duplicates(self.va, self.pmm, self.n_chunks, first, end, block)
        return int(block), int(status)

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
        pos, clock, touches, faults, now, status = cpu_touches(
            *self.bundles,
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


__all__ = ["CHUNK_USED", "DONE", "NEED_CHUNK", "PAUSE", "SLOW", "FastPath"]
