"""What each tenant got: throughput, latency, bytes moved and evicted (by whom), fairness.

:func:`run_scenario` runs the scenario's tenants together and each one alone (same mode, same
memory, no neighbour) and returns a :class:`VgpuResult`: one row per tenant with

* ``makespan_ns`` (arrival to last operation) and ``slowdown`` (co-located over alone);
* ``throughput_kernels_s`` (GPU kernels finished per second of makespan);
* ``kernel_p50_ns`` / ``kernel_p99_ns``: per-kernel latency, issue to completion (queueing
  for the GPU included), and ``unit_*`` for the scenario's units (e.g. time per token);
* ``bytes_htod`` / ``bytes_dtoh`` / ``evictions`` (its own driver counters), ``max_held_bytes``
  (the most GPU memory its VA spaces held at once), ``evicted_by_<other>`` (bytes of this
  tenant's data copied back to the CPU because ``<other>`` needed the memory),
  ``extra_bytes_htod`` (bytes moved to the GPU beyond what it moved alone: refetches of data
  the others evicted);

and, for the run, Jain's fairness index over the tenants' normalised throughputs
(alone / co-located makespan): 1 when all slow down alike, 1/n when one takes everything.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from uvmlab.api import load_workload
from uvmlab.results.io import write_atomic
from uvmlab.results.result import Result
from uvmlab.vgpu.run import ScenarioRun, run_tenants, unit_latencies
from uvmlab.vgpu.scenario import Scenario
from uvmlab.vgpu.scheduler import GPU
from uvmlab.workload.ir import Workload


def jain_index(x: list[float] | np.ndarray) -> float:
    """Jain's fairness index (sum x)^2 / (n * sum x^2); 1.0 for an empty or all-zero set."""
    a = np.asarray(x, dtype=float)
    if len(a) == 0 or not np.any(a):
        return 1.0
    return float(a.sum() ** 2 / (len(a) * (a * a).sum()))


def _pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if len(a) else 0.0


