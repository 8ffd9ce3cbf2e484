"""Model throughput, as ratios against a baseline measured in the same run.

    python3 bench/bench_model.py            # full sizes (about a minute)
    python3 bench/bench_model.py --quick    # tiny sizes (the smoke test in CI)

Figures:
* limit      — a compiled loop that only expands and scans the same encoded touch stream as the
               hit-heavy run (no model): the most any model could do per touch on this machine;
* hit-heavy  — stream passes over a buffer that fits on the GPU: model touches/s, and its ratio
               to the limit;
* fault-heavy — random 4 KiB touches over a CPU-resident buffer: GPU faults serviced per second
               with all heuristics on, and with them off (prefetch and thrashing disabled);
* oversubscribed — the LLM layer sweep at 150 % of GPU memory, LRU eviction: touches/s.
Absolute times on shared machines are noise; the ratios are the figures to compare.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

import uvmlab
from uvmlab.api import load_workload
from uvmlab.engine.scan import expand, segment_columns


@njit(cache=True)
def _scan_limit(cols_alloc, kind, access, start, count, stride, pool, base, perm):
    """Expand the stream chunk by chunk and test each touch against a permission array."""
    page = np.empty(1 << 16, np.int64)
    acc = np.empty(1 << 16, np.uint8)
    seg_i, off, hits = 0, 0, 0
    while True:
        seg_i, off, n = expand(cols_alloc, kind, access, start, count, stride, pool, base, seg_i,
                               off, page, acc)
        if n == 0:
            return hits
        for i in range(n):
            if perm[page[i]] >= acc[i]:
                hits += 1


def bench_limit(spec: str) -> tuple[float, int]:
    w = load_workload(spec)
    cols = segment_columns(w.segments)
    base = np.zeros(len(w.allocs), dtype=np.int64)
    perm = np.full(w.allocs[0].pages, 3, dtype=np.uint8)
    _scan_limit(*(c[:1] for c in cols), w.pool, base, perm)  # compile / load from cache
    t = time.perf_counter()
    hits = _scan_limit(*cols, w.pool, base, perm)
    return time.perf_counter() - t, hits


def timed(spec: str, **kw) -> tuple[float, uvmlab.results.result.Result]:
    uvmlab.simulate(spec.replace(spec.split(":", 1)[1], "size=4MiB") if ":" in spec else spec,
                    **kw)  # warm numba caches outside the timed region
    t = time.perf_counter()
    r = uvmlab.simulate(spec, **kw)
    return time.perf_counter() - t, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    args = ap.parse_args()
    q = args.quick
    hit_spec = "stream:size=64MiB,passes=4" if q else "stream:size=1GiB,passes=40"
    rand_spec = "random:size=32MiB" if q else "random:size=1GiB"
    llm_spec = "llm:size=64MiB,tokens=4" if q else "llm:size=1GiB,tokens=16"

    lim_s, lim_touches = bench_limit(hit_spec)
    limit = lim_touches / lim_s
    rows = [("limit (scan only)", f"{limit / 1e6:,.1f} M touches/s", "1.00")]

    s, r = timed(hit_spec)
    hit_rate = r.totals["touches"] / s
    rows.append(("hit-heavy " + hit_spec, f"{hit_rate / 1e6:,.2f} M touches/s",
                 f"{hit_rate / limit:.3f} of limit"))

    s_on, r_on = timed(rand_spec)
    off = {"uvm_perf_prefetch_enable": 0, "uvm_perf_thrashing_enable": 0}
    s_off, r_off = timed(rand_spec, params=off)
    on_rate = r_on.totals["gpu_faults"] / s_on
    off_rate = r_off.totals["gpu_faults"] / s_off
    rows.append(("fault-heavy " + rand_spec + ", heuristics on",
                 f"{on_rate / 1e6:,.3f} M faults/s", f"{on_rate / limit:.5f} of limit"))
    rows.append(("fault-heavy " + rand_spec + ", heuristics off",
                 f"{off_rate / 1e6:,.3f} M faults/s", f"{off_rate / on_rate:.2f}x of 'on'"))

    s, r = timed(llm_spec, gpu_memory="150%")
    rate = r.totals["touches"] / s
    rows.append(("oversubscribed " + llm_spec + " @150%", f"{rate / 1e6:,.2f} M touches/s",
                 f"{rate / limit:.4f} of limit; {r.totals['evictions']:,} evictions"))

    width = max(len(a) for a, _, _ in rows)
    for name, fig, ratio in rows:
        print(f"{name:<{width}}  {fig:>22}  {ratio}")


if __name__ == "__main__":
    main()
