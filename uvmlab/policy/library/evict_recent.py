"""Recent: evict a recently used chunk, ``spare`` places from the most recently used end of
va_block_used, as a compiled victim choice.

The policy library's example of a compiled eviction policy (docs/policies.md, "Compiled
policies"): ``recent_victim`` is its ``victim_kernel``, which the compiled fault service calls
itself whenever it must evict, on the PMM's lists as arrays, so an oversubscribed run never
stops the service for the choice. ``eviction_prepare`` takes the same decision as a Python
hook (what runs under ``--isolate``, and with ``compiled=false``).

When it wins: cyclic sweeps over more data than fits (every token reading all layer weights),
where LRU evicts each block just before its reuse; like MRU it keeps most of the cycle resident.
The ``spare`` most recently used chunks are passed over: they back the blocks the last fault
batches serviced, whose warps wait for the replay to read them (evicting those makes the
replay fault again). It loses on anything with temporal locality.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from uvmlab.driver.pmm_lists import LIST_DISCARDED, LIST_UNUSED, LIST_USED
from uvmlab.policy.base import Policy
from uvmlab.policy.context import EvictionContext


@njit(cache=True)
def recent_victim(  # noqa: ARG001 (the kernel signature, policy_calls)
    gpu: int,
    now_ns: int,
    chunk_state: np.ndarray,
    owner: np.ndarray,
    list_of: np.ndarray,
    prev: np.ndarray,
    nxt: np.ndarray,
    list_count: np.ndarray,
    state: np.ndarray,
) -> int:
    """The victim kernel (``policy_calls.VICTIM_SIG``): ``state[0]`` chunks back from the tail
    of va_block_used; -1 (the driver's choice) while a chunk without GPU-resident pages is
    there to take."""
    if list_count[LIST_UNUSED] or list_count[LIST_DISCARDED] or list_count[LIST_USED] == 0:
        return -1
    c = prev[chunk_state.shape[0] + LIST_USED]  # the tail: the most recently used
    for _ in range(min(state[0], list_count[LIST_USED] - 1)):
        c = prev[c]
    return c


class EvictRecent(Policy):
    """Evict the chunk ``spare`` places from the most recently used end (compiled victim choice)."""

    name = "recent"
    params = {"spare": 8, "compiled": True}
    spare: int
    compiled: bool
    victim_kernel = recent_victim

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        if not self.compiled:
            self.victim_kernel = None  # the Python hook below

    def kernel_state(self) -> np.ndarray:
        return np.array([max(0, self.spare)], dtype=np.int64)

    def eviction_prepare(self, ctx: EvictionContext) -> int | None:
        used = ctx.used
        if len(ctx.unused) or len(ctx.discarded) or not len(used):
            return None
        return int(used[max(0, len(used) - 1 - max(0, self.spare))])
