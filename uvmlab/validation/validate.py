"""The model against the real GPU: ``uvmlab validate`` and ``docs/validation.md`` (issue 5).

For every workload of the validation suite (``suite.py``) this runs the model with the GPU spec
and the *measured* cost profile of the GPU that made the capture, with the module parameters that
machine reported in sysfs, and compares the model's totals with the stored capture: time, bytes
host-to-device and device-to-host, GPU fault groups, CPU faults, and the relative error of each.
It needs no GPU: the captures are JSON files in the repository (``data/captures*``), so the
report is regenerated whenever the model changes. ``uvmlab validate --capture`` re-runs the
suite on the GPU first.

Two workload sets are compared (``suite.SETS``): the suite, to whose captures some constants of
the ``<gpu>-pcie5`` profiles were fitted, so that its errors are *in-sample*; and the hold-out
set (``suite.HOLDOUT``, captures in ``data/holdout-<gpu>``), the same kinds of workload with
other sizes, seeds and shapes that nothing was fitted to, so that its errors are out-of-sample.
Each GPU gets one :class:`Section` per set; the report states the issue's targets on each.

Why the comparison is fair, and where it cannot be:

* bytes and CPU faults on the GPU side come from the driver's lossless UVM Tools counters, so
  they are exact; time is the sum of the serialised operations' times (CUDA events for GPU
  operations, ``perf_counter_ns`` for host ones), which is what the model's clock adds up too;
* GPU fault groups come from CUPTI records; where CUPTI lost records (the driver's 8192-entry
  tools queue overflowed, ``checks.records_complete`` false) the real count is only a lower
  bound, so it is shown as such and left out of the error statistics rather than scored.

The report also breaks the time down by operation kind and names the single operation with the
largest time miss per workload: the tables say *where* the model is wrong, which is what whoever
tunes the model needs; the hand-written discussion (``data/validation_notes.md``) says why.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import json
import math
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uvmlab import api  # api.simulate at call time: tests replace it with a fake
from uvmlab.core.errors import UvmlabError, WorkloadError
from uvmlab.core.units import fmt_bytes, fmt_ns
from uvmlab.core.version import __version__
from uvmlab.cuda.adapter import load_captures
from uvmlab.cuda.plan import plan_workload
from uvmlab.driver.hal import get_gpu
from uvmlab.results.io import write_atomic
from uvmlab.results.result import Result
from uvmlab.timing.cost_model import builtin_profiles, load_profile
from uvmlab.validation.fit import latest_session, session_sets
from uvmlab.validation.stored import (
    CALIBRATION,
    NOTES,
    SET_LABELS,
    STORED_CAPTURES,
    STORED_HOLDOUT,
    STORED_SETS,
    gpu_key,
)
from uvmlab.validation.suite import HOLDOUT, set_specs, spec_text, suite_workloads

DEFAULT_OUTPUT = Path("docs") / "validation.md"

#: (label, canonical key) of the compared totals, in table order
METRICS: tuple[tuple[str, str], ...] = (
    ("time", "time_ns"),
    ("HtoD", "bytes_htod"),
    ("DtoH", "bytes_dtoh"),
    ("GPU fault groups", "gpu_fault_groups"),
    ("CPU faults", "cpu_faults"),
)
#: the issue's targets: every workload's time within 25 %, their median within 10 %, bytes within
#: 5 % everywhere, two calibrations within 10 % of each other
TIME_TARGET = 0.25
TIME_MEDIAN_TARGET = 0.10
BYTES_TARGET = 0.05
CALIBRATION_TARGET = 0.10
#: op kinds grouped for the time breakdown
KIND_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CPU phases", ("cpu",)),
    ("kernels", ("kernel",)),
    ("prefetch", ("prefetch",)),
    ("advise / free / sync", ("advise", "free", "sync")),
)
#: counters CUPTI records fill (lower bounds when records were lost); the rest are counters
CUPTI_ONLY = ("gpu_fault_groups", "bytes_htod_prefetch", "thrashing_events", "throttles", "remote_maps")


# --- which GPU, which profile -------------------------------------------------------------------


def fitted_constants(profile: str) -> list[str] | None:
    """The constants of built-in ``profile`` that differ from its micro-benchmark calibration
    (``<profile>-measured``): those that came from the suite's captures. None when the profile
    has no such calibration to compare with (a profile file, or the raw calibration itself)."""
    if profile.endswith("-measured") or f"{profile}-measured" not in builtin_profiles():
        return None
    fitted, measured = load_profile(profile), load_profile(f"{profile}-measured")
    return [
        f.name
        for f in dataclasses.fields(fitted)
        if f.name not in ("name", "sources") and getattr(fitted, f.name) != getattr(measured, f.name)
    ]


def measured_profile(key: str) -> str:
    """The model's built-in profile for GPU ``key`` (``<key>-pcie5``: the calibrated constants
    plus those fitted to the captures), else its raw calibration (``<key>-pcie5-measured``)."""
    names = builtin_profiles()
    for n in (f"{key}-pcie5", f"{key}-pcie5-measured"):
        if n in names:
            return n
    raise UvmlabError(
        f"no cost profile for {key} among the built-in profiles "
        f"({', '.join(names)}); run `uvmlab calibrate` on one"
    )


# --- comparing ----------------------------------------------------------------------------------


def rel_error(model: float, real: float) -> float:
    """(model - real) / real; 0 when both are 0, infinite when only the real value is 0."""
    if real == 0:
        return 0.0 if model == 0 else math.copysign(math.inf, model)
    return (model - real) / real


@dataclass
class Comparison:
    """One suite workload: its capture, the model's run of it, and the errors."""

    name: str
    spec: str
    real: Result
    model: Result
    model_wall_s: float

    @property
    def records_complete(self) -> bool:
        return bool(self.real.meta.get("checks", {}).get("records_complete", True))

    def lower_bound(self, key: str) -> bool:
        """True when the real value of ``key`` is only a lower bound (CUPTI lost records)."""
        if self.records_complete:
            return False
        if key in CUPTI_ONLY:
            return True
        # bytes and CPU faults are exact only when the driver's counters were read
        return key != "time_ns" and "counters_error" in self.real.meta

    def real_value(self, key: str) -> int | None:
        return self.real.totals.get(key)

    def model_value(self, key: str) -> int:
        return int(self.model.totals.get(key, 0))

    def error(self, key: str) -> float | None:
        """Relative error of the model, or None where the real value cannot score it."""
        r = self.real_value(key)
        if r is None or self.lower_bound(key):
            return None
        return rel_error(self.model_value(key), r)

    def kind_times(self, res: Result) -> dict[str, int]:
        out = {label: 0 for label, _ in KIND_GROUPS}
        for row in res.ops:
            for label, kinds in KIND_GROUPS:
                if row.get("op") in kinds:
                    out[label] += int(row.get("time_ns", 0))
        return out

    def largest_op_miss(self) -> tuple[str, int] | None:
        """(op name, model - real ns) of the operation whose time the model misses most."""
        best = None
        for m, r in zip(self.model.ops, self.real.ops, strict=False):
            d = int(m.get("time_ns", 0)) - int(r.get("time_ns", 0))
            if best is None or abs(d) > abs(best[1]):
                best = (f"{r.get('op')} {r.get('name')}", d)
        return best


