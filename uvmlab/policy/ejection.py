"""Ejection: a failing policy loses all of its hooks for the rest of the run.

The record of ejections is the guard's, not the policy's: the count a result reports
(``policy_ejections``) is the length of that record, written into the driver's counters by the
guard after each ejection and again when the run ends, so no value a policy could reach is the
source of the figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from uvmlab.driver import tools


@dataclass
class Slot:
    """One policy under the guard: its hooks, and whether it is still live."""

    policy: Any
    label: str
    fns: dict[str, Any]
    ejected: bool = False
    warm: set[str] = field(default_factory=set)  #: hooks past their first (compiling) call
    kernels: dict[str, Any] = field(default_factory=dict)  #: compiled kernels (base.KERNELS)


@dataclass(frozen=True)
class Fail:
    """A hook call that failed; ``reason`` is the ejection record's."""

    reason: str


class Ejections:
    """The ejection record of a run."""

    def __init__(self) -> None:
        self._records: list[dict[str, Any]] = []

    @property
    def count(self) -> int:
        return len(self._records)

    @property
    def records(self) -> list[dict[str, Any]]:
        """Copies: a caller cannot change the record through them."""
        return [dict(r) for r in self._records]

    def eject(self, slot: Slot, hook: str, reason: str, drv: Any) -> bool:
        """Eject ``slot``'s policy (once); log it on ``drv``. True when it was live."""
        if slot.ejected:
            return False
        slot.ejected = True
        now = int(drv.now_ns) if drv is not None else 0
        reason = " ".join(str(reason).split())[:300]
        self._records.append({"policy": slot.label, "hook": hook, "reason": reason, "time_ns": now})
        if drv is not None:
            drv.counters["policy_ejections"] = len(self._records)
            drv.log.add(now, tools.POLICY_EJECTED, -1, -1, 0, hook, -1, f"{slot.label}: {reason}")
        close = getattr(slot.policy, "close", None)
        if callable(close) and getattr(slot.policy, "isolated", False):
            close()  # an isolated policy's process goes with it
        return True


def describe(e: BaseException) -> str:
    """``raised Type: message`` for any exception, even one whose ``__str__`` raises."""
    kind = getattr(e, "kind", None) if type(e).__name__ == "HookRaised" else None
    name = str(kind) if kind else type(e).__name__
    try:
        msg = " ".join(str(e).split())[:200]
    except BaseException:  # noqa: BLE001 - a message that cannot be made is left out
        msg = ""
    return f"raised {name}" + (f": {msg}" if msg else "")
