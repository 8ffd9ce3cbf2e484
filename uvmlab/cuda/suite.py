"""The validation suite: small workloads run on a real GPU and, later, in the model.

``SUITE`` is a list of ``(name, spec)`` where a spec is a ``synthetic.make_workload`` string or
a builder function defined here. :func:`suite_workloads` builds them without a GPU, so the model
side can run the very same workloads and compare with the captures that
``python -m uvmlab.cuda.suite --out uvmlab/cuda/data/captures`` saves (one JSON per workload:
canonical totals, per-operation rows, GPU, driver, every nvidia_uvm parameter, date).

Every managed footprint is at most 1 GiB. Together the suite covers every IR operation: all six
advices (read-mostly, preferred location, accessed-by, and their unsets), prefetch to the GPU
and to the CPU, GPU kernels with read / write / atomic touches, CPU phases, sync and free, and
managed, device and pinned allocations.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

import numpy as np

from uvmlab.workload.ir import Workload, WorkloadBuilder

MAX_SUITE_MANAGED = 1 << 30


def read_mostly() -> Workload:
    """Read-mostly buffer: duplicated to the GPU on read, CPU reads stay local, a CPU write
    collapses the duplicates, the next GPU read copies again; then the advice is removed."""
    b = WorkloadBuilder("read_mostly", params={"size": 128 << 20})
    buf = b.alloc("buf", 128 << 20)
    b.cpu("init", [b.run(buf, access="write")])
    b.advise(buf, "set_read_mostly", "gpu0")
    b.kernel("gpu_read1", [b.run(buf)])
    b.cpu("cpu_read", [b.run(buf)])
    b.kernel("gpu_read2", [b.run(buf)])
    b.cpu("cpu_write_half", [b.run(buf, count=b.pages(buf) // 2, access="write")])
    b.kernel("gpu_read3", [b.run(buf)])
    b.advise(buf, "unset_read_mostly", "gpu0")
    b.kernel("gpu_write", [b.run(buf, access="write")])
    b.sync()
    b.free(buf)
    return b.build()


def preferred_cpu_accessed_by_gpu() -> Workload:
    """Data that lives on the CPU and is mapped by the GPU (zero-copy style): preferred location
    CPU plus accessed-by GPU, GPU reads and atomics go over PCIe; then both advices are unset
    and the same kernel migrates the pages."""
    b = WorkloadBuilder("preferred_cpu_accessed_by_gpu", params={"size": 64 << 20})
    buf = b.alloc("buf", 64 << 20)
    b.advise(buf, "set_preferred_location", "cpu")
    b.advise(buf, "set_accessed_by", "gpu0")
    b.cpu("init", [b.run(buf, access="write")])
    b.kernel("gpu_read_remote", [b.run(buf)])
    b.kernel("gpu_atomic_remote", [b.run(buf, stride=16, access="atomic")])
    b.advise(buf, "unset_accessed_by", "gpu0")
    b.advise(buf, "unset_preferred_location", "cpu")
    b.kernel("gpu_read_migrate", [b.run(buf)])
    b.sync()
    b.free(buf)
    return b.build()


def preferred_gpu() -> Workload:
    """Preferred location GPU: the CPU initialises, the GPU pulls the pages home, the CPU reads
    them back (CPU faults), the GPU reads again; the CPU is also given accessed-by."""
    b = WorkloadBuilder("preferred_gpu", params={"size": 128 << 20})
    buf = b.alloc("buf", 128 << 20)
    b.advise(buf, "set_preferred_location", "gpu0")
    b.cpu("init", [b.run(buf, access="write")])
    b.kernel("gpu_read1", [b.run(buf)])
    b.cpu("cpu_read", [b.run(buf, stride=8)])
    b.kernel("gpu_read2", [b.run(buf)])
    b.advise(buf, "set_accessed_by", "cpu")
    b.cpu("cpu_read_accessed_by", [b.run(buf, stride=8)])
    b.sync()
    b.free(buf)
    return b.build()


def prefetch_roundtrip() -> Workload:
    """Explicit migration both ways: prefetch to the GPU, a kernel that should not fault,
    prefetch back, CPU reads that should not fault, then half the buffer to the GPU again."""
    b = WorkloadBuilder("prefetch_roundtrip", params={"size": 256 << 20})
    buf = b.alloc("buf", 256 << 20)
    b.cpu("init", [b.run(buf, access="write")])
    b.prefetch(buf, "gpu0")
    b.sync()
    b.kernel("gpu_read", [b.run(buf)])
    b.prefetch(buf, "cpu")
    b.sync()
    b.cpu("cpu_read", [b.run(buf)])
    b.prefetch(buf, "gpu0", start=0, num_pages=b.pages(buf) // 2)
    b.kernel("gpu_write_all", [b.run(buf, access="write")])
    b.sync()
    b.free(buf)
    return b.build()


def mixed_kinds() -> Workload:
    """Managed, device and pinned allocations in one kernel: only the managed one migrates."""
    b = WorkloadBuilder("mixed_kinds", params={"size": 96 << 20})
    m = b.alloc("managed", 64 << 20)
    d = b.alloc("device", 16 << 20, kind="device")
    p = b.alloc("pinned", 16 << 20, kind="pinned")
    b.cpu("init", [b.run(m, access="write"), b.run(p, access="write")])
    b.kernel("gpu_mix", [b.run(m), b.run(d, access="write"), b.run(p)])
    b.kernel("gpu_atomic", [b.index(m, np.arange(0, b.pages(m), 7), access="atomic"),
                            b.run(d, access="atomic")])
    b.sync()
    b.cpu("cpu_read", [b.run(m), b.run(p)])
    b.free(d)
    b.free(p)
    b.free(m)
    return b.build()


SUITE: list[tuple[str, str | Callable[[], Workload]]] = [
    ("stream", "stream:size=256MiB,passes=2"),
    ("random", "random:size=256MiB,seed=1"),
    ("stride", "stride:size=256MiB,stride=64KiB,passes=2"),
    ("stencil", "stencil:size=256MiB,iters=2,row=1MiB"),
    ("gemm", "gemm:size=192MiB,tile=2MiB"),
    ("graph", "graph:size=256MiB,seed=2,levels=4"),
    ("pingpong", "pingpong:size=64MiB,rounds=4"),
    ("llm", "llm:size=256MiB,layers=8,tokens=8"),
    ("vecsearch", "vecsearch:size=256MiB,seed=3,queries=32,nprobe=8,partitions=128"),
    ("train", "train:size=256MiB,layers=4,steps=2"),
    ("read_mostly", read_mostly),
    ("preferred_cpu_accessed_by_gpu", preferred_cpu_accessed_by_gpu),
    ("preferred_gpu", preferred_gpu),
    ("prefetch_roundtrip", prefetch_roundtrip),
    ("mixed_kinds", mixed_kinds),
]


def build(spec: str | Callable[[], Workload]) -> Workload:
    if callable(spec):
        return spec()
    from uvmlab.workload.synthetic import make_workload

    return make_workload(spec)


def suite_workloads(names: list[str] | None = None) -> list[tuple[str, Workload]]:
    """The suite's workloads, built (no GPU needed), optionally only those named."""
    known = dict(SUITE)
    if names:
        unknown = [n for n in names if n not in known]
        if unknown:
            from uvmlab.errors import WorkloadError
            raise WorkloadError(f"unknown suite workload(s) {', '.join(unknown)}; "
                                f"known: {', '.join(known)}")
    return [(n, build(s)) for n, s in SUITE if not names or n in names]


