"""Micro-benchmarks on a real GPU that measure the cost model's constants (docs/model.md).

``uvmlab calibrate --out DIR --name h100-pcie5-measured`` runs every benchmark,
writes the raw measurements (``DIR/<name>.raw.json``) and the fitted profile
(``DIR/<name>.json``, ``CostProfile.to_json``, with ``sources`` saying how each value was got).

Benchmarks (sizes in the raw file; each UVM one runs through ``executor.execute``, so its bytes
and faults come from the driver's lossless counters). The lent GPUs are shared cloud VMs whose
timings are noisy and often bimodal (two calibration runs of the first version of this module
disagreed by up to 56 %), so every fitted quantity is timed over a long region or many
repetitions, and fitted on a median, a trimmed mean or a low percentile, never on one
repetition. The ``--repeats`` runs (the reproducibility check) are interleaved stage by stage:
a state of these machines lasts minutes (the H100's 4 KiB copy latency was 4.7 us for a whole
run and 6.0 us for the next), so runs one after another measure the machine's drift, which no
statistic removes, rather than the calibration's own spread:

=================  ==========================================================================
pinned             cudaMemcpy between pinned host memory and device memory (REPS, best)
latency bursts     8 bursts of LAT_SAMPLES, spread over the run, each with its own pinned
                   buffer: a 2 MiB cudaMemsetAsync (zeroing a fresh chunk) and a 4 KiB pinned
                   cudaMemcpyAsync each way
prefetch           BULK_ROUNDS whole-buffer cudaMemPrefetchAsync to the GPU and back; then
                   PIECE_ROUNDS times one call per 2 MiB block moving 64 KiB, then 2 MiB
rand2m_serial      one touch per 2 MiB block in random order, ONE GPU thread: faults one at a time
rand2m_parallel    the same touches with a thread per touch: faults arrive together, in batches
                   (FAULT_REPS of these, interleaved with one serial per SERIAL_EVERY)
rand64k / rand4k   one touch per 64 KiB / 4 KiB page in random order (reported, not fitted)
first_touch        GPU writes one page per 2 MiB block of never-touched memory (no copy)
stream             CPU-initialised buffer read by the GPU, one touch per page (demand streaming)
resident           ~RESIDENT_TOUCHES touches over the buffer once it is resident on the GPU
back               CPU reads one word per page of a GPU-resident buffer (CPU faults, DtoH)
cpu_resident       ~CPU_TOUCHES touches of the (now CPU-resident) buffer by the CPU
                   (stream .. cpu_resident: TOUCH_REPS rounds)
cpu_fault          read-mostly buffer: the GPU reads it (duplicates), then the CPU writes one
                   word per page: one CPU fault per page that copies nothing (CPU_FAULT_REPS)
remote             ~REMOTE_TOUCHES GPU touches of pinned host memory, REMOTE_ALLOCS allocations
pingpong           64 MiB written by the GPU then by the CPU, 4 rounds (reported)
=================  ==========================================================================

Statistics: ``_med`` (median) for quantities with one mode and occasional slow outliers (the
serial fault kernel, long resident kernels, per-fault CPU costs); ``_burst_median`` (the mean
over bursts of each burst's median) for the short latencies; ``_tmean`` (mean after dropping
TRIM of the repetitions at each end) for quantities that are bimodal on these machines (bulk
prefetch, the parallel fault kernel, CPU and remote touch rates): the median of a bimodal sample
jumps between the modes from one run to the next, the minimum depends on whether the fast mode
happened to occur, while the mean moves only with the modes' frequencies. Raw files of the first
version (no ``calibrate_version``: 3 repetitions of short regions) are fitted with that
version's statistics (``_stats``), so the profiles fitted on them stay as they were.

Fits (times in ns, bytes B, GB/s == B/ns):

* ``pinned_{htod,dtoh}_gbps`` = B / t_memcpy (best): the link's practical limit.
* ``copy_latency_ns``: one 4 KiB pinned cudaMemcpyAsync timed by CUDA events (the copy engine's
  fixed cost per copy; the driver's migrations use the same engines): per direction the mean
  over bursts of each burst's median, then the mean of both directions.
* Copy bandwidth of one prefetch call per 2 MiB block, moving s0 = 64 KiB (total t0) or
  s1 = 2 MiB (t1) over n blocks: ``slope = n (s1 - s0) / (t1 - t0)`` (per-call costs cancel),
  intercept ``c = t0 / n - s0 / slope`` per call (reported).
* Explicit migration of b bytes in one block costs ``migrate_block_ns + b / prefetch_bw``. A
  bulk whole-buffer prefetch (trimmed mean t_full over n blocks) pays no per-call cost per block,
  so ``migrate_block_ns = max(0, min over directions of t_full / n - 2 MiB / slope)`` and
  ``prefetch_{htod,dtoh}_gbps = 2 MiB / (t_full / n - migrate_block_ns)``: bulk prefetches are
  reproduced exactly in both directions.
* The fault path's copies use the same engines in bulk, without API calls:
  ``{htod,dtoh}_gbps = prefetch_{htod,dtoh}_gbps``.
* GPU faults: in rand2m every fault is alone in its 2 MiB block and moves one 64 KiB big page
  (bytes per fault from the counters). With one thread every fault is its own batch:
  ``T1 / N = B + P`` (T1: median); with all N in flight they share ``nb = ceil(N /
  fault_batch_count)`` batches: ``Tp = nb B + N P`` (Tp: trimmed mean). Hence
  ``B = (T1/N - Tp/N) / (1 - nb/N)``, ``P = T1/N - B``.
  ``fault_batch_ns = replay_ns = B / 2`` (``bottom_half_ns`` = 0: not separable here),
  ``fault_ns = B / fault_batch_count``, ``chunk_zero_ns`` = a 2 MiB cudaMemsetAsync (mean of
  burst medians),
  and ``fault_block_ns = P - fault_ns - chunk_zero_ns - copy_latency_ns - bytes / htod_gbps``.
  first_touch is reported for validation, not fitted.
* ``cpu_fault_ns`` = median over repetitions of ``(t_cpu_write - touches * cpu_touch_ns -
  DtoH bytes / dtoh_gbps) / CPU faults`` of the cpu_fault benchmark, whose faults move no data
  (the DtoH term is 0 when the counters confirm that): no bandwidth is subtracted, so the DtoH
  rate's noise does not reach it. Raw files without that benchmark (the first version's) are
  fitted on the read-back instead: ``(t_back - DtoH bytes / dtoh_gbps - runs * copy_latency_ns -
  touches * cpu_touch_ns) / CPU faults``, runs = DtoH migration records of the back phase.
* ``gpu_touch_ns`` = median t_resident / touches; ``cpu_touch_ns`` = trimmed mean
  t_cpu_resident / touches; ``remote_touch_ns`` = trimmed mean t_remote / touches (throughput with
  the default threads in flight).
* ``evict_chunk_ns`` is not measured: oversubscription is not forced on the card (see docs/model.md).

``write_profile`` fits every run, writes the profile fitted on run 1, and records per constant
``spread`` (the largest |run k - run 1| / run 1) and ``deviation`` (largest / smallest value
over the runs, minus 1: the issue's "two runs within 10 %", independent of the runs' order).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Generator, Iterator
from typing import Any

import numpy as np

from uvmlab.core.sizes import PAGE_SIZE, PAGES_PER_BLOCK

# module references, not names: tests replace these functions with fakes
from uvmlab.cuda import executor, runtime
from uvmlab.cuda.executor import write_json_atomic
from uvmlab.timing.cost_model import CostProfile
from uvmlab.workload.ir import Workload, WorkloadBuilder

BLOCK_PAGES = PAGES_PER_BLOCK  # 2 MiB VA block
BIG_PAGE = 64 << 10
PIECES = (64 << 10, 2 << 20)  # prefetch piece sizes per 2 MiB block
REPS = 3  # pinned copies (stable to 0.5 %) and the reported first_touch
# Bulk prefetch round trips: DtoH took 35 or 53 ms per 512 MiB (H100), 41 or 53 ms (H200), at
# random; with 32 rounds the trimmed mean moves by ~4 % (1 sigma, even odds between the modes)
# with the modes' frequencies. Each round is ~60 ms at the default size.
BULK_ROUNDS = 32
PIECE_ROUNDS = 3  # per-block prefetch calls: only reported (slope, intercept) and a floored fit
# rand2m: all-in-flight kernels. Their times were bimodal (18.7 or 23-26 ms within one run) and
# B is a difference of two times (T1 - Tp ~ 16 ms), so a 1 ms error in Tp is 6 % of B: 24
# repetitions (trimmed mean of 20) bring that to ~0.7 ms. Each costs ~1.4 s, nearly all of it the
# CPU initialisation of the 2 GiB buffer that makes every fault migrate a CPU-resident page.
FAULT_REPS = 24
SERIAL_EVERY = 3  # one serial rand2m per this many parallel ones: T1 varied ~1 % (one outlier)
TOUCH_REPS = 6  # stream / resident / back / cpu_resident rounds
# A resident kernel of 8 passes (~1 M touches) ran ~0.1 ms, so launch noise made run-to-run
# deviations of 38 %: ~134 M touches (~12 ms) make launch costs < 0.1 % of the timed region.
RESIDENT_TOUCHES = 1 << 27
CPU_TOUCHES = 1 << 23  # ~180 ms of numpy gathers per cpu_resident phase (was ~22 ms)
REMOTE_TOUCHES = 1 << 23  # ~13 ms per remote kernel (was ~1.6 ms)
REMOTE_ALLOCS = 6  # remote kernels on several pinned allocations (their placement differs)
REMOTE_KERNELS = 2  # per allocation
MAX_PASSES = 4096  # passes per op at small sizes: bounds the segment tables
CPU_FAULT_BYTES = 32 << 20  # cpu_fault: 8192 collapse faults (~0.3 s) per repetition
CPU_FAULT_REPS = 6
# Short latencies: bursts spread over the run (a state of these VMs can last seconds), each on
# its own pinned buffer (the placement of host memory differs); ~8 bursts per run.
LAT_SAMPLES = 25  # per burst and quantity (after LAT_WARM discarded ones)
LAT_WARM = 5
TRIM = 0.1  # fraction of the repetitions dropped at each end by the trimmed mean
WARM_HOST_BYTES = 4 << 30  # host memory touched once before measuring (see calibrate())
FAULT_BATCH = 256  # uvm_perf_fault_batch_count default; read from the machine when present
RAW_VERSION = 2  # raw files without "calibrate_version" are version 1 (fitted the old way)
#: constants the benchmarks do not measure (fixed values, reported without a spread)
UNMEASURED = (
    "bottom_half_ns",
    "evict_chunk_ns",
    "cpu_populate_ns_per_byte",
    "cpu_map_page_ns",
    "advise_block_ns",
    "read_dup_page_ns",
    "free_block_ns",
)


def _passes(target_touches: int, pages: int, least: int) -> int:
    """Passes over ``pages`` pages that make about ``target_touches`` touches."""
    return int(min(MAX_PASSES, max(least, target_touches // max(1, pages))))


# --- workloads (pure builders, testable without a GPU) ------------------------------------------


def wl_prefetch(size: int, rounds: int = PIECE_ROUNDS, bulk_rounds: int = BULK_ROUNDS) -> Workload:
    """Whole-buffer prefetches both ways (``bulk_rounds`` times), then ``rounds`` times: one call
    per 2 MiB block moving a 64 KiB piece, then the whole block, each way."""
    b = WorkloadBuilder("cal_prefetch")
    buf = b.alloc("buf", size)
    b.cpu("init", [b.run(buf, access="write")])
    for _ in range(bulk_rounds):
        b.prefetch(buf, "gpu0")
        b.prefetch(buf, "cpu")
    n = b.pages(buf) // BLOCK_PAGES
    for _ in range(rounds):
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


def wl_stream_back(
    size: int, passes: int | None = None, reps: int = TOUCH_REPS, cpu_passes: int | None = None
) -> Workload:
    """CPU init, then ``reps`` times: GPU demand stream, resident passes, CPU read-back (faults),
    CPU passes over the now CPU-resident buffer. Pass counts default to ~RESIDENT_TOUCHES and
    ~CPU_TOUCHES touches per phase."""
    b = WorkloadBuilder("cal_stream_back")
    buf = b.alloc("buf", size)
    pages = b.pages(buf)
    passes = _passes(RESIDENT_TOUCHES, pages, 8) if passes is None else passes
    cpu_passes = _passes(CPU_TOUCHES, pages, 8) if cpu_passes is None else cpu_passes
    b.cpu("init", [b.run(buf, access="write")])
    for r in range(reps):
        b.kernel(f"stream{r}", [b.run(buf)])
        b.kernel(f"resident{r}", [b.run(buf)] * passes)
        b.cpu(f"back{r}", [b.run(buf)])
        b.cpu(f"cpu_resident{r}", [b.run(buf)] * cpu_passes)
    return b.build()


def wl_cpu_fault(size: int, reps: int = CPU_FAULT_REPS) -> Workload:
    """CPU faults that move no data: a read-mostly buffer is read by the GPU (which duplicates
    every page; the CPU keeps its copy, mapped read-only), then the CPU writes one word per page:
    each write faults once and only revokes the GPU's duplicate (the suite's ``read_mostly``
    measured 38-39 us per such fault on both GPUs, with DtoH 0). ``reps`` rounds."""
    b = WorkloadBuilder("cal_cpu_fault")
    buf = b.alloc("buf", size)
    b.cpu("init", [b.run(buf, access="write")])
    b.advise(buf, "set_read_mostly", "gpu0")
    for r in range(reps):
        b.kernel(f"gpu_read{r}", [b.run(buf)])
        b.cpu(f"cpu_write{r}", [b.run(buf, access="write")])
    return b.build()


def wl_first_touch(size: int) -> Workload:
    b = WorkloadBuilder("cal_first_touch")
    buf = b.alloc("buf", size)
    b.kernel("first_touch", [b.run(buf, stride=BLOCK_PAGES, access="write")])
    return b.build()


def wl_remote(size: int, passes: int | None = None, reps: int = REMOTE_KERNELS) -> Workload:
    """``reps`` GPU kernels of ``passes`` passes (default ~REMOTE_TOUCHES touches) over pinned
    host memory."""
    b = WorkloadBuilder("cal_remote")
    buf = b.alloc("buf", size, kind="pinned")
    passes = _passes(REMOTE_TOUCHES, b.pages(buf), 16) if passes is None else passes
    b.cpu("init", [b.run(buf, access="write")])
    for r in range(reps):
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


def _seq(x: Any) -> list[float]:
    return [float(v) for v in x] if isinstance(x, list | tuple) else [float(x)]


def _med(x: Any) -> float:
    """Median of repetitions: for one-mode quantities with occasional slow outliers."""
    return float(np.median(_seq(x)))


def _best(x: Any) -> float:
    """Minimum of repetitions: for the pinned copies, whose repetitions agree to < 1 % (so the
    minimum is the interference-free value, not a rare fast mode), and version-1 fits."""
    return float(np.min(_seq(x)))


def _tmean(x: Any, trim: float = TRIM) -> float:
    """Mean after dropping ``floor(n * trim)`` repetitions, at least one from 5 on, at each
    end: for bimodal quantities. Unlike the median (which jumps between the modes) or the
    minimum (which depends on whether the fast mode occurred at all) it moves only with the
    modes' frequencies, and a single wild repetition does not move it."""
    a = np.sort(np.asarray(_seq(x), dtype=float))
    k = max(int(len(a) * trim), 1 if len(a) >= 5 else 0)
    return float(a[k : len(a) - k].mean())


