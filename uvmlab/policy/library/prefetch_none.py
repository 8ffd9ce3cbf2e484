"""Pure demand paging: every fault migrates its own 4 KiB page and nothing else.

When it wins: random access to a working set larger than GPU memory, where every prefetched
page is a wasted copy that also pushes a useful page out (gpu_ext's ``prefetch_none``). It loses
badly on anything sequential: each 4 KiB page then costs its own fault.
"""

from __future__ import annotations

from uvmlab.policy.base import DEFAULT, Policy, Region
from uvmlab.policy.context import PrefetchContext


class PrefetchNone(Policy):
    """Demand paging only: an empty prefetch region for every fault."""

    name = "prefetch-none"

    def prefetch_before_compute(self, ctx: PrefetchContext) -> int | Region:
        if ctx.dest == 0:
            return DEFAULT  # CPU faults keep the driver's prefetch: this policy is about the GPU
        # Empty, and placed at the block's end so that the driver's early exit (a region that
        # reaches the end of the block) skips the block's other faulted pages.
        return Region(ctx.n_pages, ctx.n_pages)
