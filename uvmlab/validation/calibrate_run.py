"""Running the calibration benchmarks on the GPU, interleaved stage by stage (``calibrate.py``)."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from typing import Any

import numpy as np

from uvmlab.core.sizes import PAGE_SIZE

# module references, not names: tests replace these functions with fakes
from uvmlab.cuda import executor, runtime
from uvmlab.validation.calibrate_workloads import (
    BLOCK_PAGES,
    BULK_ROUNDS,
    CPU_FAULT_BYTES,
    CPU_FAULT_REPS,
    FAULT_REPS,
    LAT_SAMPLES,
    LAT_WARM,
    PIECE_ROUNDS,
    PIECES,
    RAW_VERSION,
    REMOTE_ALLOCS,
    REMOTE_KERNELS,
    REPS,
    SERIAL_EVERY,
    TOUCH_REPS,
    wl_cpu_fault,
    wl_first_touch,
    wl_pingpong,
    wl_prefetch,
    wl_random,
    wl_remote,
    wl_stream_back,
)
from uvmlab.workload.ir import Workload


def _op(res: Any, name: str) -> dict:
    return next(r for r in res.ops if r["name"] == name)


def _latency_burst(cp: Any, out: dict[str, Any]) -> None:
    """LAT_SAMPLES of each short latency, interleaved, appended to ``out`` (the first LAT_WARM
    of each burst are discarded: they warm the path up); counts the burst."""
    # cudaHostAlloc of its own, not CuPy's pinned pool (which would hand back the same pages
    # every burst): the H100's copies were 1.5 us slower in one run than the next, throughout.
    hb = cp.cuda.PinnedMemory(4096)
    db = cp.cuda.alloc(2 << 20)
    null = cp.cuda.Stream.null.ptr
    rt = cp.cuda.runtime
    for i in range(LAT_WARM + LAT_SAMPLES):
        for what in ("memset", "htod", "dtoh"):
            e0, e1 = cp.cuda.Event(), cp.cuda.Event()
            e0.record()  # the call follows at once: host submission plus the copy (version 1)
            if what == "memset":
                rt.memsetAsync(db.ptr, 0, 2 << 20, null)
            elif what == "htod":
                rt.memcpyAsync(db.ptr, hb.ptr, 4096, 1, null)
            else:
                rt.memcpyAsync(hb.ptr, db.ptr, 4096, 2, null)
            e1.record()
            e1.synchronize()
            if i >= LAT_WARM:
                t = cp.cuda.get_elapsed_time(e0, e1) * 1e6
                if what == "memset":
                    out["memset_2m_ns"].append(t)
                else:
                    out["copy_4k_ns"][what].append(t)
    out["latency_bursts"] += 1  # hb and db are freed on return


def run_benchmarks(
    size: int = 512 << 20, *, threads: int = 65536, fault_reps: int = FAULT_REPS, log: Any = print
) -> dict[str, Any]:
    """Run every benchmark once; return the raw measurements (JSON-able)."""
    return _interleaved([_benchmark_stages(size, threads=threads, fault_reps=fault_reps, log=log)])[0]


def _interleaved(runs: list[Iterator[None]]) -> list[dict[str, Any]]:
    """Advance each run's benchmark stages in turn (run 1's stage k, run 2's stage k, ...) and
    return each run's raw measurements. Interleaved, the runs see the same states of the
    machine: on these VMs a state (a copy latency, the host's speed) lasts for minutes, so runs
    one after another differ by the machine's drift, not by the calibration's own noise."""
    out: list[dict[str, Any] | None] = [None] * len(runs)
    while any(r is None for r in out):
        for i, gen in enumerate(runs):
            if out[i] is not None:
                continue
            try:
                next(gen)
            except StopIteration as done:
                out[i] = done.value
    return [r for r in out if r is not None]


def _benchmark_stages(
    size: int, *, threads: int, fault_reps: int, log: Any
) -> Generator[None, None, dict[str, Any]]:
    """The benchmarks of one calibration run, yielding between stages (see ``_interleaved``);
    returns the raw measurements."""
    cp, _rt = runtime.load_cuda()
    info = runtime.device_info()
    raw: dict[str, Any] = {
        "calibrate_version": RAW_VERSION,
        "size": size,
        "threads": threads,
        "gpu": info["gpu"],
        "driver_version": info["driver_version"],
        "date": info["date"],
        "uvm_params": info["uvm_params"],
    }
    raw["fault_batch_count"] = int(info["uvm_params"].get("uvm_perf_fault_batch_count", 256))

    def run(w: Workload, **kw: Any) -> Any:
        t = time.perf_counter()
        r = executor.execute(w, threads=kw.pop("threads", threads), **kw)
        log(f"  {w.name}: {time.perf_counter() - t:.2f} s, complete={r.checks.get('records_complete')}")
        return r

    # pinned copies
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
    del hb, db
    yield
    # short latencies: a 2 MiB device memset (what zeroing a fresh chunk costs) and a 4 KiB
    # copy each way, in bursts between the benchmarks below
    raw["latency_bursts"] = 0
    raw["memset_2m_ns"] = []
    raw["copy_4k_ns"] = {"htod": [], "dtoh": []}
    _latency_burst(cp, raw)
    yield

    pr = run(wl_prefetch(size))
    pref = [x for x in pr.ops if x["op"] == "prefetch"]
    n = size // (BLOCK_PAGES * PAGE_SIZE)
    bulk, pieces = pref[: 2 * BULK_ROUNDS], pref[2 * BULK_ROUNDS :]
    npieces = len(PIECES)

    def piece(rep: int, i: int, d: int) -> list[dict]:
        lo = ((rep * npieces + i) * 2 + d) * n
        return pieces[lo : lo + n]

    raw["prefetch"] = {
        "blocks": n,
        "bytes_full": size,
        "pieces": list(PIECES),
        "htod_full_ns": [x["time_ns"] for x in bulk[0::2]],
        "dtoh_full_ns": [x["time_ns"] for x in bulk[1::2]],
        "htod_full_bytes": [x.get("bytes_htod") for x in bulk[0::2]],
        "dtoh_full_bytes": [x.get("bytes_dtoh") for x in bulk[1::2]],
        "htod_piece_ns": [
            [sum(x["time_ns"] for x in piece(r, i, 0)) for r in range(PIECE_ROUNDS)] for i in range(npieces)
        ],
        "dtoh_piece_ns": [
            [sum(x["time_ns"] for x in piece(r, i, 1)) for r in range(PIECE_ROUNDS)] for i in range(npieces)
        ],
        "htod_piece_bytes": [sum(x.get("bytes_htod", 0) for x in piece(0, i, 0)) for i in range(npieces)],
        "dtoh_piece_bytes": [sum(x.get("bytes_dtoh", 0) for x in piece(0, i, 1)) for i in range(npieces)],
    }
    _latency_burst(cp, raw)
    yield

    fsize = 4 * size  # many isolated faults make the batch / fault split steadier
    keys = ("bytes_htod", "gpu_faults_notified", "gpu_fault_groups")

    def rand_out(th: int) -> dict[str, Any]:
        return {"threads": th, "kernel_ns": [], "seeds": [], **{k: [] for k in keys}}

    def rand(out: dict[str, Any], sz: int, step: int, seed: int) -> None:
        k = _op(run(wl_random(sz, step, seed=seed), threads=out["threads"]), "touch")
        out["touches"] = k["touches"]
        out["kernel_ns"].append(k["time_ns"])
        out["seeds"].append(seed)
        for key in keys:
            out[key].append(k.get(key, 0))

    serial, parallel = rand_out(1), rand_out(threads)
    # Interleaved, so that a drift of the machine during the series shifts T1 and Tp alike
    # (the fit uses their difference); the serial kernel goes first in each group.
    for i in range(fault_reps):
        if i % SERIAL_EVERY == 0:
            rand(serial, fsize, BLOCK_PAGES, i)
        rand(parallel, fsize, BLOCK_PAGES, i)
        if (i + 1) % max(1, fault_reps // 3) == 0 and i + 1 < fault_reps:
            _latency_burst(cp, raw)  # twice during the longest stretch of the run
        if i % SERIAL_EVERY == SERIAL_EVERY - 1:
            yield
    raw["rand2m_serial"], raw["rand2m_parallel"] = serial, parallel
    for key, step in (("rand64k", 16), ("rand4k", 1)):
        out = rand_out(threads)
        rand(out, 2 * size, step, 0)
        raw[key] = out
    ft: dict[str, Any] = {"kernel_ns": [], "bytes_htod": []}
    for _ in range(REPS):
        k = _op(run(wl_first_touch(fsize)), "first_touch")
        ft["touches"] = k["touches"]
        ft["kernel_ns"].append(k["time_ns"])
        ft["bytes_htod"].append(k.get("bytes_htod", 0))
    raw["first_touch"] = ft
    _latency_burst(cp, raw)
    yield

    w = wl_stream_back(size)
    r = run(w)
    backs = [_op(r, f"back{i}") for i in range(TOUCH_REPS)]
    streams = [_op(r, f"stream{i}") for i in range(TOUCH_REPS)]
    raw["stream_back"] = {
        "touches": streams[0]["touches"],
        "stream_ns": [x["time_ns"] for x in streams],
        "stream_bytes_htod": [x.get("bytes_htod", 0) for x in streams],
        "resident_touches": _op(r, "resident0")["touches"],
        "resident_ns": [_op(r, f"resident{i}")["time_ns"] for i in range(TOUCH_REPS)],
        "back_ns": [x["time_ns"] for x in backs],
        "back_bytes_dtoh": [x.get("bytes_dtoh", 0) for x in backs],
        "back_cpu_faults": [x.get("cpu_faults", 0) for x in backs],
        "back_dtoh_runs": [x.get("migration_records", 0) or 2 * x.get("cpu_faults", 0) for x in backs],
        "back_records_complete": [x.get("checks", {}).get("records_complete") for x in backs],
        "cpu_resident_touches": _op(r, "cpu_resident0")["touches"],
        "cpu_resident_ns": [_op(r, f"cpu_resident{i}")["time_ns"] for i in range(TOUCH_REPS)],
    }
    _latency_burst(cp, raw)
    yield
    cf_size = min(size, CPU_FAULT_BYTES)
    r = run(wl_cpu_fault(cf_size))
    writes = [_op(r, f"cpu_write{i}") for i in range(CPU_FAULT_REPS)]
    raw["cpu_fault"] = {
        "bytes": cf_size,
        "touches": writes[0]["touches"],
        "write_ns": [x["time_ns"] for x in writes],
        "cpu_faults": [x.get("cpu_faults", 0) for x in writes],
        "bytes_dtoh": [x.get("bytes_dtoh", 0) for x in writes],
        "bytes_htod": [x.get("bytes_htod", 0) for x in writes],
        "gpu_read_bytes_htod": [_op(r, f"gpu_read{i}").get("bytes_htod", 0) for i in range(CPU_FAULT_REPS)],
    }
    _latency_burst(cp, raw)
    yield
    rm: dict[str, Any] = {"allocs": REMOTE_ALLOCS, "kernel_ns": []}
    for _ in range(REMOTE_ALLOCS):
        r = run(wl_remote(min(size, 64 << 20)))
        rm["touches"] = _op(r, "remote0")["touches"]
        rm["kernel_ns"] += [_op(r, f"remote{i}")["time_ns"] for i in range(REMOTE_KERNELS)]
    raw["remote"] = rm
    yield
    r = run(wl_pingpong(64 << 20))
    rounds = [x["time_ns"] for x in r.ops]
    per_round = [rounds[i] + rounds[i + 1] for i in range(0, len(rounds), 2)]
    raw["pingpong"] = {
        "bytes": 64 << 20,
        "round_ns": per_round,
        "round_ns_median": float(np.median(per_round)),
        "bytes_htod": r.totals.get("bytes_htod"),
        "bytes_dtoh": r.totals.get("bytes_dtoh"),
        "thrashing_events": r.totals.get("thrashing_events"),
    }
    _latency_burst(cp, raw)
    return raw