def _low(x: Any) -> float:
    """10th percentile of repetitions: for the rand2m fault kernels. Their times are bimodal and
    the slow mode's share drifts between runs (H200, 2026-11-22: 7 of 24 all-in-flight kernels
    slow in one run, 14 of 24 in the next; no kernel faster than the fast mode), so any mean or
    median follows the drift (B 24 % apart) while the fast mode — the machine undisturbed — is
    the same in both (B 0.9 % apart). A low percentile rather than the minimum, so that one odd
    repetition does not decide."""
    return float(np.percentile(np.asarray(_seq(x), dtype=float), 10))


def _n(x: Any) -> int:
    return len(x) if isinstance(x, list | tuple) else 1


def _burst_median(x: Any, bursts: int) -> float:
    """Mean over bursts of each burst's median: the median drops a burst's outliers, the mean
    over bursts spread across the run averages the states the machine goes through (the H100's
    4 KiB copy took ~4.7 us in one run and ~6.0 us in the next, in nearly every sample: one
    burst of 20 samples catches one state only). Samples that do not split into ``bursts``
    equal bursts: their median."""
    a = np.asarray(_seq(x), dtype=float)
    if bursts <= 1 or len(a) % bursts:
        return float(np.median(a))
    return float(np.median(a.reshape(bursts, -1), axis=1).mean())


