"""Per-tenant priority: evict the least recently used chunk of the lowest-priority tenant that
holds any (gpu_ext's ``prefetch_eviction_pid`` idea, eviction half: a different eviction rule per
process, here a strict order between tenants).

``order`` lists tenants from most to least protected, ``tenant-priority(order=lc;be)`` (``;``
or spaces between names, since ``,`` separates a spec's parameters); a tenant it does not name
ranks below every named one. Only ``va_block_used`` is reordered: an unused chunk still goes
first, as in the driver. With one VA space a tenant is an allocation-name prefix
(``"lc/kv"``); with several VA spaces over one GPU (``uvmlab vgpu``) it is the VA space.

When it wins: a latency-critical tenant beside a best-effort one that streams through more
memory than is left; the protected tenant keeps its working set, the other absorbs every
eviction, including its own. When it loses: the protected tenant's working set alone exceeds
the GPU, or the best-effort tenant's throughput matters as much.
"""

from __future__ import annotations

import re

from uvmlab.policy.base import Policy
from uvmlab.policy.context import EvictionContext, RunInfo


class EvictTenantPriority(Policy):
    """Evict from the lowest-priority tenant first (LRU within it)."""

    name = "tenant-priority"
    params = {"order": ""}
    # the parameters, set on the instance from ``params`` (declared here for type checkers)
    order: str

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        names = [t for t in re.split(r"[;,\s]+", str(self.order)) if t]
        self._rank = {t: i for i, t in enumerate(names)}

    def start(self, info: RunInfo) -> None:
        self._unranked = len(self._rank)

    def eviction_prepare(self, ctx: EvictionContext) -> int | None:
        if len(ctx.unused) or not len(ctx.used):
            return None
        tenants = ctx.tenant_of(ctx.owner(ctx.used))
        worst = max(range(len(tenants)), key=lambda i: (self._rank.get(tenants[i], self._unranked), -i))
        return int(ctx.used[worst])  # the head-most chunk of the lowest-ranked tenant
