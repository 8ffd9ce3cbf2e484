"""The engine: drives a workload's operations through the modeled driver and keeps the clock.

Operations run one after another (a sync after every op: the IR has one stream). GPU kernels
go through ``engine.gpu``; CPU phases run their touches in order and take each CPU fault
synchronously; advice and prefetch call the driver's ioctl paths.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from uvmlab.core import sparse
from uvmlab.core.counters import OP_COUNTERS
from uvmlab.core.errors import UvmlabError
from uvmlab.core.sizes import PAGES_PER_BLOCK
from uvmlab.driver import compiled, tools
from uvmlab.driver.advice import advise
from uvmlab.driver.compiled.fast_service import DONE, PAUSE
from uvmlab.driver.compiled.scan import cpu_scan, expand, segment_columns
from uvmlab.driver.cpu_fault import cpu_fault
from uvmlab.driver.eviction import NoEvictableMemory
from uvmlab.driver.fatal import ContextFatal
from uvmlab.driver.hal import GpuSpec
from uvmlab.driver.instance import create_driver
from uvmlab.driver.invariants import check_invariants
from uvmlab.driver.migrate import migrate
from uvmlab.driver.params import Params
from uvmlab.driver.perf import events as pe
from uvmlab.driver.pmm_share import PmmShare
from uvmlab.driver.va_space import CPU, PERM_ATOMIC
from uvmlab.engine import loop_entry
from uvmlab.engine.gpu import GpuKernelRun
from uvmlab.engine.sampling import attach_sampler
from uvmlab.engine.stalls import POOL as STALL_POOL
from uvmlab.engine.stalls import StalledThreads
from uvmlab.timing.cost_model import CostProfile
from uvmlab.workload.bounds import DEFAULT_MAX_TOUCHES, check_fits
from uvmlab.workload.ir import (
    AdviseOp,
    AllocKind,
    CpuOp,
    FreeOp,
    KernelOp,
    PrefetchOp,
    SyncOp,
    Workload,
    processor_name,
)

# GPU threads in flight, each doing one touch at a time: the real-GPU executor's default grid
# (uvmlab.cuda.executor.DEFAULT_THREADS), so the model and the GPU run the same kernel shape.
DEFAULT_CONCURRENCY = 65536
THREADS_PER_BLOCK = 256  # the executor's CUDA block size


class Engine:
    def __init__(
        self,
        workload: Workload,
        *,
        gpu: GpuSpec,
        params: Params,
        profile: CostProfile,
        gpu_memory_bytes: int | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        events: bool = False,
        check: bool = False,
        hooks: Any = None,  # the policy guard: driver.hooks.DriverHooks plus attach(engine)
        progress: Callable[[int, int], None] | None = None,
        fast_path: bool = True,
        share: PmmShare | None = None,
        tenant: str = "",
        n_gpus: int = 1,
        max_touches: int = DEFAULT_MAX_TOUCHES,
    ) -> None:
        if not 1 <= concurrency <= 1 << 31:
            raise UvmlabError(f"GPU concurrency must be in 1 .. 2^31, got {concurrency}")
        # the machine must be able to run it, in bounded work, before any state is made for it
        cap = gpu_memory_bytes if gpu_memory_bytes is not None else gpu.n_root_chunks * gpu.root_chunk_size
        check_fits(workload, n_gpus=n_gpus, gpu_bytes=cap, max_touches=max_touches)
        compiled.first_use()  # accepted: a front end may now announce the first-run compile
        self.workload = workload
        # the touch segments as contiguous columns (``expand``'s arguments), made once: an
        # operation takes views of its slice (~3 µs a kernel less than copying its columns)
        self._cols = segment_columns(workload.segments)
        self._count_cum = np.concatenate(([0], np.cumsum(self._cols[4])))
        self.gpu = gpu
        self.params = params
        self.profile = profile
        self.concurrency = concurrency
        self.threads_per_block = THREADS_PER_BLOCK
        self.check = check
        self.progress = progress
        self.drv = create_driver(
            workload.allocs,
            gpu=gpu,
            params=params,
            profile=profile,
            gpu_memory_bytes=gpu_memory_bytes,
            events=events,
            hooks=hooks,
            fast_path=fast_path,
            share=share,
            tenant=tenant,
            n_gpus=n_gpus,
        )
        loop_entry.prime(self.drv.fast)  # a constant part of the compiled loop's first call
        # per-operation counters; GPU-to-GPU bytes only where there are peers
        self.op_counters = OP_COUNTERS + (("bytes_dtod",) if n_gpus > 1 else ())
        # the counters' values, in that order, in one C call (a row is made per operation)
        self._op_counts = operator.itemgetter(*self.op_counters)
        self.clock = 0.0
        # pinned host memory is mapped remotely by the GPU from the start (see gpu_scan)
        self.has_pinned = any(a.kind == AllocKind.PINNED for a in workload.allocs)
        self.touches = 0
        self.rows: list[dict] = []
        self.wall_s = 0.0
        self._t0 = time.perf_counter()
        self.op_wall_s: list[float] = []  # the model's own wall time per operation (benchmarks)
        self.fatal: dict | None = None
        self.interrupted = False
        self.kernel: GpuKernelRun | None = None  # the running kernel (policies that see the future)
        self.kernel_faulted = True  # the last kernel had GPU faults (GpuKernelRun.run)
        # the stalled-thread lists kernels reuse, per kernel shape: the process's pool (a kernel
        # takes them out while it runs, engine/stalls.py)
        self.stalls: dict[tuple[int, ...], StalledThreads] = STALL_POOL
        if hooks is not None:
            hooks.attach(self)
        # residency / counter samples over time, only inside uvmlab.engine.sampling.record_samples
        self.sampler = attach_sampler(self)

    def op_columns(self, op: KernelOp | CpuOp) -> tuple[tuple[np.ndarray, ...], int]:
        """The operation's segment columns (``segment_columns`` of its slice, as views) and
        its touch count."""
        lo, hi = op.seg_lo, op.seg_hi
        return tuple(c[lo:hi] for c in self._cols), int(self._count_cum[hi] - self._count_cum[lo])

    # --- set-up ---------------------------------------------------------------------------
    def _place_allocations(self) -> None:
        va = self.drv.va
        for i, a in enumerate(self.workload.allocs):
            lo = int(va.alloc_base[i])
            hi = lo + a.pages
            if a.kind == AllocKind.DEVICE:
                # cudaMalloc: GPU memory taken from PMA up front, never migrates or evicts
                self.drv.pmm[0].reserve(-(-a.bytes // (2 << 20)) * (2 << 20))
                va.residency[lo:hi] = 1 << 1
                va.perm[1, lo:hi] = PERM_ATOMIC
            elif a.kind == AllocKind.PINNED:
                # cudaMallocHost: CPU memory that every GPU maps remotely (portable under UVA)
                va.residency[lo:hi] = 1 << CPU
                va.perm[CPU, lo:hi] = PERM_ATOMIC
                va.perm[1:, lo:hi] = PERM_ATOMIC

    # --- running --------------------------------------------------------------------------
    def run(self) -> None:
        """Run every operation. A Ctrl-C stops it between two steps of the model: the counters
        and rows of what was done stay (``interrupted``) and the KeyboardInterrupt goes on."""
        try:
            if not self.start():
                return
            for k in range(len(self.workload.ops)):
                self.step(k)
                if self.fatal is not None:
                    break  # the context is dead: the rest of the workload does not run
        except KeyboardInterrupt:
            self.interrupted = True
            raise
        finally:
            self.finish()

    # Stepping, for callers that interleave several engines on one clock (uvmlab.vgpu): start(),
    # then step(k) for each op in order with ``clock`` set to when it starts, then finish().
    def start(self) -> bool:
        """Place the allocations; False (and ``fatal`` set) when that already fails."""
        self._t0 = time.perf_counter()
        self._total_touches = max(1, self.workload.touch_count())
        try:
            self._place_allocations()
        except UvmlabError as e:
            self.fatal = {"op": -1, "reason": str(e), "processor": "gpu0", "address": -1}
            return False
        return True

    def step(self, k: int) -> None:
        """Run operation ``k`` from ``clock``; appends its row."""
        op = self.workload.ops[k]
        start_clock = self.clock
        t_op = time.perf_counter()
        before = self._op_counts(self.drv.counters)
        try:
            self._run_op(op)
        except (ContextFatal, NoEvictableMemory) as e:
            self._record_fatal(k, e)
        row = {
            "op_index": k,
            "op": op.op,
            "name": getattr(op, "name", op.op),
            "start_ns": int(start_clock),
            "time_ns": int(self.clock - start_clock),
        }
        after = self._op_counts(self.drv.counters)
        row.update(zip(self.op_counters, map(operator.sub, after, before), strict=True))
        self.rows.append(row)
        self.op_wall_s.append(time.perf_counter() - t_op)
        if self.sampler is not None:
            self.sampler.sample(self.clock, force=True)
        if self.progress is not None:
            self.progress(self.touches, self._total_touches)

    def finish(self) -> None:
        self.drv.counters["time_ns"] = int(self.clock)
        self.drv.counters["touches"] = self.touches
        self.wall_s = time.perf_counter() - self._t0

    def _record_fatal(self, k: int, e: Exception) -> None:
        drv = self.drv
        proc = getattr(e, "processor", 1)
        page = getattr(e, "page", -1)
        reason = getattr(e, "reason", None) or (
            "out of memory" if isinstance(e, NoEvictableMemory) else str(e)
        )
        drv.counters["fatal_faults"] += 1
        drv.log.add(int(self.clock), tools.FATAL_FAULT, proc, page * 4096 if page >= 0 else -1, 0, reason)
        self.fatal = {
            "op": k,
            "reason": reason,
            "processor": processor_name(proc),
            "address": page * 4096 if page >= 0 else -1,
        }

    def _run_op(self, op) -> None:
        drv = self.drv
        drv.now_ns = int(self.clock)
        self.service_timers()
        if isinstance(op, KernelOp):
            if op.gpu - 1 >= drv.va.n_gpus:
                raise UvmlabError(
                    f"kernel {op.name!r} runs on gpu{op.gpu - 1}, but the model has {drv.va.n_gpus} GPU(s)"
                )
            self.kernel = GpuKernelRun(self, op, op.gpu)
            self.kernel.run()
            if self.kernel.total == 0:  # compute is spread over touches; a kernel without any
                self.clock += op.compute_ns  # (an imported one whose pages all hit) still runs
        elif isinstance(op, CpuOp):
            self._run_cpu(op)
            if op.seg_lo == op.seg_hi:
                self.clock += op.compute_ns
        elif isinstance(op, PrefetchOp):
            base = int(drv.va.alloc_base[op.alloc])
            if drv.va.is_managed(op.alloc):
                migrate(drv, base + op.start_page, op.num_pages, op.processor)
                if self.check:
                    self.check_invariants()
        elif isinstance(op, AdviseOp):
            base = int(drv.va.alloc_base[op.alloc])
            if drv.va.is_managed(op.alloc):
                advise(drv, base + op.start_page, op.num_pages, op.advice, op.processor)
        elif isinstance(op, FreeOp):
            self._free(op.alloc)
        elif isinstance(op, SyncOp):
            pass  # every op already completes before the next one starts
        self.clock += drv.take_work()

    def _run_cpu(self, op: CpuOp) -> None:
        drv = self.drv
        cols, total = self.op_columns(op)
        per_touch = op.compute_ns / total if total else 0.0
        page = np.empty(min(1 << 18, max(total, 1)), dtype=np.int64)
        acc = np.empty(len(page), dtype=np.uint8)
        seg_i = off = 0
        perm = drv.va.perm[CPU]
        fast = drv.fast
        while True:
            seg_i, off, n = expand(*cols, self.workload.pool, drv.va.alloc_base, seg_i, off, page, acc)
            if n == 0:
                break
            pos = 0
            while pos < n:
                if fast is not None and fast.usable() and not drv.thrashing.has_pins():
                    # plain faults in compiled code; one at a time when invariants are checked
                    pos, self.clock, done, faults, status = fast.run_cpu_touches(
                        page, acc, pos, n, self.clock, per_touch, 1 if self.check else -1
                    )
                    self.touches += done
                    if self.check and faults:
                        self.check_invariants()
                    if status == DONE:
                        break
                    if status == PAUSE:
                        continue
                    hit_end = pos  # SLOW: the reference path services the fault at pos
                else:
                    hit_end = cpu_scan(page, acc, pos, n, perm)
                    self.clock += (hit_end - pos) * per_touch
                    self.touches += hit_end - pos
                    if hit_end == n:
                        break
                drv.now_ns = int(self.clock)
                self.service_timers()
                self.clock += cpu_fault(drv, int(page[hit_end]), int(acc[hit_end]))
                if perm[page[hit_end]] < max(1, acc[hit_end]):
                    raise RuntimeError("model bug: a serviced CPU fault left the page unmapped")
                if self.check:
                    self.check_invariants()
                pos = hit_end

    def _free(self, alloc: int) -> None:
        va = self.drv.va
        lo = int(va.alloc_base[alloc])
        hi = lo + int(va.alloc_pages[alloc])
        va.alloc_live[alloc] = False
        self.drv.charge((((hi - 1) >> 9) - (lo >> 9) + 1) * self.drv.profile.free_block_ns)
        # only the blocks where something is set: zeros would commit untouched VA
        b_lo, b_hi = lo >> 9, ((hi - 1) >> 9) + 1
        paged = np.flatnonzero(
            sparse.clear_rows(va.residency, lo, hi, PAGES_PER_BLOCK)
            | sparse.clear_rows(va.perm, lo, hi, PAGES_PER_BLOCK)
        )
        # A block exists once something touched it (uvm_va_block_t is created on first use,
        # uvm_va_range.c); destroying the range destroys those, not every 2 MiB of its VA, so
        # freeing 1 TiB that was touched in a few places costs a few blocks.
        chunked = np.flatnonzero((va.gpu_chunk[:, b_lo:b_hi] >= 0).any(axis=0))
        thrashed = np.asarray(self.drv.thrashing.blocks_with_state(b_lo, b_hi), dtype=np.intp) - b_lo
        blocks = sparse.union([paged, chunked, thrashed], b_hi - b_lo) + b_lo
        for b in blocks.tolist():
            for g in range(va.n_gpus):
                chunk = int(va.gpu_chunk[g, b])
                if chunk >= 0:
                    self.drv.pmm[g].free_chunk(chunk)
                    va.gpu_chunk[g, b] = -1
            self.drv.perf_events.notify(pe.BLOCK_DESTROY, block=b)
        if va.alloc_kind[alloc] == AllocKind.DEVICE:
            self.drv.pmm[0].release(-(-self.workload.allocs[alloc].bytes // (2 << 20)) * (2 << 20))

    def service_timers(self) -> None:
        """The thrashing module's delayed unpin work (uvm_perf_thrashing.c Unpin)."""
        drv = self.drv
        if self.sampler is not None:  # runs between fault batches: a consistent state
            self.sampler.sample(self.clock)
        for block, page, _residency in drv.thrashing.unpin_expired(drv.now_ns):
            va = drv.va
            g = (block << 9) + page
            # unmap from processors that neither hold a copy nor are AccessedBy
            for q in range(va.n_procs):
                if not (va.residency[g] >> q & 1) and not (va.accessed_by[g] >> q & 1):
                    va.perm[q, g] = 0

    def check_invariants(self) -> None:
        check_invariants(self.drv)
