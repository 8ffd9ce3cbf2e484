"""FIFO: chunks are evicted in the order they were allocated; uses do not reorder them
(gpu_ext's ``eviction_fifo``).

When it wins: like MRU on cyclic sweeps it does not chase recency, and it is cheap; it loses
whenever a hot block was allocated early (a table every kernel reads), since FIFO evicts it
anyway.
"""

from __future__ import annotations

from uvmlab.policy.base import BYPASS, Policy
from uvmlab.policy.context import ChunkContext


class EvictFifo(Policy):
    """Keep allocation order: chunk_used returns BYPASS, so nothing moves."""

    name = "fifo"

    def chunk_used(self, ctx: ChunkContext) -> int:
        return BYPASS
