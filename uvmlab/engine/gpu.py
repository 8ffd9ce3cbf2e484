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

from typing import TYPE_CHECKING

import numpy as np

from uvmlab.driver.replayable_faults import FaultBuffer, service_replayable_faults
from uvmlab.engine.scan import expand, gpu_scan, segment_columns

if TYPE_CHECKING:
    from uvmlab.driver.uvm import UvmDriver
    from uvmlab.engine.core import Engine

CHUNK = 1 << 18  # touches expanded at a time
MAX_IDLE_ROUNDS = 10_000  # bottom halves in a row without a completed touch: a model bug
ACCESS_COUNTER_SLICE = 4096  # touches scanned between access-counter checks


class ModelStuck(RuntimeError):
    """The kernel stopped making progress; never expected, reported as an internal error."""


def arrival_order(pos: np.ndarray, conc: int, tpb: int, n_sm: int,
                  n_utlb: int) -> tuple[np.ndarray, np.ndarray]:
    """The order in which stalled accesses reach the fault buffer, and their uTLBs.

    Touch ``pos`` is done by thread ``pos % conc`` (a grid-stride loop, as the real-GPU
    executor runs it) in thread block ``thread // tpb``, and thread blocks are spread round-robin
    over the SMs. Each SM's uTLB reports its misses one after another, in its threads' program
    order, while all SMs report concurrently: so the buffer receives the first miss of every SM,
    then the second of every SM, and so on.
    """
    thread = pos % conc
    tb = thread // tpb
    sm = tb % n_sm
    k = (pos // conc) * conc + (tb // n_sm) * tpb + thread % tpb  # order within the SM
    by_sm = np.lexsort((k, sm))
    sm_sorted = sm[by_sm]
    first = np.flatnonzero(np.r_[True, sm_sorted[1:] != sm_sorted[:-1]])
    group_start = np.repeat(first, np.diff(np.r_[first, len(pos)]))
    rank = np.empty(len(pos), dtype=np.int64)
    rank[by_sm] = np.arange(len(pos)) - group_start
    order = np.lexsort((sm, rank))
    return order, (sm % n_utlb).astype(np.int32)


class GpuKernelRun:
    def __init__(self, engine: Engine, op, gpu: int) -> None:
        self.e = engine
        self.drv: UvmDriver = engine.drv
        self.gpu = gpu
        w = engine.workload
        self.cols = segment_columns(w.segments[op.seg_lo:op.seg_hi])
        self.pool = w.pool
        self.total = int(self.cols[4].sum())
        self.ns_per_touch = op.compute_ns / self.total if self.total else 0.0
        self.seg_i, self.off = 0, 0
        self.page = np.empty(min(CHUNK, max(self.total, 1)), dtype=np.int64)
        self.acc = np.empty(len(self.page), dtype=np.uint8)
        self.len = 0
        self.pos = 0
        self.conc = engine.concurrency
        self.n_utlb = engine.gpu.utlb_count
        self.out_idx = np.empty(self.conc, dtype=np.int64)
        self.base = 0  # kernel-relative index of the loaded chunk's first touch
        # stalled threads: their touch index (kernel-relative), page and access
        self.st_pos = np.empty(0, dtype=np.int64)
        self.st_page = np.empty(0, dtype=np.int64)
        self.st_acc = np.empty(0, dtype=np.uint8)
        self.completed = 0
        self.progress = 0
        self.buf = FaultBuffer(engine.gpu.fault_buffer_entries)

    def _complete(self, n: int, remote: int) -> None:
        """Advance the clock by the compute share of ``n`` completed touches."""
        self.completed += n
        self.progress += n
        e = self.e
        e.clock += n * self.ns_per_touch + remote * e.profile.remote_touch_ns
        e.touches += n

    def step(self) -> None:
        """A replay (or the kernel's launch): re-execute stalled warps, then issue new touches;
        every access that misses writes a fault entry, in the order the SMs report them."""
        drv = self.drv
        perm = drv.va.perm[self.gpu]
        if len(self.st_page):
            ok = perm[self.st_page] >= np.maximum(self.st_acc, 1)
            if ok.any():
                remote = int(np.count_nonzero(
                    (drv.va.residency[self.st_page[ok]] >> self.gpu & 1) == 0))
                self._complete(int(ok.sum()), remote)
                self.st_pos, self.st_page, self.st_acc = (
                    self.st_pos[~ok], self.st_page[~ok], self.st_acc[~ok])
        free = self.conc - len(self.st_page)
        gbit = np.uint8(1 << self.gpu)
        new_pos, new_page, new_acc = [self.st_pos], [self.st_page], [self.st_acc]
        while free > 0:
            if self.pos == self.len and not self._load():
                break
            oldest = int(self.st_pos.min()) if len(self.st_pos) else self.base + self.pos
            end = min(self.len, oldest + self.conc - self.base)
            if end <= self.pos:
                break  # the window is full of unfinished touches
            start = self.pos
            counting = drv.access_counters.migration_enabled
            if counting:  # scan in slices so notifications are serviced while the kernel runs
                end = min(end, self.pos + ACCESS_COUNTER_SLICE)
            self.pos, nf, hits, remote = gpu_scan(self.page, self.acc, self.pos, end, perm,
                                                  drv.va.residency, gbit, free, self.out_idx)
            if counting and remote:
                seg = self.page[start:self.pos]
                drv.access_counters.record_remote_accesses(
                    seg[(drv.va.residency[seg] & gbit) == 0])
            self._complete(hits, remote)
            if counting and drv.access_counters.pending and not nf:
                break
            if nf:
                idx = self.out_idx[:nf]
                new_pos.append(idx + self.base)
                new_page.append(self.page[idx])
                new_acc.append(self.acc[idx])
                if len(self.st_pos) == 0:
                    self.st_pos = new_pos[-1]  # the window now starts at the first stall
                free -= nf
        self.st_pos = np.concatenate(new_pos)
        self.st_page = np.concatenate(new_page)
        self.st_acc = np.concatenate(new_acc)
        if len(self.st_pos):
            order, utlb = arrival_order(self.st_pos, self.conc, self.e.threads_per_block,
                                        self.e.gpu.sm_count, self.n_utlb)
            self.buf.push(self.st_page[order], self.st_acc[order], utlb[order])

    def _load(self) -> bool:
        self.base += self.len
        self.seg_i, self.off, n = expand(*self.cols, self.pool, self.e.drv.va.alloc_base,
                                         self.seg_i, self.off, self.page, self.acc)
        self.len, self.pos = n, 0
        return n > 0

    @property
    def done(self) -> bool:
        """Every touch has been issued (stalled ones may still be waiting)."""
        return self.pos == self.len and self.seg_i >= len(self.cols[0])

    def run(self) -> None:
        e, drv = self.e, self.drv
        ac = drv.access_counters
        self.step()
        idle = 0
        while len(self.st_page) or ac.pending or not self.done:
            before = self.progress
            drv.now_ns = int(e.clock)
            e.service_timers()
            if len(self.st_page) and self.buf.n == 0:
                self.step()  # entries were dropped on overflow: the next replay re-faults them
            elif len(self.st_page):
                service_replayable_faults(drv, self.buf, self.gpu, self.step, self.n_utlb)
                e.clock += drv.take_work()
            if ac.pending:  # the access-counter bottom half, between fault batches
                drv.now_ns = int(e.clock)
                ac.service(self.gpu)
                e.clock += drv.take_work()
            if not len(self.st_page) and not self.done:
                self.step()  # the scan paused to let notifications be serviced
            if e.check:
                e.check_invariants()
            idle = idle + 1 if self.progress == before else 0
            if idle > MAX_IDLE_ROUNDS:
                raise ModelStuck(f"GPU kernel made no progress for {idle} bottom halves")
