"""The cost of ``--isolate`` per hook call, as a ratio to the same policy in the process.

One policy file (an eviction policy that reads the used list, and a replay policy) runs on an
oversubscribed stream, once in the process and once isolated, in the same run of this script.
The guard times every hook call (``Guard.stats``); the figures are seconds per call, the ratio
isolated / in-process, and the ratio of the whole runs. The two runs must give the same totals.

    python bench/bench_isolate.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from uvmlab.api import simulate
from uvmlab.policy.loader import build_hooks

POLICY = '''
from uvmlab.policy import Policy


class Bench(Policy):
    """Touches what a real policy touches: the used list on eviction, the batch on replay."""

    name = "bench"

    def eviction_prepare(self, ctx):
        return None if len(ctx.used) == 0 else int(ctx.used[0])

    def chunk_used(self, ctx):
        return 0

    def decide_replay(self, ctx):
        return 0
'''


def run(spec: str, mem: str, path: Path, isolate: bool) -> tuple[dict, dict, float]:
    hooks = build_hooks(str(path), isolate=isolate)
    t0 = time.perf_counter()
    r = simulate(spec, gpu_memory=mem, policies=hooks)
    return r.totals, hooks.stats, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small workload (for tests)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    a = ap.parse_args(argv)
    spec = "stream:size=48MiB,passes=2" if a.quick else "stream:size=512MiB,passes=3"
    mem = "50%"
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench_policy.py"
        path.write_text(POLICY)
        run(spec, mem, path, False)  # warm: compile and load once
        tot_in, st_in, wall_in = run(spec, mem, path, False)
        tot_iso, st_iso, wall_iso = run(spec, mem, path, True)
    if tot_in != tot_iso:
        print("isolated and in-process runs DIFFER", file=sys.stderr)
        return 1
    rows = {}
    for hook in sorted(set(st_in) & set(st_iso)):
        if hook == "start":
            continue
        per_in = st_in[hook]["seconds"] / max(1, st_in[hook]["calls"])
        per_iso = st_iso[hook]["seconds"] / max(1, st_iso[hook]["calls"])
        rows[hook] = {
            "calls": st_iso[hook]["calls"],
            "in_process_us": per_in * 1e6,
            "isolated_us": per_iso * 1e6,
            "ratio": per_iso / per_in if per_in else None,
        }
    out = {
        "workload": spec,
        "gpu_memory": mem,
        "hooks": rows,
        "run_wall_ratio": wall_iso / wall_in,
        "in_process_wall_s": wall_in,
        "isolated_wall_s": wall_iso,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    if a.json:
        print(json.dumps(out))
        return 0
    print(f"isolation cost on {spec} at {mem} GPU memory (same totals both ways)")
    print(f"{'hook':20s} {'calls':>8s} {'in-process':>12s} {'isolated':>12s} {'ratio':>8s}")
    for hook, r in rows.items():
        print(
            f"{hook:20s} {r['calls']:8d} {r['in_process_us']:10.1f}us {r['isolated_us']:10.1f}us "
            f"{r['ratio']:7.0f}x"
        )
    print(f"whole run: {wall_in:.2f} s in the process, {wall_iso:.2f} s isolated ({wall_iso / wall_in:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