@dataclass
class Section:
    """One GPU's captures of one workload set compared with the model."""

    key: str
    captures_dir: Path
    profile: str
    rows: list[Comparison] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # suite workloads with no capture
    stale: list[str] = field(default_factory=list)  # captures of a different workload version
    warmup_s: float = 0.0
    set_name: str = "suite"  # which workload set (suite.SETS)
    marketing_name: str = ""  # the GPU's name when there is no capture to take it from
    no_captures: bool = False  # the set's capture directory is absent or empty
    # real times of the same-session repetitions of each workload (data/repeats), when stored
    repeats: dict[str, list[int]] = field(default_factory=dict)

    @property
    def gpu_name(self) -> str:
        return self.rows[0].real.gpu if self.rows else (self.marketing_name or self.key)

    @property
    def set_label(self) -> str:
        return SET_LABELS.get(self.set_name, self.set_name)

    @property
    def fitted(self) -> list[str]:
        """Constants of the profile fitted to the suite's captures (empty: none known)."""
        return fitted_constants(self.profile) or []

    @property
    def sample(self) -> str:
        """``in-sample``, ``out-of-sample`` or ``""`` (a profile whose origin is unknown)."""
        if self.set_name == "holdout":
            return "out-of-sample"
        return "in-sample" if self.fitted else ""

    @property
    def title(self) -> str:
        """The GPU and the set, e.g. ``NVIDIA H200, suite (in-sample)``."""
        return f"{self.gpu_name}, {self.set_label}" + (f" ({self.sample})" if self.sample else "")

    def meta_values(self, key: str) -> list[str]:
        return sorted({str(c.real.meta.get(key, "")) for c in self.rows} - {""})

    def errors(self, key: str) -> list[tuple[str, float]]:
        return [(c.name, e) for c in self.rows if (e := c.error(key)) is not None]

    def model_wall_s(self) -> float:
        return sum(c.model_wall_s for c in self.rows)

    def gpu_time_s(self) -> float:
        return sum(c.real.totals.get("time_ns", 0) for c in self.rows) / 1e9

    def gpu_wall_s(self) -> float:
        return sum(c.real.wall_s for c in self.rows)


