"""The warm-up before the timed calibration captures (issue 13, item 6; docs/validation.md,
limits, "CPU phases").

Why. The same-machine profile is fitted on the ``calib`` micro-captures, and both
``uvmlab calibrate --quick`` and a capture session (``capture_space``) used to take them first,
in the machine's first seconds. On the stored H100 runs that moment was not like the rest: in
``cpuphase/h100-2026-12-07/run0`` (the first call on a fresh machine) the calibration pass's CPU
first touches cost 379 ms/GiB and its read-backs 234, against 432-493 / 259-298 for every later
pass of the same cases on the same machine, the first passes of the four later calls included;
the second H100 session's first pass was as cheap (381 / 232 against 495 / 272 for the same
cases at 119 s). A profile fitted there is cheaper per byte than the machine it is meant to
describe. Not every start is like that: the first H100 session's first pass was 6 % cheaper
than its later one, the H200's 9 % dearer (``python -m uvmlab.validation.cpu_phases``). What makes
the first seconds cheap lies outside the driver (every CPU phase takes the same faults, chunks
and copies at any time: ``cpu_phases.py``) and is not measured.

What. Before the timed pass, whole passes of the calibration set's kernel cases (a CPU first
touch of fresh managed memory, a faulting GPU kernel, the same kernel resident and, for reads, a
CPU read-back: the operations the CPU and GPU constants are fitted on) run until ``min_s``
seconds have passed, case by case, at least one whole pass. They are captured as usual and kept
(``calib-warmup<i>/``, one folder per pass) so that the transient itself is measured, but
nothing is fitted to them.

Not measured yet: no capture with a warm-up exists (no GPU was lent when it was written). The
measurement (one device call on a fresh machine) is in docs/validation.md, limits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from uvmlab.validation.space import Case, cases

#: seconds of warm-up before the timed calibration captures: the stored runs' cheap first pass
#: lasted its first few seconds (``run0``) to the first half-minute (the second H100 session);
#: 30 s leaves 90 s of the quick calibration's 120 s for the timed pass (6-8 s) and its margin
WARMUP_S = 30.0
#: the folder of warm-up pass ``i`` beside ``calib/``
WARMUP_DIR = "calib-warmup{}"


def warmup_cases() -> list[Case]:
    """The calibration set's kernel cases: the CPU phases and fault-driven kernels the profile is
    fitted on (the ping-pong, accessed-by and read-mostly cases are left out: short, and their
    CPU phases are not the first touches and read-backs whose level drifts)."""
    return [c for c in cases("calib") if c.kind == "kernel"]


@dataclass
class Warmup:
    """What a warm-up ran: per pass, the (case name, seconds since the warm-up began) taken."""

    min_s: float
    passes: list[list[tuple[str, float]]] = field(default_factory=list)
    seconds: float = 0.0


def warm_up(
    take: Callable[[int, Case], Any],
    min_s: float = WARMUP_S,
    *,
    clock: Callable[[], float] = time.perf_counter,
    log: Callable[[str], None] | None = None,
) -> Warmup:
    """Run ``take(pass_index, case)`` over :func:`warmup_cases`, pass after pass, until ``min_s``
    seconds have passed (checked before each case, after the first whole pass); nothing when
    ``min_s`` <= 0. ``take`` captures and stores the case; its result is not kept here."""
    out = Warmup(min_s)
    if min_s <= 0:
        return out
    todo = warmup_cases()
    t0 = clock()
    i = 0
    while True:
        done: list[tuple[str, float]] = []
        out.passes.append(done)
        for c in todo:
            el = clock() - t0
            if i > 0 and el >= min_s:
                if not done:
                    out.passes.pop()
                out.seconds = el
                return out
            take(i, c)
            done.append((c.name, round(el, 3)))
        out.seconds = clock() - t0
        if log:
            log(f"warm-up pass {i}: {len(done)} cases, {out.seconds:.1f} s of {min_s:.0f} s")
        if out.seconds >= min_s:
            return out
        i += 1


__all__ = ["WARMUP_DIR", "WARMUP_S", "Warmup", "warm_up", "warmup_cases"]
