"""The order in which a kernel's stalled accesses reach the GPU fault buffer, and when.

Every SM's uTLB reports its misses one after another, in its threads' program order, while all
SMs report concurrently, ``GpuSpec.fault_report_burst`` misses per round. ``arrival_order`` is
the definition, by sorting; ``GpuKernelRun`` (``engine/gpu.py``) keeps its stalled threads in
per-SM queues (``engine/stalls.py``) and ``report`` reads the same order from them without a
sort, as the note below shows.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from uvmlab.driver.compiled.borrow import view
from uvmlab.engine.stalls import ACC, PAGE, POS1, Q_HEAD, Q_TAIL, live, slot_bits


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


# Why no sort is needed for ascending ``pos`` (stalled threads appended in touch order):
# within one SM the in-SM key k is strictly increasing in pos. Same pos // conc: a later thread
# is in the same block (k grows with thread % tpb) or in a block at least n_sm later on that SM
# ((tb // n_sm) * tpb grows by >= tpb > thread % tpb). Larger pos // conc: the rest of k is
# <= thread < conc. So sorting by (sm, k) is a stable counting sort by SM; a thread's rank is
# its index among its SM's threads in pos order; and sorting by (rank, sm) takes rank 0 of every
# SM in SM order, then rank 1, and so on. Keys are distinct, so lexsort's tie order never
# matters. So the order is: every SM's threads in touch order (a queue per SM, appended to as
# threads stall), read ``burst`` at a time, SM by SM (engine/stalls.report).


@njit(cache=True)
def report(
    t: np.ndarray,
    q_pos: np.ndarray,
    q: np.ndarray,
    cur: np.ndarray,
    k: int,
    n_utlb: int,
    burst: int,
    t0: int,
    interval: int,
    rounds: int,
    out_page: np.ndarray,
    out_acc: np.ndarray,
    out_utlb: np.ndarray,
    out_write: np.ndarray,
) -> int:
    """The first ``k`` fault entries the stalled threads write, in arrival order: round j takes
    the next ``burst`` threads of every SM that has any left, SM by SM, written at
    ``t0 + j * interval``, for j < ``rounds`` (a uTLB reports at most ``rounds * burst``
    misses per replay). Returns how many; ``cur`` (two per SM) is scratch. ``arrival_order``
    (arrival.py) is the reference. The stale entries walked over are dropped."""
    t, q_pos, q = view(t), view(q_pos), view(q)
    n_sm = q.shape[1]
    if cur.shape[0] < 2 * n_sm:
        raise ValueError("report's scratch needs two cells per SM")
    m = q_pos.shape[1] - 1
    sb = slot_bits(t.shape[0])
    slot_mask = (1 << sb) - 1
    n = 0
    if k <= 0:
        return 0
    for s in range(n_sm):
        cur[s] = q[Q_HEAD, s]  # the next entry to walk
        cur[n_sm + s] = -1  # the last stale entry walked over, -1: none
    for rnd in range(rounds):
        left = False
        w = t0 + rnd * interval
        for s in range(n_sm):
            i = cur[s]
            end = q[Q_TAIL, s]
            u = s % n_utlb
            taken = 0
            while i < end and taken < burst and n < k:
                e = q_pos[s, i & m]
                slot = e & slot_mask
                if t[slot, POS1] != (e >> sb) + 1:
                    cur[n_sm + s] = i
                    i += 1
                    continue
                i += 1
                out_page[n] = t[slot, PAGE]
                out_acc[n] = t[slot, ACC]
                out_utlb[n] = u
                out_write[n] = w
                n += 1
                taken += 1
            cur[s] = i
            if n == k:
                break
            # the SM has threads left if a live entry follows (stale ones are skipped)
            while i < end and not live(t, q_pos, s, i, sb):
                cur[n_sm + s] = i
                i += 1
            cur[s] = i
            left |= i < end
        if n == k or not left:
            break
    for s in range(n_sm):
        # the walked part of each queue keeps only its live entries, moved up to the last
        # stale one (those after it stay where they are)
        last = cur[n_sm + s]
        if last < 0:
            continue
        h = q[Q_HEAD, s]
        wr = last + 1
        for i in range(last - 1, h - 1, -1):
            if live(t, q_pos, s, i, sb):
                wr -= 1
                q_pos[s, wr & m] = q_pos[s, i & m]
        q[Q_HEAD, s] = wr
    return n
