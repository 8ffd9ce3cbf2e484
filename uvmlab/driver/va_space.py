"""VA space, VA ranges and 2 MiB VA blocks, as arrays (uvm_va_space.h, uvm_va_range.h, uvm_va_block.h).

Layout: each allocation is one VA range, placed at a 2 MiB-aligned VA so that its blocks line
up with the driver's naturally aligned 2 MiB windows (cudaMallocManaged hands out 2 MiB-aligned
ranges for large allocations). Pages are numbered globally (VA >> 12); a page's block is
``page >> 9``.

Per-page state is one byte per fact — residency bits, one permission byte per processor, and the
range policy (preferred location, accessed-by, read duplication) stored per page so that advice
on any sub-range needs no range splitting. The arrays are created with ``core.sparse.zeros``, which the
OS backs lazily: untouched parts of a 1 TiB allocation cost no memory.

Processors: 0 is the CPU, 1.. are GPUs (at most 7: residency and accessed-by are one byte per
page). Who can map and copy whose memory is the VA space's ``Topology`` (``driver/peer.py``);
without one, the single-GPU PCIe platform: GPUs map sysmem, the CPU never maps vidmem.
Permissions are cumulative levels (uvm_va_block.h): 0 none, 1 READ, 2 WRITE (RW), 3 ATOMIC (RWA).
"""

from __future__ import annotations

import numpy as np

from uvmlab.core import sparse
from uvmlab.core.errors import UvmlabError
from uvmlab.core.sizes import BLOCK_SHIFT, PAGES_PER_BLOCK
from uvmlab.driver.peer import Topology
from uvmlab.driver.perf.prefetch import new_prefetch_info
from uvmlab.workload.ir import Alloc, AllocKind

CPU = 0
MAX_GPUS = 7  # one residency / accessed-by bit per processor in a uint8

PERM_NONE, PERM_READ, PERM_WRITE, PERM_ATOMIC = 0, 1, 2, 3

READ_DUP_UNSET, READ_DUP_ENABLED, READ_DUP_DISABLED = 0, 1, 2


