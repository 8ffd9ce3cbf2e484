"""Per-operation scores of the model against captures (issue 13, item 1).

A workload's total hides errors of opposite sign in its parts (a fault path too slow and CPU
phases too fast cancel), so every operation is scored on its own and the scores are grouped by
what users compare:

* ``gpu_kernels``: GPU kernel operations of at least ``MIN_OP_NS`` real time;
* ``cpu_phases``: CPU phases of at least ``MIN_OP_NS``;
* ``prefetch``: explicit prefetches of at least ``MIN_SMALL_OP_NS``;
* ``advise_sync``: advice, sync and free operations of at least ``MIN_SMALL_OP_NS``;
* ``totals``: whole workloads;
* ``bytes``: each operation's HtoD and DtoH bytes where at least ``MIN_BYTES`` moved (the
  driver's lossless counters on the real side);
* ``fault_groups``: CUPTI GPU fault groups of fault-heavy kernels (at least ``MIN_FAULTS``
  faults serviced by the real driver, its GpuPageFaultCount counter, and CUPTI's records
  complete) against the model's ``gpu_fault_groups``;
* ``gpu_faults``: the same kernels' GPU faults serviced, the driver's GpuPageFaultCount counter
  (``gpu_faults_notified`` on both sides): not a target, it says how much of a fault-group
  error comes from the number of faults and how much from their batching;
* ``thrashing``: throttle, thrashing and remote-map counts of ping-pong, accessed-by and
  read-mostly workloads (per workload, where the real count is at least 5). These counters vary
  several-fold from run to run (``references.py``), so where repeats of the case are stored the
  real count is the median of the repeats (``Score.ref`` keeps the single run and the spread),
  else the single run.

Each group reports ``n``, the median absolute relative error, the signed median, and how many
are within 15 % and 30 %.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

MIN_OP_NS = 5_000_000
MIN_SMALL_OP_NS = 1_000_000
MIN_BYTES = 1 << 20
MIN_FAULTS = 1000
MIN_COUNT = 5
KINDS = (
    "gpu_kernels",
    "cpu_phases",
    "prefetch",
    "advise_sync",
    "totals",
    "bytes",
    "fault_groups",
    "thrashing",
    "gpu_faults",
)
KIND_LABELS = {
    "gpu_kernels": "GPU kernels (>= 5 ms)",
    "cpu_phases": "CPU phases (>= 5 ms)",
    "prefetch": "prefetch (>= 1 ms)",
    "advise_sync": "advise / sync / free (>= 1 ms)",
    "totals": "workload totals",
    "bytes": "bytes per op (>= 1 MiB)",
    "fault_groups": "GPU fault groups (fault-heavy kernels)",
    "thrashing": "throttles / thrashing / remote maps",
    "gpu_faults": "GPU faults serviced (same kernels)",
}
OP_KIND = {
    "kernel": "gpu_kernels",
    "cpu": "cpu_phases",
    "prefetch": "prefetch",
    "advise": "advise_sync",
    "sync": "advise_sync",
    "free": "advise_sync",
}
THRASH_KEYS = ("throttles", "thrashing_events", "remote_maps")
THRASH_CASES = ("pingpong", "accessed_by", "read_mostly")


def is_thrash_case(name: str) -> bool:
    """Whether workload ``name`` is scored on its thrashing / remote-mapping counters."""
    return any(k in name for k in THRASH_CASES)


def rel(model: float, real: float) -> float:
    """(model - real) / real; 0 when both are 0, infinite when only the real value is 0."""
    if real == 0:
        return 0.0 if model == 0 else math.copysign(math.inf, model)
    return (model - real) / real


@dataclass(frozen=True)
class Reference:
    """One counter of one case: the scored run, and the runs pooled as its reference."""

    single: float  # the scored session's own run
    median: float  # the reference: the median of the pooled runs (the single run when n == 1)
    n: int  # runs pooled, the scored one included
    starts: int  # machine starts they come from
    lo: float
    hi: float
    q1: float
    q3: float

    @property
    def from_repeats(self) -> bool:
        return self.n > 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Reference:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def spread(self) -> str:
        """``lo-hi (IQR q1-q3)`` as text, or ``single run``."""
        if not self.from_repeats:
            return "single run"
        return f"{self.lo:.0f}–{self.hi:.0f} (IQR {self.q1:.0f}–{self.q3:.0f})"


def reference(single: float, pooled: Iterable[float], starts: int = 1) -> Reference:
    """The reference of one counter from the pooled runs' values (the scored run's included)."""
    v = sorted(float(x) for x in pooled) or [float(single)]
    if len(v) >= 2:
        q1, _q2, q3 = statistics.quantiles(v, n=4, method="inclusive")
    else:
        q1 = q3 = v[0]
    return Reference(float(single), float(statistics.median(v)), len(v), starts, v[0], v[-1], q1, q3)


@dataclass
class Score:
    """One compared quantity: where it comes from and its relative error."""

    workload: str
    op: str  # operation name, or "" for a whole workload
    what: str  # time_ns, bytes_htod, gpu_fault_groups, ...
    real: float  # what the model is scored against: the median of stored repeats where ``ref``
    model: float
    ref: Reference | None = None  # a noisy counter: the single run, the repeats' spread

    @property
    def err(self) -> float:
        return rel(self.model, self.real)

    @property
    def single(self) -> float:
        """The scored session's own run (``real`` unless the reference pools repeats)."""
        return self.ref.single if self.ref is not None else self.real

    @property
    def err_single(self) -> float:
        return rel(self.model, self.single)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "workload": self.workload,
            "op": self.op,
            "what": self.what,
            "real": float(self.real),
            "model": float(self.model),
        }
        if self.ref is not None:
            d["ref"] = self.ref.as_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Score:
        ref = Reference.from_dict(d["ref"]) if d.get("ref") is not None else None
        return cls(d["workload"], d["op"], d["what"], d["real"], d["model"], ref)


