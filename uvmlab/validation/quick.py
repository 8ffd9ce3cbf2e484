"""``uvmlab calibrate --quick``: calibrate the model on the machine being measured, in about a
minute of GPU time (issue 13, item 6).

Real machines drift 20-30 % from day to day, so an accuracy claim is made against a profile
calibrated on the same machine as the captures it is compared with. The quick calibration takes
the design space's ``calib`` micro-captures (``space.py``: streams at four launch shapes, random
and strided kernels, a write kernel, a 1 GiB stream, a prefetched stream, a small ping-pong, an
accessed-by case and a read-mostly case whose CPU writes collapse read duplicates; 3.4 GiB of
managed memory in all, each case far below free memory) and fits the per-kind constants on
them (``fit.py``), starting from the GPU's micro-benchmark profile ``<gpu>-pcie5-measured``.
The profile is stamped with the GPU, driver and date. Before the timed captures, a warm-up
(``warmup.py``, 30 s by default) runs the calibration set's kernel cases so that the profile is
not fitted on the machine's first seconds, which on the stored H100 runs were cheaper per byte
of CPU first touch than the rest of the session; its captures are kept, never fitted.

:func:`profile_from_captures` does the same fit on captures already taken (a stored session),
without a GPU.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from uvmlab.cuda.adapter import result_from_capture
from uvmlab.cuda.executor import execute, write_json_atomic
from uvmlab.cuda.runtime import device_info
from uvmlab.timing.cost_model import CostProfile, load_profile
from uvmlab.validation.fit import FitResult, Training, fit_profile
from uvmlab.validation.runs import workload_of
from uvmlab.validation.space import Case, cases
from uvmlab.validation.stored import gpu_key
from uvmlab.validation.warmup import WARMUP_DIR, WARMUP_S, warm_up

QUICK_BUDGET_S = 120.0  # the limit on GPU time


def profile_from_captures(
    captures: list[Any],
    gpu: str,
    name: str,
    *,
    stamp: dict[str, Any],
    log: Callable[[str], None] | None = None,
) -> FitResult:
    """Fit the per-kind constants on ``calib`` captures (Results) of GPU ``gpu``."""

    train = [Training(r.workload, workload_of(r, "space", "calib"), r) for r in captures]
    fr = fit_profile(load_profile(f"{gpu}-pcie5-measured"), train, gpu=gpu, name=name, log=log)
    sources = dict(fr.profile.sources)
    sources["_calibrated"] = (
        f"uvmlab calibrate --quick: {stamp.get('gpu')}, driver "
        f"{stamp.get('driver')}, {stamp.get('date')}, "
        f"{len(captures)} micro-captures"
    )
    fr.profile = replace(fr.profile, gpu=str(stamp.get("gpu") or fr.profile.gpu), sources=sources)
    return fr


def write_profile(prof: CostProfile, path: str | Path) -> Path:
    """Write ``prof`` as the built-in profiles are written (``CostProfile.to_json``), atomically."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(prof.to_json())
    tmp.replace(p)
    return p


def capture_calib(
    out_dir: str | Path,
    take: Callable[[Case], Any],
    *,
    warmup_s: float = WARMUP_S,
    clock: Callable[[], float] = time.perf_counter,
    log: Callable[[str], None] = print,
    stamp: dict[str, Any] | None = None,
) -> tuple[list[Any], dict[str, Any]]:
    """The warm-up (``warmup.py``: ``<out_dir>/calib-warmup<i>/``, never fitted), then the
    timed ``calib`` captures (``<out_dir>/calib/``), each written as it is taken; a manifest
    (``manifest.json``: each capture's start and seconds, as ``capture_space`` writes them, so
    ``python -m uvmlab.validation.cpu_phases --dir`` reads it) rewritten after every capture.
    ``take(case)`` runs one case on the GPU and returns its capture (``RealRunResult``).
    Returns the timed captures as Results and the manifest."""

    out = Path(out_dir)
    t0 = clock()
    man: dict[str, Any] = {
        "format": "uvmlab-capture-session",
        "version": 1,
        **(stamp or {}),
        "warmup_s": warmup_s,
        "captures": [],
    }

    def one(folder: str, c: Case) -> Any:
        el = clock() - t0
        res = take(c)
        res.meta["suite_name"] = c.name
        res.meta["workload_set"] = folder
        rel = f"{folder}/{c.name}.json"
        res.save(str(out / rel))
        took = round(clock() - t0 - el, 3)
        man["captures"].append({"path": rel, "seconds": took, "started_s": round(el, 3)})
        man["elapsed_s"] = round(clock() - t0, 3)
        write_json_atomic(str(out / "manifest.json"), man)
        log(f"[{el:6.1f} s] {rel}")
        return res

    wu = warm_up(lambda i, c: one(WARMUP_DIR.format(i), c), warmup_s, clock=clock, log=log)
    man["warmup"] = {"passes": len(wu.passes), "seconds": round(wu.seconds, 3)}
    captures = []
    for c in cases("calib"):
        res = one("calib", c)
        captures.append(result_from_capture(json.loads(json.dumps(res.to_dict()))))
    man["elapsed_s"] = round(clock() - t0, 3)
    write_json_atomic(str(out / "manifest.json"), man)
    return captures, man


def calibrate_quick(
    out_dir: str,
    name: str | None = None,
    log: Callable[[str], None] = print,
    *,
    warmup_s: float = WARMUP_S,
) -> Path:
    """Warm up, capture the ``calib`` set on this machine's GPU, fit, write
    ``<out_dir>/<name>.json`` (:func:`capture_calib` writes the captures beside it).

    Raises ``GpuUnavailableError`` (one clear line) without a GPU, before anything is written.
    """

    info = device_info()
    key = gpu_key(str(info["gpu"]))
    date = _dt.date.today().isoformat()
    name = name or f"{key}-pcie5-{date}"
    stamp = {"gpu": info["gpu"], "driver": info.get("driver_version"), "date": date}
    t0 = time.perf_counter()
    captures, man = capture_calib(
        out_dir, lambda c: execute(c.build(), threads=c.threads), warmup_s=warmup_s, log=log, stamp=stamp
    )
    gpu_s = time.perf_counter() - t0
    fr = profile_from_captures(captures, key, name, stamp=stamp, log=log)
    path = write_profile(fr.profile, Path(out_dir) / f"{name}.json")
    log(
        f"wrote {path} ({gpu_s:.0f} s of GPU time, {man['warmup']['seconds']:.0f} s of it warm-up; "
        f"budget {QUICK_BUDGET_S:.0f} s)"
    )
    return path


__all__ = ["QUICK_BUDGET_S", "calibrate_quick", "capture_calib", "profile_from_captures", "write_profile"]
