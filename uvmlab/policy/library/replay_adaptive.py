"""Adaptive replay, the ``decide_replay`` hook (docs/policies.md): replay at once when a
batch is mostly duplicates (many warps wait on the same few pages: let them run), defer the
replay of a small batch while more faults wait in the buffer (service them before paying for a
replay), and leave the rest to the driver.

When it wins: kernels whose faults come in small bursts, where per-batch replays cost more than
the stalls they end; it behaves like the default elsewhere.
"""

from __future__ import annotations

from uvmlab.policy.base import REPLAY_DEFAULT, REPLAY_DEFER, REPLAY_NOW, Policy
from uvmlab.policy.context import ReplayContext


class ReplayAdaptive(Policy):
    """Replay now on duplicate-heavy batches; defer small batches while faults are pending."""

    name = "replay-adaptive"
    params = {"small_batch": 32, "duplicate_share": 50}
    # the parameters, set on the instance from ``params`` (declared here for type checkers)
    small_batch: int
    duplicate_share: int

    def decide_replay(self, ctx: ReplayContext) -> int:
        if ctx.duplicates * 100 > ctx.faults * self.duplicate_share:
            return REPLAY_NOW
        if ctx.pending and ctx.unique < self.small_batch:
            return REPLAY_DEFER
        return REPLAY_DEFAULT