def spec_text(spec: str | Callable[[], Workload]) -> str:
    return spec if isinstance(spec, str) else f"uvmlab.cuda.suite:{spec.__name__}"


def run_suite(out_dir: str, names: list[str] | None = None, *, threads: int | None = None,
              raw_sample: str | None = None, log: Callable[[str], None] = print) -> list[str]:
    """Run the suite on the GPU, one capture JSON per workload in ``out_dir``; returns paths.

    ``raw_sample``: name of the workload whose raw CUPTI records are also saved (as
    ``cupti_sample.npz`` beside ``out_dir``) for the parser's CPU-only tests.
    """
    from uvmlab.cuda.executor import DEFAULT_THREADS, execute

    specs = dict(SUITE)
    paths = []
    for name, w in suite_workloads(names):
        t = time.perf_counter()
        raw = os.path.join(os.path.dirname(os.path.abspath(out_dir)), "cupti_sample.npz") \
            if raw_sample == name else None
        res = execute(w, threads=threads or DEFAULT_THREADS, raw_path=raw)
        res.meta["suite_name"] = name
        res.meta["spec"] = spec_text(specs[name])
        path = os.path.join(out_dir, f"{name}.json")
        res.save(path)
        paths.append(path)
        c = res.checks
        log(f"{name}: {time.perf_counter() - t:.1f} s, htod {res.totals.get('bytes_htod', 0) >> 20}"
            f" MiB, dtoh {res.totals.get('bytes_dtoh', 0) >> 20} MiB, cpu_faults "
            f"{res.totals.get('cpu_faults')}, records complete: {c.get('records_complete')}, "
            f"missing htod {c.get('bytes_htod_missing', 0) >> 20} MiB")
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="run the validation suite on the GPU")
    ap.add_argument("--out", default="uvmlab/cuda/data/captures")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--raw-sample", default=None)
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args(argv)
    from uvmlab.errors import UvmlabError
    try:
        if a.list:
            for n, w in suite_workloads(a.only):
                print(json.dumps({"name": n, "ops": len(w.ops), "managed": w.managed_bytes,
                                  "touches": w.touch_count()}))
            return 0
        run_suite(a.out, a.only, threads=a.threads, raw_sample=a.raw_sample)
    except UvmlabError as e:
        print(f"error: {e}")
        return e.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
