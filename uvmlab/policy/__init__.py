"""Programmable policies: gpu_ext-style hooks in Python, under a guard (docs/policies.md).

* ``Policy`` and the decision codes — ``uvmlab.policy.base``
* the read-only contexts hooks receive — ``uvmlab.policy.context``
* the guard that validates decisions and ejects misbehaving policies — ``uvmlab.policy.guard``
* loading built-ins and user files, composition — ``uvmlab.policy.loader``
* the built-in library — ``uvmlab.policy.library``

Run one with ``uvmlab.simulate(workload, policies="mru")`` or ``uvmlab compare``; docs/policies.md
is the tutorial.
"""

from uvmlab.policy.base import (
    BYPASS,
    DEFAULT,
    ENTER_LOOP,
    HINT_NONE,
    HINT_PIN,
    HINT_THROTTLE,
    KEEP,
    REPLAY_DEFAULT,
    REPLAY_DEFER,
    REPLAY_NOW,
    Policy,
    Region,
)
from uvmlab.policy.context import INF

__all__ = [
    "BYPASS",
    "DEFAULT",
    "ENTER_LOOP",
    "HINT_NONE",
    "HINT_PIN",
    "HINT_THROTTLE",
    "INF",
    "KEEP",
    "REPLAY_DEFAULT",
    "REPLAY_DEFER",
    "REPLAY_NOW",
    "Policy",
    "Region",
]
