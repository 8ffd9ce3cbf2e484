"""Built-in HMM workloads (``uvmlab hmm run example``; the run of docs/gaia-hmm.md)."""

from __future__ import annotations

from uvmlab.core.errors import UvmlabError
from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.core.units import parse_size
from uvmlab.workload.builder import WorkloadBuilder
from uvmlab.workload.ir import Workload


def example(size: str | int = "64MiB") -> Workload:
    """A malloc'd buffer and an untouched scratch buffer (1/8 of its size): CPU initialisation,
    a GPU read of 3/8, a CPU read of 1/16 back, an explicit migration of the third quarter, a GPU
    write of the scratch buffer and of the last quarter, a CPU write of everything. With GPU
    memory of half the buffer it shows every HMM path: migration to the device on GPU faults
    and on request, creation on the device, migrate_to_ram on CPU faults, eviction."""
    nbytes = parse_size(size, what="HMM example size")
    pages = nbytes // PAGE_SIZE
    if pages < 512 or pages % 16:
        raise UvmlabError(f"the HMM example needs at least 2 MiB in multiples of 64 KiB, got {size}")
    b = WorkloadBuilder("hmm-example", params={"size": nbytes})
    a = b.alloc("heap", nbytes, "pageable")
    s = b.alloc("scratch", nbytes // 8, "pageable")
    q = pages // 16
    b.cpu("cpu_init", [b.run(a, access="write")])
    b.kernel("gpu_read_3/8", [b.run(a, count=6 * q)])
    b.cpu("cpu_read_1/16", [b.run(a, count=q)])
    b.prefetch(a, "gpu0", 8 * q, 4 * q)
    b.kernel("gpu_write_scratch", [b.run(s, access="write")])
    b.kernel("gpu_write_last_1/4", [b.run(a, start=12 * q, count=4 * q, access="write")])
    b.cpu("cpu_write_all", [b.run(a, access="write")])
    return b.build()
