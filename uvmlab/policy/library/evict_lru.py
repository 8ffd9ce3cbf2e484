"""LRU: the driver's own eviction order, as a policy (for tables and compositions).

Every fault or migration that touches a block moves its root chunk to the tail of
va_block_used, and the head is evicted. "Least recently *faulted on*": plain GPU hits on
mapped pages never refresh it. It wins when the recently faulted data is what is needed next;
it is the worst case for cyclic sweeps larger than memory, which it evicts just before reuse.
"""

from __future__ import annotations

from uvmlab.policy.base import DEFAULT, Policy
from uvmlab.policy.context import ChunkContext


class EvictLru(Policy):
    """The driver's LRU: every use moves the chunk to the tail of the used list."""

    name = "lru"

    def chunk_used(self, ctx: ChunkContext) -> int:
        return DEFAULT
