"""HMM: the GPU touching pageable (malloc'd) memory through device-private pages.

How UVM does it (uvm_hmm.c, uvm_pmm_gpu.c, uvm_va_space.c; the kernel's Documentation/mm/hmm.rst
and lib/test_hmm.c show the same mechanism with the ``dmirror`` test driver):

* a GPU fault on a pageable address finds or creates an HMM VA block (``uvm_hmm_va_block_find_
  create``) and is serviced by the same block service as managed memory
  (``uvm_hmm_va_block_service_locked``): residency policy, prefetch, thrashing, the PMM's root
  chunks and eviction lists; pages go to the GPU with ``migrate_vma_setup`` /
  ``migrate_vma_pages`` / ``migrate_vma_finalize`` and become ``ZONE_DEVICE`` device-private
  pages (``dmirror_migrate_to_device`` does the same on request);
* a CPU touch of a device-private page makes the kernel call the pagemap's ``migrate_to_ram``
  (``devmem_fault`` -> ``uvm_va_space_cpu_fault_hmm``: UVM's CPU fault path;
  ``dmirror_devmem_fault`` in the test driver), which migrates the page back;
* evicting a device chunk migrates its pages back to system memory (``uvm_hmm_va_block_evict_
  chunks``, ``uvm_hmm_pmm_gpu_evict_pfn``; ``dmirror_device_evict_chunk``);
* read duplication is accepted and ignored (``uvm_hmm_set_read_duplication`` returns NV_OK and
  does nothing: "TODO: Bug 3660922"), so a page has one copy at a time.

So ``HmmEngine`` is ``uvmlab.engine.Engine`` with pageable allocations serviced by the modelled
driver's block service, plus what differs: the CPU's first touch of malloc'd memory is the
kernel's anonymous fault, not a UVM fault; prefetch and advice reach pageable ranges
(UVM_MIGRATE and the policy ioctls accept HMM ranges); read-mostly advice on them does nothing;
each page a migrate_vma moves costs ``HmmCosts.migrate_vma_page_ns`` besides the copy. It counts
migrations to the device, back on CPU faults, and back on eviction, and device-private pages.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from uvmlab.core.errors import UvmlabError
from uvmlab.driver.advice import advise
from uvmlab.driver.compiled.scan import expand, segment_columns
from uvmlab.driver.migrate import migrate
from uvmlab.driver.perf import events as pe
from uvmlab.driver.va_space import CPU, PERM_ATOMIC
from uvmlab.engine.core import Engine
from uvmlab.workload.ir import Advice, AdviseOp, AllocKind, CpuOp, FreeOp, PrefetchOp

#: HMM counters (4 KiB pages)
HMM_COUNTERS = (
    "hmm_to_device",  # migrate_vma to device-private pages (GPU fault, prefetch, migrate)
    "hmm_populated_on_device",  # never-touched pages a GPU fault created on the device
    "hmm_to_ram_fault",  # migrate_to_ram on a CPU fault
    "hmm_to_ram_eviction",  # device chunk evictions
    "hmm_cpu_anon_faults",  # the kernel's anonymous faults populating malloc'd memory
    "hmm_device_private",  # device-private pages at the end of the run
)


@dataclass(frozen=True)
class HmmCosts:
    """What HMM adds to UVM's costs. *Assumed*, not measured: the lab's machines report
    PageableMemoryAccess=0 (``uvmlab hmm support``)."""

    #: migrate_vma_setup / _pages / _finalize per page: collecting, unmapping the CPU PTE with
    #: its TLB shootdown, struct-page work (assumed)
    migrate_vma_page_ns: float = 300.0
    #: the kernel's anonymous page fault on malloc'd memory (zeroing included; assumed)
    cpu_anon_fault_ns: float = 1500.0

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if not isinstance(v, int | float) or v < 0:
                raise UvmlabError(f"HMM cost {k} must be a non-negative number, got {v!r}")


class HmmEngine(Engine):
    def __init__(self, workload: Any, *, hmm_costs: HmmCosts | None = None, **kw: Any) -> None:
        super().__init__(workload, **kw)
        self.hmm_costs = hmm_costs or HmmCosts()
        va = self.drv.va
        self.pageable = np.flatnonzero(va.alloc_kind == AllocKind.PAGEABLE)
        self.pageable_block = np.zeros(va.n_blocks, dtype=bool)
        self.pageable_page = np.zeros(va.total_pages, dtype=bool)
        for i in self.pageable:
            lo = int(va.alloc_base[i])
            self.pageable_page[lo : lo + int(va.alloc_pages[i])] = True
            self.pageable_block[lo >> 9 : ((lo + int(va.alloc_pages[i]) - 1) >> 9) + 1] = True
        self.hmm = dict.fromkeys(HMM_COUNTERS, 0)
        self.hmm_rows: list[dict[str, int]] = []  # per operation: the counters' changes
        self._moved = {"to_device": 0, "to_ram": 0}
        self.drv.perf_events.register(pe.MIGRATION, self._on_migration)

    def _on_migration(self, *, block: int, pages: np.ndarray, dst: int, cause: str, **_: Any) -> None:
        if not self.pageable_block[block]:
            return
        n = len(pages)
        self._moved["to_ram" if dst == CPU else "to_device"] += n
        self.drv.charge(n * self.hmm_costs.migrate_vma_page_ns)

    # --- operations --------------------------------------------------------------------------
    def _run_op(self, op: Any) -> None:
        va = self.drv.va
        pg = self.pageable_page
        gbit = np.uint8(1 << 1)
        gpu_before = int(np.count_nonzero(va.residency[pg] & gbit))
        unpop_before = int(np.count_nonzero(va.residency[pg] == 0))
        self._moved.update(to_device=0, to_ram=0)
        before = dict(self.hmm)
        alloc = getattr(op, "alloc", -1)
        if isinstance(op, CpuOp):
            self._populate_on_cpu(op)
            super()._run_op(op)
        elif isinstance(op, PrefetchOp) and va.alloc_kind[alloc] == AllocKind.PAGEABLE:
            migrate(self.drv, int(va.alloc_base[alloc]) + op.start_page, op.num_pages, op.processor)
            self.clock += self.drv.take_work()
        elif isinstance(op, AdviseOp) and va.alloc_kind[alloc] == AllocKind.PAGEABLE:
            if op.advice not in (Advice.SET_READ_MOSTLY, Advice.UNSET_READ_MOSTLY):
                advise(
                    self.drv, int(va.alloc_base[alloc]) + op.start_page, op.num_pages, op.advice, op.processor
                )
            self.clock += self.drv.take_work()
        else:
            super()._run_op(op)
        if isinstance(op, FreeOp):
            self.hmm["hmm_device_private"] = int(np.count_nonzero(va.residency[pg] & gbit))
            self.hmm_rows.append({k: self.hmm[k] - before[k] for k in HMM_COUNTERS})
            return
        gpu_after = int(np.count_nonzero(va.residency[pg] & gbit))
        populated = unpop_before - int(np.count_nonzero(va.residency[pg] == 0))
        h = self.hmm
        h["hmm_to_device"] += self._moved["to_device"]
        h["hmm_to_ram_fault"] += self._moved["to_ram"]
        # conservation of device-private pages: what arrived and did not stay or fault back
        # left by eviction (populated pages of a CPU phase were populated on the CPU)
        on_device = populated if not isinstance(op, CpuOp) else 0
        h["hmm_populated_on_device"] += on_device
        evicted = gpu_before + self._moved["to_device"] + on_device - self._moved["to_ram"] - gpu_after
        if evicted < 0:
            raise RuntimeError(f"model bug: device-private pages grew by {-evicted} unexplained")
        h["hmm_to_ram_eviction"] += evicted
        self.drv.charge(evicted * self.hmm_costs.migrate_vma_page_ns)
        self.clock += self.drv.take_work()
        h["hmm_device_private"] = gpu_after
        self.hmm_rows.append({k: h[k] - before[k] for k in HMM_COUNTERS})
        self.hmm_rows[-1]["hmm_device_private"] = gpu_after  # a level, not a change

    def _populate_on_cpu(self, op: CpuOp) -> None:
        """malloc'd pages the CPU touches for the first time: the kernel's anonymous fault maps
        a zeroed page; UVM is not involved."""
        w, va = self.workload, self.drv.va
        cols = segment_columns(w.segments[op.seg_lo : op.seg_hi])
        page = np.empty(1 << 18, dtype=np.int64)
        acc = np.empty(len(page), dtype=np.uint8)
        seg_i = off = 0
        fresh_total = 0
        while True:
            seg_i, off, n = expand(*cols, w.pool, va.alloc_base, seg_i, off, page, acc)
            if n == 0:
                break
            p = page[:n]
            p = np.unique(p[self.pageable_page[p]])
            fresh = p[va.residency[p] == 0]
            va.residency[fresh] = 1 << CPU
            va.perm[CPU, fresh] = PERM_ATOMIC
            fresh_total += len(fresh)
        self.hmm["hmm_cpu_anon_faults"] += fresh_total
        self.clock += fresh_total * self.hmm_costs.cpu_anon_fault_ns
