"""Per-tenant quota: evict from the tenant furthest over its share of GPU-resident chunks
(gpu_ext's ``eviction_pid_quota``; a tenant here is an allocation-name prefix, ``"A/weights"``
belongs to ``A``).

``quotas`` gives shares in percent, ``"A=70,B=30"``; tenants it does not name split what is left
equally. Within the tenant chosen, the least recently used chunk goes.

When it wins: co-located jobs where one streams through memory (a best-effort training job, a
scan) and would otherwise evict a latency-critical tenant's working set; the quota keeps the
protected tenant's share resident. Total traffic can rise: it is a fairness tool.
"""

from __future__ import annotations

from collections import Counter

from uvmlab.core.errors import PolicyError
from uvmlab.policy.base import Policy
from uvmlab.policy.context import EvictionContext, RunInfo


class EvictTenantQuota(Policy):
    """Evict the least recently used chunk of the tenant most over its quota."""

    name = "tenant-quota"
    params = {"quotas": ""}
    # the parameters, set on the instance from ``params`` (declared here for type checkers)
    quotas: str

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self._shares: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in self.quotas.split(","))):
            t, _, v = part.partition("=")
            try:
                self._shares[t.strip()] = float(v) / 100
            except ValueError:
                raise PolicyError(
                    f"tenant-quota: cannot read quota {part!r} (expected TENANT=PERCENT)"
                ) from None
        if sum(self._shares.values()) > 1 + 1e-9:
            raise PolicyError("tenant-quota: quotas add up to more than 100 %")

    def start(self, info: RunInfo) -> None:
        rest = [t for t in info.tenants if t not in self._shares]
        left = max(0.0, 1 - sum(self._shares.values()))
        self._quota = dict(self._shares)
        self._quota.update({t: left / len(rest) for t in rest})

    def eviction_prepare(self, ctx: EvictionContext) -> int | None:
        if len(ctx.unused) or not len(ctx.used):
            return None
        tenants = ctx.tenant_of(ctx.owner(ctx.used))
        held = Counter(tenants)
        total = len(tenants)
        worst = max(held, key=lambda t: held[t] - self._quota.get(t, 0.0) * total)
        return int(ctx.used[tenants.index(worst)])  # the head-most chunk: its LRU
