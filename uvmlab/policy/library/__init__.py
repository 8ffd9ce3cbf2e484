"""The built-in policies, one short file each; ``REGISTRY`` maps ``--policy`` names to classes."""

from __future__ import annotations

from uvmlab.policy.library.evict_belady import EvictBelady
from uvmlab.policy.library.evict_fifo import EvictFifo
from uvmlab.policy.library.evict_fifo_chance import EvictFifoChance
from uvmlab.policy.library.evict_lfu import EvictLfu
from uvmlab.policy.library.evict_lru import EvictLru
from uvmlab.policy.library.evict_mru import EvictMru
from uvmlab.policy.library.evict_recent import EvictRecent
from uvmlab.policy.library.evict_tenant_priority import EvictTenantPriority
from uvmlab.policy.library.evict_tenant_quota import EvictTenantQuota
from uvmlab.policy.library.prefetch_adaptive_sequential import PrefetchAdaptiveSequential
from uvmlab.policy.library.prefetch_always_max import PrefetchAlwaysMax
from uvmlab.policy.library.prefetch_cross_block import PrefetchCrossBlock
from uvmlab.policy.library.prefetch_forward import PrefetchForward
from uvmlab.policy.library.prefetch_none import PrefetchNone
from uvmlab.policy.library.prefetch_stride import PrefetchStride
from uvmlab.policy.library.prefetch_tree import PrefetchTree
from uvmlab.policy.library.replay_adaptive import ReplayAdaptive
from uvmlab.policy.library.replay_driver import ReplayBatch, ReplayBatchFlush, ReplayBlock, ReplayOnce
from uvmlab.policy.library.thrash_pin import ThrashPin

REGISTRY: dict[str, type] = {
    c.name: c
    for c in (
        PrefetchNone,
        PrefetchAlwaysMax,
        PrefetchAdaptiveSequential,
        PrefetchStride,
        PrefetchTree,
        PrefetchCrossBlock,
        PrefetchForward,
        EvictLru,
        EvictFifo,
        EvictMru,
        EvictRecent,
        EvictLfu,
        EvictFifoChance,
        EvictTenantQuota,
        EvictTenantPriority,
        EvictBelady,
        ReplayBlock,
        ReplayBatch,
        ReplayBatchFlush,
        ReplayOnce,
        ReplayAdaptive,
        ThrashPin,
    )
}

__all__ = ["REGISTRY"]
