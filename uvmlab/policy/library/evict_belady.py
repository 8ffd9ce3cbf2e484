"""Belady's MIN: evict the chunk whose block is needed furthest in the future — the optimal
replacement for a known reference string, and the bound no real driver can reach, since it reads
the trace's future (``needs_future``).

"Future" is the workload's touch stream (``uvmlab.policy.future``): a block's next use is its
earliest touch not done yet. Use it as the yardstick in ``uvmlab compare``: the gap between a
policy and Belady is what an eviction policy could still win. In the model it is a bound in
practice, not a proof: tens of thousands of threads wait at once and the driver serves their
faults in batches, in fault-buffer order, and prefetch brings in pages nobody asked for, so a
policy that settles on a stable resident set (LFU on random access) can beat it.
"""

from __future__ import annotations

import numpy as np

from uvmlab.policy.base import Policy
from uvmlab.policy.context import EvictionContext


class EvictBelady(Policy):
    """Evict the used chunk whose next use is furthest away (never again first)."""

    name = "belady"
    needs_future = True

    def eviction_prepare(self, ctx: EvictionContext) -> int | None:
        if len(ctx.unused) or not len(ctx.used):
            return None  # free to evict: nothing of those blocks is on the GPU
        nxt = np.asarray(ctx.next_use(ctx.owner(ctx.used)))[::-1]
        # Ties (blocks never used again): the most recently used goes, which keeps a stable
        # set resident rather than rotating through them.
        return int(ctx.used[len(nxt) - 1 - np.argmax(nxt)])
