"""The order in which a kernel's stalled accesses reach the GPU fault buffer.

Every SM's uTLB reports its misses one after another, in its threads' program order, while all
SMs report concurrently, ``GpuSpec.fault_report_burst`` misses per round. ``arrival_order`` is
the definition, by sorting; ``GpuKernelRun`` (``engine/gpu.py``) keeps its stalled threads in
per-SM queues (``engine/stalls.py``) that give the same order without a sort, as the note
below shows.
"""

from __future__ import annotations

import numpy as np


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
