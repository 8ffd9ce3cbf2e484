"""Sequential prefetch that crosses the 2 MiB VA block: when a sweep enters a block (its first
fault finds nothing of the block on the GPU), migrate the next ``blocks`` blocks of the
allocation as well (gpu_ext's ``bpf_gpu_migrate_range``, which its README credits with about
20 % on microbenchmarks). Inside the block it prefetches forward from the fault.

When it wins: long sequential sweeps, where the driver's prefetcher can never look past the
block being faulted and every block starts with a fault batch of its own. It costs copies of
whatever lies past the end of a sweep, and under oversubscription its migrations evict.
"""

from __future__ import annotations

from uvmlab.core.sizes import PAGES_PER_BLOCK
from uvmlab.policy.base import DEFAULT, Policy, Region
from uvmlab.policy.context import PrefetchContext


class PrefetchCrossBlock(Policy):
    """Forward prefetch in the block plus UVM_MIGRATE of the next ``blocks`` blocks."""

    name = "cross-block"
    params = {"blocks": 2}
    # the parameters, set on the instance from ``params`` (declared here for type checkers)
    blocks: int

    def prefetch_before_compute(self, ctx: PrefetchContext) -> int | Region:
        if ctx.dest == 0:
            return DEFAULT  # CPU faults: the driver's own prefetch
        n, page = ctx.n_pages, ctx.page_index
        if not ctx.resident.any():  # a sweep enters this block: pull in the ones after it
            nxt = ctx.block_first_page + n
            end = min(ctx.alloc.end_page, nxt + self.blocks * PAGES_PER_BLOCK)
            if end > nxt:
                ctx.migrate(nxt, end - nxt)
        return Region(page, n)
