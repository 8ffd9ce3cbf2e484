"""The Python API: ``uvmlab.simulate(workload, gpu=..., params=...)``."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from uvmlab.core.errors import (
    PolicyEjectedError,
    PolicyEjectedWarning,
    RunInterrupted,
    UvmlabError,
    ejection_message,
)
from uvmlab.driver.hal import GpuSpec
from uvmlab.driver.params import Params
from uvmlab.engine.core import DEFAULT_CONCURRENCY, Engine
from uvmlab.engine.sampling import DEFAULT_BINS, DEFAULT_MAX_SAMPLES, record_samples
from uvmlab.engine.setup import resolve_gpu_memory, resolve_machine
from uvmlab.policy.loader import build_hooks
from uvmlab.results.result import Result
from uvmlab.timing.cost_model import CostProfile
from uvmlab.workload.bounds import DEFAULT_MAX_TOUCHES, check_fits
from uvmlab.workload.fileformat import read_workload
from uvmlab.workload.ir import AllocKind, Workload
from uvmlab.workload.synthetic import make_workload


def load_workload(spec: str | Path | Workload) -> Workload:
    """A Workload object, a built-in spec (``random:size=2GiB,seed=1``) or a ``.uvmw`` file."""
    if isinstance(spec, Workload):
        return spec
    s = str(spec)
    try:
        is_file = Path(s).is_file()
    except (OSError, ValueError):  # a name too long for a path, a NUL: not a file, so a spec
        is_file = False
    if s.endswith(".uvmw") or is_file:
        return read_workload(s)
    return make_workload(s)


def refuse_hostmem(w: Workload) -> None:
    """File and pageable allocations need the GAIA and HMM models, which this engine is not."""
    kinds = {a.kind for a in w.allocs}
    if AllocKind.FILE in kinds:
        raise UvmlabError(
            f"workload {w.name!r} has file allocations: run it on the GAIA model "
            "(`uvmlab gaia run`, uvmlab.gaia.engine.simulate_gaia)"
        )
    if AllocKind.PAGEABLE in kinds:
        raise UvmlabError(
            f"workload {w.name!r} has pageable allocations, which a GPU reaches only through HMM: "
            "run it with `uvmlab hmm run` (uvmlab.hmm.simulate.simulate_hmm)"
        )


def check_run(
    workload: Workload | str,
    *,
    gpu: str | GpuSpec = "h200",
    params: Params | Mapping[str, Any] | None = None,
    profile: str | CostProfile | None = None,
    gpu_memory: str | int | None = None,
    policies: Any = None,
    max_touches: int | None = None,
) -> None:
    """Everything ``simulate`` checks before it runs, without running: the workload, GPU,
    parameters, profile, GPU memory, the policies (loaded in-process, so their files run) and the
    work bound. A sweep calls it for every point before the first point runs."""
    w = load_workload(workload)
    spec, prm, _ = resolve_machine(gpu, params, profile)
    cap = resolve_gpu_memory(gpu_memory, w, spec)
    if policies:
        hooks = build_hooks(policies)
        if hooks.module_params:
            prm.replace(**hooks.module_params)
    check_fits(
        w,
        n_gpus=w.gpus,
        gpu_bytes=cap,
        max_touches=DEFAULT_MAX_TOUCHES if max_touches is None else int(max_touches),
    )


def simulate(
    workload: Workload | str,
    *,
    gpu: str | GpuSpec = "h200",
    params: Params | Mapping[str, Any] | None = None,
    profile: str | CostProfile | None = None,
    gpu_memory: str | int | None = None,
    concurrency: int | None = None,
    events: bool = False,
    check_invariants: bool = False,
    policies: Any = None,
    progress: Callable[[int, int], None] | None = None,
    fast_path: bool = True,
    gpus: int | None = None,
    isolate: bool = False,
    max_touches: int | None = None,
    strict: bool = False,
) -> Result:
    """Run ``workload`` through the modeled driver and return its Result.

    ``fast_path=False`` services every fault with the reference (interpreted) path; the
    answers are the same, only slower (kept to test the compiled path against). ``gpus``: how
    many GPUs (all of the part ``gpu``, each with ``gpu_memory``) share the VA space; by default
    as many as the workload names (``Workload.gpus``). ``isolate`` runs each policy in a process
    of its own (docs/security.md); ``max_touches`` raises the bound on the workload's work
    (workload/bounds.py). A Ctrl-C raises ``RunInterrupted`` carrying the result of what was done.

    A policy the guard ejects never passes silently: each ejection is a
    ``PolicyEjectedWarning`` (hook, reason, simulated time), a line of ``Result.summary()`` and
    an entry of ``Result.ejections``; ``strict=True`` raises ``PolicyEjectedError`` instead of
    returning numbers that are partly the driver default's.
    """
    w = load_workload(workload)
    refuse_hostmem(w)
    n_gpus = w.gpus if gpus is None else gpus
    if n_gpus < w.gpus:
        raise UvmlabError(
            f"workload {w.name!r} runs on gpu{w.gpus - 1}, so it needs {w.gpus} GPUs; got gpus={n_gpus}"
        )
    spec, prm, prof = resolve_machine(gpu, params, profile)
    cap = resolve_gpu_memory(gpu_memory, w, spec)
    hooks = None
    if policies and n_gpus > 1:
        # the guard's read-only views show one GPU's PMM: not yet safe with peers
        raise UvmlabError("policies run with one GPU only; this workload uses several GPUs")
    if policies:
        hooks = build_hooks(policies, isolate=isolate)
        if not hooks.slots:
            hooks = None  # "default": nothing to hook
        elif hooks.module_params:  # e.g. a replay policy that is a driver module parameter
            prm = prm.replace(**hooks.module_params)
    try:
        res = _run(
            w,
            spec,
            prm,
            prof,
            cap,
            hooks,
            concurrency=concurrency,
            events=events,
            check_invariants=check_invariants,
            progress=progress,
            fast_path=fast_path,
            max_touches=DEFAULT_MAX_TOUCHES if max_touches is None else int(max_touches),
            n_gpus=n_gpus,
        )
    finally:
        if hooks is not None:
            hooks.close()  # isolated policies' processes end with the run, whatever happened
    for e in res.ejections:  # never silent: a warning each, or an error when strict
        if strict:
            raise PolicyEjectedError(f"{w.name}: {ejection_message(e)}")
        warnings.warn(PolicyEjectedWarning(f"{w.name}: {ejection_message(e)}"), stacklevel=2)
    return res


def _run(
    w: Workload,
    spec: GpuSpec,
    prm: Params,
    prof: CostProfile,
    cap: int,
    hooks: Any,
    *,
    concurrency: int | None,
    events: bool,
    check_invariants: bool,
    progress: Callable[[int, int], None] | None,
    fast_path: bool,
    max_touches: int,
    n_gpus: int,
) -> Result:
    interrupted = False
    eng = None
    try:
        # the session arms the watchdog that stops hooks that never return; the engine is built
        # inside it because attaching the hooks runs each policy's start()
        with hooks.session() if hooks is not None else contextlib.nullcontext():
            eng = Engine(
                w,
                gpu=spec,
                params=prm,
                profile=prof,
                gpu_memory_bytes=cap,
                concurrency=concurrency or DEFAULT_CONCURRENCY,
                events=events,
                check=check_invariants,
                hooks=hooks,
                progress=progress,
                fast_path=fast_path,
                n_gpus=n_gpus,
                max_touches=max_touches,
            )
            eng.run()
    except KeyboardInterrupt:
        if eng is None:
            raise
        interrupted = True
    drv = eng.drv
    meta: dict[str, Any] = {}
    if n_gpus > 1:  # absent with one GPU: single-GPU results stay exactly as they were
        meta["gpus"] = n_gpus
    if hooks is not None:
        drv.counters["policy_ejections"] = hooks.ejections
        meta["policies"] = hooks.labels
        meta["policy_ejected"] = list(hooks.ejected)
    res = Result(
        workload=w.name,
        totals=dict(drv.counters),
        ops=eng.rows,
        source="model",
        gpu=spec.name,
        params=prm.changed(),
        profile=prof.name,
        gpu_memory_bytes=cap,
        fatal=eng.fatal,
        wall_s=eng.wall_s,
        op_wall_s=eng.op_wall_s,
        meta={"seed": w.seed, "workload_params": dict(w.params), "concurrency": eng.concurrency, **meta},
        events=drv.log.to_pandas() if events else None,
    )
    if interrupted:
        res.meta["interrupted"] = True
        raise RunInterrupted(res)
    if hooks is None:
        # the result holds copies only, and no policy kept a view of the driver's state: the
        # next run in this process takes the per-page arrays (VaSpace.recycle)
        drv.va.recycle()
    return res


def simulate_sampled(
    workload: Workload | str, *, bins: int = DEFAULT_BINS, max_samples: int = DEFAULT_MAX_SAMPLES, **kw: Any
) -> Result:
    """``simulate(workload, **kw)`` with residency and counter samples on the result."""
    with record_samples(bins=bins, max_samples=max_samples) as rec:
        res = simulate(workload, **kw)
    return rec.attach(res)