class VaSpace:
    """The state of one process's managed memory: ranges, blocks, pages, per processor."""

    def __init__(self, allocs: list[Alloc], n_gpus: int = 1, topology: Topology | None = None) -> None:
        if not 1 <= n_gpus <= MAX_GPUS:
            raise UvmlabError(f"the model holds 1 to {MAX_GPUS} GPUs in one VA space, got {n_gpus}")
        self.n_gpus = n_gpus
        self.n_procs = 1 + n_gpus
        self.topology = topology
        # relationships as nested lists: they are read per page on the reference fault path
        if topology is None:
            self._access = [[p == q or q == CPU for q in range(self.n_procs)] for p in range(self.n_procs)]
            self._atomics = [[p == q for q in range(self.n_procs)] for p in range(self.n_procs)]
            self._closest = [[p, *[q for q in range(self.n_procs) if q != p]] for p in range(self.n_procs)]
        else:
            self._access = topology.can_access.tolist()
            self._atomics = topology.native_atomics.tolist()
            self._closest = topology.closest_order
        self.allocs = allocs
        base = []
        next_page = PAGES_PER_BLOCK  # leave VA 0..2 MiB unused, like a real address space
        for a in allocs:
            base.append(next_page)
            next_page += -(-a.pages // PAGES_PER_BLOCK) * PAGES_PER_BLOCK
        self.alloc_base = np.array(base, dtype=np.int64)
        self.alloc_pages = np.array([a.pages for a in allocs], dtype=np.int64)
        self.alloc_kind = np.array([int(a.kind) for a in allocs], dtype=np.uint8)
        self.alloc_live = np.ones(len(allocs), dtype=bool)
        self.total_pages = next_page
        self.n_blocks = next_page >> BLOCK_SHIFT

        # per page
        # (an earlier run's, cleared, where one gave them back: ``recycle``)
        self.residency = sparse.take(self.total_pages, np.uint8)  # bit p: resident on p
        self.perm = sparse.take((self.n_procs, self.total_pages), np.uint8)
        self.preferred = sparse.take(self.total_pages, np.uint8)  # processor + 1; 0 = unset
        self.accessed_by = sparse.take(self.total_pages, np.uint8)  # processor mask
        self.read_dup = sparse.take(self.total_pages, np.uint8)  # READ_DUP_*

        # per block
        self.block_alloc = np.full(self.n_blocks, -1, dtype=np.int32)
        self.block_pages = np.zeros(self.n_blocks, dtype=np.int32)  # pages in the block
        for i, a in enumerate(allocs):
            b0 = int(self.alloc_base[i]) >> BLOCK_SHIFT
            nb = -(-a.pages // PAGES_PER_BLOCK)
            self.block_alloc[b0 : b0 + nb] = i
            self.block_pages[b0 : b0 + nb] = PAGES_PER_BLOCK
            self.block_pages[b0 + nb - 1] = a.pages - (nb - 1) * PAGES_PER_BLOCK
        # a block that ever had advice applied to any of its pages (conservative: never cleared)
        self.block_advised = np.zeros(self.n_blocks, dtype=np.bool_)
        # processors ever set AccessedBy on any page (bit p; conservative: never cleared): only
        # their mappings can appear on pages of a block no fault of theirs was serviced in
        self.accessed_by_procs = 0
        # physical GPU root chunk backing each block, per GPU (-1: none)
        self.gpu_chunk = np.full((n_gpus, self.n_blocks), -1, dtype=np.int64)
        # prefetch_info (uvm_perf_prefetch.c): last destination and fault migrations to it
        self.prefetch_last_proc, self.prefetch_fault_migrations = new_prefetch_info(self.n_blocks)

    def recycle(self) -> None:
        """The run is over and nothing will read this VA space again: its per-page arrays go
        to the process's pool (``core.sparse.give``) for the next VA space of the same size,
        whose first writes then cost no page faults. Empty arrays take their place here, so a
        read after this fails rather than seeing another run's state."""
        per_page = [self.residency, self.perm, self.preferred, self.accessed_by, self.read_dup]
        self.residency = self.preferred = self.accessed_by = self.read_dup = np.zeros(0, np.uint8)
        self.perm = np.zeros((self.n_procs, 0), np.uint8)
        sparse.give(per_page)

    # --- processor relationships (uvm_va_space.c; driver/peer.py) -------------------------
    def can_access(self, p: int, q: int) -> bool:
        """Can processor p map memory resident on q (``va_space->can_access``)?"""
        return self._access[p][q]

    def has_native_atomics(self, p: int, q: int) -> bool:
        """Does p keep atomics on a mapping of q's memory (local, or an NVLink peer)?"""
        return self._atomics[p][q]

    # --- helpers ---------------------------------------------------------------------------
    def block_range(self, block: int) -> tuple[int, int]:
        first = block << BLOCK_SHIFT
        return first, first + int(self.block_pages[block])

    def topology_order(self, p: int) -> list[int]:
        """Processors in closest-first order for ``p`` (itself first)."""
        return self._closest[p]

    def closest_resident(self, residency_bits: int, p: int) -> int:
        """`uvm_va_block_page_get_closest_resident`: p itself, then fast-link peers, then other
        GPUs p can access, then the CPU (``Topology.closest_order``).

        When p can access none of the holders, the first such holder in that order is returned
        (the caller's rules then check accessibility).
        """
        if residency_bits == 0:
            return -1
        for q in self._closest[p]:
            if residency_bits >> q & 1:
                return q
        return -1

    def gpu_resident_count(self, block: int, gpu: int) -> int:
        lo, hi = self.block_range(block)
        return int(np.count_nonzero(self.residency[lo:hi] & (1 << gpu)))

    def is_managed(self, alloc: int) -> bool:
        return self.alloc_kind[alloc] == AllocKind.MANAGED