@dataclass
class VgpuResult:
    scenario: Scenario
    together: ScenarioRun
    alone: list[ScenarioRun]
    rows: list[dict[str, Any]]
    fairness: float

    def frame(self):
        return pd.DataFrame(self.rows)

    def ops_frame(self):
        """Every operation of every tenant on the shared timeline (one row each)."""
        names = [t.name for t in self.scenario.tenants]
        return pd.DataFrame(
            [
                {
                    "tenant": names[r.tenant],
                    "index": r.index,
                    "name": r.name,
                    "kind": r.kind,
                    "ready_ns": int(r.ready_ns),
                    "start_ns": int(r.start_ns),
                    "end_ns": int(r.end_ns),
                    "demand_ns": int(r.demand_ns),
                    "slices": r.slices,
                }
                for r in self.together.timeline.records
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        sc = self.scenario
        return {
            "format": "uvmlab-vgpu-result",
            "version": 1,
            "scenario": sc.name,
            "gpu": sc.gpu,
            "mode": sc.mode,
            "scheduler": sc.scheduler.value,
            "capacity_bytes": self.together.capacity_bytes,
            "context_switch_ns": self.together.context_switch_ns,
            "switches": self.together.timeline.switches,
            "fairness_jain": self.fairness,
            "tenants": self.rows,
            "evicted": [
                {"requester": r, "victim": v, "chunks": c, "bytes": b}
                for (r, v), (c, b) in sorted(self.together.evicted.items())
            ],
        }

    def tenant_results(self) -> list[Result]:
        """One single-run ``Result`` per tenant (its operations over all repetitions, on the
        shared clock; its driver counters; ``time_ns`` its makespan), so that every view of a
        single run (tables, plots, comparisons) works on tenants too."""
        out = []
        sc = self.scenario
        for t, o, row in zip(sc.tenants, self.together.outcomes, self.rows, strict=True):
            ops: list[dict[str, Any]] = []
            for rep, eng in enumerate(o.engines):
                for r in eng.rows:
                    name = f"r{rep}.{r['name']}" if t.repeat > 1 else r["name"]
                    ops.append({**r, "op_index": len(ops), "name": name})
            totals = {**o.counters, "time_ns": int(row["makespan_ns"])}
            out.append(
                Result(
                    workload=t.name,
                    totals=totals,
                    ops=ops,
                    source="model",
                    gpu=sc.gpu,
                    gpu_memory_bytes=o.quota_bytes or self.together.capacity_bytes,
                    fatal={"op": -1, "reason": o.fatal, "processor": "gpu0", "address": -1}
                    if o.fatal
                    else None,
                    meta={"tenant": t.name, "workload_spec": t.workload, "scenario": sc.name},
                )
            )
        return out

    def save_json(self, path: str | Path) -> None:
        write_atomic(Path(path), json.dumps(self.to_dict(), indent=1).encode())


def tenant_rows(run: ScenarioRun, alone: list[ScenarioRun] | None) -> list[dict[str, Any]]:
    names = [o.name for o in run.outcomes]
    rows = []
    for i, (t, o) in enumerate(zip(run.scenario.tenants, run.outcomes, strict=True)):
        gpu_ops = [r for r in o.records if r.kind == GPU]
        lat = np.array([r.end_ns - r.ready_ns for r in gpu_ops], dtype=float)
        end = max((r.end_ns for r in o.records), default=t.arrival_ns)
        makespan = max(0.0, end - t.arrival_ns)
        units = unit_latencies(o.records, t.unit)
        c = o.counters
        row: dict[str, Any] = {
            "tenant": o.name,
            "workload": t.workload,
            "vgpu_type": o.vgpu_type or "",
            "uuid": o.uuid or "",
            "quota_bytes": o.quota_bytes or 0,
            "share": run.tenant_sched[i].share,
            "timeslice_ns": run.tenant_sched[i].timeslice_ns,
            "policy": "+".join(p for p in (run.scenario.policy, t.policy) if p) or "default",
            "fatal": o.fatal or "",
            "kernels": len(gpu_ops),
            "makespan_ns": int(makespan),
            "throughput_kernels_s": len(gpu_ops) / (makespan / 1e9) if makespan else 0.0,
            "kernel_p50_ns": _pct(lat, 50),
            "kernel_p99_ns": _pct(lat, 99),
            "gpu_time_ns": int(sum(r.demand_ns for r in gpu_ops)),
            "units": len(units),
            "unit_mean_ns": float(units.mean()) if len(units) else 0.0,
            "unit_p50_ns": _pct(units, 50),
            "unit_p99_ns": _pct(units, 99),
            "bytes_htod": c.get("bytes_htod", 0),
            "bytes_dtoh": c.get("bytes_dtoh", 0),
            "bytes_dtoh_eviction": c.get("bytes_dtoh_eviction", 0),
            "evictions": c.get("evictions", 0),
            "gpu_faults": c.get("gpu_faults", 0),
            "max_held_bytes": o.max_held_bytes,
        }
        for other in names:
            row[f"evicted_by_{other}"] = run.evicted.get((other, o.name), [0, 0])[1]
        if alone is not None:
            a = tenant_rows(alone[i], None)[0]
            row["alone_makespan_ns"] = a["makespan_ns"]
            row["slowdown"] = makespan / a["makespan_ns"] if a["makespan_ns"] else 0.0
            row["alone_unit_mean_ns"] = a["unit_mean_ns"]
            # what sharing cost in traffic: data moved in again after the others evicted it
            row["extra_bytes_htod"] = row["bytes_htod"] - a["bytes_htod"]
        rows.append(row)
    return rows


def run_scenario(
    sc: Scenario,
    workloads: list[Workload] | None = None,
    *,
    alone: bool = True,
    check: bool = False,
    events: bool = False,
    fast_path: bool = True,
    fault_overlap: bool = False,
    fault_service: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> VgpuResult:
    """Run ``sc``: every tenant together, then (``alone``) each one by itself."""
    ws = workloads or [load_workload(t.workload) for t in sc.tenants]

    def prog(label: str):
        return None if progress is None else (lambda d, n: progress(label, d, n))

    together = run_tenants(
        sc,
        ws,
        check=check,
        events=events,
        fast_path=fast_path,
        fault_overlap=fault_overlap,
        fault_service=fault_service,
        progress=prog("together"),
    )
    solo: list[ScenarioRun] | None = None
    if alone:
        solo = []
        for t, w in zip(sc.tenants, ws, strict=True):
            one = replace(sc, name=f"{sc.name}-{t.name}-alone", tenants=[replace(t, arrival_ns=0.0)])
            solo.append(
                run_tenants(
                    one,
                    [w],
                    check=check,
                    fast_path=fast_path,
                    fault_overlap=fault_overlap,
                    fault_service=fault_service,
                    progress=prog(f"{t.name} alone"),
                )
            )
    rows = tenant_rows(together, solo)
    if solo is not None:
        for r, t in zip(rows, sc.tenants, strict=True):
            r["arrival_ns"] = t.arrival_ns
    # a tenant refused or killed gets nothing: normalised throughput 0
    fair = (
        jain_index([0.0 if r["fatal"] or not r.get("slowdown") else 1.0 / r["slowdown"] for r in rows])
        if solo is not None
        else 1.0
    )
    return VgpuResult(sc, together, solo or [], rows, fair)
