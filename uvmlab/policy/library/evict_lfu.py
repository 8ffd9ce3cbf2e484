"""LFU: evict the chunk whose VA block has been used least often (gpu_ext's ``eviction_lfu``,
which can only approximate the order with head/tail moves; here eviction_prepare picks the
victim exactly).

What it counts is what a gpu_ext policy sees: a block's activations and the faults or
migrations that touch it (plain GPU hits are invisible). Counts are kept per VA block and
survive eviction, so a block that keeps coming back is recognised as hot. Two choices make it
work with tens of thousands of threads in flight: chunks allocated in the current fault batch
(same ``now_ns``: the driver stamps each batch with its start) are not candidates while others
exist — their pages are what the stalled
threads wait for — and among equally frequent blocks the most recently used goes, which keeps a
stable set resident instead of rotating through all of them.

When it wins: a hot set that keeps faulting back in (tables every kernel reads, weights reused
every token, a stencil's grids) next to data used once or rarely. It loses when the hot set
moves (old counts keep stale blocks resident), and over the generated workloads at 150-400 %
it evicts about as much as LRU in total (docs/policies.md, section 9).
"""

from __future__ import annotations

import numpy as np

from uvmlab.policy.base import DEFAULT, Policy
from uvmlab.policy.context import ChunkContext, EvictionContext, RunInfo


class EvictLfu(Policy):
    """Evict the least frequently used block's chunk (per-block counts that survive eviction)."""

    name = "lfu"

    def start(self, info: RunInfo) -> None:
        self._uses: dict[int, int] = {}  # VA block -> activations + uses, ever
        self._freq = np.zeros(info.n_root_chunks, dtype=np.int64)  # per chunk: its block's count
        self._born = np.full(info.n_root_chunks, -1, dtype=np.int64)  # activation time

    def _count(self, ctx: ChunkContext) -> None:
        n = self._uses.get(ctx.block, 0) + 1
        self._uses[ctx.block] = n
        self._freq[ctx.chunk] = n

    def chunk_activate(self, ctx: ChunkContext) -> None:
        self._count(ctx)
        self._born[ctx.chunk] = ctx.now_ns

    def chunk_used(self, ctx: ChunkContext) -> int:
        self._count(ctx)
        return DEFAULT

    def eviction_prepare(self, ctx: EvictionContext) -> int | None:
        if len(ctx.unused) or not len(ctx.used):
            return None  # the driver takes a chunk without GPU-resident pages first
        cand = ctx.used
        settled = cand[self._born[cand] != ctx.now_ns]
        if len(settled):
            cand = settled
        f = self._freq[cand][::-1]  # reversed: argmin then finds the most recent of the least used
        return int(cand[len(cand) - 1 - np.argmin(f)])
