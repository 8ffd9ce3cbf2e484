"""The model against the real co-location measurement (``uvmlab.vgpu.real``'s capture).

For every configuration measured, the same tenants run in the model as a scenario: shared
memory (the whole GPU, far from full), the best-effort scheduler, each tenant its workload
``reps`` times back to back, all arriving at 0. The only thing taken from the real runs is each
workload's *host time between operations*, measured alone: the executor's Python and CUDA
API work between two operations (wall time of a repetition minus the sum of its operations'
times, over the number of operations). That time needs no GPU, so another tenant's kernels
fill it. Each configuration runs three times in the model, once per ``fault_service``: ``slice``
(the default: a kernel's fault stalls hold its time slice), ``shared`` (the driver's one fault
buffer per GPU, batching every tenant's faults) and ``overlap`` (the stalls wait off the GPU
with no servicer limit: a lower bound). Slowdown = a tenant's
co-located total over its alone total, real and modelled alike; the real alone total is the
mean of the runs before and after the co-located ones (the machine drifts by several per cent
within a minute).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from uvmlab.vgpu.real import SPECS
from uvmlab.vgpu.report import run_scenario
from uvmlab.vgpu.scenario import Scenario, TenantSpec
from uvmlab.vgpu.scheduler import SchedulerMode


def _spec(name: str) -> str:
    return SPECS[name]


def host_gap_ns(alone: dict[str, Any]) -> float:
    n_ops = max(1, len(alone["ops_last_rep"]))
    per_rep = alone["total_ns"] / len(alone["rep_wall_ns"])
    return max(0.0, (per_rep - alone["op_sum_ns_mean"]) / n_ops)


def gpu_of(capture: dict[str, Any]) -> str:
    name = str(capture["device"].get("gpu", "")).lower()
    return "h200" if "h200" in name else "h100"


def compare(
    capture: dict[str, Any],
    context_switch_ns: float | None = None,
    only: list[list[str]] | None = None,
    reps: int | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """One row per tenant of every co-located configuration (or of those in ``only``): real
    and model slowdowns. ``reps`` runs the model with fewer repetitions (tests)."""
    reps = int(reps or capture["reps"])
    alone = {k: v for k, v in capture["alone_before"].items()}
    after = capture.get("alone_after", {})
    gpu = gpu_of(capture)
    rows = []
    for cfg in capture["colocated"]:
        names = cfg["tenants"]
        if only is not None and names not in only:
            continue
        if log is not None:
            log(f"  model: {' + '.join(names)} ({reps} repetitions, three fault-service variants)")
        tenants = [
            TenantSpec(name=f"{n}{j}", workload=_spec(n), repeat=reps, host_gap_ns=host_gap_ns(alone[n]))
            for j, n in enumerate(names)
        ]
        sc = Scenario(
            name="+".join(names),
            gpu=gpu,
            mode="shared",
            scheduler=SchedulerMode.BEST_EFFORT,
            tenants=tenants,
            context_switch_ns=context_switch_ns,
        )
        res = run_scenario(sc)
        over = run_scenario(sc, fault_overlap=True)
        shared = run_scenario(sc, fault_service="shared")
        for j, (n, real) in enumerate(zip(names, cfg["results"], strict=True)):
            base1 = alone[n]["total_ns"]
            base2 = after.get(n, {}).get("total_ns", base1)
            base = (base1 + base2) / 2
            rows.append(
                {
                    "config": " + ".join(names),
                    "n": len(names),
                    "tenant": n,
                    "real_alone_ms": base / 1e6,
                    "real_alone_before_ms": base1 / 1e6,
                    "real_alone_after_ms": base2 / 1e6,
                    "real_colocated_ms": real["total_ns"] / 1e6,
                    "real_slowdown": real["total_ns"] / base,
                    "model_alone_ms": res.rows[j]["alone_makespan_ns"] / 1e6,
                    "model_colocated_ms": res.rows[j]["makespan_ns"] / 1e6,
                    "model_slowdown": res.rows[j]["slowdown"],
                    "model_overlap_slowdown": over.rows[j]["slowdown"],
                    "model_shared_slowdown": shared.rows[j]["slowdown"],
                    "host_gap_us": tenants[j].host_gap_ns / 1e3,
                }
            )
    return rows


def load_capture(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
