"""The driver's bitmap-tree prefetcher with a threshold of your choice, through the tree-walk hook
(gpu_ext's ``prefetch_adaptive_tree_iter``; there user space moves the threshold with the
measured PCIe throughput).

When it wins: a lower threshold (25-40) helps sequential or clustered access that only half
fills tree nodes; a higher one (70-90) cuts wasted copies for sparse access under
oversubscription. ``threshold=51`` is the driver's own rule, decision for decision.
"""

from __future__ import annotations

from uvmlab.policy.base import ENTER_LOOP, Policy
from uvmlab.policy.context import PrefetchContext


class PrefetchTree(Policy):
    """Walk the tree; select every node whose populated share beats ``threshold`` percent."""

    name = "tree"
    params = {"threshold": 51}
    # the parameters, set on the instance from ``params`` (declared here for type checkers)
    threshold: int
    jit = ("passes",)  # compiled with numba when the policy is built (an example of ``jit``)

    @staticmethod
    def passes(counter: int, size: int, threshold: int) -> bool:
        return counter * 100 > size * threshold

    def prefetch_before_compute(self, ctx: PrefetchContext) -> int:
        return ENTER_LOOP

    def prefetch_on_tree_iter(self, ctx: PrefetchContext) -> bool:
        return bool(self.passes(ctx.counter, ctx.size, self.threshold))
