"""What CUPTI's GPU fault groups are, from their raw records (issue 13, fault arrival).

``probe`` (GPU) runs design-space ``calib`` kernels at several launch shapes with the raw CUPTI
records kept (``execute(raw_path=...)``) and stores them with the run's counters
(``data/probes/fault-groups-<gpu>-<date>/``: ``<case>.npz`` + ``meta.json``). ``group_stats``
(no GPU) reads one case's first faulting kernel back: how many groups, how far apart they start,
how long each record lasts, how many are open when one starts, and the driver's serviced faults
(GpuPageFaultCount) per group.

What the H100 records of 2026-12-07 say (docs/validation.md, limits): one group per fault batch
(groups start 0.3-0.8 ms apart, the batch service interval, with 150-245 serviced faults per
group, never more than ``uvm_perf_fault_batch_count``), and with 16 K threads or more each record
spans about two start intervals: a batch's first fault was written while the batch before it was
being serviced, and a group starts a few µs after the end of the group two before it
(``after_end_2_us``): each batch holds what survived the flush of the batch before. With 2,048
threads a group starts as the one before ends (``after_end_1_us``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from uvmlab.core.errors import UvmlabError
from uvmlab.cuda.cupti_capture import GPU_FAULT, HTOD
from uvmlab.cuda.executor import execute
from uvmlab.cuda.runtime import device_info
from uvmlab.validation.space import cases

PROBES = Path(__file__).resolve().parent / "data" / "probes"
CASES = (
    "stream_r_256m_t2048",
    "stream_r_256m_t16384",
    "stream_r_256m_t65536",
    "stream_r_256m_t262144",
    "random_r_256m_t8192",
    "random_r_256m_t65536",
    "pingpong_64k_r100_c",
)


def group_stats(npz: str | Path, meta: dict[str, Any] | None = None) -> dict[str, float] | None:
    """Statistics of the GPU fault-group records of the first kernel with at least 3 of them,
    or None (CUPTI drops records when migrations outrun its queue, as in the random cases)."""
    d = np.load(npz)
    rec, win = d["records"], d["windows"]
    ops = json.loads(bytes(d["info"]))["ops"]
    name = Path(npz).stem
    counters = {}
    if meta is not None:
        counters = {o["name"]: o for o in meta["cases"][name]["ops"]}
    for i, o in enumerate(ops):
        if o["op"] != "kernel":
            continue
        lo, hi = int(win[i][0]), int(win[i][1])
        sel = (rec["kind"] == GPU_FAULT) & (rec["start"] >= lo) & (rec["start"] <= hi)
        g = np.sort(rec[sel], order="start")
        if len(g) < 3:
            continue
        start, end = g["start"].astype(np.int64), g["end"].astype(np.int64)
        open_at_start = [int(np.sum((start <= s) & (end > s))) for s in start]
        out = {
            "kernel_ms": (hi - lo) / 1e6,
            "groups": float(len(g)),
            "start_gap_us": float(np.median(np.diff(start))) / 1e3,
            "duration_us": float(np.median(end - start)) / 1e3,
            "open_at_start": float(np.median(open_at_start)),
            # when a group starts against the end of the one before it and of the one two before:
            # near 0 for the one before when each batch holds what one replay's warps reported,
            # near 0 for the one two before when it holds what survived the batch before's flush
            "after_end_1_us": float(np.median(start[1:] - end[:-1])) / 1e3,
            "after_end_2_us": float(np.median(start[2:] - end[:-2])) / 1e3,
        }
        faults = (counters.get(o["name"]) or {}).get("gpu_faults_notified")
        if faults:
            out["faults_per_group"] = faults / len(g)
        return out
    return None


def group_migrations(npz: str | Path) -> dict[str, np.ndarray] | None:
    """What each GPU fault group of the first kernel with at least 3 of them brought in: the
    host-to-device migration records that start between the group's start and the next
    group's, as ``kib`` (their bytes, KiB) and ``blocks`` (the distinct 2 MiB VA blocks they
    fall in, counted from the kernel's lowest migrated address), one value per group in start
    order; None as for :func:`group_stats`. A group is one fault batch (module docstring), so
    these are the batches' migrations as the driver issued them (its prefetch included)."""
    d = np.load(npz)
    rec, win = d["records"], d["windows"]
    ops = json.loads(bytes(d["info"]))["ops"]
    for i, o in enumerate(ops):
        if o["op"] != "kernel":
            continue
        lo, hi = int(win[i][0]), int(win[i][1])
        in_op = (rec["start"] >= lo) & (rec["start"] <= hi)
        g = np.sort(rec[in_op & (rec["kind"] == GPU_FAULT)], order="start")
        if len(g) < 3:
            continue
        h = rec[in_op & (rec["kind"] == HTOD)]
        group = np.searchsorted(g["start"].astype(np.int64), h["start"].astype(np.int64), side="right") - 1
        keep = group >= 0
        group, h = group[keep], h[keep]
        block = (h["address"].astype(np.int64) - (int(h["address"].min()) if len(h) else 0)) >> 21
        kib = np.bincount(group, weights=h["value"].astype(np.float64), minlength=len(g)) / 1024
        blocks = np.zeros(len(g), dtype=np.int64)
        for j in np.unique(group):
            blocks[j] = len(np.unique(block[group == j]))
        return {"kib": kib, "blocks": blocks}
    return None


