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
* HOOK: a Python policy hook must run — ``begin_batch`` on a sorted batch, ``after_batch`` on
  a serviced one — or a policy's compiled kernel failed (the guard ejects it); the state to
  resume from is in ``ks`` (``K_RESUME``), and the next call goes on from there;
* MID_BATCH: a block of a batch needs the reference path (SLOW), an allocation in Python
  (NEED_CHUNK) or its ``chunk_used`` hook (CHUNK_USED); the batch is serviced up to that block
  and sorted in ``batch``; Python takes the step for that block and the loop resumes at the
  next one, or finishes the bottom half with ``BottomHalf.resume`` (engine/loop_stops.py);
* STUCK: no touch completed for ``max_idle`` rounds (a model bug; the caller raises).

Policies (driver/hooks.py): a policy's compiled kernels are called inside the loop, through
the function pointers of ``policy_calls`` (prefetch and thrashing on each sorted batch, the
victim inside the block service, replay after each batch), so a policy of kernels only never
returns to Python; a live Python hook costs two HOOK stops a batch.

``GpuKernelRun.compiled_ok`` says when it may run: the compiled block service is usable
(``FastPath.usable``: no per-page or per-block hook), no policy reads the run's future, the
replay re-checks only the blocks fetched (``track_blocks``: one GPU, no BLOCK replays, no
AccessedBy on the GPU), no access-counter migrations, no pending thrashing unpin and no
invariant checks. Within one call none of these can change: the compiled service makes no
migration and no pin (Python checks them again at each stop). A residency sampler is served by
TICK returns: an iteration that starts where a sample is due (``K_NEXT_SAMPLE``) returns, and
Python takes it where its own loop would (``Engine.service_timers``).
``tests/test_fast_path.py`` compares the results with the reference path's.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from uvmlab.driver.compiled.gpu_faults import service_blocks
from uvmlab.driver.compiled.state import DONE, REMOTE_MAPS
from uvmlab.driver.fault_batch import coalesce_into, preprocess_into
from uvmlab.driver.fault_buffer import written
from uvmlab.driver.replayable_faults import REPLAY_BATCH, REPLAY_BATCH_FLUSH, REPLAY_ONCE
from uvmlab.engine import loop_layout as L
from uvmlab.engine import loop_policies as lp
from uvmlab.engine.replay_step import read_cycle_counter, step, to_front
from uvmlab.engine.stalls import COUNT, mark_blocks, mark_words


@njit(cache=True, inline="always")
def _now(ks, kf):
    """``BottomHalf.now``."""
    return ks[L.K_BH_START_NS] + np.int64(kf[L.F_WORK] - kf[L.F_BH_START_WORK])


@njit(cache=True, inline="always")
def _replay(kern, st, buf, va, ip, fp, ks, kf, bctr, remote_possible, cy):
    """``BottomHalf.do_replay``."""
    ks[L.K_BH_REPLAYS] += 1
    ks[L.K_DEFERRED] = 0
    bctr[L.C_REPLAYS] += 1
    pushed = _now(ks, kf)
    kf[L.F_WORK] += fp[L.F_REPLAY_NS]
    step(pushed, kern, st, buf, va, ip, fp, ks, kf, remote_possible, cy)


@njit(cache=True, inline="always")
def _bh_begin(fp, ks, kf, bctr):
    """``BottomHalf.__init__``: a bottom half starts now."""
    bctr[L.C_BH] += 1
    kf[L.F_WORK] += fp[L.F_BOTTOM_HALF_NS]
    ks[L.K_BH_START_NS] = ks[L.K_NOW_NS]
    kf[L.F_BH_START_WORK] = kf[L.F_WORK]
    ks[L.K_BH_BATCHES] = 0
    ks[L.K_BH_REPLAYS] = 0
    ks[L.K_BH_THROTTLED] = 0
    ks[L.K_DEFERRED] = 0


