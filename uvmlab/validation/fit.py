"""Fit the fault-path cost constants of a profile to captured workloads (``uvmlab fit``).

``calibrate`` measures what micro-benchmarks isolate: copy engines, latencies, touch rates. What
the driver's fault path adds on top of them — the effective HtoD rate of fault-driven copies
(small runs interleaved with mapping work), the per-fault cost, the CPU fault cost, populating
and re-mapping CPU pages, and the per-block cost of advice, read duplication and frees — is not
separable there; these constants (``FITTED``) are fitted to the time of captured workloads.

Method. The model's simulated time is a sum of charges, each a count times one constant, and the
fault schedule does not depend on the constants (the GPU adds fault entries only at replays), so
the time of workload w is, to a good approximation, linear in the fitted parameters θ (for the
HtoD rate the parameter is its inverse, ns per byte): ``T_w(θ) = T_w(0) + J_w · θ``. The columns
of J are finite differences (one model run per constant); the fit minimises the squared
*relative* error over the training workloads, ``Σ ((T_w(θ) - R_w) / R_w)²``, with θ >= 0
(active-set least squares), where R_w is the median real time of the workload's repetitions.
The thrashing detector reads the clock, so the time is not exactly linear: the fit is repeated
around its own answer (Gauss-Newton) until it moves less than 1 %. A constant that no training
workload exercises keeps the base profile's value.

Keep the hold-out set out of every fit: its captures are the out-of-sample test.
"""

from __future__ import annotations

import datetime as _dt
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from uvmlab import api  # api.simulate at call time: tests replace it with a fake
from uvmlab.core.errors import UvmlabError
from uvmlab.cuda.adapter import load_real
from uvmlab.results.result import Result
from uvmlab.timing.cost_model import CostProfile
from uvmlab.validation.stored import REPEATS
from uvmlab.validation.suite import suite_workloads

#: the constants fitted to captures, as (profile field, parameter is the field's inverse)
FITTED: tuple[tuple[str, bool], ...] = (
    ("htod_gbps", True),
    ("fault_ns", False),
    ("cpu_fault_ns", False),
    ("cpu_populate_ns_per_byte", False),
    ("cpu_map_page_ns", False),
    ("advise_block_ns", False),
    ("read_dup_page_ns", False),
    ("free_block_ns", False),
)
MAX_ITERATIONS = 4
CONVERGED = 0.01  # largest relative change of a parameter between iterations


def latest_session(gpu: str) -> Path:
    """The newest stored session of repeated captures of ``gpu``
    (``data/repeats/<gpu>-<date>``: the names sort by date)."""
    sessions = sorted(REPEATS.glob(f"{gpu}-*"))
    if not sessions:
        raise UvmlabError(f"no stored repeated captures of {gpu} under {REPEATS}")
    return sessions[-1]


def session_sets(directory: str | Path) -> dict[str, dict[str, list[Result]]]:
    """A session's repeated captures by set (the ``suite`` / ``holdout`` folders of each
    ``rep<i>``) and workload name."""
    d = Path(directory)
    out = {}
    for set_name in ("suite", "holdout"):
        runs = _load_runs(sorted(d.glob(f"rep*/{set_name}/*.json")))
        if runs:
            out[set_name] = runs
    if not out:
        raise UvmlabError(f"{d}: no rep*/suite or rep*/holdout captures")
    return out


def _load_runs(files: list[Path]) -> dict[str, list[Result]]:
    out: dict[str, list[Result]] = {}
    for f in files:
        r = load_real(f)
        out.setdefault(str(r.meta.get("suite_name") or f.stem), []).append(r)
    return out


def suite_training(runs: Mapping[str, list[Result]]) -> dict[str, tuple[Any, Result, float]]:
    """``fit_profile``'s training set from a session's suite runs: each workload as the suite
    builds it, its median run (for the machine's module parameters) and its median time."""
    work = dict(suite_workloads(set_name="suite"))
    return {n: (work[n], median_run(rs), median_time(rs)) for n, rs in runs.items() if n in work}


