"""Fit a cost profile per operation kind (issue 13, item 2): the GPU fault-path constants on
GPU kernel operations, the CPU constants on CPU phases, never on workload totals.

Method. The model's time of one operation is a sum of charges, each a count times one constant;
for a fixed fault schedule it is linear in the constants θ (for a bandwidth the parameter is its
inverse, ns per byte): ``t_op(θ') = t_op(θ) + J_op · (θ' - θ)``. ``J`` comes from finite
differences, one model run of every training workload per constant. Each kind's constants
minimise the squared *relative* error of that kind's operations (at least ``MIN_FIT_NS`` of real
time; a workload's CPU phases under ``MIN_FIT_CPU_PAGES`` pages count as one, summed), the
other kind's constants held, with θ >= 0. Leave-one-workload-out (LOWO): the same
linear fit without one workload's operations, used to predict that workload's operations; it
costs no further model run, so it is the linearised prediction, which the report says.

``cpu_fault_resident_ns`` is fitted on the CPU phases whose faults find the page already on the
CPU (a write collapsing read duplicates: the calibration set's ``read_mostly_32m_c``); a training
set without such faults leaves it at the base profile's value, the micro-benchmark of
``uvmlab calibrate``. The same holds for every constant: one that no operation of its kind
depends on keeps its base value.

The fitted constants, each with its unit and what it stands for in the driver:
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from uvmlab.core.errors import UvmlabError
from uvmlab.cuda.adapter import load_real
from uvmlab.cuda.plan import plan_workload
from uvmlab.results.result import Result
from uvmlab.timing.cost_model import CostProfile
from uvmlab.validation.runs import model_run
from uvmlab.validation.stored import REPEATS

#: (profile field, parameter is the inverse, unit, what it stands for)
GPU_CONSTANTS: tuple[tuple[str, bool, str, str], ...] = (
    (
        "fault_batch_ns",
        False,
        "ns per batch",
        "fetching, parsing and sorting one batch of fault-buffer entries, the flush and the CPU's "
        "wait for the replay (uvm_gpu_replayable_faults.c: fetch_fault_buffer_entries, "
        "fault_buffer_flush_locked, push_replay_on_gpu)",
    ),
    (
        "fault_ns",
        False,
        "ns per fault entry",
        "per-entry work of a batch: valid-bit polling, instance-pointer translation, coalescing "
        "and the per-page service bookkeeping",
    ),
    (
        "fault_block_ns",
        False,
        "ns per VA block serviced",
        "locking and servicing one VA block of a batch: residency update, PTE writes, TLB "
        "invalidate and the tracker wait (service_fault_batch_block_locked)",
    ),
    (
        "htod_gbps",
        True,
        "ns per byte (inverse of GB/s)",
        "the copy engines' rate for fault-driven host-to-device copies, runs of at most one VA "
        "block interleaved with mapping work",
    ),
    (
        "remote_touch_ns",
        False,
        "ns per remote touch",
        "one GPU access over PCIe to memory mapped on the host (accessed-by, pinned)",
    ),
)
CPU_CONSTANTS: tuple[tuple[str, bool, str, str], ...] = (
    (
        "cpu_fault_ns",
        False,
        "ns per CPU fault",
        "the CPU fault handler: trap, uvm_va_space_cpu_fault, the VA block's service and return",
    ),
    (
        "cpu_fault_resident_ns",
        False,
        "ns per CPU fault",
        "a CPU fault on a page already on the CPU: a write collapsing the GPUs' read duplicates "
        "(unmapping them, uvm_va_block.c block_cpu_fault_locked) or a permission upgrade, no copy",
    ),
    (
        "cpu_populate_ns_per_byte",
        False,
        "ns per byte",
        "the kernel allocating and zeroing fresh CPU pages at first touch",
    ),
    (
        "cpu_map_page_ns",
        False,
        "ns per page",
        "re-creating one CPU PTE after pages migrate back (vm_insert_page per page)",
    ),
    (
        "cpu_touch_ns",
        False,
        "ns per CPU touch",
        "one CPU access to a page already mapped (the numpy gather / scatter of the executor)",
    ),
)
HOST_CONSTANTS: tuple[tuple[str, bool, str, str], ...] = (
    (
        "free_block_ns",
        False,
        "ns per VA block freed",
        "cudaFree of managed memory: destroying one VA block's mappings and returning its pages "
        "(uvm_va_range_destroy, uvm_va_block_destroy)",
    ),
    (
        "advise_block_ns",
        False,
        "ns per VA block advised",
        "one cudaMemAdvise over one VA block: the policy update and any re-mapping it forces",
    ),
)
#: op kinds (the IR's names) and the constants fitted on them
KIND_CONSTANTS = {
    "kernel": GPU_CONSTANTS,
    "cpu": CPU_CONSTANTS,
    "free": HOST_CONSTANTS[:1],
    "advise": HOST_CONSTANTS[1:],
}
MIN_FIT_NS = 1_000_000  # kernels and CPU phases shorter than this are too noisy to fit on
MIN_HOST_NS = 100_000  # the same for advice and frees (each costs per VA block)
# A CPU phase touching fewer than 256 pages (1 MiB) is not fitted on by itself: a workload's such
# phases are summed into one row, all of them. The 1 ms floor alone chose them on the outcome: of
# the 100 CPU phases of a 64 KiB ping-pong (0.26 ms median), the 9-17 that a thrashing throttle
# made sleep past 1 ms (uvm_va_space_cpu_fault's nap) were fitted on, each with 12-16 faults and
# a model that naps in other rounds, and pulled cpu_fault_ns up (H100: 58 µs, the read-backs of
# the same fit 20-30 % high). Left out altogether, nothing but these many-fault phases would
# separate the cost per fault from the cost per byte (large phases fault 6 times per 2 MiB at
# every size). Not below 1 MiB pages: the 1-4 MiB ping-pong phases, where the model counts
# 1.7-3.2x the CPU faults (docs/validation.md, limits), would set the cost per fault by counts
# it gets wrong (summed as one row they take the H200's training fit to 3 µs per fault).
MIN_FIT_CPU_PAGES = 256
EXPLAINED = "\n".join(
    f"* ``{f}`` ({u}): {w}." for f, _i, u, w in GPU_CONSTANTS + CPU_CONSTANTS + HOST_CONSTANTS
)
__doc__ = (__doc__ or "") + "\n" + EXPLAINED + "\n"


@dataclass
class Training:
    """One training workload: its name, IR, the real run (module parameters, launch shape)."""

    name: str
    workload: Any
    real: Any  # Result


@dataclass
class KindFit:
    kind: str
    constants: list[str]
    n_ops: int
    in_sample: dict[str, float]  # op key -> relative error (linearised, fitted θ)
    lowo: dict[str, float]  # op key -> relative error predicted without its workload


@dataclass
class FitResult:
    profile: CostProfile
    kinds: dict[str, KindFit]


def _get(prof: CostProfile, field: str, inverse: bool) -> float:
    v = float(getattr(prof, field))
    return (1.0 / v if v > 0 else 0.0) if inverse else v


def _set(prof: CostProfile, values: dict[tuple[str, bool], float]) -> CostProfile:
    out = {}
    for (field, inverse), v in values.items():
        out[field] = (1.0 / v if v > 0 else 1e9) if inverse else max(v, 0.0)
    return replace(prof, **out)


def _nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """min ||a x - b|| with x >= 0 (active set: drop the most negative until none is)."""
    active = list(range(a.shape[1]))
    x = np.zeros(a.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(a[:, active], b, rcond=None)
        if (sol >= 0).all():
            x[active] = sol
            return x
        active.pop(int(np.argmin(sol)))
    return x


def op_times(train: Sequence[Training], gpu: str, prof: CostProfile) -> np.ndarray:
    """The model's time of every operation of every training workload, in order."""

    out: list[float] = []
    for t in train:
        out += [float(o["time_ns"]) for o in model_run(t.real, t.workload, gpu, prof).ops]
    return np.array(out)