def _same_workload(real: Result, w: Any) -> str | None:
    """Why a capture is not of workload ``w`` as the suite builds it now, or None."""
    plan = plan_workload(w)  # the executor's names for the ops (advice, prefetch target, ...)
    if len(real.ops) != len(plan):
        return f"{len(real.ops)} operations captured, the suite has {len(plan)}"
    for k, (row, p) in enumerate(zip(real.ops, plan, strict=True)):
        if row.get("op") != p.kind or row.get("name") != p.name:
            return (
                f"operation {k} is {row.get('op')} {row.get('name')!r} in the capture, "
                f"{p.kind} {p.name!r} in the suite"
            )
        if "touches" in row and row["touches"] != p.touches:
            return f"operation {k} touched {row['touches']} pages, the suite's {p.touches}"
    want = json.loads(json.dumps(dict(w.params)))
    got = real.meta.get("workload_params")
    if got is not None and got != want:
        return f"captured with parameters {got}, the suite now uses {want}"
    return None


def compare_gpu(
    key: str,
    captures_dir: str | Path | None = None,
    *,
    names: list[str] | None = None,
    profile: str | None = None,
    log: Callable[[str], None] | None = None,
    set_name: str = "suite",
) -> Section:
    """Run the model on every workload of set ``set_name`` captured on GPU ``key`` and compare.

    ``captures_dir`` defaults to the stored captures of that GPU and set; ``profile`` to its
    measured profile. A capture that no longer matches the set's workload (the set changed since
    it was captured) is listed as stale instead of compared. The stored hold-out captures may
    not exist yet: then every workload is listed as missing (``no_captures``) rather than raised,
    so that the report can say so; a directory given explicitly must exist.
    """
    spec = get_gpu(key)
    specs = dict(set_specs(set_name))
    todo = suite_workloads(names, set_name)
    stored = STORED_SETS.get(set_name, {})
    cdir = Path(captures_dir) if captures_dir is not None else stored.get(spec.name)
    if cdir is None:
        raise UvmlabError(
            f"no stored {SET_LABELS.get(set_name, set_name)} captures for {key}; give --captures DIR"
        )
    prof = profile or measured_profile(spec.name)
    sec = Section(
        key=spec.name, captures_dir=cdir, profile=prof, set_name=set_name, marketing_name=spec.marketing_name
    )
    if captures_dir is None and set_name != "suite" and not any(cdir.glob("*.json")):
        sec.no_captures = True
        sec.missing = [n for n, _w in todo]
        return sec
    captures = load_captures(cdir)
    if captures_dir is None:
        sec.repeats = _session_times(key, set_name)
    # Warm-up, not counted in the model's wall time: loads the numba functions from their cache
    # (or compiles them) and the modules, which the GPU side's CUDA context creation and kernel
    # compilation are not counted against either.
    t0 = time.perf_counter()
    api.simulate("stream:size=4MiB", gpu=spec, profile=prof)
    sec.warmup_s = time.perf_counter() - t0
    for name, w in todo:
        real = captures.get(name)
        if real is None:
            sec.missing.append(name)
            continue
        why = _same_workload(real, w)
        if why is not None:
            sec.stale.append(f"{name}: {why}")
            continue
        t0 = time.perf_counter()
        model = api.simulate(w, gpu=spec, params=real.params, profile=prof)
        wall = time.perf_counter() - t0
        sec.rows.append(Comparison(name, spec_text(specs[name]), real, model, wall))
        if log is not None:
            e = rel_error(model.totals["time_ns"], real.totals.get("time_ns", 0))
            log(
                f"{spec.name} {name}: real {fmt_ns(real.totals.get('time_ns', 0))}, model "
                f"{fmt_ns(model.totals['time_ns'])} ({fmt_err(e)}), model wall {wall:.2f} s"
            )
    return sec


