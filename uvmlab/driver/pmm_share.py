"""Several VA spaces over one GPU's physical memory (uvm_pmm_gpu.c is per GPU, not per process).

In the driver a GPU's PMM serves every VA space registered on that GPU: a root chunk's owner is
a VA block of whichever process faulted it in, and eviction picks its victim from one set of
lists whoever owns it (pick_root_chunk_to_evict knows nothing of processes). The model's PMM
stores a VA-block id per chunk; with several VA spaces each one gets a disjoint range of those
ids (``owner_base`` + its own block index), and :class:`PmmShare` maps an id back to the VA
space -- the driver object -- that owns it, so that eviction moves the right process's pages.

It also keeps what cross-tenant studies need and one VA space cannot see: per (requester,
victim) pair, the root chunks evicted and the bytes the eviction copied back to the CPU.
One VA space alone never uses this class, so single-tenant runs are unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from uvmlab.driver.pmm import Pmm

# A VA space is a ``uvm.UvmDriver``; typed Any here because uvm.py imports this module.
UvmDriver = Any


class PmmShare:
    """One GPU's PMM and the VA spaces (drivers) that allocate from it."""

    def __init__(self, capacity_bytes: int, tenants: tuple[str, ...] = ()) -> None:
        self.pmm = Pmm(capacity_bytes)
        self._declared = tuple(tenants)  # every tenant that will join, for policies' RunInfo
        self._bases: list[int] = []  # owner_base of each space, ascending
        self._spaces: list[Any] = []  # the UvmDriver of each space
        self._next_base = 0
        #: (requesting tenant, victim tenant) -> [root chunks evicted, bytes copied to the CPU]
        self.evicted: dict[tuple[str, str], list[int]] = {}

    def join(self, drv: UvmDriver) -> int:
        """Register a VA space; returns its owner base (its block ids are base + block)."""
        base = self._next_base
        self._next_base += int(drv.va.n_blocks)
        self._bases.append(base)
        self._spaces.append(drv)
        return base

    def space_of(self, owner: int) -> tuple[UvmDriver, int]:
        """The driver owning a chunk's owner id, and the block index in its VA space."""
        i = int(np.searchsorted(self._bases, owner, side="right")) - 1
        if i < 0:
            raise ValueError(f"owner id {owner} belongs to no VA space")
        return self._spaces[i], owner - self._bases[i]

    def tenant_of(self, owners: np.ndarray | int) -> list[str] | str:
        """The tenant name of each owner id (-1: ``""``), for a whole list at once."""
        o = np.asarray(owners, dtype=np.int64)
        names = np.array([d.tenant for d in self._spaces] + [""], dtype=object)
        idx = np.searchsorted(np.asarray(self._bases, dtype=np.int64), o, side="right") - 1
        idx = np.where((o < 0) | (idx < 0), len(self._spaces), idx)
        if o.ndim == 0:
            return str(names[int(idx)])
        return names[idx.ravel()].tolist()

    @property
    def tenants(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self._declared, *(d.tenant for d in self._spaces)]))

    def record_eviction(self, requester: str, victim: str, nbytes: int) -> None:
        e = self.evicted.setdefault((requester, victim), [0, 0])
        e[0] += 1
        e[1] += int(nbytes)

    def held_chunks(self, drv: UvmDriver) -> int:
        """Root chunks on this GPU that back blocks of ``drv``'s VA space."""
        return int(np.count_nonzero(drv.va.gpu_chunk[0] >= 0))
