"""Forward prefetch decided for a whole fault batch at once, in compiled code: from every faulted
page, the next ``window`` pages of its VA block.

The policy library's example of the batch-level hook and of a compiled policy (docs/policies.md,
"Batch hooks" and "Compiled policies"): ``forward_batch`` is its ``prefetch_kernel``, which the
guard calls from compiled code once per fault batch, with every block of the batch as a row
of a bool array; Python is not entered for the decision at all. ``prefetch_batch`` is the same
decision as a Python hook (what runs under ``--isolate``); ``compiled=false`` drops the
kernel and runs that hook with the kernel's Python source (``py_func``): the same decisions,
which tests/test_policy_batch.py checks, at interpreter speed.

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


@njit(cache=True)
def forward_batch(  # noqa: ARG001 (the kernel signature, policy_calls)
    gpu: int,
    now_ns: int,
    blocks: np.ndarray,
    n_pages: np.ndarray,
    alloc: np.ndarray,
    faulted: np.ndarray,
    state: np.ndarray,
    out: np.ndarray,
    rows: np.ndarray,
) -> int:
    """The prefetch kernel (``policy_calls.PREFETCH_SIG``): every row decided; ``state[0]``: the
    window."""
    forward_kernel(faulted, n_pages, state[0], out)
    rows[:] = True
    return 1


class PrefetchForward(Policy):
    """From every faulted page, the next ``window`` pages of its block (compiled, once a batch)."""

    name = "forward"
    params = {"window": 64, "compiled": True}
    window: int
    compiled: bool
    prefetch_kernel = forward_batch

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        if not self.compiled:
            self.prefetch_kernel = None  # the Python hook below, with the kernel's source

    def kernel_state(self) -> np.ndarray:
        return np.array([max(0, self.window)], dtype=np.int64)

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
