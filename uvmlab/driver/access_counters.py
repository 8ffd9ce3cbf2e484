"""Access counters (uvm_gpu_access_counters.c), Volta and later.

The GPU counts accesses to memory it maps *remotely* (sysmem here) per 2 MiB region; when a
region reaches ``uvm_perf_access_counter_threshold`` a notification carries the region and a
32-bit mask of its 64 KiB sub-regions that were accessed. Notifications are serviced in batches
of ``uvm_perf_access_counter_batch_count``: the accessed sub-regions' pages are made resident on
the GPU (access type PREFETCH, operation ACCESS_COUNTERS, prefetcher included) with cause
*AccessCounters*.

Enablement (``is_migration_enabled``): ``uvm_perf_access_counter_migration_enable`` 0 = off,
>0 = on, -1 = on only with ATS — so **off** on the x86 PCIe platform the model defaults to.
Driver 580 on a 4 KiB-page kernel additionally forwards notifications to tools only (the
PAGE_SIZE gate, uvm_gpu_access_counters.c); the model ignores that gate when a user turns migrations on, so
that the
mechanism can be studied — this is the one place where the model does more than the x86 driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from uvmlab.driver import va_block as vb
from uvmlab.driver.va_space import BLOCK_SHIFT, PAGES_PER_BLOCK

if TYPE_CHECKING:
    from uvmlab.driver.hal import GpuSpec
    from uvmlab.driver.uvm import UvmDriver

SUBREGIONS = 32  # 2 MiB / 64 KiB
PAGES_PER_SUBREGION = PAGES_PER_BLOCK // SUBREGIONS


class AccessCounters:
    def __init__(self, drv: UvmDriver, gpu: GpuSpec) -> None:
        p = drv.params
        setting = p.uvm_perf_access_counter_migration_enable
        self.migration_enabled = bool(gpu.has_access_counters and (setting > 0 or (setting < 0 and gpu.ats)))
        self.threshold = p.uvm_perf_access_counter_threshold
        self.batch_count = p.uvm_perf_access_counter_batch_count
        self.drv = drv
        # per 2 MiB region: remote access count and the accessed 64 KiB sub-region mask
        self.count: dict[int, int] = {}
        self.submask: dict[int, int] = {}
        self.pending: list[tuple[int, int]] = []  # notifications (block, sub-region mask)

    def record_remote_accesses(self, pages: np.ndarray) -> None:
        """Count GPU accesses that went to a remote (sysmem) mapping."""
        if not self.migration_enabled or len(pages) == 0:
            return
        blocks, first = np.unique(pages >> BLOCK_SHIFT, return_index=True)
        counts = np.bincount(np.searchsorted(blocks, pages >> BLOCK_SHIFT), minlength=len(blocks))
        subs = ((pages & (PAGES_PER_BLOCK - 1)) // PAGES_PER_SUBREGION).astype(np.int64)
        for i, b in enumerate(blocks.tolist()):
            sel = (pages >> BLOCK_SHIFT) == b
            bits = int(np.bitwise_or.reduce(np.left_shift(1, subs[sel])))
            self.submask[b] = self.submask.get(b, 0) | bits
            self.count[b] = self.count.get(b, 0) + int(counts[i])
            if self.count[b] >= self.threshold:
                self.pending.append((b, self.submask.pop(b)))
                self.count[b] = 0

    def service(self, gpu: int) -> None:
        """``service_notifications``: migrate accessed sub-regions of notified regions."""
        drv = self.drv
        va = drv.va
        batch, self.pending = self.pending[: self.batch_count], self.pending[self.batch_count :]
        for block, bits in sorted(batch):
            lo, hi = va.block_range(block)
            if not np.any(va.perm[gpu, lo:hi]):
                continue  # the GPU has no mapping in this block
            mask = np.zeros(hi - lo, dtype=bool)
            for s in range(SUBREGIONS):
                if bits >> s & 1:
                    mask[s * PAGES_PER_SUBREGION : (s + 1) * PAGES_PER_SUBREGION] = True
            mask &= (va.residency[lo:hi] >> gpu & 1) == 0
            mask &= va.residency[lo:hi] != 0
            if not mask.any():
                continue
            access = np.zeros(hi - lo, dtype=np.uint8)  # PREFETCH
            vb.service_locked(
                drv,
                block,
                gpu,
                {gpu: mask},
                access,
                np.zeros(hi - lo, dtype=bool),
                np.zeros(hi - lo, dtype=bool),
                cause="access_counter",
            )