def median_run(runs: list[Result]) -> Result:
    """The repetition with the median time (the lower middle one for an even count): a real run,
    so its bytes and faults belong to the time it is compared with."""
    ranked = sorted(runs, key=lambda r: r.totals.get("time_ns", 0))
    return ranked[(len(ranked) - 1) // 2]


def median_time(runs: list[Result]) -> float:
    return float(statistics.median(r.totals.get("time_ns", 0) for r in runs))


def _params(prof: CostProfile, theta: np.ndarray, free: list[int]) -> CostProfile:
    values = {}
    for i in free:
        field, inverse = FITTED[i]
        v = float(theta[i])
        values[field] = (1.0 / v if v > 0 else float("inf")) if inverse else v
    return replace(prof, **values)


def _theta(prof: CostProfile) -> np.ndarray:
    return np.array([1.0 / getattr(prof, f) if inv else getattr(prof, f) for f, inv in FITTED])


def _nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """min ||a x - b|| with x >= 0: least squares on the active set, dropping the most negative
    parameter until none is negative (enough for a handful of well-scaled columns)."""
    active = list(range(a.shape[1]))
    x = np.zeros(a.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(a[:, active], b, rcond=None)
        if (sol >= 0).all():
            x[active] = sol
            return x
        active.pop(int(np.argmin(sol)))
    return x


@dataclass
class FitReport:
    profile: CostProfile
    training: list[str]
    errors: dict[str, float]  # relative time error per training workload, with the fitted profile
    fixed: list[str]  # constants no training workload exercises (kept from the base)
    iterations: int


def fit_profile(
    base: CostProfile,
    training: Mapping[str, tuple[Any, Result, float]],
    *,
    gpu: str,
    name: str,
    log: Callable[[str], None] | None = None,
) -> FitReport:
    """Fit ``FITTED`` on ``training``: name -> (workload, a real run for its module
    parameters, real time in ns). Returns the fitted profile and its training errors."""
    names = sorted(training)
    if not names:
        raise UvmlabError("no training workloads to fit on")
    real = np.array([training[n][2] for n in names], dtype=float)
    if (real <= 0).any():
        raise UvmlabError("a training capture has no time")

    def times(prof: CostProfile) -> np.ndarray:
        return np.array(
            [
                api.simulate(training[n][0], gpu=gpu, params=training[n][1].params, profile=prof).totals[
                    "time_ns"
                ]
                for n in names
            ],
            dtype=float,
        )

    theta = _theta(base)
    every = list(range(len(FITTED)))
    fixed: list[str] = []
    free = every
    it = 0
    for it in range(1, MAX_ITERATIONS + 1):
        t0 = times(_params(base, theta, every))
        cols = []
        for i in every:  # finite difference around the current parameters
            step = max(abs(theta[i]) * 0.5, 1e-3 if FITTED[i][1] else 1.0)
            th = theta.copy()
            th[i] += step
            cols.append((times(_params(base, th, every)) - t0) / step)
        jac = np.stack(cols, axis=1)
        free = [i for i in every if np.abs(jac[:, i]).max() > 0]
        fixed = [FITTED[i][0] for i in every if i not in free]
        # T(θ') = t0 + J (θ' - θ): solve for θ' >= 0 on the relative errors
        a = jac[:, free] / real[:, None]
        b = (real - t0 + jac[:, free] @ theta[free]) / real
        new = theta.copy()
        new[free] = _nnls(a, b)
        scale = np.maximum(np.maximum(np.abs(theta[free]), np.abs(new[free])), 1e-12)
        moved = np.abs(new[free] - theta[free]) / scale
        theta = new
        if log is not None:
            log(f"iteration {it}: largest parameter change {moved.max():.1%}")
        if moved.max() < CONVERGED:
            break
    prof = _params(base, theta, every)
    final = times(prof)
    errors = {n: float((m - r) / r) for n, m, r in zip(names, final, real, strict=True)}
    date = _dt.date.today().isoformat()
    sources = dict(base.sources)
    for i in every:
        f = FITTED[i][0]
        if f in fixed:
            sources[f] = f"{sources.get(f, 'base profile')} (no training workload exercises it)"
        else:
            sources[f] = (
                f"fit to captures (uvmlab fit, {date}): relative-error least squares "
                f"over {len(names)} workloads' median real times, θ >= 0"
            )
    sources["_fit"] = (
        f"base {base.name}; training: {', '.join(names)}; median |error| "
        f"{statistics.median(abs(e) for e in errors.values()):.1%}"
    )
    prof = replace(
        prof, name=name, sources=sources, **{f: float(round(getattr(prof, f), 4)) for f, _ in FITTED}
    )
    return FitReport(prof, names, errors, fixed, it)


def evaluate(
    prof: CostProfile, runs: Mapping[str, list[Result]], workloads: Mapping[str, Any], gpu: str
) -> dict[str, float]:
    """Relative time error of the model with ``prof`` against each workload's median real time."""
    out = {}
    for name, rs in sorted(runs.items()):
        if name not in workloads:
            continue
        real = median_time(rs)
        model = api.simulate(workloads[name], gpu=gpu, params=median_run(rs).params, profile=prof).totals[
            "time_ns"
        ]
        out[name] = (model - real) / real
    return out


__all__ = [
    "FITTED",
    "FitReport",
    "evaluate",
    "fit_profile",
    "latest_session",
    "median_run",
    "median_time",
    "session_sets",
    "suite_training",
]
