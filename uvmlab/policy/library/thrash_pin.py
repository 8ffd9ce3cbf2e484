"""Pin instead of throttle: where the thrashing detector would throttle a page (make the faulting
processor wait), pin it where it is and map it remotely.

When it wins: pages written by the CPU and read by the GPU in alternation (ping-pong, producer /
consumer buffers): the GPU reads over PCIe instead of waiting a nap and migrating again. It
loses when the GPU touches those pages often, since every access then crosses the bus.
"""

from __future__ import annotations

import numpy as np

from uvmlab.policy.base import HINT_PIN, HINT_THROTTLE, KEEP, Policy
from uvmlab.policy.context import ThrashingContext


class ThrashPin(Policy):
    """Turn the detector's THROTTLE hints into PIN."""

    name = "pin-on-thrash"

    def thrashing_hint(self, ctx: ThrashingContext) -> np.ndarray | int:
        if not (ctx.default == HINT_THROTTLE).any():
            return KEEP
        return np.where(ctx.default == HINT_THROTTLE, HINT_PIN, KEEP)
