"""Experiment (not part of the package; validation_limits.md, fault groups): the notified faults
(GpuPageFaultCount) of every faulting kernel of a session's ``calib`` and ``train`` sets split
into the pages the driver migrated with cause fault (``bytes_htod_fault`` / 4 KiB on the GPU,
``bytes_htod`` less ``bytes_htod_prefetch`` in the model: the entries it serviced) and the rest
(entries for pages already serviced or already in the batch), on the GPU and in the model with
the session's same-machine profile; medians per pattern and launch shape.

    python3 experiments/serviced_share.py [SESSION ...]      # default: every design-space session
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from uvmlab.timing.cost_model import load_profile
from uvmlab.validation.runs import pairs
from uvmlab.validation.sessions import session_profile_name, sessions

PAGE = 4096
PATTERNS = ("stream", "random", "stride")


def _serviced(o: dict[str, Any]) -> int:
    if o.get("bytes_htod_fault") is not None:
        return int(o["bytes_htod_fault"]) // PAGE
    return (int(o.get("bytes_htod") or 0) - int(o.get("bytes_htod_prefetch") or 0)) // PAGE


def kernels(label: str) -> Iterator[tuple[str, int, tuple[int, int], tuple[int, int]]]:
    """(pattern, threads, (GPU notified, serviced), (model notified, serviced)) per faulting
    kernel (>= 500 notified faults on the GPU) of the session's calib and train sets."""
    s = next(x for x in sessions() if x.label == label)
    prof = load_profile(session_profile_name(s))
    for set_label in ("calib", "train"):
        for real, model, _w in pairs(s.set_dir(set_label), "space", set_label, s.gpu, prof):
            pattern = real.workload.split("_")[0]
            if pattern not in PATTERNS or real.workload.endswith("_pf"):
                continue
            for ro, mo in zip(real.ops, model.ops, strict=True):
                if ro["op"] == "kernel" and int(ro.get("gpu_faults_notified") or 0) >= 500:
                    yield (
                        pattern,
                        int(real.meta.get("threads") or 0),
                        (int(ro["gpu_faults_notified"]), _serviced(ro)),
                        (int(mo.get("gpu_faults_notified") or 0), _serviced(mo)),
                    )


def main(labels: list[str]) -> None:
    labels = labels or [s.label for s in sessions() if s.has_space]
    print("| session | pattern | threads | n | serviced / notified: GPU, model ", end="")
    print("| model / GPU: serviced, notified |")
    print("|---|---|---|---|---|---|")
    for label in labels:
        by: dict[tuple[str, str], list[Any]] = {}
        for pattern, threads, g, m in kernels(label):
            shape = "2,048" if threads <= 2048 else "8,192" if threads <= 8192 else ">= 16 K"
            by.setdefault((pattern, shape), []).append((g, m))
        for (pattern, shape), rows in sorted(by.items()):

            def med(f: Any, rows: list[Any] = rows) -> float:
                return float(np.median([f(g, m) for g, m in rows]))

            print(
                f"| {label} | {pattern} | {shape} | {len(rows)} "
                f"| {med(lambda g, m: g[1] / g[0]):.2f}, {med(lambda g, m: m[1] / max(m[0], 1)):.2f} "
                f"| {med(lambda g, m: m[1] / max(g[1], 1)):.2f}, {med(lambda g, m: m[0] / g[0]):.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