def _session_times(key: str, set_name: str) -> dict[str, list[int]]:
    """Real times of the stored same-session repetitions (``data/repeats/<gpu>-<date>``)."""
    return _session_times_by_set(key).get(set_name, {})


@functools.lru_cache(maxsize=4)
def _session_times_by_set(key: str) -> dict[str, dict[str, list[int]]]:
    # one read of the session's files per GPU, for both sets' sections
    try:
        sets = session_sets(latest_session(key))
    except UvmlabError:
        return {}
    return {
        s: {n: sorted(r.totals.get("time_ns", 0) for r in rs) for n, rs in runs.items()}
        for s, runs in sets.items()
    }


# --- numbers as text ----------------------------------------------------------------------------


def fmt_err(e: float | None) -> str:
    if e is None:
        return "n/a"
    if math.isinf(e):
        return "n/a (real 0)"
    return f"{e * 100:+.1f} %".replace("-", "−")


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


def _git_version() -> str:
    """The model's version as git knows it (the errors change as the model is tuned)."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if rev.returncode != 0:
            return ""
        # modified tracked files only: new untracked files change nothing until code imports them
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "uvmlab"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev.stdout.strip() + (" with local changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def _table(header: list[str], rows: list[list[str]], right_from: int = 1) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _section_md(sec: Section) -> list[str]:
    L: list[str] = []
    dates = sec.meta_values("date")
    drivers = sec.meta_values("driver_version")
    # the suite keeps its plain heading; other sets say which set and that it is out-of-sample
    L.append(f"## {sec.gpu_name}" if sec.set_name == "suite" else f"## {sec.title}")
    L.append("")
    if sec.no_captures:
        L.append(
            f"- **no captures of the {sec.set_label}** in `{_rel(sec.captures_dir)}`: the "
            f"{sec.sample or ''} targets cannot be evaluated on this GPU yet. Capture them on "
            f"an {sec.gpu_name} with `uvmlab validate --capture --set {sec.set_name}`."
        )
        L.append(f"- workloads waiting for a capture: {', '.join(sec.missing)}")
        L.append("")
        return L
    L += _sample_lines(sec)
    m = sec.rows[0].real.meta if sec.rows else {}
    cuda = m.get("cuda_runtime")
    link = f", PCIe gen {m['pcie_gen']} x{m['pcie_width']}" if m.get("pcie_gen") else ""
    L.append(
        f"- GPU: {sec.gpu_name}{link}; driver {', '.join(drivers) or 'unknown'}"
        + (f", CUDA runtime {cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else "")
        + (f", kernel {m['kernel']}" if m.get("kernel") else "")
    )
    L.append(
        f"- captured: {dates[0][:10] if dates else 'unknown'}"
        + (f" ({dates[0]} to {dates[-1]})" if len(dates) > 1 else "")
        + f"; captures: `{_rel(sec.captures_dir)}`"
    )
    changed = sorted({k for c in sec.rows for k in c.real.params})
    L.append(
        f"- model: GPU spec `{sec.key}`, cost profile `{sec.profile}` "
        f"({load_profile(sec.profile).gpu}), module parameters as read from the machine's "
        "sysfs: " + (", ".join(changed) if changed else "all at the driver's defaults")
    )
    if sec.missing:
        L.append(f"- **no capture** for: {', '.join(sec.missing)}")
    for s in sec.stale:
        L.append(f"- **stale capture, not compared** ({s})")
    L.append("")

    L.append("### Targets")
    L.append("")
    L += _table(
        ["target", "met", "numbers"],
        [
            [t, "n/a" if ok is None else ("yes" if ok else "**no**"), txt]
            for t, ok, txt in verdicts(sec).items
        ],
        right_from=99,
    )
    L.append("")

    L.append("### Time and bytes migrated")
    L.append("")
    rows = []
    for c in sec.rows:
        r = [f"`{c.name}`"]
        for key in ("time_ns", "bytes_htod", "bytes_dtoh"):
            lb = c.lower_bound(key)
            r += [
                fmt_value(key, c.real_value(key), lb),
                fmt_value(key, c.model_value(key)),
                fmt_err(c.error(key)),
            ]
            if key == "time_ns" and sec.repeats:
                t = sec.repeats.get(c.name, [])
                r.append(f"{fmt_ns(t[0])} – {fmt_ns(t[-1])} ({len(t)})" if t else "")
        rows.append(r)
    spread = ["real min – max (runs)"] if sec.repeats else []
    L += _table(
        [
            "workload",
            "time real",
            "time model",
            "error",
            *spread,
            "HtoD real",
            "HtoD model",
            "error",
            "DtoH real",
            "DtoH model",
            "error",
        ],
        rows,
    )
    L.append("")
    if sec.repeats:
        L.append(
            "The real time is the median run of the repetitions captured in one session "
            "(`uvmlab/validation/data/repeats/`); *min – max* is their range: the noise floor "
            "that no model of this machine can beat."
        )
        L.append("")

    L.append("### Faults")
    L.append("")
    rows = []
    for c in sec.rows:
        r = [f"`{c.name}`"]
        for key in ("gpu_fault_groups", "cpu_faults"):
            lb = c.lower_bound(key)
            err = fmt_err(c.error(key))
            if lb:
                err = "n/a (CUPTI lost records)"
            r += [fmt_value(key, c.real_value(key), lb), fmt_value(key, c.model_value(key)), err]
        served_real = c.real.totals.get("gpu_faults_notified")
        served_model = c.model_value("gpu_faults") - c.model_value("gpu_faults_duplicate")
        r += [
            fmt_value("n", served_real),
            f"{served_model:,}",
            fmt_err(None if served_real is None else rel_error(served_model, served_real)),
        ]
        rows.append(r)
    L += _table(
        [
            "workload",
            "GPU fault groups real",
            "model",
            "error",
            "CPU faults real",
            "model",
            "error",
            "GPU faults serviced real",
            "model",
            "error",
        ],
        rows,
    )
    L.append("")
    L.append(
        "GPU fault groups: CUPTI's GPU_PAGE_FAULT records on the GPU, fault batches in the "
        "model. GPU faults serviced (not a target, shown because it explains the fault "
        "groups): the driver's GpuPageFaultCount counter (one per representative fault after "
        "duplicate merging) on the GPU, raw minus duplicate faults in the model."
    )
    L.append("")

    L.append("### Where the time goes")
    L.append("")
    rows = []
    for c in sec.rows:
        kr, km = c.kind_times(c.real), c.kind_times(c.model)
        r = [f"`{c.name}`"]
        for label, _kinds in KIND_GROUPS:
            r.append(
                "–" if kr[label] == 0 and km[label] == 0 else f"{fmt_ns(kr[label])} / {fmt_ns(km[label])}"
            )
        miss = c.largest_op_miss()
        r.append(f"{miss[0]}: {'+' if miss[1] >= 0 else '−'}{fmt_ns(abs(miss[1]))}" if miss else "–")
        rows.append(r)
    L += _table(
        ["workload"]
        + [f"{label} real / model" for label, _ in KIND_GROUPS]
        + ["largest single-op miss (model − real)"],
        rows,
    )
    L.append("")
    pre = [
        (
            c.name,
            c.real.totals.get("bytes_htod_prefetch"),
            c.model_value("bytes_htod_prefetch"),
            c.lower_bound("bytes_htod_prefetch"),
        )
        for c in sec.rows
    ]
    L.append(
        "HtoD moved by the driver's prefetcher, real / model: "
        + "; ".join(
            f"`{n}` {fmt_value('bytes', r, lb)} / {fmt_bytes(mv)}" for n, r, mv, lb in pre if (r or mv)
        )
        + "."
    )
    L.append("")

    mw, gt, gw = sec.model_wall_s(), sec.gpu_time_s(), sec.gpu_wall_s()
    L.append(
        f"**Wall-clock time of the whole {sec.set_label}:** model {mw:.2f} s (plus a "
        f"{sec.warmup_s:.2f} s "
        f"warm-up that loads the compiled functions) vs the GPU's {gt:.2f} s of measured "
        f"operations ({gw:.2f} s of run loop): the model is "
        + (f"{gt / mw:.1f}x faster" if mw < gt else f"{mw / gt:.1f}x slower")
        + " than the GPU it models. Slowest in the model: "
        + ", ".join(
            f"`{c.name}` {c.model_wall_s:.2f} s (GPU {c.real.totals.get('time_ns', 0) / 1e9:.2f} s)"
            for c in sorted(sec.rows, key=lambda c: -c.model_wall_s)[:3]
        )
        + "."
    )
    L.append("")
    return L


def _sample_lines(sec: Section) -> list[str]:
    """The bullet that says whether this section's errors are in-sample, and why."""
    n = len(set_specs(sec.set_name))
    if sec.set_name == "holdout":
        return [
            f"- set: the **hold-out set** (`HOLDOUT` in `uvmlab/validation/suite.py`, {n} workloads: "
            "the suite's kinds with other sizes, seeds and shapes), **out-of-sample**: no "
            "constant of the model was fitted to these captures"
        ]
    if sec.set_name != "suite":
        return [f"- set: `{sec.set_name}`"]
    if not sec.fitted:
        return []
    return [
        f"- set: the validation suite, **in-sample**: {len(sec.fitted)} constants of "
        f"`{sec.profile}` ({', '.join(sec.fitted)}) are not the micro-benchmark calibration "
        f"`{sec.profile}-measured` but were fitted to the suite's captures, so these errors "
        "flatter the model; the hold-out set's are the out-of-sample test"
    ]


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(Path(__file__).resolve().parents[2]))
    except ValueError:
        return str(p)


