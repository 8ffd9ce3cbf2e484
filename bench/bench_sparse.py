"""Memory of sparse VA: peak resident memory of a run over terabytes of managed memory.

The model keeps per-page state for every page of VA; it must cost memory only where pages are
touched (``uvmlab.core.sparse``). Each size runs in a fresh process (its peak RSS is its own)
with ``sparse:size=SIZE,every=N,passes=1`` sized to about ``--touches`` touches.

    python bench/bench_sparse.py --size 16TiB --touches 1e8 [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

from uvmlab.core.units import fmt_bytes, parse_size

CHILD = """
import json, resource, sys, time
from uvmlab.api import simulate
t = time.perf_counter()
r = simulate(sys.argv[1], gpu_memory=sys.argv[2])
# this process's own peak (VmHWM): ru_maxrss would carry the parent's peak over the exec
hwm = [int(s.split()[1]) for s in open("/proc/self/status") if s.startswith("VmHWM:")]
peak_kib = hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"touches": r.totals["touches"], "evictions": r.totals["evictions"],
                  "wall_s": time.perf_counter() - t, "peak_rss": peak_kib * 1024}))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="16TiB")
    ap.add_argument("--touches", type=float, default=1e8)
    ap.add_argument("--gpu-memory", default="16GiB")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    size = parse_size(a.size)
    blocks = size >> 21
    every = max(1, int(blocks * 512 / a.touches))
    spec = f"sparse:size={a.size},every={every},passes=1"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, spec, a.gpu_memory], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr[-2000:], file=sys.stderr)
        return 1
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out.update(
        spec=spec,
        va_bytes=size,
        gpu_memory=a.gpu_memory,
        total_s=time.perf_counter() - t0,
        machine=platform.machine(),
        date=time.strftime("%Y-%m-%d"),
        parent_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    )
    if a.json:
        print(json.dumps(out))
    else:
        print(
            f"{spec}: {out['touches']:,} touches, {out['evictions']:,} evictions, peak RSS "
            f"{fmt_bytes(out['peak_rss'])} for {fmt_bytes(size)} of VA ({out['wall_s']:.0f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