def model_group_migrations(events: Any, gpu: int = 1) -> dict[str, np.ndarray]:
    """:func:`group_migrations` of a model run (``simulate(..., events=True).events``): the
    migrations to processor ``gpu`` between each ``GpuFault`` event (one per fault batch, as
    CUPTI's groups) and the next, over the whole run."""
    t = events["time_ns"].to_numpy(dtype=np.int64)
    kind = events["event"].to_numpy()
    fault = kind == "GpuFault"
    mig = (kind == "Migration") & (events["processor"].to_numpy() == gpu)
    starts = t[fault]
    addr = events["address"].to_numpy(dtype=np.int64)[mig]
    size = events["bytes"].to_numpy(dtype=np.float64)[mig]
    group = np.searchsorted(starts, t[mig], side="right") - 1
    keep = group >= 0
    group, addr, size = group[keep], addr[keep], size[keep]
    block = (addr - (int(addr.min()) if len(addr) else 0)) >> 21
    blocks = np.zeros(len(starts), dtype=np.int64)
    for j in np.unique(group):
        blocks[j] = len(np.unique(block[group == j]))
    return {"kib": np.bincount(group, weights=size, minlength=len(starts)) / 1024, "blocks": blocks}


def probe(out_dir: str, names: tuple[str, ...] = CASES) -> Path:
    """Run ``names`` of the ``calib`` set on this GPU with raw records kept (needs a GPU)."""
    out = Path(out_dir)
    info = device_info()  # no GPU: one clear error before anything is written
    os.makedirs(out, exist_ok=True)
    meta: dict[str, Any] = {
        "device": info,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cases": {},
    }
    keys = ("op", "name", "time_ns", "gpu_fault_groups", "gpu_faults_notified", "bytes_htod")
    for c in cases("calib"):
        if c.name not in names:
            continue
        t0 = time.perf_counter()
        res = execute(c.build(), threads=c.threads, raw_path=str(out / f"{c.name}.npz"))
        meta["cases"][c.name] = {
            "threads": c.threads,
            "seconds": round(time.perf_counter() - t0, 3),
            "ops": [{k: o.get(k) for k in keys} for o in res.ops],
        }
        print(c.name, round(time.perf_counter() - t0, 2), flush=True)
    path = out / "meta.json"
    path.write_text(json.dumps(meta, indent=1, default=str))
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m uvmlab.validation.fault_groups OUT_DIR`` (on a GPU): :func:`probe`."""
    ap = argparse.ArgumentParser(
        description="Raw-record fault-group probe of the calib kernels (needs a GPU)."
    )
    ap.add_argument("out", help="directory for <case>.npz and meta.json")
    a = ap.parse_args(argv)
    try:
        probe(a.out)
    except UvmlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["CASES", "PROBES", "group_migrations", "group_stats", "main", "model_group_migrations", "probe"]
