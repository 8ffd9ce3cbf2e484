"""Sequential prefetch of a share of the VA block, in the direction the faults move
(gpu_ext's ``prefetch_adaptive_sequential``; its user-space tuning of the share is a parameter
here).

When it wins: sequential sweeps (streams, layer-by-layer weight reads, index builds) where the
tree's density threshold needs several faults per block before it prefetches anything; going
forward from the fault copies only pages that will be touched. It loses on random access, like
any prefetcher.
"""

from __future__ import annotations

from uvmlab.core.errors import PolicyError
from uvmlab.policy.base import DEFAULT, Policy, Region
from uvmlab.policy.context import PrefetchContext


class PrefetchAdaptiveSequential(Policy):
    """Prefetch ``percent`` % of the block (or ``pages`` pages) forward / backward from the fault."""

    name = "adaptive-sequential"
    params = {"percent": 100, "pages": 0, "direction": "auto"}
    # the parameters, set on the instance from ``params`` (declared here for type checkers)
    percent: int
    pages: int
    direction: str

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        if self.direction not in ("auto", "forward", "backward", "start"):
            raise PolicyError(
                "adaptive-sequential: direction must be auto, forward, backward "
                f"or start, not {self.direction!r}"
            )
        if not 0 < self.percent <= 100 or self.pages < 0:
            raise PolicyError("adaptive-sequential: percent must be in (0, 100], pages >= 0")

    def start(self, info: object) -> None:
        self._last: dict[int, int] = {}  # block -> last faulting page: the direction of travel

    def prefetch_before_compute(self, ctx: PrefetchContext) -> int | Region:
        if ctx.dest == 0:
            return DEFAULT  # CPU faults keep the driver's prefetch
        n, page = ctx.n_pages, ctx.page_index
        k = self.pages or max(1, n * self.percent // 100)
        d = self.direction
        if d == "auto":
            d = "backward" if self._last.get(ctx.block, -1) > page else "forward"
        self._last[ctx.block] = page
        if d == "forward":
            return Region(page, min(n, page + k))
        if d == "backward":
            return Region(max(0, page + 1 - k), page + 1)
        return Region(0, min(n, k))
