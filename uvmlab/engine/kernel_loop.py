"""A kernel run's state in and out of the compiled fault loop (``fault_loop.run_loop``)."""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from uvmlab.core.sizes import PAGES_PER_BLOCK
from uvmlab.driver.compiled.policy_calls import (
    CALLING,
    PREFETCH,
    REPLAY,
    THRASHING,
    VICTIM,
    make_kernels,
    replay_kernel_list,
)
from uvmlab.driver.hooks import BatchDecisions
from uvmlab.engine.loop_entry import call_run_loop, driver_bundles
from uvmlab.engine.loop_layout import (
    BH_COUNTERS,
    D_PYTHON,
    END,
    F_CLOCK,
    F_WORK,
    HOOK,
    I_BATCH_COUNT,
    I_BEGIN_HOOKS,
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
    I_PYTHON_HOOKS,
    I_REMOTE,
    I_ROUNDS,
    I_STOP_ALLOC,
    I_STOP_USED,
    I_TPB,
    K_BASE,
    K_BEFORE,
    K_BUF_N,
    K_CACHED_PUT,
    K_COMPLETED,
    K_DECIDED,
    K_IDLE,
    K_LEN,
    K_MISSED,
    K_NEXT_SAMPLE,
    K_NOW_NS,
    K_OFF,
    K_OVERFLOWS,
    K_PHASE,
    K_POS,
    K_PROGRESS,
    K_RESUME,
    K_SEG_I,
    K_SKIP,
    K_STEPS,
    K_TOUCHES,
    N_IP,
    N_KF,
    N_KS,
    PH_SERVICE,
    PHASES,
    R_SERVICE,
    TICK_BATCHES,
)
from uvmlab.engine.loop_policies import H_STATUS, H_VSTATUS
from uvmlab.engine.loop_stops import LoopStops
from uvmlab.engine.replay_step import to_front

# The cycles ``run_loop`` spent in each phase (``loop_layout.PHASES``), summed over every call
# of the process: what ``bench/profile_model.py`` reads (``replay_step.cycles`` gives the unit).
cycles = np.zeros(len(PHASES), np.int64)
NEVER = 1 << 62  # K_NEXT_SAMPLE without a sampler


# the compiled kernels' output rows, per driver: a driver's kernel runs come one at a time and
# decide_batch writes every row it reports, so each run's loop takes the last one's (made
# once, not once per kernel run: ~0.3 ms of zeroing on a 32-kernel run)
_KBUF: weakref.WeakKeyDictionary[Any, tuple[np.ndarray, ...]] = weakref.WeakKeyDictionary()


_NO_KERNELS: tuple[Any, Any, np.ndarray] | None = None


def _no_kernels() -> tuple[Any, Any, np.ndarray]:
    """The no-op kernels that stand in where a compiled policy gives some but not all, made once
    per process (numba compiles the typed lists' code in each process; a bundle cost ~6-30 µs
    a kernel run to make) and never written: a loop passes its own status arrays."""
    global _NO_KERNELS
    if _NO_KERNELS is None:
        _NO_KERNELS = (make_kernels({}), replay_kernel_list(None), np.zeros(0, np.int64))
    return _NO_KERNELS


def _plain(a: np.ndarray) -> np.ndarray:
    """A policy's decision rows as ``run_loop`` takes them: C-ordered, writable bool."""
    if a.dtype == np.bool_ and a.flags.c_contiguous and a.flags.writeable:
        return a
    return np.array(a, dtype=np.bool_, order="C")


