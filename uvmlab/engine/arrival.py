"""The order in which a kernel's stalled accesses reach the GPU fault buffer, and when.

Every SM's uTLB reports its misses one after another, in its threads' program order, while all
SMs report concurrently, ``GpuSpec.fault_report_burst`` misses per round; ``GpuKernelRun``
(``engine/gpu.py``) keeps its stalled threads in ascending touch order and asks for the first
entries of that order at every replay.
"""

from __future__ import annotations

import numpy as np
from numba import njit


def arrival_order(
    pos: np.ndarray, conc: int, tpb: int, n_sm: int, n_utlb: int, burst: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """The order in which stalled accesses reach the fault buffer, and their uTLBs.

    Touch ``pos`` is done by thread ``pos % conc`` (a grid-stride loop, as the real-GPU
    executor runs it) in thread block ``thread // tpb``, and thread blocks are spread round-robin
    over the SMs. Each SM's uTLB reports its misses one after another, in its threads' program
    order, while all SMs report concurrently: so the buffer receives the first ``burst`` misses
    of every SM, then the next ``burst`` of every SM, and so on (``GpuSpec.fault_report_burst``).
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
    order = np.lexsort((rank % burst, sm, rank // burst))
    return order, (sm % n_utlb).astype(np.int32)


# Why no sort is needed for ascending ``pos`` (what GpuKernelRun keeps for its stalled threads):
# within one SM the in-SM key k is strictly increasing in pos. Same pos // conc: a later thread
# is in the same block (k grows with thread % tpb) or in a block at least n_sm later on that SM
# ((tb // n_sm) * tpb grows by >= tpb > thread % tpb). Larger pos // conc: the rest of k is
# <= thread < conc. So sorting by (sm, k) is a stable counting sort by SM; a thread's rank is
# its index among its SM's threads in pos order; and sorting by (rank, sm) takes rank 0 of every
# SM in SM order, then rank 1, and so on. Keys are distinct, so lexsort's tie order never
# matters. Consecutive threads of one block share an SM, so the counting sort by SM is done on
# runs of consecutive same-SM positions (a per-SM list of runs) instead of on every thread.
_RUN_START, _RUN_NEXT = range(2)  # rows of the per-run scratch (n + 1 columns)
_SM_HEAD, _SM_TAIL, _SM_RUN, _SM_AT, _SM_ACTIVE = range(5)  # rows of the per-SM scratch


@njit(cache=True)
def _arrival_order_into(pos, n, conc, tpb, n_sm, k, order, order_sm, order_round, runs, sms, burst):
    """Fill ``order[:k]`` with the indices of the first ``k`` of the ``n`` stalled threads in
    buffer arrival order, ``order_sm[:k]`` with their SMs and ``order_round[:k]`` with the round
    (the SMs' ``burst``-th report) in which each is written, for strictly ascending ``pos[:n]``,
    in O(n + n_sm) with a division only per thread block; ``runs`` (2 x n + 1) and ``sms``
    (5 x n_sm) are scratch. Raises ValueError if ``pos`` is not strictly ascending."""
    start, nxt = runs[_RUN_START], runs[_RUN_NEXT]  # run j covers [start[j], start[j + 1])
    head, tail, cur, at, active = (sms[_SM_HEAD], sms[_SM_TAIL], sms[_SM_RUN], sms[_SM_AT], sms[_SM_ACTIVE])
    for s in range(n_sm):
        head[s] = -1
    n_runs = 0
    prev = -1
    window = -conc  # pos of thread 0 in the current multiple of conc
    tb_lo, tb_hi, s = 0, 0, -1  # the threads of the last block seen, and its SM
    for i in range(n):
        p = pos[i]
        if p <= prev:
            raise ValueError("stalled touch positions must be strictly ascending")
        prev = p
        thread = p - window
        if thread >= conc:  # ascending pos: only on entering a new multiple of conc
            window = p - p % conc
            thread = p - window
        if thread < tb_lo or thread >= tb_hi:  # another thread block
            tb = thread // tpb
            tb_lo, tb_hi = tb * tpb, tb * tpb + tpb
            if tb % n_sm != s:  # another SM: a new run, appended to that SM's list
                s = tb % n_sm
                start[n_runs] = i
                nxt[n_runs] = -1
                if head[s] < 0:
                    head[s] = n_runs
                else:
                    nxt[tail[s]] = n_runs
                tail[s] = n_runs
                n_runs += 1
    start[n_runs] = n
    m = 0  # the SMs with stalls, ascending, each at its first stalled thread
    for s in range(n_sm):
        if head[s] >= 0:
            cur[s] = head[s]
            at[s] = start[head[s]]
            active[m] = s
            m += 1
    q = 0  # up to `burst` threads of each SM still holding some, in SM order, per round
    rnd = 0
    while q < k:
        kept = 0
        for a in range(m):
            s = active[a]
            i = at[s]
            alive = True
            for _ in range(burst):
                order[q] = i
                order_sm[q] = s
                order_round[q] = rnd
                q += 1
                if q == k:
                    break
                i += 1
                if i == start[cur[s] + 1]:  # the end of this run: the SM's next run, if any
                    cur[s] = nxt[cur[s]]
                    if cur[s] < 0:
                        alive = False
                        break
                    i = start[cur[s]]
            if q == k:
                break
            if alive:
                at[s] = i
                active[kept] = s
                kept += 1
        m = kept
        rnd += 1


def arrival_order_sorted(
    pos: np.ndarray, conc: int, tpb: int, n_sm: int, n_utlb: int, burst: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """``arrival_order`` for strictly ascending ``pos``, without sorting (see the note above)."""
    n = len(pos)
    pos = np.ascontiguousarray(pos, dtype=np.int64)
    order = np.empty(n, np.int64)
    order_sm = np.empty(n, np.int64)
    _arrival_order_into(
        pos,
        n,
        conc,
        tpb,
        n_sm,
        n,
        order,
        order_sm,
        np.empty(n, np.int64),
        np.empty((2, n + 1), np.int64),
        np.empty((5, n_sm), np.int64),
        burst,
    )
    utlb = np.empty(n, np.int32)
    utlb[order] = order_sm % n_utlb
    return order, utlb


@njit(cache=True)
def arrival_entries(
    pos: np.ndarray,
    page: np.ndarray,
    acc: np.ndarray,
    n: int,
    conc: int,
    tpb: int,
    n_sm: int,
    n_utlb: int,
    k: int,
    out_page: np.ndarray,
    out_acc: np.ndarray,
    out_utlb: np.ndarray,
    out_write: np.ndarray,
    order: np.ndarray,
    order_sm: np.ndarray,
    runs: np.ndarray,
    sms: np.ndarray,
    burst: int,
    t0: int,
    interval: int,
    rounds: int,
) -> int:
    """The first ``k`` fault entries, in arrival order, of the ``n`` stalled threads, and when
    each is written: round j of the SMs' reports at ``t0 + j * interval``, for j < ``rounds``
    (a uTLB reports at most ``rounds * burst`` misses per replay). Returns how many."""
    _arrival_order_into(pos, n, conc, tpb, n_sm, k, order, order_sm, out_write, runs, sms, burst)
    for q in range(k):
        if out_write[q] >= rounds:
            k = q
            break
    for q in range(k):
        i = order[q]
        out_page[q] = page[i]
        out_acc[q] = acc[i]
        out_utlb[q] = order_sm[q] % n_utlb
        out_write[q] = t0 + out_write[q] * interval
    return k