@njit(cache=True)
def _bottom_half(kern, st, buf, drv, hk, ip, fp, ks, kf, bctr, decided, batch, cy):
    """``BottomHalf``, a batch at a time in the scratch arrays ``batch``, from the point
    ``ks[K_RESUME]`` says (R_NONE: the next fetch). Returns 0 at its end; MID_BATCH where a
    block stopped the compiled service (the sorted batch is left in ``batch``, its state in
    ``ks``); HOOK where Python must act before the loop goes on (``K_RESUME``: where)."""
    va, pmm, n_chunks, th, pf, costs, ctr, sc, work = drv
    b_page, b_access, b_utlb, b_write = buf
    meta, block_dirty, dirty, dirty_w = st[1], st[6], st[7], st[8]
    rp, ra, rc, last_of_utlb, sp, sa, keep, starts, stops, key = batch
    remote_possible = ip[L.I_REMOTE] != 0 or ctr[REMOTE_MAPS] != 0
    policy = ip[L.I_POLICY]
    gpu = ip[L.I_GPU]
    phase = ks[L.K_RESUME]
    ks[L.K_RESUME] = L.R_NONE
    while True:
        if phase == L.R_NONE:
            if not (ks[L.K_BH_BATCHES] < ip[L.I_MAX_BATCHES] and ks[L.K_BH_THROTTLED] < ip[L.I_MAX_THROTTLE]):
                break
            c0 = read_cycle_counter()
            now = _now(ks, kf)
            ks[L.K_NOW_NS] = now
            # FaultBuffer.fetch, and the blocks it fetched are re-checked at the next replay
            h = ks[L.K_BUF_H]
            if written(b_write[h:], ks[L.K_BUF_N], ks[L.K_CACHED_PUT]) == 0:
                ks[L.K_CACHED_PUT] = now
            k = min(ip[L.I_BATCH_COUNT], written(b_write[h:], ks[L.K_BUF_N], ks[L.K_CACHED_PUT]))
            if k == 0:
                break
            page, access, utlb = b_page[h : h + k], b_access[h : h + k], b_utlb[h : h + k]
            # without prefetching, a compiled block service maps only the pages that faulted
            # (residency.make_resident_and_map of prefetch_pages' faulted pages); a policy's
            # prefetch rows apply only where prefetching is on (points_batch)
            if pf.enable:
                mark_blocks(page, block_dirty, dirty, meta)
            else:
                mark_words(page, dirty_w, meta)
            c1 = read_cycle_counter()
            cy[L.P_FETCH] += c1 - c0
            m = coalesce_into(page, access, utlb, ip[L.I_COALESCE] != 0, rp, ra, rc, last_of_utlb)
            ks[L.K_BUF_H] += k
            ks[L.K_BUF_N] -= k
            bctr[L.C_FAULTS] += k
            bctr[L.C_NOTIFIED] += m
            bctr[L.C_BATCHES] += 1
            bctr[L.C_GROUPS] += 1
            kf[L.F_WORK] += fp[L.F_FAULT_BATCH_NS] + k * fp[L.F_FAULT_NS]
            nb, duplicates = preprocess_into(rp[:m], ra[:m], rc[:m], sp, sa, keep, starts, stops, key)
            cy[L.P_SORT] += read_cycle_counter() - c1
            ks[L.K_MID_K] = 0
            ks[L.K_MID_FETCHED] = k
            ks[L.K_MID_COALESCED] = m
            ks[L.K_MID_DUPLICATES] = duplicates
            ks[L.K_MID_N] = m
            ks[L.K_MID_NB] = nb
            ks[L.K_FRESH] = -1
            ks[L.K_THROTTLED] = 0
            ks[L.K_DECIDED] = 0
            if ip[L.I_BEGIN_HOOKS]:  # begin_batch in Python, then the service
                ks[L.K_RESUME] = L.R_SERVICE
                return L.HOOK
            ks[L.K_PHASE] = L.PH_DECIDE  # the policy's kernels (begin_batch's)
            decided_bits = lp.decide(hk, gpu, now, nb, sp[:m], sa[:m], keep[:m], starts, va)
            ks[L.K_PHASE] = L.PH_NONE
            if decided_bits == lp.BAD_CALL:  # ejected in Python; the batch keeps the driver's hints
                ks[L.K_RESUME] = L.R_SERVICE
                return L.HOOK
            ks[L.K_DECIDED] = decided_bits
            phase = L.R_SERVICE
        if phase == L.R_SERVICE:
            c2 = read_cycle_counter()
            m, nb = ks[L.K_MID_N], ks[L.K_MID_NB]
            pf_mask, pf_set, reference = lp.rows(hk, ks[L.K_DECIDED], nb, decided[0], decided[1], decided[2])
            k_victim, s_victim, vst = lp.victim(hk)
            work[0] = kf[L.F_WORK]
            ks[L.K_PHASE] = L.PH_SERVICE
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
                ks[L.K_NOW_NS],
                gpu,
                sp[:m],
                sa[:m],
                keep[:m],
                starts[:nb],
                stops[:nb],
                ks[L.K_MID_K],
                True,
                ip[L.I_STOP_ALLOC] != 0,
                ip[L.I_STOP_USED] != 0,
                pf_mask,
                pf_set,
                reference,
                ks[L.K_FRESH],
                k_victim,
                s_victim,
                vst,
            )
            ks[L.K_PHASE] = L.PH_NONE
            kf[L.F_WORK] = work[0]
            cy[L.P_SERVICE] += read_cycle_counter() - c2
            if status != DONE:  # the reference path may map any page of the batch's blocks
                mark_blocks(rp[:m], block_dirty, dirty, meta)  # the batch's pages, coalesced
                ks[L.K_MID_K] = kb
                ks[L.K_MID_STATUS] = status
                return L.MID_BATCH
            bctr[L.C_DUPLICATES] += ks[L.K_MID_DUPLICATES]
            if ip[L.I_PYTHON_HOOKS] or lp.victim_bad(hk):  # after_batch in Python
                ks[L.K_RESUME] = L.R_AFTER
                return L.HOOK
            ks[L.K_PHASE] = L.PH_REPLAY
            decision = lp.replay(
                hk,
                gpu,
                ks[L.K_BH_BATCHES],
                ks[L.K_MID_FETCHED],
                ks[L.K_MID_COALESCED],
                ks[L.K_MID_DUPLICATES],
                ks[L.K_THROTTLED],
                ks[L.K_BUF_N],
                policy,
                ks[L.K_BH_REPLAYS],
                ks[L.K_NOW_NS],
            )
            ks[L.K_PHASE] = L.PH_NONE
            if decision == lp.BAD_CALL:  # ejected in Python, the decision 0
                ks[L.K_DECISION] = 0
                ks[L.K_RESUME] = L.R_APPLY
                return L.HOOK
            ks[L.K_DECISION] = decision
            phase = L.R_APPLY
        # BottomHalf.apply_decision
        decision = ks[L.K_DECISION]
        if decision > 0:
            _replay(kern, st, buf, va, ip, fp, ks, kf, bctr, remote_possible, cy)
        elif decision < 0:
            ks[L.K_DEFERRED] = 1
        elif policy == REPLAY_BATCH:
            _replay(kern, st, buf, va, ip, fp, ks, kf, bctr, remote_possible, cy)
        elif policy == REPLAY_BATCH_FLUSH:
            # fault_buffer.flush_mode, then FaultBuffer.flush at the bottom half's time
            if ks[L.K_MID_DUPLICATES] * 100 > ks[L.K_MID_FETCHED] * ip[L.I_PUT_RATIO]:
                ks[L.K_CACHED_PUT] = _now(ks, kf)  # UPDATE_PUT: PUT read again now
            flushed = written(b_write[ks[L.K_BUF_H] :], ks[L.K_BUF_N], ks[L.K_CACHED_PUT])
            ks[L.K_BUF_H] += flushed
            ks[L.K_BUF_N] -= flushed
            _replay(kern, st, buf, va, ip, fp, ks, kf, bctr, remote_possible, cy)
        if ks[L.K_THROTTLED]:
            ks[L.K_BH_THROTTLED] += 1
        ks[L.K_BH_BATCHES] += 1
        phase = L.R_NONE
    if policy == REPLAY_ONCE or ks[L.K_BH_REPLAYS] == 0 or ks[L.K_DEFERRED]:
        _replay(kern, st, buf, va, ip, fp, ks, kf, bctr, remote_possible, cy)
    return 0


