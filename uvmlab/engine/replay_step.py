"""The GPU's side of a replay in compiled code, as ``GpuKernelRun.step`` (engine/gpu.py) takes it:
re-execute the stalled threads whose pages are now mapped, issue the kernel's next touches
(expand and scan its encoded touch stream), stall the threads that miss and report their faults
to the fault buffer (``arrival.report``). ``fault_loop.run_loop`` calls ``step`` after each
replay; the phase times go to ``cy`` (``loop_layout.P_*``) from the CPU's cycle counter.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from uvmlab.driver.compiled.scan import expand, gpu_scan, skip_hit_chunks
from uvmlab.driver.compiled.state import VaArrays
from uvmlab.driver.fault_buffer import drop, pushed
from uvmlab.engine import loop_layout as L
from uvmlab.engine.arrival import report
from uvmlab.engine.reexecute import reexecute
from uvmlab.engine.stalls import COUNT, append, oldest


@intrinsic
def read_cycle_counter(typingctx: object) -> tuple:  # noqa: ARG001 (numba's intrinsic signature)
    """LLVM's cycle counter (the TSC on x86; 0 where the target has none)."""

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(64), []), "llvm.readcyclecounter"
        )
        return builder.call(fn, [])

    return types.int64(), codegen


@njit(cache=True)
def cycles() -> int:
    """The cycle counter the loop's phase times (``loop_layout.P_*``) are read from."""
    return read_cycle_counter()


@njit(cache=True)
def to_front(buf: tuple, ks: np.ndarray) -> None:
    """Move the buffer's entries to index 0 (``K_BUF_H``)."""
    h = ks[L.K_BUF_H]
    if h:
        b_page, b_access, b_utlb, b_write = buf
        drop(b_page, b_access, b_utlb, b_write, h + ks[L.K_BUF_N], h)
        ks[L.K_BUF_H] = 0


@njit(cache=True, inline="always")
def _complete(ks, kf, fp, n, remote):
    """``GpuKernelRun._complete``: the compute share of ``n`` completed touches."""
    ks[L.K_COMPLETED] += n
    ks[L.K_PROGRESS] += n
    kf[L.F_CLOCK] += n * fp[L.F_NS_PER_TOUCH] + remote * fp[L.F_REMOTE_TOUCH_NS]
    ks[L.K_TOUCHES] += n


@njit(cache=True)
def _load(cols, pool, alloc_base, alloc_pages, page, acc, perm, ip, fp, ks, kf, idle, remote_possible):
    """``GpuKernelRun._load``: expand the next chunk of touches, running the chunks whose
    touches all hit unexpanded first where nothing but the clock observes them."""
    c_alloc, c_kind, c_access, c_start, c_count, c_stride = cols
    ks[L.K_BASE] += ks[L.K_LEN]
    ks[L.K_LEN] = 0
    ks[L.K_POS] = 0
    if not ks[L.K_MISSED]:
        ks[L.K_SKIP] = 1
    ks[L.K_MISSED] = 0
    if idle and ks[L.K_SKIP] and not remote_possible:
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
            ks[L.K_SEG_I],
            ks[L.K_OFF],
            page.shape[0],
            perm,
            ip[L.I_CONC],
            kf[L.F_CLOCK],
            fp[L.F_NS_PER_TOUCH],
            fp[L.F_REMOTE_TOUCH_NS],
        )
        ks[L.K_SEG_I], ks[L.K_OFF], kf[L.F_CLOCK] = seg_i, off, clock
        ks[L.K_BASE] += n
        ks[L.K_COMPLETED] += n
        ks[L.K_PROGRESS] += n
        ks[L.K_TOUCHES] += n
        ks[L.K_SKIP] = not missed
    seg_i, off, n = expand(
        c_alloc,
        c_kind,
        c_access,
        c_start,
        c_count,
        c_stride,
        pool,
        alloc_base,
        ks[L.K_SEG_I],
        ks[L.K_OFF],
        page,
        acc,
    )
    ks[L.K_SEG_I], ks[L.K_OFF] = seg_i, off
    ks[L.K_LEN] = n
    ks[L.K_POS] = 0
    return n > 0


@njit(cache=True)
def step(
    t0: int,
    kern: tuple,
    st: tuple,
    buf: tuple,
    va: VaArrays,
    ip: np.ndarray,
    fp: np.ndarray,
    ks: np.ndarray,
    kf: np.ndarray,
    remote_possible: bool,
    cy: np.ndarray,
) -> None:
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
        dirty_w,
        hits,
        hit_words,
        cursor,
        o_page,
        o_acc,
        o_utlb,
        o_write,
    ) = st
    b_page, b_access, b_utlb, b_write = buf
    gpu = ip[L.I_GPU]
    conc = ip[L.I_CONC]
    perm = va.perm[gpu]
    gbit = np.uint8(1 << gpu) if remote_possible else np.uint8(0)
    ks[L.K_STEPS] += 1
    c0 = read_cycle_counter()
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
            dirty_w,
            hits,
            hit_words,
        )
        if done:
            _complete(ks, kf, fp, done, remote)
            n -= done
    c1 = read_cycle_counter()
    cy[L.P_RECHECK] += c1 - c0
    free = conc - n
    first_stalled = -1  # the oldest stalled touch: no thread completes until the replay ends
    while free > 0:
        if ks[L.K_POS] == ks[L.K_LEN] and not _load(
            cols, pool, alloc_base, alloc_pages, page, acc, perm, ip, fp, ks, kf, n == 0, remote_possible
        ):
            break
        base = ks[L.K_BASE]
        if n and first_stalled < 0:
            first_stalled = oldest(t, q_pos, q)
        first = first_stalled if n else base + ks[L.K_POS]
        end = min(ks[L.K_LEN], first + conc - base)
        if end <= ks[L.K_POS]:
            break  # the window is full of unfinished touches
        pos, nf, n_hit, remote = gpu_scan(
            page, acc, ks[L.K_POS], end, perm, va.residency, gbit, free, out_idx
        )
        ks[L.K_POS] = pos
        _complete(ks, kf, fp, n_hit, remote)
        if nf:
            ks[L.K_MISSED] = 1
            append(out_idx, nf, base, page, acc, ip[L.I_TPB], t, meta, q_pos, q, phead, need_words)
            n += nf
            free -= nf
    c2 = read_cycle_counter()
    cy[L.P_SCAN] += c2 - c1
    if n:
        # the entries go straight into the buffer after its last one (FaultBuffer.push
        # without the copy): the k it can take fit there, moved to the front if need be
        k = min(n, ip[L.I_CAPACITY] - ks[L.K_BUF_N])
        h = ks[L.K_BUF_H]
        if h + ks[L.K_BUF_N] + k > b_page.shape[0]:  # no room after the last entry
            to_front(buf, ks)
            h = 0
        lo = h + ks[L.K_BUF_N]
        n_out = report(
            t,
            q_pos,
            q,
            cursor,
            k,
            ip[L.I_N_UTLB],
            ip[L.I_BURST],
            t0,
            ip[L.I_INTERVAL],
            ip[L.I_ROUNDS],
            b_page[lo:],
            b_access[lo:],
            b_utlb[lo:],
            b_write[lo:],
        )
        ks[L.K_BUF_N] = pushed(b_page[h:], b_access[h:], b_utlb[h:], b_write[h:], ks[L.K_BUF_N], n_out)
        ks[L.K_OVERFLOWS] += n - k
    cy[L.P_REPORT] += read_cycle_counter() - c2