class KernelLoop(LoopStops):
    """The arrays ``run_loop`` works on for one kernel run (``GpuKernelRun``), and the copies
    of its Python state in and out."""

    def __init__(self, run: Any, max_idle: int) -> None:
        # run: the ``engine.gpu.GpuKernelRun`` (that module imports this one)
        e, drv = run.e, run.drv
        p, prof = drv.params, e.profile
        fast = drv.fast
        assert fast is not None
        self.run = run
        # the constants in one array made from a list (item by item: ~2 µs a kernel more);
        # the policy flags (I_PYTHON_HOOKS ...) and I_REMOTE are set at each call
        ip_values = dict.fromkeys(range(N_IP), 0)
        ip_values.update(
            {
                I_CONC: run.conc,
                I_TPB: e.threads_per_block,
                I_N_UTLB: run.n_utlb,
                I_BURST: run.burst,
                I_INTERVAL: run.report_interval,
                I_ROUNDS: run.report_rounds,
                I_CAPACITY: run.buf.capacity,
                I_BATCH_COUNT: min(
                    drv.gpu.fault_batch_size(p["uvm_perf_fault_batch_count"]), run.buf.capacity
                ),
                I_MAX_BATCHES: p["uvm_perf_fault_max_batches_per_service"],
                I_MAX_THROTTLE: p["uvm_perf_fault_max_throttle_per_service"],
                I_POLICY: p["uvm_perf_fault_replay_policy"],
                I_COALESCE: p["uvm_perf_fault_coalesce"] != 0,
                I_PUT_RATIO: p["uvm_perf_fault_replay_update_put_ratio"],
                I_GPU: run.gpu,
                I_MAX_IDLE: max_idle,
                I_MAX_TICK: TICK_BATCHES,
            }
        )
        self.ip = np.array(list(ip_values.values()), np.int64)
        ip = self.ip
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
        self.drv = driver_bundles(fast)
        d = fast._undecided
        self.undecided = (d.prefetch, d.prefetch_set, d.reference)
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
        # policies: the compiled kernels' output rows (decide_batch; grown when a kernel is
        # live), the status arrays of the kernels (no-op ones: _no_kernels)
        self._kbuf = _KBUF.get(fast) or self._rows(1)
        self._status = np.array([-1, 0, -1, 0, 0], np.int64)
        self._vstatus = np.array([-1, 0, -1, 0, 0], np.int64)
        self._hk: tuple | None = None
        self._py_decided: BatchDecisions | None = None  # the batch's begin_batch / adopt_batch rows
        self._ready = False  # a HOOK stop already handled (a kernel that raised)
        self.status = END

    def _run_loop(self, *args: Any) -> int:
        """``run_loop(*args)``, through its compiled entry point where the argument types are
        known (engine/loop_entry.py)."""
        return call_run_loop(self.run.drv.fast, args)

    @staticmethod
    def _rows(n: int) -> tuple[np.ndarray, ...]:
        return (
            np.zeros((n, PAGES_PER_BLOCK), np.bool_),
            np.zeros(n, np.bool_),
            np.zeros(n, np.bool_),
            np.zeros((n, PAGES_PER_BLOCK), np.int8),
        )

    def _kernels(self) -> tuple | None:
        """The policies' compiled kernels as ``run_loop`` takes them (``hk``: None without
        any, ``loop_policies``), and the flags of the live Python hooks in ``ip``; read at every
        call (a policy may be ejected)."""
        hooks = self.run.drv.hooks
        ip = self.ip
        kern = hooks.kernels if hooks is not None else None
        rk = hooks.replay_kernel if hooks is not None else None
        ip[I_PYTHON_HOOKS] = hooks is not None and hooks.python_hooks
        ip[I_STOP_ALLOC] = hooks is not None and hooks.stops_for_allocation
        ip[I_STOP_USED] = hooks is not None and hooks.stops_for_use
        ip[I_BEGIN_HOOKS] = hooks is not None and hooks.begin_hooks
        if kern is None and rk is None:
            self._hk = None
            return None
        none, no_replay, no_state = _no_kernels()
        on = np.zeros(4, np.bool_)
        src, kst = none, self._status
        if kern is not None:
            on[:3] = kern.on
            src, kst = kern, kern.status
            if (on[PREFETCH] or on[THRASHING]) and len(self._kbuf[1]) < int(ip[I_BATCH_COUNT]):
                self._kbuf = _KBUF[self.run.drv.fast] = self._rows(int(ip[I_BATCH_COUNT]))
        if kern is not None and on[VICTIM]:
            victim = (kern.victim, kern.state_victim, kern.status)
        else:
            victim = (none.victim, none.state_victim, self._vstatus)
        on[REPLAY] = rk is not None
        k_replay, s_replay = rk if rk is not None else (no_replay, no_state)
        self._hk = (
            src.prefetch,
            src.thrashing,
            victim[0],
            k_replay,
            on,
            src.state_prefetch,
            src.state_thrashing,
            victim[1],
            s_replay,
            kst,
            victim[2],
            self._kbuf,
        )
        return self._hk

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
        ks[K_NEXT_SAMPLE] = e.sampler.next_due() if e.sampler is not None else NEVER
        kf[F_CLOCK], kf[F_WORK] = e.clock, drv.work_ns
        self.bctr[:] = 0
        hk = self._kernels()
        decided = self.undecided
        if ks[K_RESUME] == R_SERVICE and ks[K_DECIDED] & D_PYTHON and self._py_decided is not None:
            d = self._py_decided
            decided = (_plain(d.prefetch), _plain(d.prefetch_set), _plain(d.reference))
        err: Exception | None = None
        try:
            try:
                status = int(
                    self._run_loop(
                        self.kern,
                        self.st,
                        self.buf,
                        self.drv,
                        hk,
                        decided,
                        self.batch,
                        self.ip,
                        self.fp,
                        ks,
                        kf,
                        self.bctr,
                        cycles,
                    )
                )
            except Exception as x:
                if hk is None or hk[H_STATUS][CALLING] < 0 and hk[H_VSTATUS][CALLING] < 0:
                    raise
                # a policy's kernel raised (policy_calls): the loop's state is where it was
                to_front(self.buf, ks)
                if ks[K_PHASE] == PH_SERVICE:
                    kf[F_WORK] = fast._work[0]
                err, status = x, HOOK
        finally:
            v = ks.tolist()  # plain ints, read once (a run with a Python policy stops every batch)
            r.pos, r.len, r.base, r.seg_i, r.off = v[K_POS : K_OFF + 1]
            r._skip, r._missed = bool(v[K_SKIP]), bool(v[K_MISSED])
            r.completed, r.progress, r.steps = v[K_COMPLETED], v[K_PROGRESS], v[K_STEPS]
            e.touches += v[K_TOUCHES]
            buf.n, buf.cached_put_ns = v[K_BUF_N], v[K_CACHED_PUT]
            buf.overflows += v[K_OVERFLOWS]
            drv.now_ns = v[K_NOW_NS]
            e.clock, drv.work_ns = kf.tolist()[F_CLOCK : F_WORK + 1]
            c = drv.counters
            for name, n in zip(BH_COUNTERS, self.bctr.tolist(), strict=True):
                if n:
                    c[name] += n
            fast.flush_counters()
        if err is not None:
            status = self._kernel_raised(err)
        self.status = status
        return status, int(ks[K_IDLE])

    @property
    def before(self) -> int:
        """The run's progress at the start of the iteration ``run_loop`` stopped in."""
        return int(self.ks[K_BEFORE])