def _sample_paragraph(sections: list[Section]) -> list[str]:
    """What is in-sample and what is not, above the summary table (empty when neither applies)."""
    fitted = [s for s in sections if s.set_name == "suite" and s.fitted]
    holdout = [s for s in sections if s.set_name == "holdout"]
    if not fitted and not holdout:
        return []
    text = "**In-sample and out-of-sample.** "
    if fitted:
        text += (
            "Some constants of the model's profiles ("
            + ", ".join(f"`{p}`" for p in dict.fromkeys(s.profile for s in fitted))
            + ") were fitted to the "
            "suite's captures (each GPU's section lists them), so the suite's time errors are "
            "**in-sample**: they say how well the fit reproduces the data it was fitted to, not "
            "how well the model predicts. "
        )
    if holdout:
        text += (
            f"The hold-out set (`HOLDOUT` in `uvmlab/validation/suite.py`, {len(HOLDOUT)} "
            "workloads: every synthetic kind of the suite and two of its advice workloads "
            "again, with other sizes, seeds and shapes) is captured the same way and nothing "
            "is ever fitted to it: its sections, with the same targets, are the "
            "**out-of-sample** test."
        )
        absent = [s.gpu_name for s in holdout if s.no_captures]
        if absent:
            text += (
                " Hold-out captures are **missing** for " + ", ".join(absent) + " (capture "
                "with `uvmlab validate --capture --set holdout` on each), so the "
                "out-of-sample targets are undecided there."
            )
    else:
        text += (
            "No hold-out set is reported here (`uvmlab validate --set all` adds it), so "
            "there is no out-of-sample figure."
        )
    return [text.strip(), ""]


