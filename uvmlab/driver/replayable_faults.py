"""Replayable GPU fault servicing (uvm_gpu_replayable_faults.c).

The bottom half ``service_replayable_faults`` fetches batches of at most
``uvm_perf_fault_batch_count`` entries from the fault buffer, coalesces adjacent duplicates at
fetch (fetch_fault_buffer_entries), sorts by (page, most intrusive access first) (preprocess_fault_batch),
services every VA block of
the batch in one call (``service_fault_batch``) and replays according to ``uvm_perf_fault_replay_policy``
(uvm_gpu_replayable_faults.c). The GPU side (warps stalled on faults, re-executed at each replay) lives in
``uvmlab.engine.gpu``; the bottom half reaches it through the ``replay`` callback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.driver import tools
from uvmlab.driver import va_block as vb
from uvmlab.driver.compiled.fast_service import CHUNK_USED, DONE, NEED_CHUNK
from uvmlab.driver.fatal import ContextFatal
from uvmlab.driver.fault_batch import coalesce, preprocess_fault_batch
from uvmlab.driver.fault_buffer import FaultBuffer, flush_mode
from uvmlab.driver.perf.thrashing_state import HINT_NONE, HINT_PIN, HINT_THROTTLE, NO_HINT
from uvmlab.driver.va_space import BLOCK_SHIFT, PERM_READ
from uvmlab.workload.ir import Access

if TYPE_CHECKING:
    from uvmlab.driver.hooks import BatchDecisions
    from uvmlab.driver.uvm import UvmDriver

REPLAY_BLOCK, REPLAY_BATCH, REPLAY_BATCH_FLUSH, REPLAY_ONCE = 0, 1, 2, 3


def service_replayable_faults(
    drv: UvmDriver, buf: FaultBuffer, gpu: int, replay: Callable[[int], None], n_utlb: int
) -> None:
    """``uvm_parent_gpu_service_replayable_faults`` (uvm_gpu_replayable_faults.c): one bottom half.

    ``replay(t_ns)`` re-executes the stalled warps of a replay pushed at ``t_ns``; the entries
    they write reach the buffer from then on (``FaultBuffer.write_ns``), and each fetch takes
    only what is written when it reads PUT (``fault_buffer.py``)."""
    bh = BottomHalf(drv, buf, gpu, replay, n_utlb)
    bh.loop()
    bh.finish()


class BottomHalf:
    """One bottom half's batches and replays. The compiled kernel loop (engine/fault_loop.py)
    runs the same steps and hands a batch it cannot finish to ``resume``: its state is these
    fields."""

    def __init__(
        self,
        drv: UvmDriver,
        buf: FaultBuffer,
        gpu: int,
        replay: Callable[[int], None],
        n_utlb: int,
        begun: tuple[int, float, int, int, int] | None = None,
    ) -> None:
        """``begun``: (start_ns, start work_ns, batches, throttled batches, replays) of a
        bottom half the compiled loop started, else this one starts now."""
        p = drv.params
        self.drv, self.buf, self.gpu, self.replay, self.n_utlb = drv, buf, gpu, replay, n_utlb
        self.policy = p.uvm_perf_fault_replay_policy
        self.batch_count = min(drv.gpu.fault_batch_size(p.uvm_perf_fault_batch_count), buf.capacity)
        self.deferred = False  # a policy deferred a batch's replay (``decide_replay`` < 0, docs/policies.md)
        if begun is not None:
            self.start_ns, self.start_work, self.num_batches, self.num_throttled, self.replays = begun
            return
        drv.counters["bottom_halves"] += 1
        drv.charge(drv.profile.bottom_half_ns)
        self.num_batches = self.num_throttled = self.replays = 0
        # The bottom half's work reaches the engine's clock when it returns; each batch is
        # stamped with its own start (the driver stamps thrashing events and tools records with
        # the time of the service, NV_GETTIME), not the bottom half's: a kernel whose faults all
        # fit one bottom half would otherwise migrate its last block at its launch
        # (uvm_perf_thrashing.c measures the lapse between a page's migrations on these stamps).
        self.start_ns, self.start_work = drv.now_ns, drv.work_ns

    def now(self) -> int:
        """The driver's time so far in this bottom half (its start plus the work charged)."""
        return self.start_ns + int(self.drv.work_ns - self.start_work)

    def do_replay(self) -> None:
        drv = self.drv
        self.replays += 1
        self.deferred = False
        drv.counters["replays"] += 1
        pushed_ns = self.now()  # the warps retry from here on
        drv.charge(drv.profile.replay_ns)  # ... while the driver waits for the replay
        drv.log.add(drv.now_ns, tools.GPU_FAULT_REPLAY, self.gpu)
        self.replay(pushed_ns)

    def loop(self) -> None:
        """Fetch and service batches until the buffer has none or a per-service limit."""
        drv, buf, p = self.drv, self.buf, self.drv.params
        c = drv.counters
        while (
            self.num_throttled < p.uvm_perf_fault_max_throttle_per_service
            and self.num_batches < p.uvm_perf_fault_max_batches_per_service
        ):
            drv.now_ns = self.now()
            page, access, utlb = buf.fetch(self.batch_count, drv.now_ns)
            if len(page) == 0:
                break
            rp, ra, rc = coalesce(page, access, utlb, self.n_utlb, p.uvm_perf_fault_coalesce != 0)
            c["gpu_faults"] += len(page)
            # GpuPageFaultCount (uvm_tools.c) counts one per coalesced entry: service_fault_batch_block_locked
            # notifies every entry of the sorted batch before its duplicate and already-authorized
            # checks, while the instances fetch_fault_buffer_entries merged into it are not counted
            c["gpu_faults_notified"] += len(rp)
            c["fault_batches"] += 1
            c["gpu_fault_groups"] += 1
            drv.charge(drv.profile.fault_batch_ns + len(page) * drv.profile.fault_ns)
            drv.log.add(drv.now_ns, tools.GPU_FAULT, self.gpu, int(rp[0]) * PAGE_SIZE, len(page))
            throttled, duplicates = service_fault_batch(
                drv, self.gpu, rp, ra, rc, self.do_replay if self.policy == REPLAY_BLOCK else None
            )
            self.end_batch(len(page), len(rp), throttled, duplicates)

    def resume(
        self,
        batch: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        k: int,
        n_fetched: int,
        n_coalesced: int,
        duplicates: int,
        decided: BatchDecisions | None = None,
        fresh: int = -1,
        throttled: bool = False,
    ) -> None:
        """Finish a batch the compiled loop sorted and serviced up to block ``k`` (page,
        access, keep, starts, stops as ``preprocess_fault_batch`` returns them; ``decided``:
        the policies' decisions for it, ``fresh``: the block whose chunk was just allocated for
        it, ``throttled``: a block before ``k`` was throttled), then the rest of the bottom
        half."""
        throttled |= service_sorted(self.drv, self.gpu, *batch, k, decided, None, fresh)
        self.end_batch(n_fetched, n_coalesced, throttled, duplicates)
        self.loop()
        self.finish()

    def resume_after(
        self, decision: int, n_fetched: int, duplicates: int, throttled: bool, deferred: bool
    ) -> None:
        """Apply the replay ``decision`` the compiled loop's batch got (``after_batch``), then
        the rest of the bottom half."""
        self.deferred = deferred
        self.apply_decision(decision, n_fetched, duplicates, throttled)
        self.loop()
        self.finish()

    def end_batch(self, n_fetched: int, n_coalesced: int, throttled: bool, duplicates: int) -> None:
        """After a batch's service: its policy decision and replay."""
        drv, policy = self.drv, self.policy
        drv.counters["gpu_faults_duplicate"] += duplicates
        decision = 0
        if drv.hooks is not None:  # policy migrations, then decide_replay: 1 now, 0 default, -1 defer
            decision = drv.hooks.after_batch(
                drv,
                self.gpu,
                policy,
                self.num_batches,
                n_fetched,
                n_coalesced,
                duplicates,
                throttled,
                self.buf.n,
                self.replays,
            )
        self.apply_decision(decision, n_fetched, duplicates, throttled)

    def apply_decision(self, decision: int, n_fetched: int, duplicates: int, throttled: bool) -> None:
        """A batch's replay decision (1 now, 0 the driver's policy, -1 defer) and its count."""
        p, policy = self.drv.params, self.policy
        if decision > 0:
            self.do_replay()
        elif decision < 0:
            self.deferred = True
        elif policy == REPLAY_BATCH:
            self.do_replay()
        elif policy == REPLAY_BATCH_FLUSH:
            # entries written during the service survive a CACHED_PUT flush (fault_buffer.py)
            mode = flush_mode(duplicates, n_fetched, p.uvm_perf_fault_replay_update_put_ratio)
            self.buf.flush(mode, self.now())
            self.do_replay()  # ... and the CPU waits for the replay to execute
        if throttled:
            self.num_throttled += 1
        self.num_batches += 1

    def finish(self) -> None:
        if self.policy == REPLAY_ONCE or self.replays == 0 or self.deferred:
            self.do_replay()


