"""Where the model's time goes on the fault-heavy and oversubscribed scenarios (docs/performance.md).

    python3 bench/profile_model.py            # the sizes of bench_model.py's full run
    python3 bench/profile_model.py --quick    # tiny sizes

For each scenario: the GPU kernel operations' wall time without a profiler (``op_wall_s``),
per GPU fault and per batch, split into the phases of the compiled fault loop (fetch, coalesce
and sort, block service, re-check of the stalled threads, new touches, report; timed inside it
with the CPU's cycle counter, ``kernel_loop.cycles``) and what runs outside it; then, from a
cProfile of a second run, the Python parts: batches the loop hands back (eviction and chunk
allocation, the reference block service) and kernels it does not run. Last, the compiled
prefetcher's cost per block service, timed in a compiled loop.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import numpy as np
from numba import njit

import uvmlab
from uvmlab.api import load_workload
from uvmlab.core.sizes import BLOCK_SHIFT
from uvmlab.driver.compiled.prefetch import prefetch_pages
from uvmlab.driver.compiled.state import PLAIN
from uvmlab.engine import kernel_loop, replay_step
from uvmlab.engine.loop_layout import P_CALL, PHASES
from uvmlab.workload.ir import KernelOp

OFF = {"uvm_perf_prefetch_enable": 0, "uvm_perf_thrashing_enable": 0}


def _kernel_ops(r) -> tuple[float, int, int, int]:
    """Wall time, GPU faults, fault batches and evictions of the kernel operations."""
    rows = [(o, t) for o, t in zip(r.ops, r.op_wall_s, strict=True) if o["op"] == "kernel"]
    return (
        sum(t for _, t in rows),
        sum(o["gpu_faults"] for o, _ in rows),
        sum(o["fault_batches"] for o, _ in rows),
        sum(o["evictions"] for o, _ in rows),
    )


def cycles_per_second() -> float:
    """The rate of the cycle counter the compiled fault loop times its phases with."""
    replay_step.cycles()
    t0, c0 = time.perf_counter(), replay_step.cycles()
    time.sleep(0.2)
    return (replay_step.cycles() - c0) / (time.perf_counter() - t0)


def profile(title: str, spec: str, **kw) -> None:
    w = load_workload(spec)
    uvmlab.simulate(spec.split(":")[0] + ":size=4MiB", **kw)  # load the numba caches
    hz = cycles_per_second()
    kernel_loop.cycles[:] = 0
    r = uvmlab.simulate(w, **kw)
    phase_s = kernel_loop.cycles / hz if hz else np.zeros(len(PHASES))
    kernel_s, faults, batches, evictions = _kernel_ops(r)
    touches = sum(
        int(w.segments[o.seg_lo : o.seg_hi]["count"].sum()) for o in w.ops if isinstance(o, KernelOp)
    )
    # what stays in Python: a batch the compiled loop hands back (a block for the reference
    # path, an allocation in Python), and kernels it does not run (policies, checks, ...)
    pr = cProfile.Profile()
    pr.enable()
    rp = uvmlab.simulate(w, **kw)
    pr.disable()
    prof_kernel_s = _kernel_ops(rp)[0]
    st = pstats.Stats(pr).stats

    def cum(func: str) -> float:
        return sum(ct for key, (_cc, _nc, _tt, ct, _callers) in st.items() if key[2] == func)

    print(f"\n== {title}: {spec} {kw or ''}")
    print(
        f"kernel ops, no profiler: {kernel_s * 1e3:,.1f} ms, {faults:,} GPU faults in "
        f"{batches:,} batches, {touches:,} touches, {evictions:,} evictions: "
        f"{kernel_s / max(faults, 1) * 1e6:.2f} us per fault, {faults / kernel_s / 1e3:,.1f} k "
        f"faults/s, {touches / kernel_s / 1e6:.2f} M touches/s, {kernel_s / max(batches, 1) * 1e6:.1f} us "
        "per batch"
    )
    call_s = float(phase_s[P_CALL])
    print(
        f"compiled fault loop (engine/fault_loop.py, its cycle counter, the same run): {call_s * 1e3:,.1f} ms"
    )
    for name, t in zip(PHASES[:P_CALL], phase_s[:P_CALL].tolist(), strict=True):
        print(
            f"  {name:<40} {t * 1e3:9.1f} ms  {t / kernel_s:6.1%}  {t / max(batches, 1) * 1e6:7.1f} us/batch"
            f"  {t / max(faults, 1) * 1e6:6.3f} us/fault"
        )
    rest = kernel_s - call_s
    print(
        f"  {'outside the loop (Python, the rest)':<40} {rest * 1e3:9.1f} ms  {rest / kernel_s:6.1%}  "
        f"{rest / max(batches, 1) * 1e6:7.1f} us/batch  {rest / max(faults, 1) * 1e6:6.3f} us/fault"
    )
    print(
        f"under cProfile ({prof_kernel_s * 1e3:,.1f} ms): batches handed back to Python "
        f"{cum('resume') * 1e3:,.1f} ms, of them eviction + chunk allocation (ensure_gpu_chunk) "
        f"{cum('ensure_gpu_chunk') * 1e3:,.1f} ms, reference block service (service_block_faults) "
        f"{cum('service_block_faults') * 1e3:,.1f} ms; kernels on the Python loop "
        f"(service_replayable_faults) {cum('service_replayable_faults') * 1e3:,.1f} ms"
    )
    if evictions:
        print(f"evictions: {evictions:,} (inside the block service unless handed back)")


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