def render(sections: list[Section], *, notes: str | None = None, command: str = "uvmlab validate") -> str:
    """``docs/validation.md`` as text."""
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    git = _git_version()
    L = ["# Validation: the model against real GPUs", ""]
    L.append(
        f"Generated by `{command}` on {now}; model: uvmlab {__version__}"
        + (f", git {git}" if git else "")
        + ". Regenerate from the stored captures (no GPU "
        "needed) with `uvmlab validate`; re-capture on a GPU with `uvmlab validate --capture` "
        "(`--set holdout`: the hold-out set only, leaving the suite's fitted captures alone)."
    )
    L.append("")
    suite = [s for s in sections if s.set_name == "suite"]
    L.append(
        "Each workload of the validation suite (`uvmlab/validation/suite.py`: "
        f"{len(suite[0].rows) if suite else 0} workloads covering every IR operation, "
        "none oversubscribed) ran on the GPU, serialised, with CUDA managed memory; the "
        "captures (JSON, in the repository) hold the driver's lossless counters, CUPTI "
        "records, per-operation times, the GPU, driver and every `nvidia_uvm` parameter. The "
        "model runs the same workload with that GPU's spec, its measured cost profile and "
        "the machine's module parameters. Error = (model − real) / real. Real bytes and CPU "
        "faults are the driver's counters (exact); fault groups are CUPTI records "
        '("≥": CUPTI lost records, a lower bound, not scored).'
    )
    L.append("")
    L += _sample_paragraph(sections)
    if len(sections) > 1:
        L.append("| target | " + " | ".join(s.title for s in sections) + " |")
        L.append("|---|" + "|".join("---" for _ in sections) + "|")
        vs = [verdicts(s).items for s in sections]
        for i, (label, _ok, _txt) in enumerate(vs[0]):
            if len({v[i][0] for v in vs}) > 1:  # "(whole suite)" / "(whole hold-out set)"
                label = label.split(" (whole ")[0] + " (whole set)"
            cells = []
            for v in vs:
                ok, txt = v[i][1], v[i][2]
                cells.append(
                    ("n/a" if ok is None else "met" if ok else "**not met**") + f" ({txt.split(';')[0]})"
                )
            L.append(f"| {label} | " + " | ".join(cells) + " |")
        L.append("")
    for s in sections:
        L += _section_md(s)
    if notes:
        L.append("## Discussion: where and why the model misses")
        L.append("")
        L.append(notes.strip())
        L.append("")
    return "\n".join(L)