@njit(cache=True)
def run_loop(
    kern: tuple,
    st: tuple,
    buf: tuple,
    drv: tuple,
    hk: tuple | None,
    decided: tuple,
    batch: tuple,
    ip: np.ndarray,
    fp: np.ndarray,
    ks: np.ndarray,
    kf: np.ndarray,
    bctr: np.ndarray,
    cy: np.ndarray,
) -> int:
    """``GpuKernelRun.run``'s loop from the start of an iteration, or from where a HOOK stop
    left it (``ks[K_RESUME]``); returns END, TICK, MID_BATCH (the sorted batch in ``batch``),
    HOOK or STUCK (``loop_layout``); adds the cycles of each phase to ``cy``
    (``loop_layout.P_*``). ``kern``: the touch stream and its chunk; ``st``: the stalled
    threads' arrays; ``buf``: the fault buffer's; ``drv``: the compiled service's state;
    ``hk``: the policy's compiled kernels (``loop_policies``; None: none); ``decided``: batch
    decisions (empty, or ``begin_batch``'s for the batch a HOOK stop resumes).

    One function, not a loop calling an iteration: numba re-optimises, at every level of
    calls, all the code linked in below it, so each level costs a cold compile some 20 s."""
    c0 = read_cycle_counter()
    ks[L.K_BUF_H] = 0
    meta = st[1]
    b_write = buf[3]
    n_segs = kern[0][0].shape[0]
    ctr = drv[6]
    fetched = 0
    status = L.END
    while True:
        if ks[L.K_RESUME] == L.R_NONE:
            if not (meta[COUNT] or not (ks[L.K_POS] == ks[L.K_LEN] and ks[L.K_SEG_I] >= n_segs)):
                break
            if fetched >= ip[L.I_MAX_TICK]:
                status = L.TICK
                break
            # a sample due: Python takes it at this iteration's start (none before the first step)
            if ks[L.K_STEPS] and np.int64(kf[L.F_CLOCK]) >= ks[L.K_NEXT_SAMPLE]:
                status = L.TICK
                break
            ks[L.K_BEFORE] = ks[L.K_PROGRESS]
            ks[L.K_NOW_NS] = np.int64(kf[L.F_CLOCK])
            in_bh = False
            if meta[COUNT] and ks[L.K_BUF_N] == 0:
                remote_possible = ip[L.I_REMOTE] != 0 or ctr[REMOTE_MAPS] != 0
                step(np.int64(kf[L.F_CLOCK]), kern, st, buf, drv[0], ip, fp, ks, kf, remote_possible, cy)
            elif meta[COUNT]:
                if (
                    written(b_write[ks[L.K_BUF_H] :], ks[L.K_BUF_N], ks[L.K_NOW_NS]) == 0
                ):  # the interrupt comes with the first entry
                    kf[L.F_CLOCK] = max(kf[L.F_CLOCK], np.float64(b_write[ks[L.K_BUF_H]]))
                    ks[L.K_NOW_NS] = np.int64(kf[L.F_CLOCK])
                _bh_begin(fp, ks, kf, bctr)
                in_bh = True
        else:  # a HOOK stop's bottom half goes on
            in_bh = True
        if in_bh:
            stopped = _bottom_half(kern, st, buf, drv, hk, ip, fp, ks, kf, bctr, decided, batch, cy)
            if stopped != 0:
                status = stopped
                break
            fetched += ks[L.K_BH_BATCHES]
            kf[L.F_CLOCK] += kf[L.F_WORK]
            kf[L.F_WORK] = 0.0
        if meta[COUNT] == 0 and not (ks[L.K_POS] == ks[L.K_LEN] and ks[L.K_SEG_I] >= n_segs):
            remote_possible = ip[L.I_REMOTE] != 0 or ctr[REMOTE_MAPS] != 0
            step(np.int64(kf[L.F_CLOCK]), kern, st, buf, drv[0], ip, fp, ks, kf, remote_possible, cy)
        ks[L.K_IDLE] = ks[L.K_IDLE] + 1 if ks[L.K_PROGRESS] == ks[L.K_BEFORE] else 0
        if ks[L.K_IDLE] > ip[L.I_MAX_IDLE]:
            status = L.STUCK
            break
    to_front(buf, ks)  # as FaultBuffer keeps them
    cy[L.P_CALL] += read_cycle_counter() - c0
    return status