Stat = tuple[Any, str]  # (function of the repetitions, how the source names it)


def _stats(raw: dict[str, Any]) -> dict[str, Stat]:
    """The statistic of each fitted quantity, by the raw file's version.

    Version 1 (3 repetitions of short regions, no ``calibrate_version``) keeps the first
    version's statistics, so the committed profiles fitted on those files, and the <gpu>-pcie5
    profiles built on them, do not move until the GPUs are measured again: the new statistics
    need the new files' repetitions to mean anything.
    """
    if int(raw.get("calibrate_version", 1)) < 2:
        best, med = (_best, "best"), (_med, "median")
        return {
            "bulk": best,
            "latency": best,
            "parallel": med,
            "serial": med,
            "resident": best,
            "cpu_resident": best,
            "remote": best,
        }
    bursts = int(raw.get("latency_bursts", 1))
    tmean = (_tmean, "trimmed mean")
    return {
        "bulk": tmean,
        "latency": (lambda x: _burst_median(x, bursts), f"mean of {bursts} burst medians"),
        "parallel": (_low, "10th percentile"),
        "serial": (_low, "10th percentile"),
        "resident": (_med, "median"),
        "cpu_resident": tmean,
        "remote": tmean,
    }


def fit_benchmarks(raw: dict[str, Any], name: str, gpu: str) -> tuple[dict[str, float], dict[str, str]]:
    """Cost-profile constants and their sources from the raw measurements (pure).

    Lists in ``raw`` are repetitions; the module docstring says which statistic each fit uses
    (``_stats``: version-1 raw files keep the first version's). Version-1 files have no
    copy-less CPU fault benchmark: their ``cpu_fault_ns`` comes from the read-back.
    """
    st = _stats(raw)
    v: dict[str, float] = {}
    src: dict[str, str] = {}
    p = raw["pinned"]
    for d in ("htod", "dtoh"):
        t = _best(p[f"{d}_ns"])
        v[f"pinned_{d}_gbps"] = p["bytes"] / t
        src[f"pinned_{d}_gbps"] = (
            f"pinned cudaMemcpy {p['bytes'] >> 20} MiB {d.upper()} in "
            f"{t / 1e6:.2f} ms (best of {_n(p[f'{d}_ns'])})"
        )

    # explicit migration: per-block calls of two piece sizes give the copy bandwidth (slope, the
    # per-call overhead cancels) and the per-block intercept; the bulk call is then fitted
    # exactly with the smaller intercept of the two directions.
    pf = raw["prefetch"]
    n = pf["blocks"]
    (s0, s1) = pf["pieces"]
    bulk, bulk_name = st["bulk"]
    slope, icpt, per_block = {}, {}, {}
    for d in ("htod", "dtoh"):
        t0, t1 = _med(pf[f"{d}_piece_ns"][0]), _med(pf[f"{d}_piece_ns"][1])
        slope[d] = n * (s1 - s0) / (t1 - t0) if t1 > t0 else pf["bytes_full"] / t1
        icpt[d] = t0 / n - s0 / slope[d]
        # trimmed mean, not the best: the bulk DtoH is bimodal, and the best of 3 moved 21 %
        # between two runs depending on whether a fast repetition occurred
        per_block[d] = bulk(pf[f"{d}_full_ns"]) / n
    blk = BLOCK_PAGES * PAGE_SIZE
    m = max(0.0, min(per_block[d] - blk / slope[d] for d in slope))
    v["migrate_block_ns"] = m
    for d in ("htod", "dtoh"):
        bw = BLOCK_PAGES * PAGE_SIZE / (per_block[d] - m)
        v[f"prefetch_{d}_gbps"] = bw
        # The fault path's copies run inside the driver, with no API call per copy: the bulk
        # rate is the representative one (and the per-call slope is 2x noisier on these VMs).
        v[f"{d}_gbps"] = bw
        ts = _seq(pf[f"{d}_full_ns"])
        src[f"prefetch_{d}_gbps"] = (
            f"bulk prefetch {d.upper()} of {pf['bytes_full'] >> 20} MiB: {per_block[d] / 1e3:.1f} "
            f"us per 2 MiB block ({bulk_name} of {len(ts)}) = migrate_block_ns + "
            f"2 MiB / bw. One call per block instead: slope {slope[d]:.1f} GB/s, intercept "
            f"{icpt[d] / 1e3:.1f} us per call (a per-call cost the model does not have)"
        )
        src[f"{d}_gbps"] = f"= prefetch_{d}_gbps: the fault path uses the same copy engines, in bulk"
        if min(ts) > 0 and max(ts) / min(ts) > 1.3:
            src[f"prefetch_{d}_gbps"] += (
                f". Repetitions varied {max(ts) / min(ts):.2f}x ({min(ts) / 1e6:.1f} to "
                f"{max(ts) / 1e6:.1f} ms, median {_med(ts) / 1e6:.1f}): bimodal on these machines"
            )
    src["migrate_block_ns"] = (
        "min over directions of (bulk time per block - 2 MiB / copy bandwidth), floored at 0: "
        f"HtoD {(per_block['htod'] - blk / slope['htod']) / 1e3:.1f} us, DtoH "
        f"{(per_block['dtoh'] - blk / slope['dtoh']) / 1e3:.1f} us"
    )
    # Short latencies (~5-8 us, mostly the host's submission): many samples in bursts spread
    # over the run, not the best of a few (that moved 38 % between two runs).
    lat, lat_name = st["latency"]
    cl = raw["copy_4k_ns"]
    lh, ld = lat(cl["htod"]), lat(cl["dtoh"])
    v["copy_latency_ns"] = (lh + ld) / 2
    src["copy_latency_ns"] = (
        f"one 4 KiB pinned cudaMemcpyAsync between CUDA events: HtoD "
        f"{lh:.0f} ns, DtoH {ld:.0f} ns ({lat_name} of {_n(cl['htod'])}), "
        "mean"
    )

    # GPU faults: rand2m one thread (serial) vs all in flight.
    r1, rp = raw["rand2m_serial"], raw["rand2m_parallel"]
    par, par_name = st["parallel"]
    ser, ser_name = st["serial"]
    N = r1["touches"]
    batch = raw.get("fault_batch_count", FAULT_BATCH)
    nb = math.ceil(N / batch)
    t1n, tpn = ser(r1["kernel_ns"]) / N, par(rp["kernel_ns"]) / N
    B = max(0.0, (t1n - tpn) / (1 - nb / N)) if nb < N else 0.0
    P = max(0.0, t1n - B)
    bpf = _med(r1["bytes_htod"]) / max(1, N)
    v["fault_batch_ns"] = B / 2
    v["replay_ns"] = B / 2
    v["bottom_half_ns"] = 0.0
    v["fault_ns"] = B / batch
    ms = raw["memset_2m_ns"]
    v["chunk_zero_ns"] = lat(ms)
    copy = v["copy_latency_ns"] + bpf / v["htod_gbps"]
    v["fault_block_ns"] = max(0.0, P - v["fault_ns"] - v["chunk_zero_ns"] - copy)
    src["fault_batch_ns"] = (
        f"rand2m: N={N} isolated faults ({bpf / 1024:.0f} KiB moved each); one thread "
        f"{t1n / 1e3:.1f} us/fault ({ser_name} of {_n(r1['kernel_ns'])}), all in flight "
        f"{tpn / 1e3:.1f} us/fault ({par_name} of {_n(rp['kernel_ns'])}), nb=ceil(N/{batch})="
        f"{nb}: B = (T1/N - Tp/N)/(1 - nb/N) = {B / 1e3:.1f} us per batch, P = T1/N - B = "
        f"{P / 1e3:.1f} us per fault; fault_batch_ns = B/2"
    )
    src["replay_ns"] = "B/2 (see fault_batch_ns)"
    src["bottom_half_ns"] = "0: not separable from the per-batch cost B in these benchmarks"
    src["fault_ns"] = f"B / fault_batch_count ({batch})"
    src["chunk_zero_ns"] = f"cudaMemsetAsync of 2 MiB of device memory (CUDA events, {lat_name} of {_n(ms)})"
    src["fault_block_ns"] = (
        "P - fault_ns - chunk_zero_ns - (copy_latency_ns + bytes per fault / "
        "htod_gbps): each rand2m fault gets a fresh chunk and one copy"
    )

    sb = raw["stream_back"]
    res, res_name = st["resident"]
    cres, cres_name = st["cpu_resident"]
    v["gpu_touch_ns"] = res(sb["resident_ns"]) / sb["resident_touches"]
    v["cpu_touch_ns"] = cres(sb["cpu_resident_ns"]) / sb["cpu_resident_touches"]
    src["gpu_touch_ns"] = (
        f"resident reads, {sb['resident_touches']} touches per kernel "
        f"({res(sb['resident_ns']) / 1e6:.2f} ms), default threads ({res_name} "
        f"of {_n(sb['resident_ns'])})"
    )
    src["cpu_touch_ns"] = (
        f"CPU reads of CPU-resident pages, {sb['cpu_resident_touches']} "
        f"touches per phase, numpy gather ({cres_name} of "
        f"{_n(sb['cpu_resident_ns'])})"
    )
    back = _med(sb["back_ns"])
    dbytes, faults = (_med(sb[k]) for k in ("back_bytes_dtoh", "back_cpu_faults"))
    # Runs are counted from CUPTI records; where CUPTI dropped some, use the driver's pattern
    # for a CPU read-back instead: two runs per CPU fault (the page, then its prefetch run).
    complete = sb.get("back_records_complete")
    runs_each = _seq(sb["back_dtoh_runs"])
    ok = complete if isinstance(complete, list) else [complete] * len(runs_each)
    f_each = _seq(sb["back_cpu_faults"]) if isinstance(sb["back_cpu_faults"], list) else [faults]
    runs = _med([r if c else 2 * f for r, c, f in zip(runs_each, ok, f_each, strict=True)])
    copies = dbytes / v["dtoh_gbps"] + runs * v["copy_latency_ns"]
    back_per_fault = (back - copies - sb["touches"] * v["cpu_touch_ns"]) / max(1.0, faults)
    back_text = (
        f"back: {back / 1e6:.1f} ms (median of {_n(sb['back_ns'])}) for "
        f"{faults:.0f} CPU faults moving {int(dbytes) >> 20} MiB in {runs:.0f} runs"
    )
    cf = raw.get("cpu_fault")
    if cf is not None and _med(cf["cpu_faults"]) > 0:
        # Faults that copy nothing: their time is the fault alone, no DtoH rate is subtracted
        # (the read-back fit below subtracts ~40 % of its time at a bimodal DtoH rate, so a 21 %
        # rate spread became a 56 % spread of cpu_fault_ns). Should the driver copy something
        # after all, the counters say so and the bytes are taken off at dtoh_gbps.
        per = [
            max(0.0, (t - cf["touches"] * v["cpu_touch_ns"] - b / v["dtoh_gbps"]) / max(1, f))
            for t, f, b in zip(
                _seq(cf["write_ns"]), _seq(cf["cpu_faults"]), _seq(cf["bytes_dtoh"]), strict=True
            )
        ]
        v["cpu_fault_ns"] = _med(per)
        moved = max(_seq(cf["bytes_dtoh"]))
        src["cpu_fault_ns"] = (
            "CPU writes to read-duplicated pages, one collapse fault per page, "
            f"{_med(cf['cpu_faults']):.0f} faults per phase "
            + (
                "moving no data"
                if moved == 0
                else f"moving up to {moved / 1024:.0f} KiB (subtracted at dtoh_gbps)"
            )
            + f": (phase time - touches * cpu_touch_ns) / faults, median of {len(per)}. The "
            f"read-back leaves {back_per_fault / 1e3:.1f} us per fault after its copies ({back_text}"
            "; not fitted: the difference of noisy terms, it is what cpu_map_page_ns of the "
            "<gpu>-pcie5 profile fits to the captures)"
        )
    else:
        v["cpu_fault_ns"] = max(0.0, back_per_fault)
        src["cpu_fault_ns"] = (
            f"{back_text}, minus copies (bytes/dtoh_gbps + runs * "
            "copy_latency_ns) and touches, per fault (the raw file has no "
            "copy-less CPU faults: a version-1 file)"
        )
    rm = raw["remote"]
    rem, rem_name = st["remote"]
    v["remote_touch_ns"] = rem(rm["kernel_ns"]) / rm["touches"]
    src["remote_touch_ns"] = (
        f"GPU reads of pinned host memory, {rm['touches']} touches per "
        f"kernel, default threads ({rem_name} of {_n(rm['kernel_ns'])}"
        + (f" on {rm['allocs']} allocations" if "allocs" in rm else "")
        + ")"
    )
    v["evict_chunk_ns"] = 10000.0
    src["evict_chunk_ns"] = "not measured: oversubscription is not forced on the card (default)"
    # Costs these micro-benchmarks do not isolate (they warm host memory up and never advise or
    # free in the timed region); the <gpu>-pcie5 profiles fit them to the validation captures.
    for k in (
        "cpu_populate_ns_per_byte",
        "cpu_map_page_ns",
        "advise_block_ns",
        "read_dup_page_ns",
        "free_block_ns",
    ):
        v[k] = 0.0
        src[k] = "not measured by calibrate (0); see the <gpu>-pcie5 profile for a captures fit"
    return v, src