def _fit_rows(
    kind: str, rows: list[tuple[str, str, str, float]], real: np.ndarray, small_cpu: list[bool], floor: float
) -> list[tuple[str, str, np.ndarray]]:
    """(key, workload, operation indices) of the rows kind ``kind`` is fitted on: each operation
    of at least ``floor`` real time, except that a workload's short CPU phases (under
    ``MIN_FIT_CPU_PAGES`` pages) are one row, all of them summed, when the sum reaches ``floor``."""
    out = []
    short: dict[str, list[int]] = {}
    for i, (w, op, name, t) in enumerate(rows):
        if op != kind:
            continue
        if small_cpu[i]:
            short.setdefault(w, []).append(i)
        elif t >= floor:
            out.append((f"{w}/{name}", w, np.array([i])))
    for w, idx in short.items():
        if real[idx].sum() >= floor:
            out.append((f"{w}/{len(idx)} short CPU phases", w, np.array(idx)))
    return out


def fit_profile(
    base: CostProfile,
    train: Sequence[Training],
    *,
    gpu: str,
    name: str,
    log: Callable[[str], None] | None = None,
) -> FitResult:
    """Fit ``GPU_CONSTANTS`` on kernel operations and ``CPU_CONSTANTS`` on CPU phases."""
    if not train:
        raise UvmlabError("no training captures to fit on")
    say = log or (lambda s: None)
    rows = [(t.name, r["op"], r["name"], float(r["time_ns"])) for t in train for r in t.real.ops]
    # page touches of each operation as the workload defines them (the executor's plan)
    small_cpu = [
        p.kind == "cpu" and p.touches < MIN_FIT_CPU_PAGES for t in train for p in plan_workload(t.workload)
    ]
    if len(small_cpu) != len(rows):
        raise UvmlabError("captures and workloads differ in their operations")
    real = np.array([r[3] for r in rows])
    allc = [(f, inv) for f, inv, _u, _w in GPU_CONSTANTS + CPU_CONSTANTS + HOST_CONSTANTS]
    theta = {c: _get(base, *c) for c in allc}
    say(f"fit {name}: {len(train)} workloads, {len(rows)} operations, base run")
    t0 = op_times(train, gpu, base)
    if len(t0) != len(rows):
        raise UvmlabError("model and captures differ in their operations")
    cols = {}
    for c in allc:
        step = max(abs(theta[c]) * 0.5, 1e-3 if c[1] else 1.0)
        th = dict(theta)
        th[c] += step
        say(f"  finite difference of {c[0]}")
        cols[c] = (op_times(train, gpu, _set(base, th)) - t0) / step
    new = dict(theta)
    kinds: dict[str, KindFit] = {}
    for kind, consts in KIND_CONSTANTS.items():
        floor = MIN_FIT_NS if kind in ("kernel", "cpu") else MIN_HOST_NS
        groups = _fit_rows(kind, rows, real, small_cpu, floor)
        # one fitted row per group: the sums of its operations' real times, times and columns
        r_sel = np.array([real[g].sum() for _k, _w, g in groups])
        t_sel = np.array([t0[g].sum() for _k, _w, g in groups])
        cs = [
            (f, inv)
            for f, inv, _u, _w in consts
            if any(np.abs(cols[(f, inv)][g]).max(initial=0) > 0 for _k, _w, g in groups)
        ]
        if not groups or not cs:
            continue
        jac = np.array([[cols[c][g].sum() for c in cs] for _k, _w, g in groups])
        th0 = np.array([theta[c] for c in cs])
        a = jac / r_sel[:, None]
        b = (r_sel - t_sel + jac @ th0) / r_sel
        x = _nnls(a, b)
        keys = [k for k, _w, _g in groups]
        wl = np.array([w for _k, w, _g in groups])
        pred = t_sel + jac @ (x - th0)
        in_sample = {k: float((p - r) / r) for k, p, r in zip(keys, pred, r_sel, strict=True)}
        lowo: dict[str, float] = {}
        for w in sorted(set(wl)):
            keep = wl != w
            if not keep.any():
                continue
            xw = _nnls(a[keep], b[keep])
            pw = t_sel[~keep] + jac[~keep] @ (xw - th0)
            for k, p, r in zip(np.array(keys)[~keep], pw, r_sel[~keep], strict=True):
                lowo[str(k)] = float((p - r) / r)
        for c, v in zip(cs, x, strict=True):
            new[c] = float(v)
        kinds[kind] = KindFit(kind, [c[0] for c in cs], len(groups), in_sample, lowo)
        say(
            f"  {kind}: {len(groups)} ops, in-sample median |err| "
            f"{statistics.median(abs(e) for e in in_sample.values()):.1%}, LOWO "
            f"{statistics.median(abs(e) for e in lowo.values()) if lowo else float('nan'):.1%}"
        )
    prof = _set(base, new)
    date = _dt.date.today().isoformat()
    sources = dict(base.sources)
    for kind, kf in kinds.items():
        for f in kf.constants:
            sources[f] = (
                f"fit per kind ({date}) on {kf.n_ops} {kind} operations of "
                f"{len(train)} captured workloads: relative-error least squares, >= 0"
            )
    fields = {f.name for f in dataclasses.fields(prof)}
    prof = replace(
        prof,
        name=name,
        sources=sources,
        **{f: float(f"{getattr(prof, f):.6g}") for f, _ in allc if f in fields},
    )
    return FitResult(prof, kinds)


# --- stored sessions of repeated suite captures (validate.py reads them) ---------------------


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


def median_run(runs: list[Result]) -> Result:
    """The repetition with the median time (the lower middle one for an even count): a real run,
    so its bytes and faults belong to the time it is compared with."""
    ranked = sorted(runs, key=lambda r: r.totals.get("time_ns", 0))
    return ranked[(len(ranked) - 1) // 2]


def median_time(runs: list[Result]) -> float:
    return float(statistics.median(r.totals.get("time_ns", 0) for r in runs))


__all__ = [
    "latest_session",
    "median_run",
    "median_time",
    "session_sets",
    "CPU_CONSTANTS",
    "FitResult",
    "GPU_CONSTANTS",
    "HOST_CONSTANTS",
    "KindFit",
    "Training",
    "fit_profile",
    "op_times",
]
