"""Where the compiled fault loop (``fault_loop.run_loop``) hands a kernel run back to Python
in the middle of a bottom half, and how Python goes on (part of ``kernel_loop.KernelLoop``).

* HOOK, ``K_RESUME`` = R_SERVICE: a batch is sorted; a Python batch hook is live, so Python
  calls ``begin_batch`` on the sorted batch's arrays (the views the reference path passes) and
  the loop services the batch with its decisions (with other Python hooks only, the hooks
  learn the batch at its first stop: ``note_batch``, or ``adopt_batch`` for kernels' rows);
* HOOK, R_AFTER: the batch is serviced; Python calls ``after_batch`` (the policies' replay
  decision, chunk_used_batch, queued migrations) and the loop applies the decision — unless a
  policy migration mapped pages of any block, where Python finishes the bottom half;
* HOOK, R_APPLY / R_SERVICE after a compiled kernel raised or returned garbage: Python ejects
  its policy as the reference path does, and the loop goes on with the driver's default;
* MID_BATCH: a block stopped the compiled service (SLOW, NEED_CHUNK, CHUNK_USED): Python takes
  the step ``replayable_faults.service_sorted`` takes for it and the loop resumes at the next
  block, where nothing the loop cannot follow happened (``GpuKernelRun.compiled_ok``); else
  Python finishes the bottom half (``BottomHalf.resume``).

Every step is the reference path's, in its order, so both paths give the same answer
(``tests/test_fast_path.py``, ``tests/test_policy_loop.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from uvmlab.core.sizes import BLOCK_SHIFT
from uvmlab.driver import va_block as vb
from uvmlab.driver.compiled.policy_calls import (
    BAD,
    BAD_VALUE,
    CALLING,
    PREFETCH,
    REPLAY,
    THRASHING,
    VICTIM,
    K,
)
from uvmlab.driver.compiled.state import CHUNK_USED, NEED_CHUNK
from uvmlab.driver.hooks import BatchDecisions
from uvmlab.driver.replayable_faults import BottomHalf, service_block_faults
from uvmlab.engine.loop_layout import (
    D_PYTHON,
    F_BH_START_WORK,
    HOOK,
    I_BEGIN_HOOKS,
    I_POLICY,
    I_PYTHON_HOOKS,
    K_BH_BATCHES,
    K_BH_REPLAYS,
    K_BH_START_NS,
    K_BH_THROTTLED,
    K_DECIDED,
    K_DECISION,
    K_DEFERRED,
    K_FRESH,
    K_MID_COALESCED,
    K_MID_DUPLICATES,
    K_MID_FETCHED,
    K_MID_K,
    K_MID_N,
    K_MID_NB,
    K_MID_STATUS,
    K_PHASE,
    K_RESUME,
    K_THROTTLED,
    MID_BATCH,
    PH_DECIDE,
    PH_NONE,
    PH_REPLAY,
    PH_SERVICE,
    R_AFTER,
    R_APPLY,
    R_NONE,
    R_SERVICE,
)
from uvmlab.engine.loop_policies import H_STATUS, H_VSTATUS
from uvmlab.engine.stalls import mark_blocks


class LoopStops:
    """``KernelLoop``'s stops (its fields: ``run``, ``ks``, ``kf``, ``ip``, ``st``, ``batch``,
    the kernels ``_hk`` of the last call, their rows ``_kbuf``, ``status``)."""

    run: Any
    ks: np.ndarray
    kf: np.ndarray
    ip: np.ndarray
    st: tuple
    batch: tuple
    status: int
    _hk: tuple | None
    _kbuf: tuple
    _py_decided: BatchDecisions | None
    _ready: bool

    def _kernel_raised(self, err: Exception) -> int:
        """A policy's compiled kernel raised ``err`` inside the loop: eject it, as the Python
        path does (points_batch, fast_service, points_memory), and say where the loop goes on."""
        ks, hooks = self.ks, self.run.drv.hooks
        assert hooks is not None  # kernels come from hooks
        kst, vst = self._statuses()
        phase = int(ks[K_PHASE])
        ks[K_PHASE] = PH_NONE
        if phase == PH_SERVICE:  # the victim: its block allocates in Python (NEED_CHUNK)
            k = int(vst[K])
            hooks.kernel_failed(VICTIM, err)
            m = int(ks[K_MID_N])
            st = self.st
            mark_blocks(self.batch[0][:m], st[6], st[7], st[1])
            ks[K_MID_K], ks[K_MID_STATUS] = k, NEED_CHUNK
            return MID_BATCH
        if phase == PH_DECIDE:  # the batch keeps the driver's hints
            hooks.kernel_failed(int(kst[CALLING]), err)
            ks[K_DECIDED], ks[K_RESUME] = 0, R_SERVICE
        else:  # PH_REPLAY: the driver's replay policy
            assert phase == PH_REPLAY
            kst[CALLING] = -1
            hooks.kernel_failed(REPLAY, err)
            ks[K_DECISION], ks[K_RESUME] = 0, R_APPLY
        self._ready = True
        return HOOK

    def _statuses(self) -> tuple[np.ndarray, np.ndarray]:
        """The status words of the last call's kernels (policy_calls: CALLING, K, BAD ...)."""
        hk = self._hk
        if hk is None:
            none = np.array([-1, 0, -1, 0, 0], np.int64)
            return none, none
        return hk[H_STATUS], hk[H_VSTATUS]

    def _sorted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The batch the loop stopped in: sorted page, access, keep, block starts, stops."""
        n, nb = int(self.ks[K_MID_N]), int(self.ks[K_MID_NB])
        m_page, m_access, m_keep, m_starts, m_stops = self.batch[4:9]
        return m_page[:n], m_access[:n], m_keep[:n], m_starts[:nb], m_stops[:nb]

    def _decisions(self) -> BatchDecisions | None:
        """The stopped batch's policy decisions; the compiled kernels' are handed to the hooks
        (``adopt_batch``) the first time Python needs them."""
        ks = self.ks
        bits = int(ks[K_DECIDED])
        if bits & D_PYTHON:
            return self._py_decided
        if not bits and not self.ip[I_PYTHON_HOOKS]:
            return None
        hooks = self.run.drv.hooks
        assert hooks is not None
        page, _, _, starts, _ = self._sorted()
        if not bits:  # no begin_batch stop (no batch hook): the Python hooks learn the batch here
            hooks.note_batch(self.run.drv, self.run.gpu, page[starts] >> BLOCK_SHIFT)
            self._py_decided = None
            ks[K_DECIDED] = D_PYTHON
            return None
        nb = len(starts)
        kb = self._kbuf
        d = hooks.adopt_batch(
            self.run.drv,
            self.run.gpu,
            page[starts] >> BLOCK_SHIFT,
            (kb[0][:nb], kb[1][:nb]) if bits >> PREFETCH & 1 else None,
            (kb[2][:nb], kb[3][:nb]) if bits >> THRASHING & 1 else None,
        )
        self._py_decided = d
        ks[K_DECIDED] = D_PYTHON
        return d

    def _bottom_half(self) -> BottomHalf:
        """The stopped bottom half, for Python to finish."""
        r, ks, kf = self.run, self.ks, self.kf
        ks[K_RESUME] = R_NONE
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
                int(ks[K_BH_THROTTLED]),
                int(ks[K_BH_REPLAYS]),
            ),
        )
        bh.deferred = bool(ks[K_DEFERRED])
        return bh

    def _finish_batch(self, k: int) -> None:
        """Finish the stopped batch from block ``k``, and its bottom half, in Python."""
        ks = self.ks
        self._bottom_half().resume(
            self._sorted(),
            k,
            int(ks[K_MID_FETCHED]),
            int(ks[K_MID_COALESCED]),
            int(ks[K_MID_DUPLICATES]),
            self._decisions(),
            int(ks[K_FRESH]),
            bool(ks[K_THROTTLED]),
        )

    def hook(self) -> bool:
        """Act where ``run_loop`` stopped (HOOK or MID_BATCH): call the policies' Python hooks,
        or service the block the compiled service handed back. True: the loop goes on in
        compiled code (call again); False: Python finished the bottom half (the caller goes
        on as after ``service_replayable_faults``)."""
        if self._ready:
            self._ready = False
            return True
        r, ks = self.run, self.ks
        drv = r.drv
        hooks = drv.hooks
        if self.status == MID_BATCH:
            return self._service_stop()
        where = int(ks[K_RESUME])
        kst, vst = self._statuses()
        assert hooks is not None  # HOOK stops come from hooks
        if where == R_SERVICE:
            if kst[BAD] >= 0:  # a batch kernel returned garbage: ejected, the driver's hints
                hooks.kernel_failed(int(kst[BAD]), None)
            if self.ip[I_BEGIN_HOOKS]:
                page, access, keep, starts, _ = self._sorted()
                self._py_decided = hooks.begin_batch(
                    drv, r.gpu, page[starts] >> BLOCK_SHIFT, page, access, keep, starts
                )
                ks[K_DECIDED] = D_PYTHON
            return True
        if where == R_APPLY:  # the replay kernel returned garbage: ejected, decision 0
            v = int(kst[BAD_VALUE])
            kst[BAD] = -1
            hooks.kernel_failed(REPLAY, None, v)
            return True
        assert where == R_AFTER
        if vst[BAD] >= 0:
            hooks.kernel_failed(VICTIM, None)
        if self.ip[I_PYTHON_HOOKS]:  # the hooks hold the batch (begin_batch, note_ or adopt_batch)
            self._decisions()
        throttled = bool(ks[K_THROTTLED])
        decision = hooks.after_batch(
            drv,
            r.gpu,
            int(self.ip[I_POLICY]),
            int(ks[K_BH_BATCHES]),
            int(ks[K_MID_FETCHED]),
            int(ks[K_MID_COALESCED]),
            int(ks[K_MID_DUPLICATES]),
            throttled,
            r.buf.n,
            int(ks[K_BH_REPLAYS]),
        )
        if not r.compiled_ok():  # a policy migration maps pages of any block: Python goes on
            self._bottom_half().resume_after(
                decision, int(ks[K_MID_FETCHED]), int(ks[K_MID_DUPLICATES]), throttled, bool(ks[K_DEFERRED])
            )
            return False
        ks[K_DECISION], ks[K_RESUME] = decision, R_APPLY
        return True

    def _service_stop(self) -> bool:
        """A block the compiled service handed back (``replayable_faults.service_sorted``'s
        steps for it), then the rest of the batch in compiled code where nothing the loop
        cannot follow happened."""
        r, ks = self.run, self.ks
        drv, gpu = r.drv, r.gpu
        hooks = drv.hooks
        vst = self._statuses()[1]
        if vst[BAD] >= 0 and hooks is not None:
            hooks.kernel_failed(VICTIM, None)
        k, status, fresh = int(ks[K_MID_K]), int(ks[K_MID_STATUS]), int(ks[K_FRESH])
        # compiled_ok holds here: it held when the loop was entered, and compiled code and the
        # Python steps at earlier stops (checked after each) cannot break it
        page, access, keep_all, starts, stops = self._sorted()
        self._decisions()  # the hooks hold the batch's rows from here on (the reference path)
        s, e = int(starts[k]), int(stops[k])
        block = int(page[s]) >> BLOCK_SHIFT
        fast = drv.fast
        assert fast is not None
        if status == NEED_CHUNK:  # allocation, eviction and their policies stay in Python
            if vb.ensure_gpu_chunk(drv, block, gpu, fast.evict_block_chunk):
                ks[K_FRESH] = block
        elif status == CHUNK_USED:  # the block is serviced but for its policy hook
            assert hooks is not None
            hooks.chunk_used(drv, gpu, block, int(drv.va.gpu_chunk[gpu - 1, block]), fresh == block)
            drv.charge(drv.profile.fault_block_ns)
            k += 1
        else:  # SLOW: the reference path
            keep = keep_all[s:e]
            if service_block_faults(drv, gpu, block, page[s:e][keep], access[s:e][keep]):
                ks[K_THROTTLED] = 1
            drv.charge(drv.profile.fault_block_ns)
            k += 1
        ks[K_MID_K] = k
        if not r.compiled_ok():
            self._finish_batch(k)
            return False
        ks[K_RESUME] = R_SERVICE
        return True
