"""Where the model's time goes on the fault-heavy and oversubscribed scenarios (docs/performance.md).

    python3 bench/profile_model.py            # the sizes of bench_model.py's full run
    python3 bench/profile_model.py --quick    # tiny sizes

For each scenario: the GPU kernel operations' wall time without a profiler (``op_wall_s``) and
per GPU fault; then, from a cProfile of a second run, the kernel operations' time split into
the compiled parts (numba functions: one profiler event per call, so their times are not
inflated) and what stays in Python (the profiler inflates it; the unprofiled Python time is
given by difference); then counts from a third, instrumented run: block services, replays and
the threads stalled at each replay. Last, the compiled prefetcher's cost per block
service, timed in a compiled loop.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from contextlib import contextmanager

import numpy as np
from numba import njit
from numba.core.dispatcher import Dispatcher

import uvmlab
import uvmlab.driver.replayable_faults as rf
import uvmlab.engine.stalls as sl
from uvmlab.api import load_workload
from uvmlab.core.sizes import BLOCK_SHIFT
from uvmlab.driver.compiled.prefetch import prefetch_pages
from uvmlab.driver.compiled.state import PLAIN
from uvmlab.workload.ir import KernelOp

OFF = {"uvm_perf_prefetch_enable": 0, "uvm_perf_thrashing_enable": 0}
REPLAY_STEP = ("reexecute", "report", "append", "oldest", "gpu_scan", "expand")


def _compiled_keys() -> dict[tuple, str]:
    """cProfile keys of every numba function in uvmlab (numba reports calls to the profiler
    under the Python function's code object)."""
    keys = {}
    for name, mod in list(sys.modules.items()):
        if not name.startswith("uvmlab"):
            continue
        for obj in vars(mod).values():
            if isinstance(obj, Dispatcher):
                c = obj.py_func.__code__
                keys[(c.co_filename, c.co_firstlineno, c.co_name)] = c.co_name
    return keys


def _kernel_ops(r) -> tuple[float, int, int, int]:
    """Wall time, GPU faults, fault batches and evictions of the kernel operations."""
    rows = [(o, t) for o, t in zip(r.ops, r.op_wall_s, strict=True) if o["op"] == "kernel"]
    return (
        sum(t for _, t in rows),
        sum(o["gpu_faults"] for o, _ in rows),
        sum(o["fault_batches"] for o, _ in rows),
        sum(o["evictions"] for o, _ in rows),
    )


@contextmanager
def _patched(mod, name, wrapper):
    orig = getattr(mod, name)
    setattr(mod, name, wrapper(orig))
    try:
        yield
    finally:
        setattr(mod, name, orig)


def counts(spec: str, **kw) -> dict:
    """Block services per batch and stalled threads per replay, from an instrumented run."""
    c = {"block_services": 0, "replays": 0, "stalled": 0}

    def count_blocks(f):
        def g(drv, gpu, page, *a):
            c["block_services"] += len(np.unique(page >> 9))
            return f(drv, gpu, page, *a)

        return g

    def count_stalled(f):
        def g(*a):
            c["replays"] += 1
            c["stalled"] += int(a[4][sl.COUNT])  # meta: the threads stalled before the replay
            return f(*a)

        return g

    with _patched(rf, "service_fault_batch", count_blocks), _patched(sl, "reexecute", count_stalled):
        r = uvmlab.simulate(spec, **kw)
    c["pages_in"] = r.totals["bytes_htod"] // 4096
    return c


def profile(title: str, spec: str, **kw) -> None:
    w = load_workload(spec)
    uvmlab.simulate(spec.split(":")[0] + ":size=4MiB", **kw)  # load the numba caches
    r = uvmlab.simulate(w, **kw)
    kernel_s, faults, batches, evictions = _kernel_ops(r)
    touches = sum(
        int(w.segments[o.seg_lo : o.seg_hi]["count"].sum()) for o in w.ops if isinstance(o, KernelOp)
    )
    pr = cProfile.Profile()
    pr.enable()
    rp = uvmlab.simulate(w, **kw)
    pr.disable()
    prof_kernel_s = _kernel_ops(rp)[0]
    st = pstats.Stats(pr).stats
    compiled = _compiled_keys()
    by_name: dict[str, float] = {}
    for key, (_cc, _nc, tt, _ct, _callers) in st.items():
        if key in compiled:
            by_name[compiled[key]] = by_name.get(compiled[key], 0.0) + tt

    def cum_from(func: str, caller: str) -> float:
        """cumtime of ``func`` when called by ``caller`` (so nested calls are not counted)."""
        return sum(
            ct
            for key, (_cc, _nc, _tt, _ct, callers) in st.items()
            if key[2] == func
            for ck, (_a, _b, _t, ct) in callers.items()
            if ck[2] == caller
        )

    parts = [
        ("compiled: block service (service_blocks)", by_name.get("service_blocks", 0.0)),
        (
            "compiled: replay step (re-execute, arrival order, scan)",
            sum(by_name.get(n, 0.0) for n in REPLAY_STEP),
        ),
        ("compiled: fault coalescing", by_name.get("coalesce", 0.0)),
        (
            "Python: eviction + chunk allocation (ensure_gpu_chunk)",
            cum_from("ensure_gpu_chunk", "service_fault_batch"),
        ),
        (
            "Python: reference block service (service_block_faults)",
            cum_from("service_block_faults", "service_fault_batch"),
        ),
    ]
    known = sum(t for _, t in parts)
    compiled_s = sum(t for name, t in parts if name.startswith("compiled"))
    c = counts(spec, **kw)
    print(f"\n== {title}: {spec} {kw or ''}")
    print(
        f"kernel ops, no profiler: {kernel_s * 1e3:,.1f} ms, {faults:,} GPU faults in "
        f"{batches:,} batches, {touches:,} touches, {evictions:,} evictions: "
        f"{kernel_s / max(faults, 1) * 1e6:.2f} us per fault, {faults / kernel_s / 1e3:,.1f} k "
        f"faults/s, {touches / kernel_s / 1e6:.2f} M touches/s"
    )
    print(f"kernel ops under cProfile: {prof_kernel_s * 1e3:,.1f} ms")
    for name, t in parts + [
        ("Python: per-batch orchestration (the rest, under cProfile)", prof_kernel_s - known)
    ]:
        print(
            f"  {name:<60} {t * 1e3:9.1f} ms  {t / prof_kernel_s:6.1%}  "
            f"{t / max(faults, 1) * 1e6:6.2f} us/fault"
        )
    print(
        f"  {'Python, all, without profiler (kernel ops - compiled parts)':<60} "
        f"{(kernel_s - compiled_s) * 1e3:9.1f} ms  {(kernel_s - compiled_s) / kernel_s:6.1%}  "
        f"{(kernel_s - compiled_s) / max(faults, 1) * 1e6:6.2f} us/fault"
    )
    step = sum(by_name.get(n, 0.0) for n in REPLAY_STEP)
    print(
        f"counts: {c['block_services']:,} block services ({c['block_services'] / batches:.0f} "
        f"per batch, {by_name.get('service_blocks', 0.0) / max(c['block_services'], 1) * 1e6:.2f}"
        f" us each compiled), {c['pages_in']:,} pages made GPU-resident "
        f"({c['pages_in'] / max(faults, 1):.1f} per fault); {c['replays']:,} replays with"
        f" {c['stalled'] / max(c['replays'], 1):,.0f} stalled threads on average: replay step "
        f"{step / max(c['replays'], 1) * 1e6:,.0f} us per replay = "
        f"{step / max(c['replays'], 1) / (faults / max(batches, 1)) * 1e6:.2f} us per fault"
    )
    if evictions:  # the compiled service's evictions are inside its block service time
        ev = cum_from("ensure_gpu_chunk", "service_fault_batch")
        print(f"eviction in Python (ensure_gpu_chunk): {ev / evictions * 1e6:.0f} us per evicted 2 MiB chunk")


@njit(cache=True)
def _prefetch_loop(va, pf, lo, n, sc, nf, iters):
    total = 0
    for _ in range(iters):
        m, _count = prefetch_pages(va, pf, lo >> BLOCK_SHIFT, lo, n, 1, nf, PLAIN, sc, sc.extra, False)
        total += m
    return total


def prefetch_cost(nf: int = 1, iters: int = 20000) -> float:
    """Seconds per call of the compiled prefetcher (uvm_perf_prefetch.c) on one 512-page block with ``nf``
    faulted pages, the driver state of a fresh 1 GiB random workload."""
    from uvmlab.driver.hal import get_gpu
    from uvmlab.driver.params import Params
    from uvmlab.engine.core import DEFAULT_CONCURRENCY, Engine
    from uvmlab.timing.cost_model import load_profile, profile_for_gpu

    gpu = get_gpu("h200")
    eng = Engine(
        load_workload("random:size=1GiB"),
        gpu=gpu,
        params=Params.from_overrides({}),
        profile=load_profile(profile_for_gpu(gpu.name)),
        concurrency=DEFAULT_CONCURRENCY,
    )
    fp = eng.drv.fast
    rng = np.random.default_rng(0)
    fp.sc.fpages[:nf] = np.sort(rng.choice(512, nf, replace=False))
    _prefetch_loop(fp.va, fp.pf, 0, 512, fp.sc, nf, 1)
    t = time.perf_counter()
    _prefetch_loop(fp.va, fp.pf, 0, 512, fp.sc, nf, iters)
    return (time.perf_counter() - t) / iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes")
    q = ap.parse_args().quick
    rand = "random:size=32MiB" if q else "random:size=1GiB"
    llm = "llm:size=64MiB,tokens=4" if q else "llm:size=1GiB,tokens=16"
    profile("fault-heavy, heuristics on", rand)
    profile("fault-heavy, heuristics off", rand, params=OFF)
    profile("oversubscribed", llm, gpu_memory="150%")
    for nf in (1, 4):
        print(
            f"compiled prefetcher, one 512-page block, {nf} faulted page(s): "
            f"{prefetch_cost(nf) * 1e6:.2f} us per block service"
        )


if __name__ == "__main__":
    main()
