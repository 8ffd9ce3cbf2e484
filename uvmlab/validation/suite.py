"""The validation suite: small workloads run on a real GPU and, later, in the model.

``SUITE`` is a list of ``(name, spec)`` where a spec is a ``synthetic.make_workload`` string or
a builder function defined here. :func:`suite_workloads` builds them without a GPU, so the model
side can run the very same workloads and compare with the captures that
``uvmlab capture --out uvmlab/validation/data/captures`` saves (one JSON per workload:
canonical totals, per-operation rows, GPU, driver, every nvidia_uvm parameter, date).

Every managed footprint is at most 1 GiB. Together the suite covers every IR operation: all six
advices (read-mostly, preferred location, accessed-by, and their unsets), prefetch to the GPU
and to the CPU, GPU kernels with read / write / atomic touches, CPU phases, sync and free, and
managed, device and pinned allocations.

``HOLDOUT`` is the out-of-sample set (issue 5): the same kinds of workload with other sizes,
seeds and shapes. Some constants of the model's ``<gpu>-pcie5`` profiles were fitted to the
captures of ``SUITE``, so the suite's errors are in-sample; the hold-out captures
(``data/holdout-<gpu>/``) must never be used for fitting, or they stop measuring anything.
``SETS`` names both; :func:`suite_workloads` and :func:`run_suite` take ``set_name``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np

from uvmlab.core.errors import WorkloadError

# module references, not names: tests replace these functions with fakes
from uvmlab.cuda import executor, runtime
from uvmlab.cuda.executor import DEFAULT_THREADS
from uvmlab.validation.stored import STORED_SETS, gpu_key
from uvmlab.workload.builder import WorkloadBuilder
from uvmlab.workload.ir import Workload
from uvmlab.workload.synthetic import make_workload

#: a suite entry: a ``synthetic.make_workload`` spec string or a builder function defined here
Spec = str | Callable[[], Workload]

MAX_SUITE_MANAGED = 1 << 30
#: the hold-out set's bounds: big enough that per-block costs dominate fixed ones as in the suite,
#: small enough (far below half of an H100's 80 GB) that nothing is oversubscribed
MIN_HOLDOUT_MANAGED = 128 << 20
MAX_HOLDOUT_MANAGED = 512 << 20


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


def preferred_cpu_accessed_by_gpu(size: int = 64 << 20, atomic_stride: int = 16) -> Workload:
    """Data that lives on the CPU and is mapped by the GPU (zero-copy style): preferred location
    CPU plus accessed-by GPU, GPU reads and atomics go over PCIe; then both advices are unset
    and the same kernel migrates the pages. The defaults are the suite's entry; the hold-out set
    varies the size and the atomics' page stride."""
    # params hold only what the suite's captures recorded, so those captures still match
    params: dict[str, object] = {"size": size}
    if atomic_stride != 16:
        params["atomic_stride"] = atomic_stride
    b = WorkloadBuilder("preferred_cpu_accessed_by_gpu", params=params)
    buf = b.alloc("buf", size)
    b.advise(buf, "set_preferred_location", "cpu")
    b.advise(buf, "set_accessed_by", "gpu0")
    b.cpu("init", [b.run(buf, access="write")])
    b.kernel("gpu_read_remote", [b.run(buf)])
    b.kernel("gpu_atomic_remote", [b.run(buf, stride=atomic_stride, access="atomic")])
    b.advise(buf, "unset_accessed_by", "gpu0")
    b.advise(buf, "unset_preferred_location", "cpu")
    b.kernel("gpu_read_migrate", [b.run(buf)])
    b.sync()
    b.free(buf)
    return b.build()


def preferred_gpu(size: int = 128 << 20, cpu_stride: int = 8) -> Workload:
    """Preferred location GPU: the CPU initialises, the GPU pulls the pages home, the CPU reads
    them back (CPU faults), the GPU reads again; the CPU is also given accessed-by. The defaults
    are the suite's entry; the hold-out set varies the size and the CPU reads' page stride."""
    params: dict[str, object] = {"size": size}
    if cpu_stride != 8:
        params["cpu_stride"] = cpu_stride
    b = WorkloadBuilder("preferred_gpu", params=params)
    buf = b.alloc("buf", size)
    b.advise(buf, "set_preferred_location", "gpu0")
    b.cpu("init", [b.run(buf, access="write")])
    b.kernel("gpu_read1", [b.run(buf)])
    b.cpu("cpu_read", [b.run(buf, stride=cpu_stride)])
    b.kernel("gpu_read2", [b.run(buf)])
    b.advise(buf, "set_accessed_by", "cpu")
    b.cpu("cpu_read_accessed_by", [b.run(buf, stride=cpu_stride)])
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
    b.kernel(
        "gpu_atomic", [b.index(m, np.arange(0, b.pages(m), 7), access="atomic"), b.run(d, access="atomic")]
    )
    b.sync()
    b.cpu("cpu_read", [b.run(m), b.run(p)])
    b.free(d)
    b.free(p)
    b.free(m)
    return b.build()