@dataclass
class Summary:
    n: int = 0
    median_abs: float | None = None
    signed_median: float | None = None
    within_15: int = 0
    within_30: int = 0
    max_abs: float | None = None
    worst: str = ""

    def as_dict(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {
            "n": self.n,
            "median_abs": r(self.median_abs),
            "within_15": self.within_15,
            "within_30": self.within_30,
            "signed_median": r(self.signed_median),
            "max_abs": r(self.max_abs),
            "worst": self.worst,
        }


def summarize(scores: Iterable[Score]) -> Summary:
    s = [x for x in scores if math.isfinite(x.err)]
    if not s:
        return Summary()
    errs = [x.err for x in s]
    worst = max(s, key=lambda x: abs(x.err))
    return Summary(
        n=len(s),
        median_abs=statistics.median(abs(e) for e in errs),
        signed_median=statistics.median(errs),
        within_15=sum(abs(e) <= 0.15 for e in errs),
        within_30=sum(abs(e) <= 0.30 for e in errs),
        max_abs=abs(worst.err),
        worst=f"{worst.workload}/{worst.op or 'total'} {worst.what} {worst.err:+.0%}",
    )


def best_scale(
    scores: Iterable[Score], lo: float = 0.5, hi: float = 1.5, step: float = 0.001
) -> tuple[float, float]:
    """(k, median abs error) of the factor ``k`` on every model value that scores ``scores``
    best, chosen on these very scores (a grid of ``step`` from ``lo`` to ``hi``): the lowest
    error any recalibration of one common level could reach on them. What stays is the spread
    of the real values about any one level, which no constant fitted elsewhere can remove."""
    pairs = [(x.model, x.real) for x in scores if x.real > 0 and math.isfinite(x.err)]
    if not pairs:
        return 1.0, math.nan
    best = (1.0, math.inf)
    for i in range(round((hi - lo) / step) + 1):
        k = lo + i * step
        e = statistics.median(abs(k * m / r - 1) for m, r in pairs)
        if e < best[1]:
            best = (k, e)
    return best


@dataclass
class Scores:
    """Every score of one comparison (one GPU, one set), by kind."""

    by_kind: dict[str, list[Score]] = field(default_factory=lambda: {k: [] for k in KINDS})

    def add(self, real: Any, model: Any, refs: dict[str, Reference] | None = None) -> None:
        """Score one workload: ``real`` and ``model`` are Results of the same workload; ``refs``
        the stored runs' reference of each thrashing counter (else the single run)."""
        name = real.workload
        rt, mt = real.totals, model.totals
        self.by_kind["totals"].append(Score(name, "", "time_ns", rt.get("time_ns", 0), mt.get("time_ns", 0)))
        for ro, mo in zip(real.ops, model.ops, strict=True):
            kind = OP_KIND.get(ro["op"])
            t = ro.get("time_ns", 0)
            floor = MIN_OP_NS if kind in ("gpu_kernels", "cpu_phases") else MIN_SMALL_OP_NS
            if kind is not None and t >= floor:
                self.by_kind[kind].append(Score(name, ro["name"], "time_ns", t, mo["time_ns"]))
            for key in ("bytes_htod", "bytes_dtoh"):
                if key in ro and ro[key] >= MIN_BYTES:
                    self.by_kind["bytes"].append(Score(name, ro["name"], key, ro[key], mo.get(key, 0)))
            complete = (ro.get("checks") or {}).get("records_complete", True)
            if (
                ro["op"] == "kernel"
                and complete
                and "gpu_fault_groups" in ro
                and ro.get("gpu_faults_notified", 0) >= MIN_FAULTS
            ):
                self.by_kind["fault_groups"].append(
                    Score(
                        name,
                        ro["name"],
                        "gpu_fault_groups",
                        ro["gpu_fault_groups"],
                        mo.get("gpu_fault_groups", 0),
                    )
                )
                self.by_kind["gpu_faults"].append(
                    Score(
                        name,
                        ro["name"],
                        "gpu_faults_notified",
                        ro["gpu_faults_notified"],
                        mo.get("gpu_faults_notified", 0),
                    )
                )
        if is_thrash_case(name):
            for key in THRASH_KEYS:
                ref = (refs or {}).get(key)
                if key not in rt and ref is None:
                    continue
                want = ref.median if ref is not None else rt[key]
                if want >= MIN_COUNT:
                    self.by_kind["thrashing"].append(Score(name, "", key, want, mt.get(key, 0), ref))

    def summary(self) -> dict[str, Summary]:
        return {k: summarize(v) for k, v in self.by_kind.items()}

    def thrashing_single(self) -> Summary:
        """The thrashing counters scored against the single run instead of the repeats' median
        (the same counters: what one run would have said)."""
        return summarize(
            Score(s.workload, s.op, s.what, s.single, s.model) for s in self.by_kind["thrashing"]
        )

    def thrashing_reference(self) -> str:
        """Which reference the thrashing figure uses: ``median of repeats``, ``single run`` or
        ``median of repeats where stored (k of n), else the single run``."""
        rows = self.by_kind["thrashing"]
        k = sum(s.ref is not None and s.ref.from_repeats for s in rows)
        if rows and k == len(rows):
            return "median of repeats"
        if k == 0:
            return "single run"
        return f"median of repeats where stored ({k} of {len(rows)}), else the single run"


__all__ = [
    "KINDS",
    "best_scale",
    "KIND_LABELS",
    "MIN_OP_NS",
    "Reference",
    "THRASH_KEYS",
    "Score",
    "Scores",
    "Summary",
    "is_thrash_case",
    "reference",
    "rel",
    "summarize",
]
