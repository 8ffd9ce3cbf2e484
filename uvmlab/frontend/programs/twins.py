"""IR twins of the traced programs: the same allocations, advice, prefetches and touches.

``managed_advise_ir`` mirrors ``managed_advise.cu`` line by line, so that replaying the real
program's UVM ioctls (``uvmlab ioctl replay``) can be checked against the IR version.
"""

from __future__ import annotations

from uvmlab.workload.builder import WorkloadBuilder
from uvmlab.workload.ir import Workload

MiB = 1 << 20
PAGE = 4096


def managed_advise_ir() -> Workload:
    b = WorkloadBuilder("managed_advise", params={"twin_of": "managed_advise.cu"})
    a = b.alloc("a", 32 * MiB)
    bb = b.alloc("b", 16 * MiB)
    s = b.alloc("sum", 4)
    half = 16 * MiB // PAGE
    b.advise(a, "set_preferred_location", "gpu0", 0, half)
    b.advise(a, "set_accessed_by", "cpu")
    b.advise(bb, "set_read_mostly", "gpu0")
    b.prefetch(a, "gpu0")
    b.kernel("touch", [b.run(a, access="write"), b.run(bb, access="read")])
    b.sync()
    b.prefetch(a, "cpu", half, half)
    b.sync()
    b.cpu("cpu touch a", [b.run(a, access="read")])
    b.advise(a, "unset_preferred_location", "gpu0", 0, half)
    b.free(a)
    b.free(bb)
    b.free(s)
    return b.build()