def service_fault_batch(
    drv: UvmDriver,
    gpu: int,
    page: np.ndarray,
    access: np.ndarray,
    count: np.ndarray,
    block_replay: Callable[[], None] | None,
) -> tuple[bool, int]:
    """``preprocess_fault_batch`` to ``service_fault_batch_block_locked`` (uvm_gpu_replayable_faults.c):
    sort, then service each VA block's entries in one call.

    Returns (batch had throttled faults, duplicate count as ``num_duplicate_faults``
    uvm_gpu_replayable_faults.c).
    """
    page, access, keep_all, starts, stops, duplicates = preprocess_fault_batch(page, access, count)
    decided = None
    if drv.hooks is not None:  # batch-level policy decisions, one row per block (driver/hooks.py)
        blocks = page >> BLOCK_SHIFT
        decided = drv.hooks.begin_batch(drv, gpu, blocks[starts], page, access, keep_all, starts)
    throttled = service_sorted(drv, gpu, page, access, keep_all, starts, stops, 0, decided, block_replay)
    return throttled, duplicates


def service_sorted(
    drv: UvmDriver,
    gpu: int,
    page: np.ndarray,
    access: np.ndarray,
    keep_all: np.ndarray,
    starts: np.ndarray,
    stops: np.ndarray,
    k: int,
    decided: BatchDecisions | None,
    block_replay: Callable[[], None] | None,
    fresh: int = -1,
) -> bool:
    """Service a sorted batch's VA blocks from the ``k``-th on: plain ones in compiled code,
    the others by the reference path. Returns whether any fault was throttled. ``fresh``: the
    block whose chunk was allocated for it in this batch (NEED_CHUNK)."""
    blocks = page >> BLOCK_SHIFT
    throttled = False
    fast = drv.fast if block_replay is None and drv.fast is not None and drv.fast.usable() else None
    nb = len(starts)
    while k < nb:
        if fast is not None:  # plain blocks in compiled code, up to the first that is not
            k, status = fast.service_blocks(gpu, page, access, keep_all, starts, stops, k, decided, fresh)
            if status == DONE:
                break
            block = int(blocks[starts[k]])
            if status == NEED_CHUNK:  # allocation, eviction and their policies stay in Python
                if vb.ensure_gpu_chunk(drv, block, gpu, fast.evict_block_chunk):
                    fresh = block
                continue
            if status == CHUNK_USED:  # the block is serviced but for its policy hook
                assert drv.hooks is not None  # CHUNK_USED: only with hooks attached
                drv.hooks.chunk_used(drv, gpu, block, int(drv.va.gpu_chunk[gpu - 1, block]), fresh == block)
                drv.charge(drv.profile.fault_block_ns)
                k += 1
                continue
        s, e = int(starts[k]), int(stops[k])
        keep = keep_all[s:e]
        throttled |= service_block_faults(drv, gpu, int(blocks[s]), page[s:e][keep], access[s:e][keep])
        drv.charge(drv.profile.fault_block_ns)
        if block_replay is not None:
            block_replay()
        k += 1
    return throttled


