"""A kernel run's state in and out of the compiled fault loop (``fault_loop.run_loop``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from uvmlab.driver.replayable_faults import BottomHalf
from uvmlab.engine.fault_loop import run_loop
from uvmlab.engine.loop_layout import (
    BH_COUNTERS,
    F_BH_START_WORK,
    F_CLOCK,
    F_WORK,
    I_BATCH_COUNT,
    I_BURST,
    I_CAPACITY,
    I_COALESCE,
    I_CONC,
    I_GPU,
    I_INTERVAL,
    I_MAX_BATCHES,
    I_MAX_IDLE,
    I_MAX_THROTTLE,
    I_MAX_TICK,
    I_N_UTLB,
    I_POLICY,
    I_PUT_RATIO,
    I_REMOTE,
    I_ROUNDS,
    I_TPB,
    K_BASE,
    K_BEFORE,
    K_BH_BATCHES,
    K_BH_REPLAYS,
    K_BH_START_NS,
    K_BUF_N,
    K_CACHED_PUT,
    K_COMPLETED,
    K_IDLE,
    K_LEN,
    K_MID_COALESCED,
    K_MID_DUPLICATES,
    K_MID_FETCHED,
    K_MID_K,
    K_MID_N,
    K_MID_NB,
    K_MISSED,
    K_NOW_NS,
    K_OFF,
    K_OVERFLOWS,
    K_POS,
    K_PROGRESS,
    K_SEG_I,
    K_SKIP,
    K_STEPS,
    K_TOUCHES,
    N_IP,
    N_KF,
    N_KS,
    PHASES,
    TICK_BATCHES,
)

# The cycles ``run_loop`` spent in each phase (``loop_layout.PHASES``), summed over every call
# of the process: what ``bench/profile_model.py`` reads (``fault_loop.cycles`` gives the unit).
cycles = np.zeros(len(PHASES), np.int64)


class KernelLoop:
    """The arrays ``run_loop`` works on for one kernel run (``GpuKernelRun``), and the copies
    of its Python state in and out."""

    def __init__(self, run: Any, max_idle: int) -> None:
        # run: the ``engine.gpu.GpuKernelRun`` (that module imports this one)
        e, drv = run.e, run.drv
        p, prof = drv.params, e.profile
        fast = drv.fast
        assert fast is not None
        self.run = run
        self.ip = np.zeros(N_IP, np.int64)
        ip = self.ip
        ip[I_CONC], ip[I_TPB], ip[I_N_UTLB], ip[I_BURST] = (
            run.conc,
            e.threads_per_block,
            run.n_utlb,
            run.burst,
        )
        ip[I_INTERVAL], ip[I_ROUNDS], ip[I_CAPACITY] = (
            run.report_interval,
            run.report_rounds,
            run.buf.capacity,
        )
        ip[I_BATCH_COUNT] = min(drv.gpu.fault_batch_size(p.uvm_perf_fault_batch_count), run.buf.capacity)
        ip[I_MAX_BATCHES] = p.uvm_perf_fault_max_batches_per_service
        ip[I_MAX_THROTTLE] = p.uvm_perf_fault_max_throttle_per_service
        ip[I_POLICY], ip[I_COALESCE] = p.uvm_perf_fault_replay_policy, p.uvm_perf_fault_coalesce != 0
        ip[I_PUT_RATIO], ip[I_GPU] = p.uvm_perf_fault_replay_update_put_ratio, run.gpu
        ip[I_MAX_IDLE], ip[I_MAX_TICK] = max_idle, TICK_BATCHES
        self.fp = np.array(
            [
                run.ns_per_touch,
                prof.remote_touch_ns,
                prof.bottom_half_ns,
                prof.fault_batch_ns,
                prof.fault_ns,
                prof.replay_ns,
            ],
            np.float64,
        )
        self.ks = np.zeros(N_KS, np.int64)
        self.kf = np.zeros(N_KF, np.float64)
        self.bctr = np.zeros(len(BH_COUNTERS), np.int64)
        st, buf = run.stalls, run.buf
        self.kern = (
            run.cols,
            run.pool,
            drv.va.alloc_base,
            drv.va.alloc_pages,
            run.page,
            run.acc,
            run.out_idx,
        )
        self.st = (
            *st.recheck_arrays(),
            st.cursor,
            run._out_page,
            run._out_acc,
            run._out_utlb,
            run._out_write,
        )
        self.buf = (buf.page, buf.access, buf.utlb, buf.write_ns)
        self.drv = (
            fast.va,
            fast.pmm,
            fast.n_chunks,
            fast.th,
            fast.pf,
            fast.costs,
            fast.ctr,
            fast.sc,
            fast._work,
        )
        d = fast._undecided
        self.decided = (d.prefetch, d.prefetch_set, d.reference)
        # a batch's arrays: coalesced (page, access, count, one per uTLB), sorted (page,
        # access, keep, block starts and stops), the sort's keys
        cap = int(ip[I_BATCH_COUNT])
        self.batch = (
            np.empty(cap, np.int64),
            np.empty(cap, np.uint8),
            np.empty(cap, np.int32),
            np.empty(run.n_utlb, np.int64),
            np.empty(cap, np.int64),
            np.empty(cap, np.uint8),
            np.empty(cap, np.bool_),
            np.empty(cap, np.int64),
            np.empty(cap, np.int64),
            np.empty(cap, np.int64),
        )

    def __call__(self, idle: int) -> tuple[int, int]:
        """Run ``run_loop`` from the run's state and copy its state back; returns the status
        and the idle count."""
        r, e, drv = self.run, self.run.e, self.run.drv
        buf, fast = r.buf, drv.fast
        assert fast is not None
        fast.flush_counters()
        ks, kf = self.ks, self.kf
        self.ip[I_REMOTE] = bool(drv.counters["remote_maps"] or e.has_pinned)
        ks[K_POS], ks[K_LEN], ks[K_BASE], ks[K_SEG_I], ks[K_OFF] = r.pos, r.len, r.base, r.seg_i, r.off
        ks[K_SKIP], ks[K_MISSED], ks[K_COMPLETED], ks[K_PROGRESS] = (
            r._skip,
            r._missed,
            r.completed,
            r.progress,
        )
        ks[K_STEPS], ks[K_TOUCHES], ks[K_IDLE], ks[K_BUF_N] = r.steps, 0, idle, buf.n
        ks[K_OVERFLOWS], ks[K_CACHED_PUT], ks[K_NOW_NS] = 0, buf.cached_put_ns, drv.now_ns
        kf[F_CLOCK], kf[F_WORK] = e.clock, drv.work_ns
        self.bctr[:] = 0
        try:
            status = int(
                run_loop(
                    self.kern,
                    self.st,
                    self.buf,
                    self.drv,
                    self.decided,
                    self.batch,
                    self.ip,
                    self.fp,
                    ks,
                    kf,
                    self.bctr,
                    cycles,
                )
            )
        finally:
            r.pos, r.len, r.base, r.seg_i, r.off = (int(x) for x in ks[K_POS : K_OFF + 1])
            r._skip, r._missed = bool(ks[K_SKIP]), bool(ks[K_MISSED])
            r.completed, r.progress, r.steps = int(ks[K_COMPLETED]), int(ks[K_PROGRESS]), int(ks[K_STEPS])
            e.touches += int(ks[K_TOUCHES])
            buf.n, buf.cached_put_ns = int(ks[K_BUF_N]), int(ks[K_CACHED_PUT])
            buf.overflows += int(ks[K_OVERFLOWS])
            drv.now_ns = int(ks[K_NOW_NS])
            e.clock, drv.work_ns = float(kf[F_CLOCK]), float(kf[F_WORK])
            c = drv.counters
            for name, v in zip(BH_COUNTERS, self.bctr.tolist(), strict=True):
                c[name] += v
            fast.flush_counters()
        return status, int(ks[K_IDLE])

    def resume(self) -> None:
        """Finish the batch ``run_loop`` stopped in (MID_BATCH) and its bottom half in Python."""
        r, ks, kf = self.run, self.ks, self.kf
        n, nb = int(ks[K_MID_N]), int(ks[K_MID_NB])
        m_page, m_access, m_keep, m_starts, m_stops = self.batch[4:9]
        bh = BottomHalf(
            r.drv,
            r.buf,
            r.gpu,
            r.step,
            r.n_utlb,
            begun=(
                int(ks[K_BH_START_NS]),
                float(kf[F_BH_START_WORK]),
                int(ks[K_BH_BATCHES]),
                0,
                int(ks[K_BH_REPLAYS]),
            ),
        )
        bh.resume(
            (m_page[:n], m_access[:n], m_keep[:n], m_starts[:nb], m_stops[:nb]),
            int(ks[K_MID_K]),
            int(ks[K_MID_FETCHED]),
            int(ks[K_MID_COALESCED]),
            int(ks[K_MID_DUPLICATES]),
        )

    @property
    def before(self) -> int:
        """The run's progress at the start of the iteration ``run_loop`` stopped in."""
        return int(self.ks[K_BEFORE])
