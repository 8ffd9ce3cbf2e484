"""A GPU kernel's fault loop in one compiled call: bottom halves, batches and replays.

``GpuKernelRun.run`` (engine/gpu.py) alternates the driver's bottom half
(``replayable_faults.BottomHalf``: fetch a batch from the fault buffer, coalesce, sort, service
each VA block, flush, replay) with the GPU's side of a replay (``GpuKernelRun.step``: re-execute
the stalled threads, issue new touches, report the misses to the buffer). In Python that costs
some 50 µs a batch around the compiled parts. ``run_loop`` runs the same steps, in the same
order and with the same floating-point additions, as compiled code over the same arrays, and
returns to Python only where Python must act:

* END: the kernel has no touch left and no thread stalled;
* TICK: ``max_batches`` batches were fetched (a bound on the time between returns: the caller
  may report progress or check for an interrupt), at the end of one bottom half's round;
* MID_BATCH: a block of a batch needs the reference path (SLOW) or an allocation in Python
  (NEED_CHUNK); the batch is serviced up to that block, and the caller finishes it and the
  rest of the bottom half with ``BottomHalf.resume`` (the sorted batch is returned);
* STUCK: no touch completed for ``max_idle`` rounds (a model bug; the caller raises).

``GpuKernelRun.compiled_ok`` says when it may run: the compiled block service is usable
(``FastPath.usable``), no policy is attached, the replay re-checks only the blocks fetched
(``track_blocks``: one GPU, no BLOCK replays, no AccessedBy on the GPU), no access-counter
migrations, no pending thrashing unpin, no sampler and no invariant checks. Within one call
none of these can change: the compiled service makes no migration and no pin.
``tests/test_fast_path.py`` compares the results with the reference path's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from uvmlab.driver.compiled.gpu_faults import service_blocks
from uvmlab.driver.compiled.scan import expand, gpu_scan, skip_hit_chunks
from uvmlab.driver.compiled.state import DONE, REMOTE_MAPS
from uvmlab.driver.replayable_faults import (
    REPLAY_BATCH,
    REPLAY_BATCH_FLUSH,
    REPLAY_ONCE,
    BottomHalf,
    coalesce,
    preprocess_fault_batch,
)
from uvmlab.engine.arrival import report
from uvmlab.engine.stalls import COUNT, append, mark_blocks, oldest, reexecute

END, TICK, MID_BATCH, STUCK = range(4)
TICK_BATCHES = 1024  # batches fetched between returns to Python (~0.1-0.5 s)

# constants of a call (int64 array ``ip``)
(
    I_CONC,
    I_TPB,
    I_N_UTLB,
    I_BURST,
    I_INTERVAL,
    I_ROUNDS,
    I_CAPACITY,
    I_BATCH_COUNT,
    I_MAX_BATCHES,
    I_MAX_THROTTLE,
    I_POLICY,
    I_COALESCE,
    I_PUT_RATIO,
    I_GPU,
    I_REMOTE,
    I_MAX_IDLE,
    I_MAX_TICK,
) = range(17)
N_IP = 17
# constants (float64 array ``fp``)
F_NS_PER_TOUCH, F_REMOTE_TOUCH_NS, F_BOTTOM_HALF_NS, F_FAULT_BATCH_NS, F_FAULT_NS, F_REPLAY_NS = range(6)
N_FP = 6
# the run's state, in and out (int64 array ``ks``)
(
    K_POS,
    K_LEN,
    K_BASE,
    K_SEG_I,
    K_OFF,
    K_SKIP,
    K_MISSED,
    K_COMPLETED,
    K_PROGRESS,
    K_STEPS,
    K_TOUCHES,
    K_IDLE,
    K_BUF_N,
    K_OVERFLOWS,
    K_CACHED_PUT,
    K_NOW_NS,
    # a bottom half handed back mid-batch (MID_BATCH)
    K_BH_START_NS,
    K_BH_BATCHES,
    K_BH_REPLAYS,
    K_MID_K,
    K_MID_FETCHED,
    K_MID_COALESCED,
    K_MID_DUPLICATES,
    K_MID_N,
    K_MID_NB,
    K_BEFORE,  # progress at the start of the iteration (the idle check)
) = range(26)
N_KS = 26
# (float64 array ``kf``)
F_CLOCK, F_WORK, F_BH_START_WORK = range(3)
N_KF = 3
# driver counters the loop adds to (int64 array ``bctr``), in this order
BH_COUNTERS = (
    "bottom_halves",
    "replays",
    "gpu_faults",
    "gpu_faults_notified",
    "fault_batches",
    "gpu_fault_groups",
    "gpu_faults_duplicate",
)
C_BH, C_REPLAYS, C_FAULTS, C_NOTIFIED, C_BATCHES, C_GROUPS, C_DUPLICATES = range(7)


@njit(cache=True, inline="always")
def _complete(ks, kf, fp, n, remote):
    """``GpuKernelRun._complete``: the compute share of ``n`` completed touches."""
    ks[K_COMPLETED] += n
    ks[K_PROGRESS] += n
    kf[F_CLOCK] += n * fp[F_NS_PER_TOUCH] + remote * fp[F_REMOTE_TOUCH_NS]
    ks[K_TOUCHES] += n


@njit(cache=True, inline="always")
def _written(write_ns, n, t):
    """``FaultBuffer.written``: entries at the head written by ``t``."""
    return np.searchsorted(write_ns[:n], t, side="right")


@njit(cache=True, inline="always")
def _take(b_page, b_access, b_utlb, b_write, ks, k):
    """``FaultBuffer._take``: the first ``k`` entries, copied; the rest move to the front."""
    n = ks[K_BUF_N]
    page, access, utlb = b_page[:k].copy(), b_access[:k].copy(), b_utlb[:k].copy()
    rest = n - k
    if rest and k:
        for i in range(rest):
            b_page[i] = b_page[k + i]
            b_access[i] = b_access[k + i]
            b_utlb[i] = b_utlb[k + i]
            b_write[i] = b_write[k + i]
    ks[K_BUF_N] = rest
    return page, access, utlb


@njit(cache=True, inline="always")
def _push(b_page, b_access, b_utlb, b_write, ks, page, access, utlb, write_ns, m):
    """``FaultBuffer.push`` of the first ``m`` entries (ascending write times)."""
    lo = ks[K_BUF_N]
    k = min(b_page.shape[0] - lo, m)
    hi = lo + k
    for i in range(k):
        b_page[lo + i] = page[i]
        b_access[lo + i] = access[i]
        b_utlb[lo + i] = utlb[i]
        b_write[lo + i] = write_ns[i]
    ks[K_BUF_N] = hi
    ks[K_OVERFLOWS] += m - k
    if k and lo and b_write[lo] < b_write[lo - 1]:  # interleaves older entries
        order = np.argsort(b_write[:hi], kind="mergesort")
        b_page[:hi] = b_page[:hi][order]
        b_access[:hi] = b_access[:hi][order]
        b_utlb[:hi] = b_utlb[:hi][order]
        b_write[:hi] = b_write[:hi][order]


@njit(cache=True)
def _load(cols, pool, alloc_base, alloc_pages, page, acc, perm, ip, fp, ks, kf, idle, remote_possible):
    """``GpuKernelRun._load``: expand the next chunk of touches, running the chunks whose
    touches all hit unexpanded first where nothing but the clock observes them."""
    c_alloc, c_kind, c_access, c_start, c_count, c_stride = cols
    ks[K_BASE] += ks[K_LEN]
    ks[K_LEN] = 0
    ks[K_POS] = 0
    if not ks[K_MISSED]:
        ks[K_SKIP] = 1
    ks[K_MISSED] = 0
    if idle and ks[K_SKIP] and not remote_possible:
        seg_i, off, n, clock, missed = skip_hit_chunks(
            c_alloc,
            c_kind,
            c_access,
            c_start,
            c_count,
            c_stride,
            pool,
            alloc_base,
            alloc_pages,
            ks[K_SEG_I],
            ks[K_OFF],
            page.shape[0],
            perm,
            ip[I_CONC],
            kf[F_CLOCK],
            fp[F_NS_PER_TOUCH],
            fp[F_REMOTE_TOUCH_NS],
        )
        ks[K_SEG_I], ks[K_OFF], kf[F_CLOCK] = seg_i, off, clock
        ks[K_BASE] += n
        ks[K_COMPLETED] += n
        ks[K_PROGRESS] += n
        ks[K_TOUCHES] += n
        ks[K_SKIP] = not missed
    seg_i, off, n = expand(
        c_alloc,
        c_kind,
        c_access,
        c_start,
        c_count,
        c_stride,
        pool,
        alloc_base,
        ks[K_SEG_I],
        ks[K_OFF],
        page,
        acc,
    )
    ks[K_SEG_I], ks[K_OFF] = seg_i, off
    ks[K_LEN] = n
    ks[K_POS] = 0
    return n > 0


@njit(cache=True)
def _step(t0, kern, st, buf, va, ip, fp, ks, kf, remote_possible):
    """``GpuKernelRun.step`` for a replay pushed at ``t0`` (the case ``compiled_ok`` admits:
    no access-counter slicing, one GPU, only the fetched blocks re-checked)."""
    cols, pool, alloc_base, alloc_pages, page, acc, out_idx = kern
    (
        t,
        meta,
        q_pos,
        q,
        phead,
        need_words,
        block_dirty,
        dirty,
        hits,
        hit_words,
        cursor,
        o_page,
        o_acc,
        o_utlb,
        o_write,
    ) = st
    b_page, b_access, b_utlb, b_write = buf
    gpu = ip[I_GPU]
    conc = ip[I_CONC]
    perm = va.perm[gpu]
    gbit = np.uint8(1 << gpu) if remote_possible else np.uint8(0)
    ks[K_STEPS] += 1
    n = meta[COUNT]
    if n:
        done, remote = reexecute(
            perm,
            va.residency,
            gbit,
            t,
            meta,
            q_pos,
            q,
            phead,
            need_words,
            block_dirty,
            dirty,
            hits,
            hit_words,
        )
        if done:
            _complete(ks, kf, fp, done, remote)
            n -= done
    free = conc - n
    while free > 0:
        if ks[K_POS] == ks[K_LEN] and not _load(
            cols, pool, alloc_base, alloc_pages, page, acc, perm, ip, fp, ks, kf, n == 0, remote_possible
        ):
            break
        base = ks[K_BASE]
        first = oldest(t, q_pos, q) if n else base + ks[K_POS]
        end = min(ks[K_LEN], first + conc - base)
        if end <= ks[K_POS]:
            break  # the window is full of unfinished touches
        pos, nf, n_hit, remote = gpu_scan(page, acc, ks[K_POS], end, perm, va.residency, gbit, free, out_idx)
        ks[K_POS] = pos
        _complete(ks, kf, fp, n_hit, remote)
        if nf:
            ks[K_MISSED] = 1
            append(out_idx, nf, base, page, acc, ip[I_TPB], t, meta, q_pos, q, phead, need_words)
            n += nf
            free -= nf
    if n:
        k = min(n, ip[I_CAPACITY] - ks[K_BUF_N])
        written = report(
            t,
            q_pos,
            q,
            cursor,
            k,
            ip[I_N_UTLB],
            ip[I_BURST],
            t0,
            ip[I_INTERVAL],
            ip[I_ROUNDS],
            o_page,
            o_acc,
            o_utlb,
            o_write,
        )
        _push(b_page, b_access, b_utlb, b_write, ks, o_page, o_acc, o_utlb, o_write, written)
        ks[K_OVERFLOWS] += n - k


@njit(cache=True, inline="always")
def _now(ks, kf):
    """``BottomHalf.now``."""
    return ks[K_BH_START_NS] + np.int64(kf[F_WORK] - kf[F_BH_START_WORK])


@njit(cache=True, inline="always")
def _replay(kern, st, buf, va, ip, fp, ks, kf, bctr, remote_possible):
    """``BottomHalf.do_replay``."""
    ks[K_BH_REPLAYS] += 1
    bctr[C_REPLAYS] += 1
    pushed = _now(ks, kf)
    kf[F_WORK] += fp[F_REPLAY_NS]
    _step(pushed, kern, st, buf, va, ip, fp, ks, kf, remote_possible)


@njit(cache=True)
def _bottom_half(kern, st, buf, drv, ip, fp, ks, kf, bctr, decided, mid):
    """``BottomHalf`` (no policy hooks). Returns True where a block stopped the compiled
    service: the sorted batch is then copied to ``mid`` and its state left in ``ks``."""
    va, pmm, n_chunks, th, pf, costs, ctr, sc, work = drv
    b_page, b_access, b_utlb, b_write = buf
    meta, block_dirty, dirty = st[1], st[6], st[7]
    pf_mask, pf_set, reference = decided
    remote_possible = ip[I_REMOTE] != 0 or ctr[REMOTE_MAPS] != 0
    policy = ip[I_POLICY]
    bctr[C_BH] += 1
    kf[F_WORK] += fp[F_BOTTOM_HALF_NS]
    ks[K_BH_START_NS] = ks[K_NOW_NS]
    kf[F_BH_START_WORK] = kf[F_WORK]
    ks[K_BH_BATCHES] = 0
    ks[K_BH_REPLAYS] = 0
    while ks[K_BH_BATCHES] < ip[I_MAX_BATCHES] and ip[I_MAX_THROTTLE] > 0:
        now = _now(ks, kf)
        ks[K_NOW_NS] = now
        # FaultBuffer.fetch, and the blocks it fetched are re-checked at the next replay
        if _written(b_write, ks[K_BUF_N], ks[K_CACHED_PUT]) == 0:
            ks[K_CACHED_PUT] = now
        k = min(ip[I_BATCH_COUNT], _written(b_write, ks[K_BUF_N], ks[K_CACHED_PUT]))
        page, access, utlb = _take(b_page, b_access, b_utlb, b_write, ks, k)
        if k == 0:
            break
        mark_blocks(page, block_dirty, dirty, meta)
        rp, ra, rc = coalesce(page, access, utlb, ip[I_N_UTLB], ip[I_COALESCE] != 0)
        bctr[C_FAULTS] += k
        bctr[C_NOTIFIED] += rp.shape[0]
        bctr[C_BATCHES] += 1
        bctr[C_GROUPS] += 1
        kf[F_WORK] += fp[F_FAULT_BATCH_NS] + k * fp[F_FAULT_NS]
        sp, sa, keep, starts, stops, duplicates = preprocess_fault_batch(rp, ra, rc)
        work[0] = kf[F_WORK]
        kb, status = service_blocks(
            va,
            pmm,
            n_chunks,
            th,
            pf,
            costs,
            ctr,
            sc,
            work,
            now,
            ip[I_GPU],
            sp,
            sa,
            keep,
            starts,
            stops,
            0,
            True,
            False,
            False,
            pf_mask,
            pf_set,
            reference,
            -1,
            None,
            None,
            None,
        )
        kf[F_WORK] = work[0]
        if status != DONE:
            ks[K_MID_K] = kb
            ks[K_MID_FETCHED] = k
            ks[K_MID_COALESCED] = rp.shape[0]
            ks[K_MID_DUPLICATES] = duplicates
            ks[K_MID_N] = sp.shape[0]
            ks[K_MID_NB] = starts.shape[0]
            m_page, m_access, m_keep, m_starts, m_stops = mid
            m_page[: sp.shape[0]] = sp
            m_access[: sp.shape[0]] = sa
            m_keep[: sp.shape[0]] = keep
            m_starts[: starts.shape[0]] = starts
            m_stops[: starts.shape[0]] = stops
            return True
        bctr[C_DUPLICATES] += duplicates
        if policy == REPLAY_BATCH:
            _replay(kern, st, buf, va, ip, fp, ks, kf, bctr, remote_possible)
        elif policy == REPLAY_BATCH_FLUSH:
            # fault_buffer.flush_mode, then FaultBuffer.flush at the bottom half's time
            if duplicates * 100 > k * ip[I_PUT_RATIO]:  # UPDATE_PUT: PUT read again now
                ks[K_CACHED_PUT] = _now(ks, kf)
            _take(b_page, b_access, b_utlb, b_write, ks, _written(b_write, ks[K_BUF_N], ks[K_CACHED_PUT]))
            _replay(kern, st, buf, va, ip, fp, ks, kf, bctr, remote_possible)
        ks[K_BH_BATCHES] += 1
    if policy == REPLAY_ONCE or ks[K_BH_REPLAYS] == 0:
        _replay(kern, st, buf, va, ip, fp, ks, kf, bctr, remote_possible)
    return False


@njit(cache=True)
def run_loop(
    kern: tuple,
    st: tuple,
    buf: tuple,
    drv: tuple,
    decided: tuple,
    mid: tuple,
    ip: np.ndarray,
    fp: np.ndarray,
    ks: np.ndarray,
    kf: np.ndarray,
    bctr: np.ndarray,
) -> int:
    """``GpuKernelRun.run``'s loop from the start of an iteration; returns END, TICK,
    MID_BATCH (the sorted batch in ``mid``) or STUCK. ``kern``: the touch stream and its
    chunk; ``st``: the stalled threads' arrays; ``buf``: the fault buffer's; ``drv``: the
    compiled service's state; ``decided``: empty batch decisions."""
    meta = st[1]
    b_write = buf[3]
    n_segs = kern[0][0].shape[0]
    ctr = drv[6]
    fetched = 0
    while meta[COUNT] or not (ks[K_POS] == ks[K_LEN] and ks[K_SEG_I] >= n_segs):
        if fetched >= ip[I_MAX_TICK]:
            return TICK
        ks[K_BEFORE] = ks[K_PROGRESS]
        ks[K_NOW_NS] = np.int64(kf[F_CLOCK])
        remote_possible = ip[I_REMOTE] != 0 or ctr[REMOTE_MAPS] != 0
        if meta[COUNT] and ks[K_BUF_N] == 0:
            _step(np.int64(kf[F_CLOCK]), kern, st, buf, drv[0], ip, fp, ks, kf, remote_possible)
        elif meta[COUNT]:
            if _written(b_write, ks[K_BUF_N], ks[K_NOW_NS]) == 0:  # the interrupt comes with the first entry
                kf[F_CLOCK] = max(kf[F_CLOCK], np.float64(b_write[0]))
                ks[K_NOW_NS] = np.int64(kf[F_CLOCK])
            if _bottom_half(kern, st, buf, drv, ip, fp, ks, kf, bctr, decided, mid):
                return MID_BATCH
            fetched += ks[K_BH_BATCHES]
            kf[F_CLOCK] += kf[F_WORK]
            kf[F_WORK] = 0.0
        if meta[COUNT] == 0 and not (ks[K_POS] == ks[K_LEN] and ks[K_SEG_I] >= n_segs):
            remote_possible = ip[I_REMOTE] != 0 or ctr[REMOTE_MAPS] != 0
            _step(np.int64(kf[F_CLOCK]), kern, st, buf, drv[0], ip, fp, ks, kf, remote_possible)
        ks[K_IDLE] = ks[K_IDLE] + 1 if ks[K_PROGRESS] == ks[K_BEFORE] else 0
        if ks[K_IDLE] > ip[I_MAX_IDLE]:
            return STUCK
    return END


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
            st.t,
            st.meta,
            st.q_pos,
            st.q,
            st.phead,
            st.need_words,
            st.block_dirty,
            st.dirty,
            st.hits,
            st.hit_words,
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
        cap = run.buf.capacity
        self.mid = (
            np.empty(cap, np.int64),
            np.empty(cap, np.uint8),
            np.empty(cap, np.bool_),
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
                    self.mid,
                    self.ip,
                    self.fp,
                    ks,
                    kf,
                    self.bctr,
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
        m_page, m_access, m_keep, m_starts, m_stops = self.mid
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
