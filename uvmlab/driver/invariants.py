"""Invariants of the modeled driver's state, checked after every fault batch in tests.

* a mapped page is resident somewhere, and every mapping points at memory its processor can
  reach (a page is never resident nowhere while someone maps it);
* a page is resident on more than one processor only while read-duplicated, and then every
  mapping of it is read-only;
* GPU memory in use never exceeds capacity; every block with pages on a GPU owns a root chunk
  there and the chunk's owner is that block; the PMM's lists are consistent;
* bytes by cause add up to the totals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from uvmlab.driver.peer import DTOD_CAUSES
from uvmlab.driver.va_space import BLOCK_SHIFT, PERM_READ

if TYPE_CHECKING:
    from uvmlab.driver.uvm import UvmDriver


class InvariantError(AssertionError):
    pass


def check_invariants(drv: UvmDriver) -> None:
    va = drv.va
    res = va.residency
    for p in range(va.n_procs):
        mapped = np.flatnonzero(va.perm[p])
        if len(mapped) == 0:
            continue
        r = res[mapped]
        if np.any(r == 0):
            raise InvariantError(
                f"processor {p} maps a page resident nowhere: page {int(mapped[np.argmax(r == 0)])}"
            )
        reachable = np.zeros(len(mapped), dtype=bool)
        for q in range(va.n_procs):
            if va.can_access(p, q):
                reachable |= ((r >> q) & 1).astype(bool)
        if not reachable.all():
            raise InvariantError(
                f"processor {p} maps page {int(mapped[np.argmax(~reachable)])}"
                " whose only copies it cannot reach"
            )
    multi = np.flatnonzero(res & (res - 1))
    if len(multi) and np.any(va.perm[:, multi] > PERM_READ):
        raise InvariantError("a read-duplicated page is mapped writable")
    for g in range(va.n_gpus):
        pmm = drv.pmm[g]
        pmm.check_invariants()
        on_gpu = np.flatnonzero(res & np.uint8(1 << (g + 1)))
        blocks = np.unique(on_gpu >> BLOCK_SHIFT)
        managed = blocks[va.alloc_kind[va.block_alloc[blocks]] == 0]
        chunks = va.gpu_chunk[g, managed]
        if np.any(chunks < 0):
            raise InvariantError(
                f"block {int(managed[np.argmax(chunks < 0)])} has pages on gpu{g} but no GPU memory"
            )
        if np.any(pmm.owner[chunks] != drv.owner_base + managed):
            raise InvariantError("a root chunk's owner disagrees with the block it backs")
        if pmm.used_bytes > pmm.capacity_bytes:
            raise InvariantError(f"gpu{g}: {pmm.used_bytes} bytes in use > capacity")
    c = drv.counters
    for d, causes in (
        ("htod", ("fault", "prefetch", "user", "access_counter")),
        ("dtoh", ("fault", "prefetch", "eviction", "user")),
    ):
        if c[f"bytes_{d}"] != sum(c[f"bytes_{d}_{k}"] for k in causes):
            raise InvariantError(f"bytes_{d} does not equal the sum of its causes")
    if va.n_gpus > 1:  # GPU-to-GPU copies: by cause and by ordered pair, both add up
        peers = [k for k in c if k.startswith("bytes_gpu")]
        if not c["bytes_dtod"] == sum(c[f"bytes_dtod_{k}"] for k in DTOD_CAUSES) == sum(c[k] for k in peers):
            raise InvariantError("bytes_dtod does not equal the sum of its causes or of its GPU pairs")
