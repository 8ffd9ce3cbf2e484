"""The model against captures, workload by workload: which profile, the comparisons, the sections
of the per-workload report (``validate.py`` says what is compared and why it is fair)."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uvmlab import api  # api.simulate at call time: tests replace it with a fake
from uvmlab.core.errors import UvmlabError, WorkloadError
from uvmlab.core.units import fmt_ns
from uvmlab.cuda.adapter import load_captures
from uvmlab.cuda.plan import plan_workload
from uvmlab.driver.hal import get_gpu
from uvmlab.results.result import Result
from uvmlab.timing.cost_model import builtin_profiles, load_profile
from uvmlab.validation.fit import latest_session, session_sets
from uvmlab.validation.stored import (
    SET_LABELS,
    STORED_CAPTURES,
    STORED_SETS,
    gpu_key,
)
from uvmlab.validation.suite import set_specs, spec_text, suite_workloads

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


def fmt_err(e: float | None) -> str:
    if e is None:
        return "n/a"
    if math.isinf(e):
        return "n/a (real 0)"
    return f"{e * 100:+.1f} %".replace("-", "−")


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
