"""MRU: evict the most recently used chunk (gpu_ext's ``eviction_mru``: activation leaves a chunk
at the tail, every use moves it to the head).

When it wins: cyclic sweeps over more data than fits (every token reading all layer weights,
training epochs, repeated scans). LRU evicts each block just before its reuse; MRU keeps most
of the cycle resident and sacrifices the block just finished. It loses on anything with temporal
locality, where the block just used is the one needed next.
"""

from __future__ import annotations

from uvmlab.policy.base import BYPASS, Policy
from uvmlab.policy.context import ChunkContext


class EvictMru(Policy):
    """Every use moves the chunk to the head of the used list: it is evicted next."""

    name = "mru"

    def chunk_used(self, ctx: ChunkContext) -> int:
        ctx.move_head(ctx.chunk)
        return BYPASS