SUITE: list[tuple[str, Spec]] = [
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


def preferred_cpu_accessed_by_gpu_b() -> Workload:
    """Hold-out variant: 160 MiB instead of 64, remote atomics on every 4th page, not every 16th."""
    return preferred_cpu_accessed_by_gpu(size=160 << 20, atomic_stride=4)


def preferred_gpu_b() -> Workload:
    """Hold-out variant: 192 MiB instead of 128, CPU read-backs of every 4th page, not every 8th."""
    return preferred_gpu(size=192 << 20, cpu_stride=4)


#: The out-of-sample set: every synthetic kind of SUITE and two of its advice workloads again,
#: with other sizes (128-512 MiB), seeds and shapes. Never fit a constant to its captures.
HOLDOUT: list[tuple[str, Spec]] = [
    ("stream_b", "stream:size=512MiB,seed=4,passes=3"),
    ("random_b", "random:size=384MiB,seed=7,touches=196608"),  # 2 touches per page
    ("stride_b", "stride:size=384MiB,seed=5,stride=32KiB,passes=3"),
    ("stencil_b", "stencil:size=384MiB,seed=6,iters=3,row=512KiB"),
    ("gemm_b", "gemm:size=384MiB,seed=8,tile=4MiB"),
    ("graph_b", "graph:size=384MiB,seed=5,levels=5"),
    ("pingpong_b", "pingpong:size=128MiB,seed=2,rounds=3"),
    ("llm_b", "llm:size=384MiB,seed=3,layers=12,tokens=6"),
    ("vecsearch_b", "vecsearch:size=384MiB,seed=9,queries=48,nprobe=16,partitions=192"),
    ("train_b", "train:size=512MiB,seed=4,layers=6,steps=1"),
    ("preferred_cpu_accessed_by_gpu_b", preferred_cpu_accessed_by_gpu_b),
    ("preferred_gpu_b", preferred_gpu_b),
]

#: the workload sets by name, in report order
SETS: dict[str, list[tuple[str, Spec]]] = {"suite": SUITE, "holdout": HOLDOUT}


def set_specs(set_name: str = "suite") -> list[tuple[str, Spec]]:
    """The ``(name, spec)`` list of workload set ``set_name`` (``suite`` or ``holdout``)."""
    try:
        return SETS[set_name]
    except KeyError:
        raise WorkloadError(f"unknown workload set {set_name!r}; known: {', '.join(SETS)}") from None


def set_of(name: str) -> str | None:
    """The set that has a workload called ``name``, or None."""
    return next((s for s, specs in SETS.items() if any(n == name for n, _ in specs)), None)


def build(spec: Spec) -> Workload:
    """A suite entry's workload: a generator spec string, or a builder function called."""
    if callable(spec):
        return spec()
    return make_workload(spec)


def suite_workloads(
    names: list[str] | None = None,
    set_name: str = "suite",
) -> list[tuple[str, Workload]]:
    """The workloads of set ``set_name`` (default: the suite), built (no GPU needed),
    optionally only those named."""
    specs = set_specs(set_name)
    known = dict(specs)
    if names:
        unknown = [n for n in names if n not in known]
        if unknown:
            label = "suite" if set_name == "suite" else f"{set_name} set"
            raise WorkloadError(
                f"unknown {label} workload(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
    return [(n, build(s)) for n, s in specs if not names or n in names]


def spec_text(spec: Spec) -> str:
    """A spec as the captures and the report name it."""
    return spec if isinstance(spec, str) else f"uvmlab.validation.suite:{spec.__name__}"


def run_suite(
    out_dir: str,
    names: list[str] | None = None,
    *,
    threads: int | None = None,
    raw_sample: str | None = None,
    log: Callable[[str], None] = print,
    set_name: str = "suite",
) -> list[str]:
    """Run a workload set (default: the suite) on the GPU, one capture JSON per workload in
    ``out_dir``; returns paths.

    ``raw_sample``: name of the workload whose raw CUPTI records are also saved (as
    ``cupti_sample.npz`` beside ``out_dir``) for the parser's CPU-only tests.
    """
    specs = dict(set_specs(set_name))
    todo = suite_workloads(names, set_name)  # a bad name fails before the GPU is touched
    paths = []
    for name, w in todo:
        t = time.perf_counter()
        raw = (
            os.path.join(os.path.dirname(os.path.abspath(out_dir)), "cupti_sample.npz")
            if raw_sample == name
            else None
        )
        res = executor.execute(w, threads=threads or DEFAULT_THREADS, raw_path=raw)
        res.meta["suite_name"] = name
        res.meta["workload_set"] = set_name
        res.meta["spec"] = spec_text(specs[name])
        path = os.path.join(out_dir, f"{name}.json")
        res.save(path)
        paths.append(path)
        c = res.checks
        log(
            f"{name}: {time.perf_counter() - t:.1f} s, htod {res.totals.get('bytes_htod', 0) >> 20}"
            f" MiB, dtoh {res.totals.get('bytes_dtoh', 0) >> 20} MiB, cpu_faults "
            f"{res.totals.get('cpu_faults')}, records complete: {c.get('records_complete')}, "
            f"missing htod {c.get('bytes_htod_missing', 0) >> 20} MiB"
        )
    return paths


def default_out(set_name: str) -> str:
    """Where ``uvmlab capture`` writes without --out: the suite's historical
    default, or the stored hold-out directory of this machine's GPU (which needs the GPU)."""
    if set_name == "suite":
        return "uvmlab/validation/data/captures"
    return str(STORED_SETS[set_name][gpu_key(runtime.device_info()["gpu"])])