def service_block_faults(drv: UvmDriver, gpu: int, block: int, pages: np.ndarray, access: np.ndarray) -> bool:
    """``service_fault_batch_block_locked`` (uvm_gpu_replayable_faults.c) for the unique faulted pages of one
    block."""
    va = drv.va
    alloc = int(va.block_alloc[block])
    if alloc < 0 or not va.alloc_live[alloc]:
        raise ContextFatal("invalid address", gpu, int(pages[0]))
    need = np.maximum(access, PERM_READ)
    stale = va.perm[gpu, pages] >= need  # service_fault_batch_block_locked step 4: already authorized
    pages, access = pages[~stale], access[~stale]
    if len(pages) == 0:
        return False
    lo, hi = va.block_range(block)
    n = hi - lo
    local = pages - lo
    th = drv.thrashing
    if th.tracks_pages(block):
        hints = [
            th.get_hint(
                block,
                int(lp),
                gpu,
                drv.now_ns,
                preferred=int(va.preferred[pg]) - 1,
                closest=va.closest_resident(int(va.residency[pg]), gpu),
            )
            for lp, pg in zip(local.tolist(), pages.tolist(), strict=True)
        ]
    else:  # the common case: no per-page thrashing state, every hint is NONE
        hints = [NO_HINT] * len(pages)
    if drv.hooks is not None:  # a thrashing policy may override NONE / THROTTLE / PIN per page
        hints = drv.hooks.thrashing_hints(drv, block, gpu, local, pages, hints, drv.now_ns)
    kinds = np.array([h.kind for h in hints], dtype=np.int8)
    throttled = kinds == HINT_THROTTLE
    drv.counters["gpu_faults_throttled"] += int(throttled.sum())
    pin = np.zeros(n, dtype=bool)
    pin[local[kinds == HINT_PIN]] = True
    acc_block = np.zeros(n, dtype=np.uint8)
    rd_block = np.zeros(n, dtype=bool)
    new_res: dict[int, np.ndarray] = {}
    # Fast path: a page with no advice, one copy and no hint goes to the requester
    # (block_select_processor_residency rule 14
    # or rule 9); everything else takes the rule-by-rule path.
    res = va.residency[pages]
    simple = (
        (va.preferred[pages] == 0)
        & (va.accessed_by[pages] == 0)
        & (va.read_dup[pages] == 0)
        & ((res & (res - 1)) == 0)
        & (kinds == HINT_NONE)
    )
    if simple.any():
        m = np.zeros(n, dtype=bool)
        m[local[simple]] = True
        new_res[gpu] = m
        acc_block[local[simple]] = access[simple]
    for i in np.flatnonzero(~simple & ~throttled).tolist():
        dest, dup = vb.select_residency(drv, int(pages[i]), gpu, int(access[i]), hints[i])
        m = new_res.setdefault(dest, np.zeros(n, dtype=bool))
        m[local[i]] = True
        acc_block[local[i]] = access[i]
        rd_block[local[i]] = dup
    if new_res:
        vb.service_locked(drv, block, gpu, new_res, acc_block, rd_block, pin, cause="fault")
    return bool(throttled.any())


__all__ = ["Access", "BottomHalf", "FaultBuffer", "coalesce", "service_replayable_faults", "service_sorted"]
