"""The per-workload report's verdicts against the targets, and how errors are printed."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass

from uvmlab.core.units import fmt_bytes, fmt_ns
from uvmlab.validation.stored import (
    CALIBRATION,
)
from uvmlab.validation.validate_compare import (
    BYTES_TARGET,
    CALIBRATION_TARGET,
    TIME_MEDIAN_TARGET,
    TIME_TARGET,
    Section,
    fmt_err,
)


def fmt_value(key: str, v: float | None, lower_bound: bool = False) -> str:
    if v is None:
        return "not measured"
    s = fmt_ns(v) if key == "time_ns" else fmt_bytes(v) if key.startswith("bytes") else f"{int(v):,}"
    return f"≥ {s}" if lower_bound else s


def _within(errs: list[tuple[str, float]], limit: float) -> int:
    return sum(1 for _n, e in errs if abs(e) <= limit)


def _worst(errs: list[tuple[str, float]]) -> tuple[str, float] | None:
    return max(errs, key=lambda x: abs(x[1])) if errs else None


def _median_abs(errs: list[tuple[str, float]]) -> float | None:
    vals = [abs(e) for _n, e in errs]
    return statistics.median(vals) if vals else None


def calibration_spread(profile: str) -> dict[str, float] | None:
    """How far apart the calibration runs are, per *measured* constant: the largest run value
    over the smallest, minus 1 (``deviation`` in the raw file; older raw files only have
    ``spread``, the largest deviation from run 1). Constants the runs do not measure (the same
    fixed value in every run, e.g. ``evict_chunk_ns`` or the 0 placeholders that the
    ``<gpu>-pcie5`` profiles fit to captures) are left out. None when there is no raw file."""
    p = CALIBRATION / f"{profile}.raw.json"
    if not p.is_file():
        return None
    raw = json.loads(p.read_text())
    dev = raw.get("deviation") or raw.get("spread", {})
    runs = [r.get("fit", {}) for r in raw.get("runs", [])]

    def measured(k: str) -> bool:
        vals = {r.get(k) for r in runs}
        return len(vals) > 1 or any(v for v in vals)

    fixed = {"evict_chunk_ns"}  # a documented default, not measured (see calibrate.py)
    return {k: float(v) for k, v in dev.items() if k not in fixed and measured(k)}


@dataclass
class Verdicts:
    """Each target of the issue, met or not, with the numbers that decide it."""

    items: list[tuple[str, bool | None, str]]


def _speed_label(sec: Section) -> str:
    return f"model faster than the GPU it models (whole {sec.set_label})"


def verdicts(sec: Section) -> Verdicts:
    n = len(sec.rows)
    items: list[tuple[str, bool | None, str]] = []
    if n == 0:
        # nothing compared (no captures): every target is undecided, never vacuously met; the
        # labels are the same as below so that the summary table lines them up
        why = "no captures" if sec.no_captures else "no workload compared"
        labels = [f"{lb} bytes within {BYTES_TARGET:.0%} on every workload" for lb in ("HtoD", "DtoH")]
        labels += [
            f"time within {TIME_TARGET:.0%} on every workload",
            f"median time error within {TIME_MEDIAN_TARGET:.0%}",
            _speed_label(sec),
            f"two calibration runs within {CALIBRATION_TARGET:.0%} of each other",
        ]
        return Verdicts([(lb, None, why) for lb in labels])
    for label, key in (("HtoD", "bytes_htod"), ("DtoH", "bytes_dtoh")):
        errs = sec.errors(key)
        ok = _within(errs, BYTES_TARGET)
        bad = [f"{name} {fmt_err(e)}" for name, e in errs if abs(e) > BYTES_TARGET]
        items.append(
            (
                f"{label} bytes within {BYTES_TARGET:.0%} on every workload",
                ok == n and len(errs) == n,
                f"{ok}/{n}" + (f"; misses: {', '.join(bad)}" if bad else ""),
            )
        )
    t = sec.errors("time_ns")
    ok = _within(t, TIME_TARGET)
    items.append((f"time within {TIME_TARGET:.0%} on every workload", ok == n and len(t) == n, f"{ok}/{n}"))
    med = _median_abs(t)
    worst = _worst(t)
    items.append(
        (
            f"median time error within {TIME_MEDIAN_TARGET:.0%}",
            med is not None and med <= TIME_MEDIAN_TARGET,
            f"median abs. error {fmt_err(med).lstrip('+')}"
            + (f", worst {worst[0]} {fmt_err(worst[1])}" if worst else ""),
        )
    )
    mw, gt = sec.model_wall_s(), sec.gpu_time_s()
    items.append(
        (
            _speed_label(sec),
            mw < gt,
            f"model {mw:.2f} s wall vs GPU {gt:.2f} s measured ({mw / gt:.1f}x)"
            if gt
            else f"model {mw:.2f} s",
        )
    )
    # calibration runs are stored under the raw calibration's name (<gpu>-pcie5-measured)
    calibrated = sec.profile if sec.profile.endswith("-measured") else f"{sec.profile}-measured"
    spread = calibration_spread(calibrated)
    if spread is None:
        items.append(
            (
                f"two calibration runs within {CALIBRATION_TARGET:.0%} of each other",
                None,
                f"no raw calibration file for {sec.profile}",
            )
        )
    else:
        over = sorted(((v, k) for k, v in spread.items() if v > CALIBRATION_TARGET), reverse=True)
        items.append(
            (
                f"two calibration runs within {CALIBRATION_TARGET:.0%} of each other",
                not over,
                f"{len(spread) - len(over)}/{len(spread)} constants of "
                f"{sec.profile}" + ("; over: " + ", ".join(f"{k} {v:.0%}" for v, k in over) if over else ""),
            )
        )
    return Verdicts(items)


# --- the report ---------------------------------------------------------------------------------
