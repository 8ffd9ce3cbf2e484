"""Micro-benchmarks on a real GPU that measure the cost model's constants (design.md §6).

``python -m uvmlab.cuda.calibrate --out DIR --name h100-pcie5-measured`` runs every benchmark,
writes the raw measurements (``DIR/<name>.raw.json``) and the fitted profile
(``DIR/<name>.json``, ``CostProfile.to_json``, with ``sources`` saying how each value was got).

Benchmarks (sizes in the raw file; each UVM one runs through ``executor.execute``, so its bytes
and faults come from the driver's lossless counters; the short ones run REPS=3 times and the
median is fitted):

=================  ==========================================================================
pinned             cudaMemcpy between pinned host memory and device memory
memset_2m          cudaMemsetAsync of 2 MiB of device memory (zeroing a fresh chunk)
prefetch           whole-buffer cudaMemPrefetchAsync to the GPU and back; then one call per
                   2 MiB block moving 64 KiB, then 1 MiB, each way
rand2m_serial      one touch per 2 MiB block in random order, ONE GPU thread: faults one at a time
rand2m_parallel    the same touches with a thread per touch: faults arrive together, in batches
rand64k / rand4k   one touch per 64 KiB / 4 KiB page in random order (reported, not fitted)
first_touch        GPU writes one page per 2 MiB block of never-touched memory (no copy)
stream             CPU-initialised buffer read by the GPU, one touch per page (demand streaming)
resident           8 passes over the buffer once it is resident on the GPU
back               CPU reads one word per page of a GPU-resident buffer (CPU faults, DtoH)
cpu_resident       the CPU reads the (now CPU-resident) buffer again
remote             16 GPU passes over pinned host memory (remote mapping)
pingpong           64 MiB written by the GPU then by the CPU, 4 rounds (reported)
=================  ==========================================================================

Fits (times in ns, bytes B, GB/s == B/ns):

* ``pinned_{htod,dtoh}_gbps`` = B / t_memcpy: the link's practical limit.
* Explicit migration of b bytes in one block costs ``migrate_block_ns + b / prefetch_bw``.
  With one call per block moving s0 = 64 KiB (total t0) and s1 = 1 MiB (t1) over n blocks,
  ``prefetch_bw = n (s1 - s0) / (t1 - t0)`` (the per-call overhead cancels); the whole-buffer
  call (t_full) then gives ``migrate_block_ns = t_full / n - 2 MiB / prefetch_bw``, so bulk
  prefetches are reproduced exactly. If that comes out negative the bulk bandwidth
  (B / t_full) is used with ``migrate_block_ns`` = 0. Mean of the two directions.
* The fault path uses the same copy engines: ``htod_gbps`` / ``dtoh_gbps`` = prefetch bandwidths.
* GPU faults: in rand2m every fault is alone in its 2 MiB block and moves one 64 KiB big page
  (bytes per fault from the counters). With one thread every fault is its own batch:
  ``T1 / N = B + P``; with all N in flight they share ``nb = ceil(N / fault_batch_count)``
  batches: ``Tp = nb B + N P``. Hence ``B = (T1/N - Tp/N) / (1 - nb/N)``, ``P = T1/N - B``.
  ``fault_batch_ns = replay_ns = B / 2`` (``bottom_half_ns`` = 0: not separable here),
  ``fault_ns = B / fault_batch_count``. first_touch faults the same way with nothing to copy:
  ``copy_latency_ns = P - t_first_touch / N - bytes_per_fault / htod_gbps``;
  ``chunk_zero_ns`` = the 2 MiB memset; ``fault_block_ns = t_first_touch / N - chunk_zero_ns
  - fault_ns``.
* ``cpu_fault_ns = (t_back - DtoH bytes / dtoh_gbps - runs * copy_latency_ns - touches *
  cpu_touch_ns) / CPU faults``, runs = DtoH migration records of the back phase.
* ``gpu_touch_ns`` = t_resident / touches; ``cpu_touch_ns`` = t_cpu_resident / touches;
  ``remote_touch_ns`` = t_remote / touches (throughput with the default threads in flight).
* ``evict_chunk_ns`` is not measured: oversubscription is not forced on the card (design §7).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any

import numpy as np

from uvmlab.units import PAGE_SIZE
from uvmlab.workload.ir import Workload, WorkloadBuilder

BLOCK_PAGES = 512  # 2 MiB VA block
BIG_PAGE = 64 << 10
PIECES = (64 << 10, 1 << 20)  # prefetch piece sizes per 2 MiB block
REPS = 3  # repetitions of the short benchmarks; the median is fitted
FAULT_BATCH = 256  # uvm_perf_fault_batch_count default; read from the machine when present


# --- workloads (pure builders, testable without a GPU) ------------------------------------------


def wl_prefetch(size: int, rounds: int = 3) -> Workload:
    """Whole-buffer prefetches both ways (``rounds`` times), then one call per 2 MiB block
    moving a 64 KiB piece, then a 1 MiB piece, each way."""
    b = WorkloadBuilder("cal_prefetch")
    buf = b.alloc("buf", size)
    b.cpu("init", [b.run(buf, access="write")])
    for _ in range(rounds):
        b.prefetch(buf, "gpu0")
        b.prefetch(buf, "cpu")
    n = b.pages(buf) // BLOCK_PAGES
    for piece in PIECES:
        for dest in ("gpu0", "cpu"):
            for k in range(n):
                b.prefetch(buf, dest, start=k * BLOCK_PAGES, num_pages=piece // PAGE_SIZE)
    return b.build()


def wl_random(size: int, step_pages: int, seed: int = 0) -> Workload:
    b = WorkloadBuilder(f"cal_rand{step_pages * 4}k", seed=seed)
    buf = b.alloc("buf", size)
    b.cpu("init", [b.run(buf, access="write")])
    pages = np.arange(0, b.pages(buf), step_pages, dtype=np.int64)
    np.random.default_rng(seed).shuffle(pages)
    b.kernel("touch", [b.index(buf, pages)])
    return b.build()


def wl_stream_back(size: int, passes: int = 8) -> Workload:
    b = WorkloadBuilder("cal_stream_back")
    buf = b.alloc("buf", size)
    b.cpu("init", [b.run(buf, access="write")])
    b.kernel("stream", [b.run(buf)])
    for r in range(REPS):
        b.kernel(f"resident{r}", [b.run(buf)] * passes)
    b.cpu("back", [b.run(buf)])
    for r in range(REPS):
        b.cpu(f"cpu_resident{r}", [b.run(buf)])
    return b.build()


def wl_first_touch(size: int) -> Workload:
    b = WorkloadBuilder("cal_first_touch")
    buf = b.alloc("buf", size)
    b.kernel("first_touch", [b.run(buf, stride=BLOCK_PAGES, access="write")])
    return b.build()


def wl_remote(size: int, passes: int = 16) -> Workload:
    b = WorkloadBuilder("cal_remote")
    buf = b.alloc("buf", size, kind="pinned")
    b.cpu("init", [b.run(buf, access="write")])
    for r in range(REPS):
        b.kernel(f"remote{r}", [b.run(buf)] * passes)
    return b.build()


def wl_pingpong(size: int, rounds: int = 4) -> Workload:
    b = WorkloadBuilder("cal_pingpong")
    buf = b.alloc("buf", size)
    for r in range(rounds):
        b.kernel(f"gpu_write{r}", [b.run(buf, access="write")])
        b.cpu(f"cpu_write{r}", [b.run(buf, access="write")])
    return b.build()


# --- fitting (pure) ------------------------------------------------------------------------------


def _med(x: Any) -> float:
    return float(np.median(x)) if isinstance(x, list | tuple) else float(x)


def fit_profile(raw: dict[str, Any], name: str, gpu: str) -> tuple[dict[str, float],
                                                                    dict[str, str]]:
    """Cost-profile constants and their sources from the raw measurements (pure).

    Lists in ``raw`` are repetitions; their median is used.
    """
    v: dict[str, float] = {}
    src: dict[str, str] = {}
    p = raw["pinned"]
    for d in ("htod", "dtoh"):
        t = _med(p[f"{d}_ns"])
        v[f"pinned_{d}_gbps"] = p["bytes"] / t
        src[f"pinned_{d}_gbps"] = (f"pinned cudaMemcpy {p['bytes'] >> 20} MiB {d.upper()} in "
                                   f"{t / 1e6:.2f} ms (median of {len(p[f'{d}_ns'])})")

    # explicit migration: per-block calls of two piece sizes give the bandwidth (slope); the
    # whole-buffer call then gives the per-block fixed cost of a bulk prefetch.
    pf = raw["prefetch"]
    n = pf["blocks"]
    (s0, s1) = pf["pieces"]
    mb = {}
    for d in ("htod", "dtoh"):
        t0, t1 = pf[f"{d}_piece_ns"]
        full = _med(pf[f"{d}_full_ns"])
        eff = pf["bytes_full"] / full
        bw = n * (s1 - s0) / (t1 - t0) if t1 > t0 else eff
        m = full / n - BLOCK_PAGES * PAGE_SIZE / bw
        if m < 0:  # the pieces' slope is slower than bulk moves: keep bulk moves exact
            bw, m = eff, 0.0
        v[f"prefetch_{d}_gbps"] = bw
        mb[d] = m
        src[f"prefetch_{d}_gbps"] = (
            f"{d.upper()} one prefetch call per 2 MiB block: {n} x {s0 >> 10} KiB in "
            f"{t0 / 1e6:.2f} ms, {n} x {s1 >> 10} KiB in {t1 / 1e6:.2f} ms: bw = slope; bulk "
            f"call of {pf['bytes_full'] >> 20} MiB {full / 1e6:.2f} ms = {eff:.1f} GB/s; per-call "
            f"cost {(t0 / n - s0 / bw) / 1e3:.1f} us is not in the model")
    v["migrate_block_ns"] = (mb["htod"] + mb["dtoh"]) / 2
    src["migrate_block_ns"] = (f"bulk prefetch time / blocks - 2 MiB / bw: HtoD {mb['htod']:.0f} ns"
                               f", DtoH {mb['dtoh']:.0f} ns; mean of the two directions")
    v["htod_gbps"] = v["prefetch_htod_gbps"]
    v["dtoh_gbps"] = v["prefetch_dtoh_gbps"]
    src["htod_gbps"] = "copy-engine bandwidth on the fault path = prefetch_htod_gbps (same engines)"
    src["dtoh_gbps"] = "copy-engine bandwidth on the fault path = prefetch_dtoh_gbps (same engines)"

    # GPU faults: rand2m one thread (serial) vs all in flight; first touch without a copy.
    r1, rp, ft = raw["rand2m_serial"], raw["rand2m_parallel"], raw["first_touch"]
    N = r1["touches"]
    batch = raw.get("fault_batch_count", FAULT_BATCH)
    nb = math.ceil(N / batch)
    t1n, tpn = _med(r1["kernel_ns"]) / N, _med(rp["kernel_ns"]) / N
    B = max(0.0, (t1n - tpn) / (1 - nb / N)) if nb < N else 0.0
    P = max(0.0, t1n - B)
    p_ft = _med(ft["kernel_ns"]) / ft["touches"]
    bpf = _med(r1["bytes_htod"]) / max(1, N)
    v["copy_latency_ns"] = max(0.0, P - p_ft - bpf / v["htod_gbps"])
    v["fault_batch_ns"] = B / 2
    v["replay_ns"] = B / 2
    v["bottom_half_ns"] = 0.0
    v["fault_ns"] = B / batch
    v["chunk_zero_ns"] = _med(raw["memset_2m_ns"])
    v["fault_block_ns"] = max(0.0, p_ft - v["chunk_zero_ns"] - v["fault_ns"])
    src["fault_batch_ns"] = (
        f"rand2m: N={N} isolated faults ({bpf / 1024:.0f} KiB moved each); one thread "
        f"{t1n / 1e3:.1f} us/fault, all in flight {tpn / 1e3:.1f} us/fault, nb=ceil(N/{batch})="
        f"{nb}: B = (T1/N - Tp/N)/(1 - nb/N) = {B / 1e3:.1f} us per batch, P = T1/N - B = "
        f"{P / 1e3:.1f} us per fault; fault_batch_ns = B/2")
    src["replay_ns"] = "B/2 (see fault_batch_ns)"
    src["bottom_half_ns"] = "0: not separable from the per-batch cost B in these benchmarks"
    src["fault_ns"] = f"B / fault_batch_count ({batch})"
    src["copy_latency_ns"] = (f"P - first-touch cost per fault ({p_ft / 1e3:.1f} us, same fault "
                              "and new chunk, no copy) - bytes per fault / htod_gbps")
    src["chunk_zero_ns"] = "cudaMemsetAsync of 2 MiB of device memory (CUDA events, median)"
    src["fault_block_ns"] = "first-touch cost per fault - chunk_zero_ns - fault_ns"

    sb = raw["stream_back"]
    v["gpu_touch_ns"] = _med(sb["resident_ns"]) / sb["resident_touches"]
    v["cpu_touch_ns"] = _med(sb["cpu_resident_ns"]) / sb["touches"]
    src["gpu_touch_ns"] = (f"resident reads, {sb['resident_touches']} touches per kernel, "
                           "default threads (median)")
    src["cpu_touch_ns"] = f"CPU reads of {sb['touches']} CPU-resident pages, numpy (median)"
    copies = sb["back_bytes_dtoh"] / v["dtoh_gbps"] + sb["back_dtoh_runs"] * v["copy_latency_ns"]
    v["cpu_fault_ns"] = max(0.0, (sb["back_ns"] - copies - sb["touches"] * v["cpu_touch_ns"])
                            / max(1, sb["back_cpu_faults"]))
    src["cpu_fault_ns"] = (f"back: {sb['back_ns'] / 1e6:.1f} ms for {sb['back_cpu_faults']} CPU "
                           f"faults moving {sb['back_bytes_dtoh'] >> 20} MiB in "
                           f"{sb['back_dtoh_runs']} runs, minus copies (bytes/dtoh_gbps + runs * "
                           "copy_latency_ns) and touches, per fault")
    rm = raw["remote"]
    v["remote_touch_ns"] = _med(rm["kernel_ns"]) / rm["touches"]
    src["remote_touch_ns"] = (f"GPU reads of pinned host memory, {rm['touches']} touches per "
                              "kernel, default threads (median)")
    v["evict_chunk_ns"] = 10000.0
    src["evict_chunk_ns"] = "not measured: oversubscription is not forced on the card (default)"
    return v, src


# --- running (GPU) -------------------------------------------------------------------------------


def _op(res: Any, name: str) -> dict:
    return next(r for r in res.ops if r["name"] == name)


def run_benchmarks(size: int = 512 << 20, *, threads: int = 65536,
                   log: Any = print) -> dict[str, Any]:
    """Run every benchmark once; return the raw measurements (JSON-able)."""
    from uvmlab.cuda.executor import execute
    from uvmlab.cuda.runtime import device_info, load_cuda

    cp, _rt = load_cuda()
    info = device_info()
    raw: dict[str, Any] = {"size": size, "threads": threads, "gpu": info["gpu"],
                           "driver_version": info["driver_version"], "date": info["date"],
                           "uvm_params": info["uvm_params"]}
    raw["fault_batch_count"] = int(info["uvm_params"].get("uvm_perf_fault_batch_count", 256))

    def run(w: Workload, **kw: Any) -> Any:
        t = time.perf_counter()
        r = execute(w, threads=kw.pop("threads", threads), **kw)
        log(f"  {w.name}: {time.perf_counter() - t:.2f} s, complete="
            f"{r.checks.get('records_complete')}")
        return r

    # pinned copies, and a 2 MiB device memset (what zeroing a fresh chunk costs)
    hb = cp.cuda.alloc_pinned_memory(size)
    db = cp.cuda.alloc(size)
    raw["pinned"] = {"bytes": size, "htod_ns": [], "dtoh_ns": []}
    for _ in range(REPS):
        for kind, name in ((1, "htod"), (2, "dtoh")):
            t0 = time.perf_counter_ns()
            if kind == 1:
                cp.cuda.runtime.memcpy(db.ptr, hb.ptr, size, 1)
            else:
                cp.cuda.runtime.memcpy(hb.ptr, db.ptr, size, 2)
            cp.cuda.runtime.deviceSynchronize()
            raw["pinned"][f"{name}_ns"].append(time.perf_counter_ns() - t0)
    ms = []
    for _ in range(20):
        e0, e1 = cp.cuda.Event(), cp.cuda.Event()
        e0.record()
        cp.cuda.runtime.memsetAsync(db.ptr, 0, 2 << 20, cp.cuda.Stream.null.ptr)
        e1.record()
        e1.synchronize()
        ms.append(cp.cuda.get_elapsed_time(e0, e1) * 1e6)
    raw["memset_2m_ns"] = ms[5:]  # the first ones warm the path up
    del hb, db

    r = run(wl_prefetch(size))
    pref = [x for x in r.ops if x["op"] == "prefetch"]
    n = size // (BLOCK_PAGES * PAGE_SIZE)
    bulk, pieces = pref[:2 * REPS], pref[2 * REPS:]
    raw["prefetch"] = {
        "blocks": n, "bytes_full": size, "pieces": list(PIECES),
        "htod_full_ns": [x["time_ns"] for x in bulk[0::2]],
        "dtoh_full_ns": [x["time_ns"] for x in bulk[1::2]],
        "htod_full_bytes": [x.get("bytes_htod") for x in bulk[0::2]],
        "dtoh_full_bytes": [x.get("bytes_dtoh") for x in bulk[1::2]],
        "htod_piece_ns": [sum(x["time_ns"] for x in pieces[(2 * i) * n:(2 * i + 1) * n])
                          for i in range(len(PIECES))],
        "dtoh_piece_ns": [sum(x["time_ns"] for x in pieces[(2 * i + 1) * n:(2 * i + 2) * n])
                          for i in range(len(PIECES))],
        "htod_piece_bytes": [sum(x.get("bytes_htod", 0) for x in pieces[(2 * i) * n:(2 * i + 1) * n])
                             for i in range(len(PIECES))],
    }
    fsize = 2 * size  # more isolated faults make the batch / fault split steadier
    for key, step, th in (("rand2m_serial", BLOCK_PAGES, 1), ("rand2m_parallel", BLOCK_PAGES, threads),
                          ("rand64k", 16, threads), ("rand4k", 1, threads)):
        reps = REPS if key.startswith("rand2m") else 1
        out: dict[str, Any] = {"threads": th, "kernel_ns": [], "bytes_htod": [],
                               "gpu_faults_notified": [], "gpu_fault_groups": []}
        for i in range(reps):
            k = _op(run(wl_random(fsize, step, seed=i), threads=th), "touch")
            out["touches"] = k["touches"]
            out["kernel_ns"].append(k["time_ns"])
            for key2 in ("bytes_htod", "gpu_faults_notified", "gpu_fault_groups"):
                out[key2].append(k.get(key2, 0))
        raw[key] = out
    ft: dict[str, Any] = {"kernel_ns": [], "bytes_htod": []}
    for _ in range(REPS):
        k = _op(run(wl_first_touch(fsize)), "first_touch")
        ft["touches"] = k["touches"]
        ft["kernel_ns"].append(k["time_ns"])
        ft["bytes_htod"].append(k.get("bytes_htod", 0))
    raw["first_touch"] = ft

    r = run(wl_stream_back(size))
    st, bk = _op(r, "stream"), _op(r, "back")
    raw["stream_back"] = {
        "touches": st["touches"], "stream_ns": st["time_ns"],
        "stream_bytes_htod": st.get("bytes_htod", 0),
        "stream_gbps": st.get("bytes_htod", 0) / max(1, st["time_ns"]),
        "resident_touches": _op(r, "resident0")["touches"],
        "resident_ns": [_op(r, f"resident{i}")["time_ns"] for i in range(REPS)],
        "back_ns": bk["time_ns"],
        "back_bytes_dtoh": bk.get("bytes_dtoh", 0), "back_cpu_faults": bk.get("cpu_faults", 0),
        "back_dtoh_runs": bk.get("migration_records", 0) or 2 * bk.get("cpu_faults", 0),
        "back_records_complete": bk.get("checks", {}).get("records_complete"),
        "cpu_resident_ns": [_op(r, f"cpu_resident{i}")["time_ns"] for i in range(REPS)],
    }
    r = run(wl_remote(min(size, 64 << 20)))
    raw["remote"] = {"touches": _op(r, "remote0")["touches"],
                     "kernel_ns": [_op(r, f"remote{i}")["time_ns"] for i in range(REPS)]}
    r = run(wl_pingpong(64 << 20))
    rounds = [x["time_ns"] for x in r.ops]
    per_round = [rounds[i] + rounds[i + 1] for i in range(0, len(rounds), 2)]
    raw["pingpong"] = {"bytes": 64 << 20, "round_ns": per_round,
                       "round_ns_median": float(np.median(per_round)),
                       "bytes_htod": r.totals.get("bytes_htod"),
                       "bytes_dtoh": r.totals.get("bytes_dtoh"),
                       "thrashing_events": r.totals.get("thrashing_events")}
    return raw


def calibrate(out_dir: str, name: str, *, size: int = 512 << 20, repeats: int = 1,
              log: Any = print) -> dict[str, Any]:
    """Run the benchmarks ``repeats`` times, fit each run, write raw and profile files.

    The profile is fitted on the first run; the others are kept to check reproducibility
    (``spread``: max relative deviation of each constant from the first run's value).
    """
    from uvmlab.cuda.executor import write_json_atomic
    from uvmlab.timing.cost_model import CostProfile

    runs = []
    for i in range(repeats):
        log(f"calibration run {i + 1}/{repeats}")
        raw = run_benchmarks(size, log=log)
        vals, srcs = fit_profile(raw, name, raw["gpu"])
        runs.append({"raw": raw, "fit": vals})
    vals, srcs = fit_profile(runs[0]["raw"], name, runs[0]["raw"]["gpu"])
    spread = {}
    if repeats > 1:
        for k, v0 in vals.items():
            dev = [abs(r["fit"][k] - v0) / v0 for r in runs[1:] if v0]
            spread[k] = max(dev) if dev else 0.0
    prof = CostProfile(name=name, gpu=runs[0]["raw"]["gpu"],
                       **{k: float(round(v, 4)) for k, v in vals.items()},
                       sources={**srcs, "_measured": (
                           f"uvmlab.cuda.calibrate on {runs[0]['raw']['gpu']}, driver "
                           f"{runs[0]['raw']['driver_version']}, {runs[0]['raw']['date']}; "
                           f"{repeats} run(s), raw: uvmlab/cuda/data/calibration/{name}.raw.json")})
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        f.write(prof.to_json())
    write_json_atomic(os.path.join(out_dir, f"{name}.raw.json"),
                      {"runs": runs, "spread": spread})
    return {"profile": json.loads(prof.to_json()), "spread": spread}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--size", default="512MiB")
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args(argv)
    from uvmlab.errors import UvmlabError
    from uvmlab.units import parse_size
    try:
        res = calibrate(a.out, a.name, size=parse_size(a.size), repeats=a.repeats)
    except UvmlabError as e:
        print(f"error: {e}")
        return e.exit_code
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
