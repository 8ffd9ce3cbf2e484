"""The measured design space (issue 13): the workloads captured on each GPU to fit and to test
the GPU fault path, the CPU phases and the thrashing / remote-mapping counters.

Every case is one small workload built without a GPU, so the model runs the very same IR. A
kernel case is: CPU first touch of a fresh managed buffer (a CPU phase), optionally a prefetch
to the GPU, one faulting GPU kernel over the buffer (the operation the fault path is judged
on), the same kernel again on resident pages (the kernel's own compute time), and for read
cases a CPU read-back (CPU faults that migrate the pages home). The kernel runs with the case's
launch shape: ``threads`` threads in flight, thread ``t`` doing touch ``t``, ``t + threads``,
... (the real-GPU executor's grid-stride kernel).

Sets, fixed up front (never moved between sets after a capture):

* ``calib``: the micro-captures of ``uvmlab calibrate --quick`` (about a minute of GPU time):
  the same-machine profile is fitted on them alone;
* ``train``: stream / random / strided (64 KiB) kernels x launch shape (2,048, 8,192, 32,768,
  65,536, 262,144 threads) x size (64 MiB, 256 MiB, 1 GiB) x read / write, 4 GiB streams, a
  prefetched stream, ping-pong, accessed-by and read-mostly cases;
* ``holdout``: the launch shapes (4,096, 16,384, 131,072 threads) and sizes (128 MiB, 512 MiB,
  2 GiB) that no training case has, for the same three patterns and both accesses, plus
  ping-pong, accessed-by, read-mostly and prefetch cases of other sizes. Nothing is ever fitted
  to these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uvmlab.core.errors import WorkloadError
from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.workload.builder import WorkloadBuilder
from uvmlab.workload.ir import Workload

MiB = 1 << 20
GiB = 1 << 30
PATTERNS = ("stream", "random", "stride")
STRIDE_PAGES = 16  # the strided pattern touches one page every 64 KiB (one per big page)
TRAIN_THREADS = (2048, 8192, 32768, 65536, 262144)
TRAIN_SIZES = (64 * MiB, 256 * MiB, 1 * GiB)
HOLDOUT_THREADS = (4096, 16384, 131072)
HOLDOUT_SIZES = (128 * MiB, 512 * MiB, 2 * GiB)
SETS = ("calib", "train", "holdout")


@dataclass(frozen=True)
class Case:
    """One workload of the design space: its name, set, builder and builder arguments."""

    name: str
    set: str
    kind: str  # kernel, pingpong, accessed_by, read_mostly
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def threads(self) -> int:
        """The launch shape of the case's kernels (threads in flight)."""
        return int(self.args.get("threads", 65536))

    @property
    def managed_bytes(self) -> int:
        return int(self.args["size"])

    def build(self) -> Workload:
        return BUILDERS[self.kind](name=self.name, **self.args)


def _size_tag(size: int) -> str:
    return f"{size // GiB}g" if size >= GiB and size % GiB == 0 else f"{size // MiB}m"


def _pattern_touches(b: WorkloadBuilder, buf: int, pattern: str, access: str, seed: int):
    pages = b.pages(buf)
    if pattern == "stream":
        return [b.run(buf, access=access)]
    if pattern == "stride":
        return [b.run(buf, stride=STRIDE_PAGES, access=access)]
    if pattern == "random":  # every page once, in a random order (the probe's rand4k)
        order = np.random.default_rng(seed).permutation(pages).astype(np.uint32)
        return [b.index(buf, order, access=access)]
    raise WorkloadError(f"unknown pattern {pattern!r}; one of {', '.join(PATTERNS)}")