def write_report(path: str | Path, text: str) -> Path:
    p = Path(path)
    write_atomic(p, text.encode())
    return p


def load_notes() -> str | None:
    return NOTES.read_text() if NOTES.is_file() else None


def sections_for(
    gpus: list[str] | None,
    captures: str | Path | None,
    *,
    names: list[str] | None = None,
    profile: str | None = None,
    log: Callable[[str], None] | None = None,
    sets: tuple[str, ...] | list[str] = ("suite",),
    holdout_captures: str | Path | None = None,
) -> list[Section]:
    """The sections ``uvmlab validate`` reports: for the GPUs asked for (else every GPU with
    stored suite captures), one section per workload set of ``sets``, GPU by GPU.

    ``captures`` is the capture directory of the first set asked for (one GPU's);
    ``holdout_captures`` that of the hold-out set when both sets are asked for. A set none of
    whose workloads is among ``names`` is left out.
    """
    sets = list(sets)
    dirs: dict[str, str | Path | None] = {s: None for s in sets}
    if sets:
        dirs[sets[0]] = captures
    if "holdout" in sets and holdout_captures is not None:
        dirs["holdout"] = holdout_captures
    if names:
        known = {n for s in sets for n, _ in set_specs(s)}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise WorkloadError(
                f"unknown workload(s) {', '.join(unknown)} in the "
                f"{' and '.join(SET_LABELS.get(s, s) for s in sets)}; known: "
                f"{', '.join(sorted(known))}"
            )
        sets = [s for s in sets if any(n in names for n, _ in set_specs(s))]
    given = [d for s, d in dirs.items() if d is not None and s in sets]
    if given:
        if not gpus:
            caps = load_captures(given[0])
            gpus = [gpu_key(next(iter(caps.values())).gpu)]
        if len(gpus) != 1:
            raise UvmlabError("--captures DIR holds one GPU's captures; give one --gpu")
    keys = gpus or [k for k, d in STORED_CAPTURES.items() if d.is_dir()]
    out = []
    for k in keys:
        for s in sets:
            wanted = [n for n, _ in set_specs(s) if n in names] if names else None
            out.append(compare_gpu(k, dirs[s], names=wanted, profile=profile, log=log, set_name=s))
    return out


__all__ = [
    "METRICS",
    "STORED_CAPTURES",
    "STORED_HOLDOUT",
    "STORED_SETS",
    "Comparison",
    "Section",
    "compare_gpu",
    "fitted_constants",
    "gpu_key",
    "measured_profile",
    "rel_error",
    "render",
    "sections_for",
    "verdicts",
    "write_report",
]
