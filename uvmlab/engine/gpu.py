"""The GPU side of a kernel: warps in flight, each stalling on its own fault.

Model (documented in docs/model.md): a kernel's touches are issued in the IR's order by up to
``concurrency`` warps at once: touch i can issue only while
i < (oldest unfinished touch) + ``concurrency``. A touch
whose page the GPU maps with enough permission completes at once; a touch that misses stalls its
warp and writes one entry (page, access, uTLB) to the fault buffer. The GPU keeps issuing later
touches until it reaches that window's end or the kernel has no touches left. Then it waits for
the driver. At every replay the
stalled warps re-execute their access: those now mapped complete, the others fault again (a new
buffer entry — which is how the BATCH and ONCE policies produce duplicates that BATCH_FLUSH's
flush avoids), and freed warps issue new touches.

Kernel time = its compute time (spread over its touches as they complete) + the time the GPU
waits for fault servicing + remote-access time for touches served over PCIe.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from uvmlab.driver.compiled.scan import expand, gpu_scan, skip_hit_chunks
from uvmlab.driver.invariants import InvariantError
from uvmlab.driver.replayable_faults import REPLAY_BLOCK, FaultBuffer, service_replayable_faults
from uvmlab.engine import reexecute as rx
from uvmlab.engine import stalls as sl
from uvmlab.engine.arrival import report
from uvmlab.engine.kernel_loop import KernelLoop
from uvmlab.engine.loop_layout import HOOK, MID_BATCH, STUCK, TICK
from uvmlab.engine.stalls import StalledThreads

if TYPE_CHECKING:
    from uvmlab.driver.uvm import UvmDriver

CHUNK = 1 << 16  # touches expanded at a time
MAX_IDLE_ROUNDS = 10_000  # bottom halves in a row without a completed touch: a model bug
ACCESS_COUNTER_SLICE = 4096  # touches scanned between access-counter checks


class ModelStuck(RuntimeError):
    """The kernel stopped making progress; never expected, reported as an internal error."""


# A kernel run's scratch arrays (its chunk of expanded touches, the scan's and the report's
# outputs, the fault buffer's entries), left by a kernel that ran to its end for the next one of
# the same shape in the process: ~10 arrays made per kernel cost ~5 µs, a fifth of a kernel
# whose touches all hit. None of them is read before the kernel writes it (``np.empty``'s).
_SCRATCH: dict[tuple[int, int, int], tuple[np.ndarray, ...]] = {}
_SCRATCH_LOCK = threading.Lock()  # engines may run in threads of one process
SCRATCH_SHAPES = 2  # shapes kept


def _take_scratch(key: tuple[int, int, int]) -> tuple[np.ndarray, ...]:
    """Scratch for (chunk touches, threads, fault buffer entries): kept ones, else new."""
    with _SCRATCH_LOCK:
        kept = _SCRATCH.pop(key, None)
    if kept is not None:
        return kept
    n_page, conc, capacity = key
    cap = min(conc, capacity)
    return (
        np.empty(n_page, dtype=np.int64),  # page
        np.empty(n_page, dtype=np.uint8),  # acc
        np.empty(conc, dtype=np.int64),  # out_idx
        np.empty(cap, dtype=np.int64),  # the entries pushed per replay
        np.empty(cap, dtype=np.uint8),
        np.empty(cap, dtype=np.int32),
        np.empty(cap, dtype=np.int64),
        np.empty(capacity, dtype=np.int64),  # the fault buffer's
        np.empty(capacity, dtype=np.uint8),
        np.empty(capacity, dtype=np.int32),
        np.empty(capacity, dtype=np.int64),
    )


def _give_scratch(key: tuple[int, int, int], arrays: tuple[np.ndarray, ...]) -> None:
    """A finished kernel's scratch, for the next kernel of its shape (``SCRATCH_SHAPES`` kept)."""
    with _SCRATCH_LOCK:
        _SCRATCH.pop(key, None)
        _SCRATCH[key] = arrays
        while len(_SCRATCH) > SCRATCH_SHAPES:
            del _SCRATCH[next(iter(_SCRATCH))]