def kernel_case(
    name: str,
    pattern: str,
    size: int,
    threads: int,
    access: str = "read",
    prefetch: bool = False,
    read_back: bool | None = None,
    seed: int = 0,
) -> Workload:
    """CPU first touch, [prefetch], a faulting kernel, the same kernel resident, [CPU read-back]."""
    b = WorkloadBuilder(
        name,
        seed=seed,
        params={"pattern": pattern, "size": size, "threads": threads, "access": access, "prefetch": prefetch},
    )
    buf = b.alloc("buf", size)
    b.cpu("init", [b.run(buf, access="write")])
    if prefetch:
        b.prefetch(buf, "gpu0")
        b.sync()
    b.kernel("touch", _pattern_touches(b, buf, pattern, access, seed), threads=threads)
    b.kernel("resident", _pattern_touches(b, buf, pattern, access, seed), threads=threads)
    if read_back if read_back is not None else access == "read":
        b.cpu("read_back", [b.run(buf)])
    b.sync()
    b.free(buf)
    return b.build()


def pingpong_case(name: str, size: int, rounds: int, threads: int = 65536) -> Workload:
    """GPU writes every page, then the CPU writes every page, ``rounds`` times (thrashing)."""
    b = WorkloadBuilder(name, params={"size": size, "rounds": rounds, "threads": threads})
    buf = b.alloc("buf", size)
    for r in range(rounds):
        b.kernel(f"gpu_write{r}", [b.run(buf, access="write")], threads=threads)
        b.sync()
        b.cpu(f"cpu_write{r}", [b.run(buf, access="write")])
    b.sync()
    b.free(buf)
    return b.build()


def accessed_by_case(name: str, size: int, threads: int = 65536, atomic_stride: int = 8) -> Workload:
    """Preferred location CPU + accessed-by GPU: the GPU reads and atomics go over PCIe (remote
    maps, no migration); then the advices are unset and the GPU reads migrate the pages."""
    b = WorkloadBuilder(name, params={"size": size, "threads": threads, "atomic_stride": atomic_stride})
    buf = b.alloc("buf", size)
    b.advise(buf, "set_preferred_location", "cpu")
    b.advise(buf, "set_accessed_by", "gpu0")
    b.cpu("init", [b.run(buf, access="write")])
    b.kernel("gpu_read_remote", [b.run(buf)], threads=threads)
    b.kernel("gpu_atomic_remote", [b.run(buf, stride=atomic_stride, access="atomic")], threads=threads)
    b.advise(buf, "unset_accessed_by", "gpu0")
    b.advise(buf, "unset_preferred_location", "cpu")
    b.kernel("gpu_read_migrate", [b.run(buf)], threads=threads)
    b.sync()
    b.free(buf)
    return b.build()


