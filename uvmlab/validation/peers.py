"""The two-GPU capture set (issue 20, item 3): workloads that use peers, to be captured on a
machine with two or more GPUs and compared with the model operation by operation.

No such machine has been lent to the project yet, so this set has no captures: the model's
peer behaviour (``docs/multigpu.md``) is unvalidated on hardware, and the real-GPU backend
refuses workloads on several GPUs until it can launch on each device. Sizes stay far below any
GPU's free memory (64 MiB per buffer).

* ``peer_migrate``: gpu0 writes a buffer, gpu1 writes it (every page moves GPU to GPU), gpu0
  reads it back;
* ``peer_accessed_by``: the buffer lives on gpu0; gpu1 is accessed-by and reads it through a
  peer mapping, twice, with no migration;
* ``peer_read_dup``: read-mostly; both GPUs read (a copy on each), then gpu1 writes (the copies
  collapse onto gpu1);
* ``peer_halo_stencil``: a grid split in two halves, one per GPU, each iteration reads its half
  plus one halo row of the other half and writes its half: the halo pages move between the
  GPUs every iteration unless the halves are pinned by a preferred location.
"""

from __future__ import annotations

from collections.abc import Callable

from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.workload.builder import WorkloadBuilder
from uvmlab.workload.ir import Workload

SIZE = 64 << 20


def _buffer(name: str) -> tuple[WorkloadBuilder, int]:
    b = WorkloadBuilder(name, params={"size": SIZE})
    buf = b.alloc("buf", SIZE)
    b.cpu("init", [b.run(buf, access="write")])
    return b, buf


def peer_migrate() -> Workload:
    b, buf = _buffer("peer_migrate")
    b.kernel("gpu0_write", [b.run(buf, access="write")], gpu="gpu0")
    b.kernel("gpu1_write", [b.run(buf, access="write")], gpu="gpu1")
    b.kernel("gpu0_read", [b.run(buf)], gpu="gpu0")
    b.sync()
    return b.build()


def peer_accessed_by() -> Workload:
    b, buf = _buffer("peer_accessed_by")
    b.kernel("gpu0_write", [b.run(buf, access="write")], gpu="gpu0")
    b.advise(buf, "set_accessed_by", "gpu1")
    b.kernel("gpu1_read", [b.run(buf)], gpu="gpu1")
    b.kernel("gpu1_read_again", [b.run(buf)], gpu="gpu1")
    b.sync()
    return b.build()


def peer_read_dup() -> Workload:
    b, buf = _buffer("peer_read_dup")
    b.advise(buf, "set_read_mostly", "gpu0")
    b.kernel("gpu0_read", [b.run(buf)], gpu="gpu0")
    b.kernel("gpu1_read", [b.run(buf)], gpu="gpu1")
    b.kernel("gpu1_write", [b.run(buf, access="write")], gpu="gpu1")
    b.sync()
    return b.build()


def peer_halo_stencil(iters: int = 4, row_bytes: int = 1 << 20) -> Workload:
    b = WorkloadBuilder("peer_halo_stencil", params={"size": 2 * SIZE, "iters": iters})
    rp = row_bytes // PAGE_SIZE
    rows = SIZE // row_bytes
    half = rows // 2
    grids = [b.alloc("grid0", SIZE), b.alloc("grid1", SIZE)]
    b.cpu("init", [b.run(grids[0], access="write")])
    src, dst = grids
    for it in range(iters):
        for g, (r0, r1) in enumerate(((0, half), (half, rows))):
            lo, hi = max(r0 - 1, 0), min(r1 + 1, rows)  # own rows plus one halo row
            b.kernel(
                f"iter{it}_gpu{g}",
                [b.run(src, lo * rp, (hi - lo) * rp), b.run(dst, r0 * rp, (r1 - r0) * rp, access="write")],
                gpu=g + 1,
            )
        src, dst = dst, src
    b.sync()
    return b.build()


PEERS: list[tuple[str, Callable[[], Workload]]] = [
    ("peer_migrate", peer_migrate),
    ("peer_accessed_by", peer_accessed_by),
    ("peer_read_dup", peer_read_dup),
    ("peer_halo_stencil", peer_halo_stencil),
]