def run_deviation(values: list[float]) -> float:
    """Largest over smallest value minus 1: how far apart the runs are, whatever their order."""
    lo, hi = min(values), max(values)
    if hi == lo:
        return 0.0
    # 0 in one run and not in another: reported as 100 % apart (JSON has no infinity)
    return hi / lo - 1 if lo > 0 else 1.0


# --- running (GPU) -------------------------------------------------------------------------------


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


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def write_profile(runs: list[dict[str, Any]], out_dir: str, name: str) -> dict[str, Any]:
    """Fit every run, write ``<name>.json`` (fitted on the first run) and ``<name>.raw.json``
    (every run's raw measurements and fit; ``spread``: the largest relative deviation of each
    constant from the first run's value; ``deviation``: largest over smallest value minus 1, the
    issue's "two runs within 10 %"). Each measured constant's source ends with every run's value
    and their deviation. Pure apart from the files."""
    fits = [fit_benchmarks(r["raw"], name, r["raw"]["gpu"]) for r in runs]
    for r, (v, _src) in zip(runs, fits, strict=True):
        r["fit"] = v
    vals, srcs = fits[0]
    spread = {
        k: max((abs(r["fit"][k] - v0) / v0 for r in runs[1:]), default=0.0) if v0 else 0.0
        for k, v0 in vals.items()
    }
    deviation = {k: run_deviation([r["fit"][k] for r in runs]) for k in vals}
    raw0 = runs[0]["raw"]
    srcs = dict(srcs)
    measured = [k for k in vals if k not in UNMEASURED]
    if len(runs) > 1:
        for k in measured:
            srcs[k] += f" [runs: {', '.join(_fmt(r['fit'][k]) for r in runs)}; {deviation[k]:.1%} apart]"
    over = sorted(((d, k) for k, d in deviation.items() if d > 0.10), reverse=True)
    rest = sorted(((d, k) for k, d in deviation.items() if d <= 0.10 and k in measured), reverse=True)
    srcs["_measured"] = (
        f"uvmlab.validation.calibrate on {raw0['gpu']}, driver {raw0['driver_version']}, "
        f"{raw0['date']}; fitted on run 1 of {len(runs)}; raw: "
        f"uvmlab/validation/data/calibration/{name}.raw.json"
    )
    if len(runs) < 2:
        srcs["_reproducibility"] = "one calibration run: no run-to-run deviation measured"
    else:
        srcs["_reproducibility"] = (
            f"deviation between the {len(runs)} runs (largest / smallest - 1; the raw file's "
            f"'deviation', its 'spread' is relative to run 1): {len(measured) - len(over)} of "
            f"{len(measured)} measured constants within 10 %; "
            + ("over 10 %: " + ", ".join(f"{k} {d:.1%}" for d, k in over) if over else "none over 10 %")
            + (f"; largest of the others: {rest[0][1]} {rest[0][0]:.1%}" if rest else "")
        )
    prof = CostProfile(
        name=name, gpu=raw0["gpu"], **{k: float(round(v, 4)) for k, v in vals.items()}, sources=srcs
    )
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        f.write(prof.to_json())
    write_json_atomic(
        os.path.join(out_dir, f"{name}.raw.json"), {"runs": runs, "spread": spread, "deviation": deviation}
    )
    return {"profile": json.loads(prof.to_json()), "spread": spread, "deviation": deviation}