class _MarkingFaultBuffer(FaultBuffer):
    """The kernel's fault buffer: the driver services only the VA blocks of the entries it
    fetches, so those are the blocks whose stalled threads the next replay re-checks."""

    def __init__(self, capacity: int, stalls: StalledThreads, arrays: tuple[np.ndarray, ...]) -> None:
        super().__init__(capacity, arrays)
        self.stalls = stalls

    def fetch(self, k: int, now_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        page, access, utlb = super().fetch(k, now_ns)
        if len(page):
            self.stalls.mark_pages(page)
        return page, access, utlb


class GpuKernelRun:
    #: A live Python policy hook can run from the compiled fault loop, which stops twice a batch
    #: for ``begin_batch`` / ``after_batch`` (engine/loop_stops.py) and once per block handed
    #: back. A stop costs more than this Python loop's work per batch and per block, but the
    #: loop saves the rest of that work: measured faster for Python batch and replay hooks and
    #: slower where the service stops for allocations or chunk use (``chunk_activate``,
    #: ``eviction_prepare``, ``chunk_used``; bench/bench_policies.py, docs/performance.md).
    #: None (the default) chooses so; True / False: always / never the compiled loop (tests
    #: take both to check that they give the same answer). Compiled policies (kernels only)
    #: always run in the compiled loop.
    python_hooks_in_loop: bool | None = None

    def __init__(self, engine: Any, op: Any, gpu: int) -> None:
        # engine: the ``engine.core.Engine`` running this kernel (that module imports this one)
        self.e = engine
        self.drv: UvmDriver = engine.drv
        self.gpu = gpu
        self.cols, self.total = engine.op_columns(op)
        self.pool = engine.workload.pool
        self.ns_per_touch = op.compute_ns / self.total if self.total else 0.0
        self.seg_i, self.off = 0, 0
        self.conc = op.threads or engine.concurrency  # the kernel's launch shape
        self._scratch_key = (min(CHUNK, max(self.total, 1)), self.conc, engine.gpu.fault_buffer_entries)
        self.len = 0
        self.pos = 0
        self.n_utlb = engine.gpu.utlb_count
        self.burst = engine.gpu.fault_report_burst
        self.base = 0  # kernel-relative index of the loaded chunk's first touch
        self.completed = 0
        self.progress = 0
        self.steps = 0  # steps run: the stalled threads change only in one
        self._order_of = -1
        self._skip = True  # try skip_hit_chunks at the next chunk (the last one had no miss)
        self._missed = False  # the loaded chunk had a miss
        # the stalled threads, the fault buffer and the scratch arrays (``_prepare``): made
        # when the kernel needs them, not for one whose touches all hit (``run``)
        self._prepared = False
        # A replay re-checks only the stalled threads of the blocks the driver fetched faults
        # of since the last one: a block's service maps pages of that block only (policies'
        # prefetch and thrashing decisions included), and the other things that run between
        # replays (thrashing's unpin timer, evictions) only take mappings away. Migrations
        # (policies', access counters') map pages of any block: the replay after one re-checks
        # every thread, and so does every replay where an eviction re-maps the evicted block
        # (the GPU is AccessedBy on some page, or map_remote_on_eviction with access-counter
        # migrations: uvm_va_block.c's block_add_eviction_mappings), with peers, or with BLOCK
        # replays (one in the middle of a batch). Preferred location and read duplication map
        # only pages of the block being serviced.
        va, params = self.drv.va, self.drv.params
        self.track_blocks = (
            va.n_gpus == 1
            and params.uvm_perf_fault_replay_policy != REPLAY_BLOCK
            and not va.accessed_by_procs >> gpu & 1
            and not (self.drv.access_counters.migration_enabled and params.uvm_perf_map_remote_on_eviction)
        )
        self._migrate_calls = self.drv.migrate_calls
        self.report_interval = engine.gpu.fault_report_interval_ns
        # a uTLB holds at most utlb_fault_slots misses reported per replay: whole rounds of bursts
        self.report_rounds = -(-engine.gpu.utlb_fault_slots // self.burst)

    def _prepare(self) -> None:
        """The kernel's stalled-thread lists, fault buffer and scratch arrays (kept ones)."""
        if self._prepared:
            return
        e = self.e
        self._scratch = _take_scratch(self._scratch_key)
        self.page, self.acc, self.out_idx = self._scratch[:3]
        # the entries pushed per replay (never more than the buffer)
        self._out_page, self._out_acc, self._out_utlb, self._out_write = self._scratch[3:7]
        self.stalls = StalledThreads.reused(
            e.stalls, self.conc, e.threads_per_block, e.gpu.sm_count, self.drv.va.total_pages
        )
        self.buf = _MarkingFaultBuffer(e.gpu.fault_buffer_entries, self.stalls, self._scratch[7:])
        self._prepared = True

    @property
    def n_st(self) -> int:
        """How many threads are stalled."""
        return self.stalls.n if self._prepared else 0

    def _in_order(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stalled threads oldest first, gathered once per replay (policies that see the
        future ask between replays, policy/future.py)."""
        if not self._prepared:  # nothing ever stalled
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint8)
        if self._order_of != self.steps:
            self._order, self._order_of = self.stalls.in_order(), self.steps
        return self._order

    @property
    def st_pos(self) -> np.ndarray:
        """The stalled threads' touch positions (kernel-relative), ascending."""
        return self._in_order()[0]

    @property
    def st_page(self) -> np.ndarray:
        """The stalled threads' pages, in ``st_pos`` order."""
        return self._in_order()[1]

    def _complete(self, n: int, remote: int) -> None:
        """Advance the clock by the compute share of ``n`` completed touches."""
        self.completed += n
        self.progress += n
        e = self.e
        e.clock += n * self.ns_per_touch + remote * e.profile.remote_touch_ns
        e.touches += n

    def _peer_touches(self, start: int, perm: np.ndarray, gbit: np.uint8) -> None:
        """Touches just completed on a peer GPU's memory cost ``remote_touch_ns`` (measured for
        sysmem over PCIe) scaled by the link: host link rate / peer link rate (an estimate)."""
        seg, acc = self.page[start : self.pos], self.acc[start : self.pos]
        res = self.drv.va.residency[seg]
        hit = perm[seg] >= np.maximum(acc, 1)
        peer = int(np.count_nonzero(hit & ((res & gbit) == 0) & ((res & 1) == 0)))
        self.e.clock += peer * self.e.profile.remote_touch_ns * (self.drv.topology.peer_touch_factor - 1.0)

    def step(self, now_ns: int | None = None) -> None:
        """A replay pushed at ``now_ns`` (or the kernel's launch, or a pause, at the engine's
        clock): re-execute stalled warps, then issue new touches; every access that misses
        writes a fault entry, in the order the SMs report them, one round of
        ``fault_report_burst`` entries per SM every ``fault_report_interval_ns``."""
        self._prepare()
        drv = self.drv
        self.steps += 1
        t0 = int(self.e.clock) if now_ns is None else now_ns
        perm = drv.va.perm[self.gpu]
        gbit = np.uint8(1 << self.gpu)
        st = self.stalls
        n = st.n
        # Remote mappings come only from map_pages (which counts them) and pinned
        # allocations; without either, every mapped page is local and residency is not read.
        remote_possible = drv.counters["remote_maps"] or self.e.has_pinned
        if n:
            if not self.track_blocks or drv.migrate_calls != self._migrate_calls:
                st.mark_all()
                self._migrate_calls = drv.migrate_calls
            done, remote = rx.reexecute(
                perm,
                drv.va.residency,
                gbit if remote_possible else np.uint8(0),
                *st.recheck_arrays(),
            )
            if done:
                self._complete(done, remote)
                n -= done
            if self.e.check and rx.missed(perm, st.t, st.q_pos, st.q):
                raise InvariantError("a replay left stalled threads whose pages are mapped")
        free = self.conc - n
        while free > 0:
            if self.pos == self.len and not self._load(n == 0):
                break
            # the window starts at the oldest stalled touch (stalls are kept in ascending order)
            oldest = st.oldest() if n else self.base + self.pos
            end = min(self.len, oldest + self.conc - self.base)
            if end <= self.pos:
                break  # the window is full of unfinished touches
            start = self.pos
            counting = drv.access_counters.migration_enabled
            if counting:  # scan in slices so notifications are serviced while the kernel runs
                end = min(end, self.pos + ACCESS_COUNTER_SLICE)
            self.pos, nf, hits, remote = gpu_scan(
                self.page,
                self.acc,
                self.pos,
                end,
                perm,
                drv.va.residency,
                gbit if remote_possible else np.uint8(0),
                free,
                self.out_idx,
            )
            if counting and remote:
                seg = self.page[start : self.pos]
                drv.access_counters.record_remote_accesses(seg[(drv.va.residency[seg] & gbit) == 0])
            self._complete(hits, remote)
            if remote and drv.va.n_gpus > 1:
                self._peer_touches(start, perm, gbit)
            if counting and drv.access_counters.pending and not nf:
                break
            if nf:
                self._missed = True
                sl.append(
                    self.out_idx,
                    nf,
                    self.base,
                    self.page,
                    self.acc,
                    self.e.threads_per_block,
                    st.t,
                    st.meta,
                    st.q_pos,
                    st.q,
                    st.phead,
                    st.need_words,
                )
                n += nf
                free -= nf
        if n:
            # only what the buffer can hold is pushed; the rest are dropped as FaultBuffer.push
            # would drop them, and counted the same way
            k = min(n, self.buf.capacity - self.buf.n)
            written = report(
                st.t,
                st.q_pos,
                st.q,
                st.cursor,
                k,
                self.n_utlb,
                self.burst,
                t0,
                self.report_interval,
                self.report_rounds,
                self._out_page,
                self._out_acc,
                self._out_utlb,
                self._out_write,
            )
            self.buf.push(
                self._out_page[:written],
                self._out_acc[:written],
                self._out_utlb[:written],
                self._out_write[:written],
            )
            self.buf.overflows += n - k

    def _load(self, idle: bool = False) -> bool:
        """Expand the next chunk of touches; ``idle``: no thread is stalled. Then chunks whose
        touches all hit are run without expanding them (``skip_hit_chunks``) where nothing but
        the clock observes them: no remote mapping, no access-counter slicing."""
        self.base += self.len
        self.len = self.pos = 0
        if not self._missed:
            self._skip = True
        self._missed = False
        if idle and self._skip and self._may_skip():
            self._skip_hits()
        self.seg_i, self.off, n = expand(
            *self.cols, self.pool, self.e.drv.va.alloc_base, self.seg_i, self.off, self.page, self.acc
        )
        self.len, self.pos = n, 0
        return n > 0

    def _may_skip(self) -> bool:
        """Whether chunks that all hit may run unexpanded (``_load``)."""
        drv = self.drv
        return not drv.access_counters.migration_enabled and not (
            drv.counters["remote_maps"] or self.e.has_pinned
        )

    def _skip_hits(self) -> bool:
        """Run the chunks from the next touch on whose touches all hit, unexpanded
        (``skip_hit_chunks``); True where it stopped at a chunk with a miss."""
        drv, e = self.drv, self.e
        self.seg_i, self.off, n, e.clock, missed = skip_hit_chunks(
            *self.cols,
            self.pool,
            drv.va.alloc_base,
            drv.va.alloc_pages,
            self.seg_i,
            self.off,
            self._scratch_key[0],  # the chunk's length
            drv.va.perm[self.gpu],
            self.conc,
            e.clock,
            self.ns_per_touch,
            e.profile.remote_touch_ns,
        )
        self.base += n
        self.completed += n
        self.progress += n
        e.touches += n
        self._skip = not missed  # a chunk with faults: expand the next ones as usual
        return bool(missed)

    @property
    def done(self) -> bool:
        """Every touch has been issued (stalled ones may still be waiting)."""
        return self.pos == self.len and self.seg_i >= len(self.cols[0])

    def compiled_ok(self) -> bool:
        """Whether ``fault_loop.run_loop`` may run the next iterations: nothing but the
        compiled code acts between batches (its module docstring)."""
        drv, e = self.drv, self.e
        return (
            drv.fast is not None
            and (
                drv.hooks is None
                or drv.hooks.loop_ok
                and (
                    not drv.hooks.python_hooks
                    or self.python_hooks_in_loop
                    or self.python_hooks_in_loop is None
                    and not drv.hooks.stops_for_allocation
                    and not drv.hooks.stops_for_use
                )
            )
            and self.track_blocks
            and drv.migrate_calls == self._migrate_calls
            and not drv.access_counters.migration_enabled
            and not drv.access_counters.pending
            and not e.check
            and not drv.thrashing.has_pins()
            and drv.fast.usable()
        )

    def run(self) -> None:
        e, drv = self.e, self.drv
        ac = drv.access_counters
        # The compiled loop can issue the first touches itself (its iteration with nothing
        # stalled is this step; idle -1, so its count after it is this path's 0), ~20-60 µs
        # less than this step in Python for a kernel that faults, but a kernel whose touches
        # all hit never needs the loop, and setting it up costs ~30 µs more than the step.
        # So the chunks that all hit run first, as the step's first load would run them: a
        # kernel with a miss left starts in the loop, at that chunk (``_missed``: the load
        # expands it without looking again); one without is done. Where chunks may not be
        # skipped, a kernel starts in the loop where the engine's last kernel faulted.
        faults = drv.counters["gpu_faults"]
        idle = -1
        ok = self.compiled_ok()
        if ok and self._may_skip():
            self._missed = self._skip_hits()
            if self.done and not ac.pending:
                e.kernel_faulted = False
                return  # every touch hit: no thread stalled, nothing to release
        elif not (ok and e.kernel_faulted):
            self.step()
            idle = 0
        self._prepare()
        loop: KernelLoop | None = None
        while self.stalls.n or ac.pending or not self.done:
            if self.compiled_ok():
                loop = loop or KernelLoop(self, MAX_IDLE_ROUNDS)
                status, idle = loop(idle)
                while status in (HOOK, MID_BATCH):  # Python acts, then the loop goes on
                    if not loop.hook():
                        break
                    status, idle = loop(idle)
                if status == TICK and e.sampler is not None:
                    # an iteration's start, a sample due: what the Python loop does there
                    drv.now_ns = int(e.clock)
                    e.service_timers()
                if status in (HOOK, MID_BATCH):  # Python finished that bottom half
                    e.clock += drv.take_work()
                    if not self.stalls.n and not self.done:
                        self.step()
                    idle = idle + 1 if self.progress == loop.before else 0
                if status == STUCK or idle > MAX_IDLE_ROUNDS:
                    raise ModelStuck(f"GPU kernel made no progress for {idle} bottom halves")
                continue
            before = self.progress
            drv.now_ns = int(e.clock)
            e.service_timers()
            if self.stalls.n and self.buf.n == 0:
                self.step()  # entries were dropped on overflow: the next replay re-faults them
            elif self.stalls.n:
                if self.buf.written(drv.now_ns) == 0:  # the interrupt comes with the first entry
                    e.clock = max(e.clock, float(self.buf.next_write_ns()))
                    drv.now_ns = int(e.clock)
                service_replayable_faults(drv, self.buf, self.gpu, self.step, self.n_utlb)
                e.clock += drv.take_work()
            if ac.pending:  # the access-counter bottom half, between fault batches
                drv.now_ns = int(e.clock)
                ac.service(self.gpu)
                e.clock += drv.take_work()
                self.stalls.mark_all()  # its migrations map pages of any block
            if not self.stalls.n and not self.done:
                self.step()  # the scan paused to let notifications be serviced
            if e.check:
                e.check_invariants()
            idle = idle + 1 if self.progress == before else 0
            if idle > MAX_IDLE_ROUNDS:
                raise ModelStuck(f"GPU kernel made no progress for {idle} bottom halves")
        self.stalls.release(e.stalls)  # ran to its end: no thread stalled
        _give_scratch(self._scratch_key, self._scratch)
        e.kernel_faulted = drv.counters["gpu_faults"] != faults
