"""Always prefetch the whole 2 MiB VA block on its first fault (gpu_ext's ``prefetch_always_max``).

When it wins: dense, streaming access that fits in GPU memory — one fault brings the whole
block, so later pages never fault. It loses under oversubscription with sparse access: it fills
memory with pages nobody touches and evicts ones that are still needed.
"""

from __future__ import annotations

from uvmlab.policy.base import DEFAULT, Policy, Region
from uvmlab.policy.context import PrefetchContext


class PrefetchAlwaysMax(Policy):
    """Prefetch the whole VA block (BYPASS with the maximum region)."""

    name = "always-max"

    def prefetch_before_compute(self, ctx: PrefetchContext) -> int | Region:
        if ctx.dest == 0:
            return DEFAULT  # CPU faults keep the driver's prefetch
        return ctx.max_region
