"""The classic ways to get a file to the GPU, for the comparison with GAIA.

Both baselines keep the file in an ordinary host page cache (``HostPageCache``); the CPU touches
the file through ``mmap`` exactly as under GAIA (a page the host does not cache is read from
storage and mapped by a minor fault). They differ in how a kernel gets its pages:

* ``run_memcpy`` — ``read`` into a pinned host buffer, then ``cudaMemcpy`` to a ``cudaMalloc``
  buffer; the kernel runs on device memory without faults; pages it wrote go back with
  ``cudaMemcpy`` and ``write``. Each kernel reads its input again (a job does not know what an
  earlier job left on the GPU).
* managed memory filled by the CPU (``uvmlab.gaia.compare``): ``read`` into a managed buffer,
  then the kernel faults the pages over; the modelled UVM driver runs that part.

``touched_pages`` gives the file pages a kernel reads and writes, which both baselines need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.gaia.costs import HostCosts
from uvmlab.timing.cost_model import CostProfile
from uvmlab.workload.ir import (
    SEG_RUN,
    Access,
    AllocKind,
    CpuOp,
    KernelOp,
    Workload,
)

_SYSCALL_BYTES = 2 << 20  # read()/write() calls of 2 MiB


def touched_pages(w: Workload, op: KernelOp | CpuOp, alloc: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique pages of allocation ``alloc`` that ``op`` touches, and those it writes."""
    segs = w.segments[op.seg_lo : op.seg_hi]
    allp, wr = [], []
    for s in segs[segs["alloc"] == alloc]:
        if s["kind"] == SEG_RUN:
            p = int(s["start"]) + int(s["stride"]) * np.arange(int(s["count"]), dtype=np.int64)
        else:
            p = w.pool[int(s["start"]) : int(s["start"]) + int(s["count"])].astype(np.int64)
        allp.append(p)
        if s["access"] >= Access.WRITE:
            wr.append(p)
    return _unique(allp), _unique(wr)


def _unique(parts: list[np.ndarray]) -> np.ndarray:
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def runs_of(pages: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique pages as (starts, counts) of contiguous runs."""
    if not len(pages):
        return pages[:0], pages[:0]
    brk = np.flatnonzero(np.diff(pages) != 1) + 1
    starts = pages[np.concatenate([[0], brk])]
    ends = np.concatenate([brk, [len(pages)]])
    return starts, np.diff(np.concatenate([[0], ends]))


class HostPageCache:
    """One file's pages in an ordinary host page cache: which are cached and which dirty."""

    def __init__(self, pages: int, cached: int, dirty: int, host: HostCosts) -> None:
        self.cached = np.zeros(pages, dtype=bool)
        self.cached[:cached] = True
        self.dirty = np.zeros(pages, dtype=bool)
        self.dirty[:dirty] = True
        self.host = host
        self.hits = self.misses = 0
        self.storage_read_bytes = 0

    def lookup(self, pages: np.ndarray) -> float:
        """Find pages; read the missing ones from storage. Returns the time (ns)."""
        miss = pages[~self.cached[pages]]
        self.misses += len(miss)
        self.hits += len(pages) - len(miss)
        self.cached[miss] = True
        self.storage_read_bytes += len(miss) * PAGE_SIZE
        return len(pages) * self.host.lookup_ns + len(miss) * PAGE_SIZE / self.host.storage_read_gbps

    def mmap_access(self, pages: np.ndarray, written: np.ndarray) -> float:
        """CPU touches through the file mapping: misses are read and mapped by a minor fault."""
        before = self.misses
        t = self.lookup(pages)
        self.dirty[written] = True
        return t + (self.misses - before) * self.host.cpu_minor_fault_ns

    def read(self, pages: np.ndarray) -> float:
        """``read()`` of these pages into a user buffer: lookups, then the copy."""
        nbytes = len(pages) * PAGE_SIZE
        calls = -(-nbytes // _SYSCALL_BYTES)
        return self.lookup(pages) + nbytes / self.host.memcpy_gbps + calls * self.host.syscall_ns

    def write(self, pages: np.ndarray) -> float:
        """``write()`` from a user buffer: copy into the page cache, dirty."""
        nbytes = len(pages) * PAGE_SIZE
        calls = -(-nbytes // _SYSCALL_BYTES)
        self.lookup(pages)
        self.dirty[pages] = True
        return nbytes / self.host.memcpy_gbps + calls * self.host.syscall_ns


@dataclass
class ClassicTotals:
    time_ns: float = 0.0
    bytes_htod: int = 0
    bytes_dtoh: int = 0


def run_memcpy(w: Workload, profile: CostProfile, host: HostCosts) -> dict[str, int]:
    """``read`` + ``cudaMemcpy`` for every kernel's file input; returns the comparison's totals."""
    files = [i for i, a in enumerate(w.allocs) if a.kind == AllocKind.FILE]
    caches = {
        i: HostPageCache(w.allocs[i].pages, w.allocs[i].cached_pages, w.allocs[i].dirty_pages, host)
        for i in files
    }
    t = ClassicTotals()
    for op in w.ops:
        if isinstance(op, CpuOp):
            for i in files:
                pages, written = touched_pages(w, op, i)
                t.time_ns += caches[i].mmap_access(pages, written)
            t.time_ns += op.compute_ns
        elif isinstance(op, KernelOp):
            for i in files:
                pages, written = touched_pages(w, op, i)
                t.time_ns += caches[i].read(pages)
                t.time_ns += _memcpy(pages, profile.pinned_htod_gbps, profile)
                t.bytes_htod += len(pages) * PAGE_SIZE
            t.time_ns += op.compute_ns
            for i in files:
                _, written = touched_pages(w, op, i)
                if len(written):
                    t.time_ns += _memcpy(written, profile.pinned_dtoh_gbps, profile)
                    t.bytes_dtoh += len(written) * PAGE_SIZE
                    t.time_ns += caches[i].write(written)
    return {
        "time_ns": int(t.time_ns),
        "bytes_htod": t.bytes_htod,
        "bytes_dtoh": t.bytes_dtoh,
        "host_hits": sum(c.hits for c in caches.values()),
        "host_misses": sum(c.misses for c in caches.values()),
        "storage_read_bytes": sum(c.storage_read_bytes for c in caches.values()),
    }


def _memcpy(pages: np.ndarray, gbps: float, profile: CostProfile) -> float:
    """One cudaMemcpy per contiguous run of pages, from or to pinned memory."""
    starts, _ = runs_of(pages)
    return len(starts) * profile.copy_latency_ns + len(pages) * PAGE_SIZE / gbps
