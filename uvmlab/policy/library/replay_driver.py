"""The driver's four fault-replay policies (``uvm_perf_fault_replay_policy``), as policies.

Each sets the module parameter and leaves every replay decision to the driver, so that
``uvmlab compare`` can put them side by side with a hook-based one. (Four classes in one file:
they are one parameter with four values.)

* ``replay-block`` — replay after each VA block is serviced: warps restart soonest, at the cost
  of a replay per block; wins for latency-bound kernels with few faulting blocks per batch.
* ``replay-batch`` — replay after each batch, without flushing the fault buffer: fewer replays;
  duplicates of faults already fixed can pile up in the buffer.
* ``replay-batch-flush`` — the default: replay after each batch and flush the buffer first, so no
  stale duplicates are serviced; wins when many warps fault on the same pages.
* ``replay-once`` — service every batch in the buffer, then replay once: fewest replays, longest
  stalls; wins when replays are expensive relative to servicing.
"""

from __future__ import annotations

from uvmlab.policy.base import REPLAY_DEFAULT, Policy
from uvmlab.policy.context import ReplayContext


class _DriverReplay(Policy):
    def decide_replay(self, ctx: ReplayContext) -> int:
        return REPLAY_DEFAULT


class ReplayBlock(_DriverReplay):
    """The driver's BLOCK replay policy (replay after each VA block)."""

    name = "replay-block"
    module_params = {"uvm_perf_fault_replay_policy": 0}


class ReplayBatch(_DriverReplay):
    """The driver's BATCH replay policy (replay after each batch, no flush)."""

    name = "replay-batch"
    module_params = {"uvm_perf_fault_replay_policy": 1}


class ReplayBatchFlush(_DriverReplay):
    """The driver's BATCH_FLUSH replay policy, its default (flush, then replay, per batch)."""

    name = "replay-batch-flush"
    module_params = {"uvm_perf_fault_replay_policy": 2}


class ReplayOnce(_DriverReplay):
    """The driver's ONCE replay policy (one replay when the bottom half ends)."""

    name = "replay-once"
    module_params = {"uvm_perf_fault_replay_policy": 3}
