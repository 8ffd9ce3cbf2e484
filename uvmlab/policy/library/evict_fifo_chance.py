"""FIFO with second chances (CLOCK; gpu_ext's ``eviction_fifo_chance``): each use gives a chunk
``chances`` reprieves; at eviction time chunks at the head that still have one lose it and go to
the tail.

When it wins: between FIFO and LRU — blocks that keep faulting survive, blocks touched once go
in FIFO order, and it needs no reordering on the hot path (uses only reset a counter).
"""

from __future__ import annotations

import numpy as np

from uvmlab.policy.base import BYPASS, Policy
from uvmlab.policy.context import ChunkContext, EvictionContext, RunInfo


class EvictFifoChance(Policy):
    """FIFO order; a used chunk with chances left is rotated to the tail instead of evicted."""

    name = "fifo-chance"
    params = {"chances": 1}
    # the parameters, set on the instance from ``params`` (declared here for type checkers)
    chances: int

    def start(self, info: RunInfo) -> None:
        self._chances = np.zeros(info.n_root_chunks, dtype=np.int64)

    def chunk_activate(self, ctx: ChunkContext) -> None:
        self._chances[ctx.chunk] = 0  # a new chunk earns its chance by being used again

    def chunk_used(self, ctx: ChunkContext) -> int:
        self._chances[ctx.chunk] = self.chances
        return BYPASS

    def eviction_prepare(self, ctx: EvictionContext) -> list[tuple[int, str]] | None:
        if len(ctx.unused):
            return None
        moves = []
        for c in ctx.used.tolist():  # head first; stop at the first chunk out of chances
            if self._chances[c] <= 0:
                break
            self._chances[c] -= 1
            moves.append((c, "tail"))
        return moves
