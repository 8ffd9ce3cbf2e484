"""A vGPU run's exports: Parquet tables, a Perfetto timeline with a row per tenant, plots.

* ``tenants.parquet``: one row per tenant (``report.tenant_rows``);
  ``ops.parquet``: every operation on the shared timeline (tenant, name, kind, issue / start /
  end, the model's demand, slices);
* ``timeline.json``: Trace Event JSON for ui.perfetto.dev, one process per tenant with its GPU
  kernels (one slice per kernel, issue to end, its GPU time in the args) and its CPU / copy
  operations on separate tracks;
* ``timeline.png``: the same picture as a Gantt chart; ``tenants.png``: slowdown and bytes
  evicted by each other tenant, per tenant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from uvmlab.results.io import write_atomic
from uvmlab.results.plots import _figure, time_unit
from uvmlab.vgpu.scheduler import GPU

if TYPE_CHECKING:
    from uvmlab.vgpu.report import VgpuResult

_TRACK = {GPU: "GPU kernels", "cpu": "CPU", "copy": "copy engine"}
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def write_parquet(res: VgpuResult, out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, df in (("tenants", res.frame()), ("ops", res.ops_frame())):
        p = out / f"{name}.parquet"
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), sink)
        write_atomic(p, sink.getvalue().to_pybytes())
        paths.append(p)
    return paths


def build_trace(res: VgpuResult) -> dict[str, Any]:
    ev: list[dict[str, Any]] = []
    names = [t.name for t in res.scenario.tenants]
    tids: dict[tuple[int, str], int] = {}
    for i, n in enumerate(names):
        pid = i + 1
        ev.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": f"tenant {n}"}})
        ev.append(
            {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}}
        )
    for r in res.together.timeline.records:
        pid = r.tenant + 1
        key = (pid, _TRACK[r.kind])
        if key not in tids:
            tids[key] = len(tids) + 1
            ev.append(
                {"ph": "M", "name": "thread_name", "pid": pid, "tid": tids[key], "args": {"name": key[1]}}
            )
        ts = r.ready_ns if r.kind == GPU else r.start_ns
        ev.append(
            {
                "ph": "X",
                "name": r.name,
                "cat": r.kind,
                "pid": pid,
                "tid": tids[key],
                "ts": ts / 1000.0,
                "dur": max(0.0, r.end_ns - ts) / 1000.0,
                "args": {
                    "first_slice_us": r.start_ns / 1000.0,
                    "gpu_time_us": r.demand_ns / 1000.0,
                    "slices": r.slices,
                },
            }
        )
    return {
        "traceEvents": ev,
        "displayTimeUnit": "ms",
        "otherData": {
            "scenario": res.scenario.name,
            "mode": res.scenario.mode,
            "scheduler": res.scenario.scheduler.value,
            "fairness_jain": res.fairness,
        },
    }


def write_timeline(res: VgpuResult, path: str | Path) -> None:
    write_atomic(Path(path), json.dumps(build_trace(res), separators=(",", ":")).encode())


def timeline_figure(res: VgpuResult, title: str | None = None):
    """Gantt chart: per tenant, a bar per GPU kernel from its first slice to its end."""
    recs = res.together.timeline.records
    names = [t.name for t in res.scenario.tenants]
    end = max((r.end_ns for r in recs), default=1.0)
    unit, scale = time_unit(end)
    fig = _figure(9, 0.6 + 0.55 * len(names))
    ax = fig.add_subplot(111)
    for r in recs:
        if r.kind != GPU:
            continue
        ax.barh(
            r.tenant,
            (r.end_ns - r.start_ns) / scale,
            left=r.start_ns / scale,
            height=0.6,
            color=_COLORS[r.tenant % len(_COLORS)],
            alpha=0.35,
            linewidth=0,
        )
        ax.barh(
            r.tenant,
            r.demand_ns / scale,
            left=r.start_ns / scale,
            height=0.25,
            color=_COLORS[r.tenant % len(_COLORS)],
            linewidth=0,
        )
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel(f"simulated time ({unit}); pale: first slice to end, dark: GPU time")
    ax.set_title(title or f"{res.scenario.name}: {res.scenario.mode} memory, {res.scenario.scheduler.value}")
    return fig


def tenants_figure(res: VgpuResult, title: str | None = None):
    """Per tenant: slowdown against running alone, and bytes evicted by each tenant."""
    rows = res.rows
    names = [r["tenant"] for r in rows]
    fig = _figure(9, 3.2)
    ax1, ax2 = fig.add_subplot(121), fig.add_subplot(122)
    ax1.bar(
        names,
        [r.get("slowdown", 0.0) for r in rows],
        color=[_COLORS[i % len(_COLORS)] for i in range(len(rows))],
    )
    ax1.axhline(1.0, color="k", linewidth=0.8)
    ax1.set_ylabel("slowdown vs alone")
    ax1.set_title(f"Jain's fairness {res.fairness:.2f}")
    bottom = [0.0] * len(rows)
    for j, other in enumerate(names):
        vals = [r.get(f"evicted_by_{other}", 0) / (1 << 20) for r in rows]
        ax2.bar(names, vals, bottom=bottom, label=f"by {other}", color=_COLORS[j % len(_COLORS)])
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax2.set_ylabel("MiB of its data evicted")
    ax2.legend(fontsize=8)
    fig.suptitle(title or res.scenario.name)
    return fig
