"""Experiment of 2026-12-07 (not part of the package; validation_limits.md, fault groups): the
fault-report rules of ``GpuSpec`` (``fault_report_burst``, ``fault_report_interval_ns``,
``utlb_fault_slots``) varied so that a uTLB's last reports after a replay land after the driver
reads PUT and survive the CACHED_PUT flush (stale entries), with and without batches spread over
more SMs (a smaller burst), scored per session on ``calib`` and ``train`` with the session's
same-machine profile; ``--refit`` refits each profile's constants on ``calib`` alone under the
variant (``uvmlab fit``'s method), ``--holdout`` scores the hold-out set too (once, for the
record: nothing here chooses on it).

    python3 experiments/report_rate.py VARIANT [--refit] [--holdout]

``VARIANT``: ``today`` or ``burst,interval_ns,slots`` (e.g. ``4,4000,16``), with ``+forget`` for
the prototype in which a replay drops the reports a uTLB had not written yet (they are
re-reported in the new order), ``+late<ns>`` for every replay's reports written ``ns`` after it,
``+rate<ns>/<l0>`` for one write rate for the whole fault buffer (a replay's reports in their
arrival order, the first ``l0`` ns after it, then one every ``ns``); these run on the reference
fault path.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import numpy as np

import uvmlab.driver.hal as hal
import uvmlab.engine.gpu as gpu_mod
from uvmlab.timing.cost_model import CostProfile, load_profile
from uvmlab.validation import fit as ft
from uvmlab.validation.runs import load_dir, pairs, workload_of
from uvmlab.validation.score import Scores
from uvmlab.validation.sessions import session_profile_name, sessions

KINDS = (("fault_groups", "groups"), ("gpu_faults", "faults"), ("gpu_kernels", "kernels"))


def apply_variant(variant: str) -> None:
    """Set every GPU's report rules to ``variant`` (module docstring)."""
    if variant == "today":
        return
    rule, *extras = variant.split("+")
    for extra in extras:
        _apply_extra(extra)
    burst, interval, slots = (int(x) for x in rule.split(","))
    for k in list(hal.GPUS):
        hal.GPUS[k] = dataclasses.replace(
            hal.GPUS[k], fault_report_burst=burst, fault_report_interval_ns=interval, utlb_fault_slots=slots
        )


def _apply_extra(extra: str) -> None:
    """One ``+`` option of a variant (module docstring)."""
    if extra.startswith("late"):  # every replay's reports written ``late`` ns after the replay
        late = int(extra[4:])
        step0 = gpu_mod.GpuKernelRun.step

        def late_step(self: Any, now_ns: int | None = None) -> None:
            step0(self, None if now_ns is None else now_ns + late)

        gpu_mod.GpuKernelRun.step = late_step  # type: ignore[method-assign]
        gpu_mod.GpuKernelRun.compiled_ok = lambda self: False  # type: ignore[method-assign]
    if extra.startswith("rate"):  # one write rate for the whole buffer: ``ns`` per entry after ``l0``
        ns, l0 = (int(x) for x in extra[4:].split("/"))
        report0 = gpu_mod.report

        def rated_report(*a: Any) -> int:
            n = report0(*a)
            a[13][:n] = a[7] + l0 + np.arange(n) * ns  # out_write, t0
            return n

        gpu_mod.report = rated_report
        gpu_mod.GpuKernelRun.compiled_ok = lambda self: False  # type: ignore[method-assign]
    if extra == "forget":
        step = gpu_mod.GpuKernelRun.step

        def forgetting_step(self: Any, now_ns: int | None = None) -> None:
            if now_ns is not None:  # a replay: the reports not yet written are dropped
                self.buf.n = self.buf.written(now_ns)
            step(self, now_ns)

        gpu_mod.GpuKernelRun.step = forgetting_step  # type: ignore[method-assign]
        gpu_mod.GpuKernelRun.compiled_ok = lambda self: False  # type: ignore[method-assign]


def refit(s: Any) -> CostProfile:
    """The session's same-machine profile refitted on its ``calib`` set under the variant."""
    train = [
        ft.Training(r.workload, workload_of(r, "space", "calib"), r) for r in load_dir(s.set_dir("calib"))
    ]
    base = load_profile(f"{s.gpu}-pcie5-measured")
    return ft.fit_profile(base, train, gpu=s.gpu, name=session_profile_name(s)).profile


def main(argv: list[str]) -> None:
    variant = argv[0]
    apply_variant(variant)
    sets = ["calib", "train"] + (["holdout"] if "--holdout" in argv else [])
    print(f"variant {variant}{' refit on calib' if '--refit' in argv else ''}")
    print(
        "| session | set | "
        + " | ".join(f"{h}: median abs (signed)" for _k, h in KINDS)
        + " | kernels within 30 % |"
    )
    print("|---|---|---|---|---|---|")
    for s in sessions():
        if not s.has_space:
            continue
        prof = refit(s) if "--refit" in argv else load_profile(session_profile_name(s))
        for label in sets:
            sc = Scores()
            for real, model, _w in pairs(s.set_dir(label), "space", label, s.gpu, prof):
                sc.add(real, model)
            summ = sc.summary()
            cells = [f"{summ[k].median_abs:.1%} ({summ[k].signed_median:+.1%})" for k, _h in KINDS]
            k = summ["gpu_kernels"]
            print(
                f"| {s.label} | {label} | " + " | ".join(cells) + f" | {k.within_30} of {k.n} |", flush=True
            )
        if "--refit" in argv:
            print(f"  constants: { {f: float(f'{getattr(prof, f):.4g}') for f, *_ in ft.GPU_CONSTANTS} }")


if __name__ == "__main__":
    main(sys.argv[1:])
