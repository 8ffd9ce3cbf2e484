"""Write docs/trends.md: the model's slowdowns and prefetcher speed-ups on the GTX 1080 Ti
profile next to UVMSmart's published figures (run: python3 docs/make_trends.py)."""

from __future__ import annotations

import datetime
import platform
import sys
from pathlib import Path

from uvmlab.api import simulate
from uvmlab.workload.synthetic import make_workload

DOC = Path(__file__).resolve().parent / "trends.md"
ROOT_CHUNK = 2 << 20
SIZES = ("16MiB", "32MiB")
SLOWDOWN = {"bfs": (4.46, 15.4), "backprop": (1.02, 1.32), "ra": (15.2, None)}


def kernel_ns(result) -> int:
    return sum(op["time_ns"] for op in result.ops if op["op"] == "kernel")


def backed_bytes(w) -> int:
    return sum(-(-a.bytes // ROOT_CHUNK) * ROOT_CHUNK for a in w.allocs)


def slowdown_rows() -> list[str]:
    rows = [
        "| workload | size | model 125 % | model 150 % | UVMSmart 125 % | UVMSmart 150 % |",
        "|---|---|---|---|---|---|",
    ]
    for name, (p125, p150) in SLOWDOWN.items():
        for size in SIZES:
            w = make_workload(f"{name}:size={size}")
            t = {}
            for pct in (100, 125, 150):
                mem = backed_bytes(w) * 100 // pct // ROOT_CHUNK * ROOT_CHUNK
                t[pct] = kernel_ns(simulate(w, gpu="gtx1080ti", gpu_memory=mem))
            paper150 = f"{p150}x" if p150 else "—"
            rows.append(
                f"| {name} | {size} | {t[125] / t[100]:.2f}x | {t[150] / t[100]:.2f}x | "
                f"{p125}x | {paper150} |"
            )
            print(rows[-1], file=sys.stderr)
    return rows


def prefetch_rows() -> list[str]:
    rows = [
        "| workload | kernel time, on-demand / prefetcher | GPU faults, on-demand / prefetcher |",
        "|---|---|---|",
    ]
    for name in ("bfs", "backprop", "fdtd", "hotspot"):
        w = make_workload(f"{name}:size={SIZES[0]}")
        on = simulate(w, gpu="gtx1080ti")
        off = simulate(w, gpu="gtx1080ti", params={"uvm_perf_prefetch_enable": 0})
        rows.append(
            f"| {name} | {kernel_ns(off) / kernel_ns(on):.2f}x | "
            f"{off.totals['gpu_faults'] / on.totals['gpu_faults']:.1f}x |"
        )
        print(rows[-1], file=sys.stderr)
    return rows


def main() -> None:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    text = "\n".join(
        [
            "# Published trends on older GPUs: the model on the GTX 1080 Ti profile",
            "",
            f"Written by `python3 docs/make_trends.py` ({stamp}, model run on {platform.machine()}; no "
            "GPU involved). Tested as ratios by `tests/test_trends_pascal.py` at 16 MiB.",
            "",
            "The GTX 1080 Ti profile is an **estimate** (docs/hal.md): derived from the calibrated",
            "H100 profile with the host link scaled to PCIe 3.0. Workloads are the Rodinia-shaped",
            "generators of `uvmlab/workload/rodinia.py`; GPU memory is scaled so that 100 % means",
            "the footprint, in whole 2 MiB root chunks, fits exactly. Slowdown = kernel time at that",
            "oversubscription / kernel time at 100 %.",
            "",
            "## Kernel slowdown under oversubscription",
            "",
            "UVMSmart (ISCA 2019) measured these on a real GTX 1080 Ti (nvprof).",
            "",
            *slowdown_rows(),
            "",
            "Direction and order of magnitude match at 16 MiB: bfs within about a factor of 2 (its",
            "150 % slowdown is about half the published one), ra and backprop closer. Random access",
            "grows with the table size in the model (more update rounds per page at larger sizes),",
            "so `ra` is compared at the tested size.",
            "",
            "## Prefetcher vs on-demand paging (memory fits)",
            "",
            "UVMSmart's simulated tree-based neighbourhood prefetcher is 30-43x faster than",
            "on-demand paging on bfs, backprop, fdtd and hotspot. The model's prefetcher (the",
            "driver's, uvm_perf_prefetch.c) is compared with `uvm_perf_prefetch_enable=0`:",
            "",
            *prefetch_rows(),
            "",
            "**Not reached.** The model's prefetcher removes most faults but shortens the kernels",
            "by far less than the published factor (the table's first column): in the model a fault",
            "batch copies its pages as contiguous runs at the fault-path bandwidth (`htod_gbps`), so",
            "on-demand paging of a sweep moves the same bytes at nearly the same rate, and the",
            "per-batch and per-fault costs are a small share. A 30-43x gap needs per-fault costs",
            "that dominate the copy (as in UVMSmart's simulator) or a copy bandwidth that falls",
            "steeply for 4 KiB transfers; the model has neither, and no Pascal measurement was",
            "available to calibrate them.",
            "",
        ]
    )
    DOC.write_text(text)
    print(f"wrote {DOC}", file=sys.stderr)


if __name__ == "__main__":
    main()
