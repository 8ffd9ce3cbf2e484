"""Stride prefetch: detect a constant stride between faults in a VA block and prefetch the next
few strides (gpu_ext's ``prefetch_stride``, with its confidence that a miss decrements rather
than resets).

When it wins: regular strided access (a column of a row-major matrix, one field of an array of
structs) that is too sparse for the tree's 51 % density rule to prefetch anything. Without a
stable stride it falls back to the driver's tree.
"""

from __future__ import annotations

from uvmlab.policy.base import DEFAULT, Policy, Region
from uvmlab.policy.context import PrefetchContext


class PrefetchStride(Policy):
    """Per-block stride detector; with confidence >= 2, prefetch ``depth`` strides ahead."""

    name = "stride"
    params = {"depth": 4, "max_stride": 128}
    # the parameters, set on the instance from ``params`` (declared here for type checkers)
    depth: int
    max_stride: int

    def start(self, info: object) -> None:
        self._state: dict[int, tuple[int, int, int]] = {}  # block -> (last page, stride, confidence)

    def prefetch_before_compute(self, ctx: PrefetchContext) -> int | Region:
        if ctx.dest == 0:
            return DEFAULT  # CPU faults keep the driver's prefetch
        page, n = ctx.page_index, ctx.n_pages
        last, stride, conf = self._state.get(ctx.block, (-1, 0, 0))
        if last >= 0:
            d = page - last
            if d == stride and d != 0:
                conf = min(conf + 1, 3)
            else:
                conf = max(conf - 1, 0)
                if conf == 0:
                    stride = d
        self._state[ctx.block] = (page, stride, conf)
        if conf < 2 or stride == 0 or abs(stride) > self.max_stride:
            return DEFAULT
        if stride > 0:
            return Region(page + 1, min(n, page + stride * self.depth + 1))
        return Region(max(0, page + stride * self.depth), page)