def refit(raw_path: str, out_dir: str, name: str) -> dict[str, Any]:
    """Refit a saved raw file (no GPU): how the committed profiles are reproduced."""
    with open(raw_path) as f:
        runs = [{"raw": r["raw"]} for r in json.load(f)["runs"]]
    return write_profile(runs, out_dir, name)


def calibrate(
    out_dir: str,
    name: str,
    *,
    size: int = 512 << 20,
    repeats: int = 2,
    fault_reps: int = FAULT_REPS,
    log: Any = print,
) -> dict[str, Any]:
    """Run the benchmarks ``repeats`` times on the GPU and write the profile and raw files."""
    runtime.load_cuda()
    # Warm-up, discarded: the first touches of guest RAM on these VMs are slow (memory is
    # backed on first use), and GPU clocks / driver paths ramp up; measured without this, the
    # first run's DtoH and CPU-fault numbers came out up to 70 % slower than the second's.
    warm = np.ones(WARM_HOST_BYTES, dtype=np.uint8)
    del warm
    log("warm-up run (discarded)")
    run_benchmarks(min(size, 128 << 20), fault_reps=min(fault_reps, 3), log=lambda _msg: None)
    log(f"{repeats} calibration runs, their benchmark stages interleaved")
    raws = _interleaved(
        [_benchmark_stages(size, threads=65536, fault_reps=fault_reps, log=log) for _ in range(repeats)]
    )
    for r in raws:
        r["interleaved_runs"] = repeats
    return write_profile([{"raw": r} for r in raws], out_dir, name)
