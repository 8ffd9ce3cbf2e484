"""Forward prefetch decided for a whole fault batch at once, in compiled code: from every faulted
page, the next ``window`` pages of its VA block.

The policy library's example of the batch-level hook and the compiled form (docs/policies.md,
"Batch hooks and compiled policies"): ``prefetch_batch`` gets every block of the batch as a
row of a bool array, and hands the arrays to a ``numba.njit`` kernel, so the fault path enters
Python once per batch and the decision itself runs compiled. ``compiled=false`` runs the same
kernel's Python source (``py_func``) instead: the same decisions, which tests/test_policy_batch.py
checks, at interpreter speed.

When it wins: sequential sweeps whose faults arrive a few pages apart, where the driver's
density tree waits for half of a region to fault before it prefetches any of it. It copies up to
``window`` pages past the end of every sweep, and on random access it copies pages nobody reads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from uvmlab.policy.base import Policy
from uvmlab.policy.points_batch import BatchContext


@njit(cache=True)
def forward_kernel(faulted: np.ndarray, n_pages: np.ndarray, window: int, out: np.ndarray) -> None:
    """``out[i, p]``: page ``p`` of block ``i`` lies within ``window`` pages after a faulted page."""
    for i in range(faulted.shape[0]):
        n = n_pages[i]
        reach = -1  # the last page the faults seen so far reach
        for p in range(n):
            if faulted[i, p]:
                reach = min(p + window, n - 1)
            elif p <= reach:
                out[i, p] = True


class PrefetchForward(Policy):
    """From every faulted page, the next ``window`` pages of its block (one compiled call a batch)."""

    name = "forward"
    params = {"window": 64, "compiled": True}
    window: int
    compiled: bool

    def warm(self) -> None:
        # the types prefetch_batch passes: the context's read-only rows, a fresh output
        faulted, n_pages = np.zeros((1, 8), dtype=np.bool_), np.full(1, 8, dtype=np.int64)
        faulted.flags.writeable = n_pages.flags.writeable = False
        forward_kernel(faulted, n_pages, 1, np.zeros((1, 8), dtype=np.bool_))

    def prefetch_batch(self, ctx: BatchContext) -> np.ndarray:
        out = np.zeros(ctx.faulted.shape, dtype=np.bool_)
        kernel = forward_kernel if self.compiled else forward_kernel.py_func
        kernel(ctx.faulted, ctx.n_pages, max(0, self.window), out)
        return out
