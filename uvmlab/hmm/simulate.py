"""``simulate_hmm``: run a workload with pageable allocations on a modelled system with HMM."""

from __future__ import annotations

import contextlib
from typing import Any

from uvmlab.core.errors import UvmlabError
from uvmlab.driver.hal import GpuSpec, get_gpu
from uvmlab.engine.core import DEFAULT_CONCURRENCY
from uvmlab.engine.setup import resolve_gpu_memory, resolve_machine
from uvmlab.hmm.engine import HmmCosts, HmmEngine
from uvmlab.hmm.support import hal_supports_hmm
from uvmlab.policy.loader import build_hooks
from uvmlab.results.result import Result


def simulate_hmm(
    workload: Any,
    *,
    gpu: Any = "h200",
    params: Any = None,
    profile: Any = None,
    gpu_memory: int | str | None = None,
    policies: Any = None,
    hmm_costs: HmmCosts | None = None,
    check_invariants: bool = False,
    events: bool = False,
) -> Any:
    """Run ``workload`` (pageable allocations beside managed ones) on a modelled system with HMM.

    Returns a :class:`uvmlab.results.result.Result` whose totals add ``HMM_COUNTERS``.
    """
    spec = gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)
    if not hal_supports_hmm(spec):
        raise UvmlabError(
            f"{spec.name} ({spec.arch}) cannot serve HMM faults: UVM's HMM needs a Turing or newer GPU"
        )
    spec, prm, prof = resolve_machine(spec, params, profile)
    cap = resolve_gpu_memory(gpu_memory, workload, spec)
    hooks = None
    if policies:
        hooks = build_hooks(policies)
        if not hooks.slots:
            hooks = None
        elif hooks.module_params:
            prm = prm.replace(**hooks.module_params)
    eng = HmmEngine(
        workload,
        hmm_costs=hmm_costs,
        gpu=spec,
        params=prm,
        profile=prof,
        gpu_memory_bytes=cap,
        concurrency=DEFAULT_CONCURRENCY,
        events=events,
        check=check_invariants,
        hooks=hooks,
    )
    with hooks.session() if hooks is not None else contextlib.nullcontext():
        eng.run()
    drv = eng.drv
    meta: dict[str, Any] = {"seed": workload.seed, "hmm": True}
    if hooks is not None:
        drv.counters["policy_ejections"] = hooks.ejections
        meta["policies"] = hooks.labels
        meta["policy_ejected"] = list(hooks.ejected)
    rows = [{**row, **h} for row, h in zip(eng.rows, eng.hmm_rows, strict=False)]
    return Result(
        workload=workload.name,
        totals={**drv.counters, **eng.hmm},
        ops=rows,
        source="model",
        gpu=spec.name,
        params=prm.changed(),
        profile=prof.name,
        gpu_memory_bytes=cap,
        fatal=eng.fatal,
        wall_s=eng.wall_s,
        op_wall_s=eng.op_wall_s,
        meta=meta,
        events=drv.log.to_pandas() if events else None,
    )
