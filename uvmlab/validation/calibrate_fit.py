"""The calibration's statistics and the fit of the profile constants to the raw benchmarks
(``calibrate.py`` says which statistic each quantity takes and why)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from uvmlab.core.sizes import PAGE_SIZE

# module references, not names: tests replace these functions with fakes
from uvmlab.validation.calibrate_workloads import (
    BLOCK_PAGES,
    FAULT_BATCH,
    TRIM,
)


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
        # these are the faults cpu_fault_resident_ns stands for (the page is on the CPU); the
        # per-kind fit re-fits cpu_fault_ns on read-backs, which migrate
        v["cpu_fault_resident_ns"] = v["cpu_fault_ns"]
        moved = max(_seq(cf["bytes_dtoh"]))
        src["cpu_fault_resident_ns"] = (
            "CPU writes to read-duplicated pages, one collapse fault per page, "
            f"{_med(cf['cpu_faults']):.0f} faults per phase "
            + (
                "moving no data"
                if moved == 0
                else f"moving up to {moved / 1024:.0f} KiB (subtracted at dtoh_gbps)"
            )
            + f": (phase time - touches * cpu_touch_ns) / faults, median of {len(per)}"
        )
        src["cpu_fault_ns"] = (
            src["cpu_fault_resident_ns"] + ". The "
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
        v["cpu_fault_resident_ns"] = v["cpu_fault_ns"]
        src["cpu_fault_resident_ns"] = "= cpu_fault_ns (a version-1 raw file has no copy-less CPU faults)"
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