def read_mostly_case(name: str, size: int, threads: int = 65536) -> Workload:
    """Read-mostly: GPU reads duplicate, CPU reads stay local, a CPU write collapses the
    duplicates of half the buffer, the GPU reads them again."""
    b = WorkloadBuilder(name, params={"size": size, "threads": threads})
    buf = b.alloc("buf", size)
    b.cpu("init", [b.run(buf, access="write")])
    b.advise(buf, "set_read_mostly", "gpu0")
    b.kernel("gpu_read1", [b.run(buf)], threads=threads)
    b.cpu("cpu_read", [b.run(buf)])
    b.kernel("gpu_read2", [b.run(buf)], threads=threads)
    b.cpu("cpu_write_half", [b.run(buf, count=b.pages(buf) // 2, access="write")])
    b.kernel("gpu_read3", [b.run(buf)], threads=threads)
    b.sync()
    b.free(buf)
    return b.build()


BUILDERS = {
    "kernel": kernel_case,
    "pingpong": pingpong_case,
    "accessed_by": accessed_by_case,
    "read_mostly": read_mostly_case,
}


def _kcase(set_name: str, pattern: str, size: int, threads: int, access: str, **extra: Any) -> Case:
    tag = "_pf" if extra.get("prefetch") else ""
    name = f"{pattern}_{access[0]}_{_size_tag(size)}_t{threads}{tag}"
    return Case(
        name,
        set_name,
        "kernel",
        {"pattern": pattern, "size": size, "threads": threads, "access": access, **extra},
    )


def _calib() -> list[Case]:
    c = [_kcase("calib", "stream", 256 * MiB, t, "read") for t in (2048, 16384, 65536, 262144)]
    c += [_kcase("calib", "random", 256 * MiB, t, "read") for t in (8192, 65536)]
    c += [
        _kcase("calib", "stride", 256 * MiB, 65536, "read"),
        _kcase("calib", "stream", 256 * MiB, 65536, "write"),
        _kcase("calib", "stream", 1 * GiB, 65536, "read"),
        _kcase("calib", "stream", 256 * MiB, 65536, "read", prefetch=True),
        Case("pingpong_64k_r100_c", "calib", "pingpong", {"size": 64 << 10, "rounds": 100}),
        Case("accessed_by_64m_c", "calib", "accessed_by", {"size": 64 * MiB}),
        # CPU writes collapsing read duplicates: the faults cpu_fault_resident_ns stands for
        Case("read_mostly_32m_c", "calib", "read_mostly", {"size": 32 * MiB}),
    ]
    return c


def _train() -> list[Case]:
    c = [
        _kcase("train", p, s, t, a)
        for s in TRAIN_SIZES
        for p in PATTERNS
        for t in TRAIN_THREADS
        for a in ("read", "write")
    ]
    c += [_kcase("train", "stream", 4 * GiB, t, "read") for t in (8192, 262144)]
    c += [_kcase("train", "stream", s, 65536, "read", prefetch=True) for s in (256 * MiB, GiB)]
    c += [
        Case("pingpong_64k_r200", "train", "pingpong", {"size": 64 << 10, "rounds": 200}),
        Case("pingpong_1m_r50", "train", "pingpong", {"size": 1 * MiB, "rounds": 50}),
        Case("pingpong_16m_r8", "train", "pingpong", {"size": 16 * MiB, "rounds": 8}),
        Case("accessed_by_256m", "train", "accessed_by", {"size": 256 * MiB}),
        Case("read_mostly_64m", "train", "read_mostly", {"size": 64 * MiB}),
        Case("read_mostly_256m", "train", "read_mostly", {"size": 256 * MiB}),
    ]
    return c


def _holdout() -> list[Case]:
    c = [
        _kcase("holdout", p, s, t, a)
        for s in HOLDOUT_SIZES
        for p in PATTERNS
        for t in HOLDOUT_THREADS
        for a in ("read", "write")
    ]
    c += [
        _kcase("holdout", "stream", 512 * MiB, 65536, "read", prefetch=True),
        Case("pingpong_256k_r100", "holdout", "pingpong", {"size": 256 << 10, "rounds": 100}),
        Case("pingpong_4m_r16", "holdout", "pingpong", {"size": 4 * MiB, "rounds": 16}),
        Case("accessed_by_128m", "holdout", "accessed_by", {"size": 128 * MiB, "atomic_stride": 4}),
        Case("read_mostly_128m", "holdout", "read_mostly", {"size": 128 * MiB}),
    ]
    return c


def cases(set_name: str | None = None) -> list[Case]:
    """The design space's cases, of one set or of all, each set smallest first."""
    table = {"calib": _calib, "train": _train, "holdout": _holdout}
    if set_name is not None and set_name not in table:
        raise WorkloadError(f"unknown design-space set {set_name!r}; one of {', '.join(SETS)}")
    out: list[Case] = []
    for s in SETS if set_name is None else (set_name,):
        out += sorted(table[s](), key=lambda c: c.managed_bytes)
    return out


def case_by_name(name: str, set_name: str | None = None) -> Case:
    for c in cases(set_name):
        if c.name == name:
            return c
    raise WorkloadError(f"no design-space case {name!r}")


def total_bytes(cs: list[Case]) -> int:
    return sum(c.managed_bytes for c in cs)


__all__ = ["Case", "PAGE_SIZE", "SETS", "case_by_name", "cases", "kernel_case", "total_bytes"]
