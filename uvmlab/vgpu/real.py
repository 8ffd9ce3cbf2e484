"""Co-location on a real GPU: N processes time-share one GPU, each running a known workload.

This is the measurement behind ``docs/vgpu.md``'s real check (issue 18, item 5). The GPU
machines are pass-through VMs without an mdev bus, so the sharing measured here is the plain
kind the vGPU best-effort scheduler generalises: several CUDA contexts on one GPU, time-sliced
by the GPU's runlist scheduler, each with its own UVM VA space over the GPU's one PMM.

Protocol (``python -m uvmlab.vgpu.real --out captures.json``):

* four worker processes are started once (``spawn``) and each warms up: CUDA context, the
  executor's kernel compiled, one run of every workload, so that start-up never overlaps a
  measurement;
* a configuration names one workload per worker taking part; the parent sends every worker a
  start time a little in the future and each one sleeps until then, so that their runs overlap
  from the first operation;
* a worker runs its workload ``reps`` times back to back with the real-GPU executor
  (``uvmlab.cuda.executor.execute``: fresh managed allocations each time, every op serialised)
  and reports the wall time of every repetition and the executor's per-operation times;
* every workload also runs alone (all other workers idle), before and after the co-located
  configurations, and a tenant's slowdown is its co-located total over its alone total.

Managed memory per process is at most 256 MiB (the validation suite's specs), four at once are
1 GiB: far below the free memory of the H100 / H200 (the device rule: never more managed
memory than the GPU has free). No CUPTI capture and no UVM tools counters run during the
measurement: they would add per-process host work that is not the workload's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from typing import Any

from uvmlab.cuda.executor import execute
from uvmlab.cuda.runtime import device_info
from uvmlab.workload.ir import Workload
from uvmlab.workload.synthetic import make_workload

#: the workloads: four of the validation suite's entries, by name, with the suite's specs
SPECS = {
    "stream": "stream:size=256MiB,passes=2",
    "gemm": "gemm:size=192MiB,tile=2MiB",
    "llm": "llm:size=256MiB,layers=8,tokens=8",
    "train": "train:size=256MiB,layers=4,steps=2",
}
WORKLOADS = tuple(SPECS)
#: the co-located configurations measured (each name is one process)
CONFIGS: tuple[tuple[str, ...], ...] = (
    ("stream", "stream"),
    ("llm", "train"),
    ("gemm", "stream"),
    ("stream", "gemm", "llm", "train"),
    ("stream", "stream", "stream", "stream"),
)
N_WORKERS = 4
START_DELAY_S = 0.5


def _build(name: str) -> Workload:
    return make_workload(SPECS[name])


def _worker(conn) -> None:  # runs in a spawned process
    cache: dict[str, Any] = {}
    while True:
        msg = conn.recv()
        if msg is None:
            break
        name, reps, start_at = msg
        try:
            w = cache.get(name) or cache.setdefault(name, _build(name))
            delay = start_at - time.time()
            if delay > 0:
                time.sleep(delay)
            t_start = time.time()
            reps_out = []
            for _ in range(reps):
                t0 = time.perf_counter_ns()
                r = execute(w, capture=False, counters=False)
                t1 = time.perf_counter_ns()
                ops = [(row["op"], row["name"], int(row["time_ns"])) for row in r.ops]
                reps_out.append({"wall_ns": t1 - t0, "ops": ops})
            conn.send({"name": name, "t_start": t_start, "t_end": time.time(), "reps": reps_out})
        except Exception as e:  # report, keep serving
            conn.send({"name": name, "error": f"{type(e).__name__}: {e}"})


def _run_config(conns, names: tuple[str, ...], reps: int) -> list[dict]:
    start_at = time.time() + START_DELAY_S
    for conn, name in zip(conns, names, strict=False):
        conn.send((name, reps, start_at))
    return [conn.recv() for conn in conns[: len(names)]]


def _summary(res: dict) -> dict:
    if "error" in res:
        return res
    walls = [r["wall_ns"] for r in res["reps"]]
    return {
        "name": res["name"],
        "total_ns": int(sum(walls)),
        "rep_wall_ns": walls,
        "t_start": res["t_start"],
        "t_end": res["t_end"],
        "ops_last_rep": res["reps"][-1]["ops"],
        "op_sum_ns_mean": int(sum(sum(o[2] for o in r["ops"]) for r in res["reps"]) / len(res["reps"])),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--reps", type=int, default=12, help="repetitions per process and config")
    a = ap.parse_args(argv)
    info = device_info(0)
    ctx = mp.get_context("spawn")
    pipes = [ctx.Pipe() for _ in range(N_WORKERS)]
    procs = [ctx.Process(target=_worker, args=(child,), daemon=True) for _, child in pipes]
    for p in procs:
        p.start()
    conns = [parent for parent, _ in pipes]
    out: dict[str, Any] = {
        "device": info,
        "reps": a.reps,
        "workloads": list(WORKLOADS),
        "alone_before": {},
        "alone_after": {},
        "colocated": [],
    }
    try:
        t0 = time.time()
        for name in WORKLOADS:  # warm-up: every worker runs every workload once
            for conn in conns:
                conn.send((name, 1, 0.0))
                r = conn.recv()
                if "error" in r:
                    raise SystemExit(f"warm-up of {name} failed: {r['error']}")
        print(f"warm-up done in {time.time() - t0:.1f} s", flush=True)
        for name in WORKLOADS:
            out["alone_before"][name] = _summary(_run_config(conns, (name,), a.reps)[0])
            print(f"alone {name}: {out['alone_before'][name].get('total_ns', 0) / 1e9:.3f} s", flush=True)
        for cfg in CONFIGS:
            res = [_summary(r) for r in _run_config(conns, cfg, a.reps)]
            out["colocated"].append({"tenants": list(cfg), "results": res})
            print(
                "co-located "
                + " + ".join(cfg)
                + ": "
                + ", ".join(f"{r.get('total_ns', 0) / 1e9:.3f} s" for r in res),
                flush=True,
            )
        for name in WORKLOADS:
            out["alone_after"][name] = _summary(_run_config(conns, (name,), a.reps)[0])
    finally:
        for conn in conns:
            conn.send(None)
        for p in procs:
            p.join(timeout=10)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, a.out)
    print(f"wrote {a.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
