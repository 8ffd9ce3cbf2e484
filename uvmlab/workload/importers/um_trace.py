"""A real program's unified-memory activity, and the workload the model replays from it.

Every importer fills one :class:`UmTrace`: the program's unified-memory records in the layout of
CUPTI's ``CUpti_ActivityUnifiedMemoryCounter3`` (kind, flags, src, dst, value, start, end,
address; the CUPTI Activity API reference), its kernels (start, end, name, device) and, when the
source has them, its allocations (address, bytes, kind, allocation and release time).

:func:`to_workload` turns that into the IR (design.md §3):

* **allocations**: one per allocation record; without allocation records, one per run of
  contiguous 2 MiB blocks that the program touched (the driver's VA-block size, so pages keep
  their place inside their block);
* **kernels**: one ``kernel`` op per kernel record, in start order; a GPU page fault (or a
  migration to the GPU) belongs to the last kernel that started at or before it;
* **CPU phases**: CPU page faults (and fault-driven migrations to the CPU) between two kernel
  starts become one ``cpu`` op before the later kernel; explicit migrations (cause *user*:
  ``cudaMemPrefetchAsync``) become ``prefetch`` ops; releases become ``free`` ops.

What a fault trace cannot tell (docs/importing.md): a touch of a page that is already resident
makes no record, so it is invisible. The import estimates the touches that matter for migration:
by default every page migrated *to* a processor for a fault or by the driver's prefetcher while a
kernel (or CPU phase) runs counts as touched by it, at the time of its migration
(``touches="migrations"``); ``touches="faults"`` keeps only faulting pages, for studies of the
prefetcher itself. Re-reads of resident data and compute between faults are not in any record: a
kernel's ``compute_ns`` is estimated from the fastest run of a kernel of the same name (fault
stalls lengthen runs, never shorten them) and CPU phases get none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uvmlab.core.errors import TraceFileError, WorkloadError
from uvmlab.core.sizes import PAGE_SIZE, VA_BLOCK_SIZE
from uvmlab.workload.ir import (
    SEG_RUN,
    SEGMENT_DTYPE,
    Access,
    Alloc,
    AllocKind,
    CpuOp,
    FreeOp,
    KernelOp,
    PrefetchOp,
    Workload,
)

#: CUpti_ActivityUnifiedMemoryCounterKind
HTOD, DTOH, CPU_FAULT, GPU_FAULT, THRASHING, THROTTLING, REMOTE_MAP = 1, 2, 3, 4, 5, 6, 7
#: CUpti_ActivityUnifiedMemoryMigrationCause
CAUSE_UNKNOWN, CAUSE_USER, CAUSE_COHERENCE, CAUSE_PREFETCH, CAUSE_EVICTION = 0, 1, 2, 3, 4
CAUSE_ACCESS_COUNTERS = 5
#: CUpti_ActivityUnifiedMemoryAccessType -> the IR's access (prefetch and unknown read as read)
_FAULT_ACCESS = np.array([Access.READ, Access.READ, Access.WRITE, Access.ATOMIC, Access.READ], dtype=np.uint8)

UM_RECORD_DTYPE = np.dtype(
    [
        ("kind", "u1"),
        ("flags", "<u4"),
        ("src", "<u4"),
        ("dst", "<u4"),
        ("value", "<u8"),
        ("start", "<u8"),
        ("end", "<u8"),
        ("address", "<u8"),
    ]
)
KERNEL_DTYPE = np.dtype([("start", "<u8"), ("end", "<u8"), ("name", "<i4"), ("device", "<i4")])
#: ``end`` = release time, 0 when the allocation was never released inside the trace
ALLOC_DTYPE = np.dtype(
    [("address", "<u8"), ("bytes", "<u8"), ("kind", "u1"), ("start", "<u8"), ("end", "<u8")]
)
VA_BLOCK = VA_BLOCK_SIZE
TOUCH_MODES = ("migrations", "faults")


@dataclass
class UmTrace:
    """Unified-memory records, kernels and allocations of one real run (any importer's output)."""

    records: np.ndarray  # UM_RECORD_DTYPE
    kernels: np.ndarray  # KERNEL_DTYPE
    kernel_names: list[str]
    allocs: np.ndarray  # ALLOC_DTYPE, may be empty
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def real_totals(self) -> dict[str, int]:
        """What the trace itself says happened (for comparing the replay with the real run)."""
        r = self.records
        k, v = r["kind"], r["value"]
        out = {
            "bytes_htod": int(v[k == HTOD].sum(dtype=np.uint64)),
            "bytes_dtoh": int(v[k == DTOH].sum(dtype=np.uint64)),
            "gpu_fault_groups": int(v[k == GPU_FAULT].sum(dtype=np.uint64)),
            "cpu_faults": int((k == CPU_FAULT).sum()),
            "kernels": len(self.kernels),
            "kernel_time_ns": int((self.kernels["end"] - self.kernels["start"]).sum()),
        }
        times = np.concatenate([r["start"], self.kernels["start"], self.kernels["end"]])
        out["span_ns"] = int(times.max() - times.min()) if len(times) else 0
        return out


@dataclass
class ImportReport:
    """What the import kept, what it estimated and what it could not place."""

    gpu_fault_records: int = 0
    cpu_fault_records: int = 0
    migration_records: int = 0
    touches_from_faults: int = 0
    touches_estimated: int = 0  # pages counted as touched because they migrated (see module doc)
    cpu_touches_estimated: int = 0  # CPU writes added for pages first seen moving to the GPU
    gpu_touches_estimated: int = 0  # GPU writes added for pages first seen moving to the CPU
    block_fill_touches: int = 0  # pages of fresh blocks counted as touched by their first fault
    records_outside_allocations: int = 0
    allocations_inferred: bool = False
    kernels: int = 0
    kernels_with_touches: int = 0
    cpu_ops: int = 0
    prefetch_ops: int = 0
    frees: int = 0
    touch_mode: str = "migrations"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def lines(self) -> list[str]:
        lost = (
            "touches of resident pages make no record and are not in the workload; "
            "kernel compute time is estimated (docs/importing.md)"
        )
        out = [
            f"{self.kernels} kernels ({self.kernels_with_touches} with page touches), "
            f"{self.cpu_ops} CPU phases, {self.prefetch_ops} prefetches, {self.frees} frees",
            f"touches: {self.touches_from_faults:,} from fault records, "
            f"{self.touches_estimated:,} estimated from migrations ({self.touch_mode}), "
            f"{self.cpu_touches_estimated:,} CPU and {self.gpu_touches_estimated:,} GPU writes "
            "added for pages first seen moving away (populated without a record), "
            f"{self.block_fill_touches:,} pages of fresh blocks filled by their first fault",
        ]
        if self.allocations_inferred:
            out.append("no allocation records: allocations inferred from the touched 2 MiB blocks")
        if self.records_outside_allocations:
            out.append(
                f"{self.records_outside_allocations:,} records fell outside every known "
                "allocation and were dropped"
            )
        out.append(lost)
        return out


def _pages_of(records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(record index, virtual page number) of every page a migration record covers."""
    first = records["address"] // PAGE_SIZE
    last = (records["address"] + np.maximum(records["value"], 1) - 1) // PAGE_SIZE
    n = (last - first + 1).astype(np.int64)
    idx = np.repeat(np.arange(len(records)), n)
    offs = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    return idx, first[idx].astype(np.int64) + offs


def _first_time(pages: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct page and the earliest time it appears."""
    o = np.argsort(t, kind="stable")
    uniq, first = np.unique(pages[o], return_index=True)
    return uniq, t[o][first]


def _lookup_first(pages: np.ndarray, ev_pages: np.ndarray, ev_t: np.ndarray) -> np.ndarray:
    """Earliest time of each of ``pages`` among the events (the maximum uint64 when absent)."""
    uniq, first = _first_time(ev_pages, ev_t)
    out = np.full(len(pages), np.iinfo(np.uint64).max, dtype=np.uint64)
    if len(uniq):
        i = np.minimum(np.searchsorted(uniq, pages), len(uniq) - 1)
        hit = uniq[i] == pages
        out[hit] = first[i[hit]]
    return out


def _add_events(ev: list[np.ndarray], t: np.ndarray, pages: np.ndarray, proc: int) -> int:
    """Append estimated writes (time, page) by ``proc`` to the event arrays, kept in time order."""
    if len(pages) == 0:
        return 0
    n = len(pages)
    add = [
        t.astype(np.uint64),
        pages.astype(np.int64),
        np.full(n, proc, np.uint8),
        np.full(n, Access.WRITE, np.uint8),
        np.zeros(n, bool),
    ]
    merged = [np.concatenate([a, b]) for a, b in zip(ev, add, strict=True)]
    o = np.lexsort((~merged[4], merged[0]))
    ev[:] = [x[o] for x in merged]
    return n


def _fill_fresh_blocks(ev: list[np.ndarray], allocs: np.ndarray) -> int:
    """A GPU fault that is the first event in its 2 MiB block: count the block's pages (inside
    its allocation) as touched by that kernel, at the fault's time.

    A kernel that first touches fresh memory leaves a few fault records per block (one per fault
    group) while the driver populates the region it services, and no migration record, since
    nothing moves: without this, a kernel writing a fresh 64 MiB array would replay as a few
    dozen touches. Kernels that write fresh arrays write them whole; a sparse kernel on fresh
    memory is over-counted (time and footprint, not bytes moved).
    """
    t, vpage, proc, _, fault = ev
    blk = vpage * PAGE_SIZE // VA_BLOCK
    _, first = np.unique(blk, return_index=True)  # events are in time order
    first = first[(proc[first] == 1) & fault[first]]
    if len(first) == 0:
        return 0
    where = _locate(allocs, vpage[first] * PAGE_SIZE, t[first])
    first, where = first[where >= 0], where[where >= 0]
    lo = np.maximum(
        blk[first] * (VA_BLOCK // PAGE_SIZE), (allocs["address"][where] // PAGE_SIZE).astype(np.int64)
    )
    hi = np.minimum(
        (blk[first] + 1) * (VA_BLOCK // PAGE_SIZE),
        ((allocs["address"][where] + allocs["bytes"][where]) // PAGE_SIZE).astype(np.int64),
    )
    n = np.maximum(hi - lo, 0)
    idx = np.repeat(np.arange(len(first)), n)
    pages = lo[idx] + np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    return _add_events(ev, t[first][idx], pages, 1)


def _regions(allocs: np.ndarray) -> np.ndarray:
    """Allocations as the model's VA ranges: each starts at its 2 MiB block boundary, and
    allocations that share a block are one range.

    The CUDA driver hands small managed allocations out of shared 2 MiB blocks (PyTorch's
    tensors of a few KiB start mid-page), while the model places every range at a 2 MiB-aligned
    base; rounding down keeps each page at its offset inside its real block, so the prefetcher
    sees the same blocks. A range lives from the first allocation in it to the last release.
    """
    if len(allocs) == 0:
        return allocs
    lo = allocs["address"] // VA_BLOCK * VA_BLOCK
    hi = -(-(allocs["address"] + np.maximum(allocs["bytes"], 1)) // PAGE_SIZE) * PAGE_SIZE
    o = np.argsort(lo, kind="stable")
    lo, hi, a = lo[o], hi[o], allocs[o]
    # a new range starts where an allocation begins in a block past every earlier one's end
    reach = np.maximum.accumulate(-(-hi // VA_BLOCK) * VA_BLOCK)
    new = np.ones(len(lo), dtype=bool)
    new[1:] = lo[1:] >= reach[:-1]
    gid = np.cumsum(new) - 1
    n = int(gid[-1]) + 1
    out = np.zeros(n, dtype=ALLOC_DTYPE)
    out["address"] = lo[new]
    end = np.zeros(n, dtype=np.uint64)
    np.maximum.at(end, gid, hi)
    out["bytes"] = end - out["address"]
    out["kind"] = AllocKind.MANAGED
    out["start"] = np.full(n, np.iinfo(np.uint64).max, dtype=np.uint64)
    np.minimum.at(out["start"], gid, a["start"])
    rel = np.zeros(n, dtype=np.uint64)
    np.maximum.at(rel, gid, a["end"])
    never = np.zeros(n, dtype=bool)
    np.logical_or.at(never, gid, a["end"] == 0)
    out["end"] = np.where(never, 0, rel)
    return out


def _infer_allocs(vpages: np.ndarray) -> np.ndarray:
    """Allocations covering the touched pages: runs of contiguous touched 2 MiB blocks."""
    blocks = np.unique(vpages * PAGE_SIZE // VA_BLOCK)
    if len(blocks) == 0:
        return np.zeros(0, dtype=ALLOC_DTYPE)
    cut = np.flatnonzero(np.diff(blocks) != 1) + 1
    firsts = blocks[np.r_[0, cut]]
    lasts = blocks[np.r_[cut - 1, len(blocks) - 1]]
    out = np.zeros(len(firsts), dtype=ALLOC_DTYPE)
    out["address"] = firsts * VA_BLOCK
    out["bytes"] = (lasts - firsts + 1) * VA_BLOCK
    out["kind"] = AllocKind.MANAGED
    return out


def _locate(allocs: np.ndarray, addr: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the allocation live at time ``t`` that holds ``addr`` (-1 if none).

    Allocations are sorted by (address, start). A released range can be handed out again at the
    same address, so among allocations with the same base the latest one made at or before ``t``
    is the candidate; the rare event that misses it is resolved one by one.
    """
    if len(allocs) == 0:
        return np.full(len(addr), -1, dtype=np.int64)
    base = allocs["address"]
    i = np.searchsorted(base, addr, side="right").astype(np.int64) - 1
    ok = i >= 0
    j = np.where(ok, i, 0)
    inside = ok & (addr < base[j] + allocs["bytes"][j])
    live = (allocs["start"][j] <= t) & ((allocs["end"][j] == 0) | (t <= allocs["end"][j]))
    good = inside & live
    out = np.where(good, i, -1)
    # a base handed out again: the candidates are the allocations made at that same base
    for e in np.flatnonzero(~good & ok):
        lo = int(np.searchsorted(base, base[i[e]], side="left"))
        cand = np.arange(lo, int(i[e]) + 1)
        hit = cand[
            (addr[e] < base[cand] + allocs["bytes"][cand])
            & (allocs["start"][cand] <= t[e])
            & ((allocs["end"][cand] == 0) | (t[e] <= allocs["end"][cand]))
        ]
        if len(hit):
            out[e] = hit[-1]
    return out


def _segments(alloc: np.ndarray, page: np.ndarray, access: np.ndarray) -> np.ndarray:
    """Touches (in order) as run segments: consecutive pages of one allocation and access."""
    n = len(page)
    if n == 0:
        return np.zeros(0, dtype=SEGMENT_DTYPE)
    brk = np.ones(n, dtype=bool)
    brk[1:] = (alloc[1:] != alloc[:-1]) | (access[1:] != access[:-1]) | (page[1:] != page[:-1] + 1)
    starts = np.flatnonzero(brk)
    counts = np.diff(np.r_[starts, n])
    seg = np.zeros(len(starts), dtype=SEGMENT_DTYPE)
    seg["alloc"], seg["kind"], seg["access"] = alloc[starts], SEG_RUN, access[starts]
    seg["start"], seg["count"], seg["stride"] = page[starts], counts, 1
    return seg


def _first_per_page(alloc: np.ndarray, page: np.ndarray, access: np.ndarray) -> np.ndarray:
    """Keep each (allocation, page) once, at its first touch, with its most intrusive access."""
    key = alloc.astype(np.int64) << 40 | page.astype(np.int64)
    uniq, first, inv = np.unique(key, return_index=True, return_inverse=True)
    strongest = np.zeros(len(uniq), dtype=np.uint8)
    np.maximum.at(strongest, inv, access)
    keep = np.sort(first)
    access[keep] = strongest[inv[keep]]
    return keep


def to_workload(
    trace: UmTrace, name: str, *, touches: str = "migrations", gpu: int = 1
) -> tuple[Workload, ImportReport]:
    """The workload the model replays for ``trace`` (see the module docstring), and a report."""
    if touches not in TOUCH_MODES:
        raise WorkloadError(f"unknown touch mode {touches!r}: use {' or '.join(TOUCH_MODES)}")
    rep = ImportReport(touch_mode=touches)
    r = trace.records
    kind, cause = r["kind"], r["flags"]
    rep.gpu_fault_records = int((kind == GPU_FAULT).sum())
    rep.cpu_fault_records = int((kind == CPU_FAULT).sum())
    rep.migration_records = int(((kind == HTOD) | (kind == DTOH)).sum())

    # touch events: (time, virtual page, processor 0 = CPU / 1 = GPU, access, from a fault?)
    parts = []
    gf = r[kind == GPU_FAULT]
    parts.append(
        (
            gf["start"],
            gf["address"] // PAGE_SIZE,
            np.ones(len(gf), np.uint8),
            _FAULT_ACCESS[np.minimum(gf["flags"], 4)],
            np.ones(len(gf), bool),
        )
    )
    cf = r[kind == CPU_FAULT]
    parts.append(
        (
            cf["start"],
            cf["address"] // PAGE_SIZE,
            np.zeros(len(cf), np.uint8),
            np.full(len(cf), Access.WRITE, np.uint8),
            np.ones(len(cf), bool),
        )
    )
    if touches == "migrations":
        driven = ((kind == HTOD) | (kind == DTOH)) & (
            (cause == CAUSE_COHERENCE) | (cause == CAUSE_PREFETCH) | (cause == CAUSE_UNKNOWN)
        )
        mig = r[driven]
        idx, vp = _pages_of(mig)
        parts.append(
            (
                mig["start"][idx],
                vp,
                (mig["kind"][idx] == HTOD).astype(np.uint8),
                np.full(len(vp), Access.READ, np.uint8),
                np.zeros(len(vp), bool),
            )
        )
    # plain ndarray annotations: the arrays are re-sorted and re-bound below
    t: np.ndarray = np.concatenate([p[0] for p in parts]).astype(np.uint64)
    vpage: np.ndarray = np.concatenate([p[1] for p in parts]).astype(np.int64)
    proc: np.ndarray = np.concatenate([p[2] for p in parts])
    acc: np.ndarray = np.concatenate([p[3] for p in parts])
    from_fault: np.ndarray = np.concatenate([p[4] for p in parts])
    # CPU faults carry no access type: a first touch initialises the page (write), later ones
    # read it back (the common pattern: fill on the CPU, compute on the GPU, read the result).
    order = np.lexsort((~from_fault, t))
    t, vpage, proc, acc, from_fault = (x[order] for x in (t, vpage, proc, acc, from_fault))
    cpu = proc == 0
    if cpu.any():
        seen_before = np.zeros(len(vpage), dtype=bool)
        _, first = np.unique(vpage, return_index=True)
        seen_before[:] = True
        seen_before[first] = False
        acc[cpu & seen_before & from_fault] = Access.READ

    # user migrations (cudaMemPrefetchAsync and friends) become prefetch ops
    user = r[((kind == HTOD) | (kind == DTOH)) & (cause == CAUSE_USER)]
    kern = np.sort(trace.kernels, order=["start"])
    kstart = kern["start"]
    if len(kern) == 0 and (proc == 1).any():
        raise TraceFileError(
            f"{trace.source or 'trace'}: GPU page faults but no kernel records; "
            "export with CUDA trace on (nsys --trace=cuda)"
        )

    allocs = _regions(trace.allocs[trace.allocs["kind"] == AllocKind.MANAGED])
    if len(allocs) == 0:
        _, mpages = _pages_of(r[(kind == HTOD) | (kind == DTOH)])
        allocs = _infer_allocs(np.concatenate([vpage, mpages]))
        rep.allocations_inferred = True
    # A page copied to the GPU was resident on the CPU before. When no CPU event precedes its
    # first copy, the CPU made it resident without a record (a fault that populated more than
    # its page, a memcpy, a file read): add a CPU write before the op that first moves it, or
    # the replay would populate it on the GPU and copy nothing.
    ev = [t, vpage, proc, acc, from_fault]
    h = r[kind == HTOD]
    hidx, hpage = _pages_of(h)
    if len(hpage):
        pages, fh = _first_time(hpage, h["start"][hidx])
        fc = _lookup_first(pages, vpage[proc == 0], t[proc == 0])
        fg = _lookup_first(pages, vpage[proc == 1], t[proc == 1])
        need = fc > fh
        npg, tg = pages[need], np.minimum(fh, fg)[need]
        k = np.searchsorted(kstart, tg, side="right").astype(np.int64) - 1
        tc = np.where(k >= 0, kstart[np.maximum(k, 0)], tg) - np.uint64(1)
        rep.cpu_touches_estimated = _add_events(ev, tc, npg, 0)
    # Likewise a page copied to the CPU was resident on the GPU. A kernel that first touches
    # fresh pages makes one fault record per fault group while the driver populates the whole
    # region it services, and moves no bytes: when no GPU event precedes a page's first copy to
    # the CPU, add a GPU write in the kernel of the first GPU event in its 2 MiB block (else in
    # the last kernel started before the copy).
    d = r[kind == DTOH]
    didx, dpage = _pages_of(d)
    if len(dpage):
        t, vpage, proc = ev[0], ev[1], ev[2]
        pages, fd = _first_time(dpage, d["start"][didx])
        fg = _lookup_first(pages, vpage[proc == 1], t[proc == 1])
        moved = fg > fd
        npg, td = pages[moved], fd[moved]
        blk = npg * PAGE_SIZE // VA_BLOCK
        fb = _lookup_first(blk, vpage[proc == 1] * PAGE_SIZE // VA_BLOCK, t[proc == 1])
        k = np.searchsorted(kstart, td, side="right").astype(np.int64) - 1
        tg = np.where(fb < td, fb, kstart[np.maximum(k, 0)] if len(kstart) else td)
        ok = (fb < td) | (k >= 0)
        rep.gpu_touches_estimated = _add_events(ev, tg[ok], npg[ok], 1)
    if touches == "migrations":
        rep.block_fill_touches = _fill_fresh_blocks(ev, allocs)
    t, vpage, proc, acc, from_fault = ev

    where = _locate(allocs, vpage * PAGE_SIZE, t)
    rep.records_outside_allocations = int((where < 0).sum())
    keep = where >= 0
    t, vpage, proc, acc, from_fault, where = (x[keep] for x in (t, vpage, proc, acc, from_fault, where))
    page = vpage - (allocs["address"][np.maximum(where, 0)] // PAGE_SIZE).astype(np.int64)

    nk = len(kern)
    # GPU touches: the last kernel started at or before them; CPU events: the gap before the
    # next kernel start (gap g runs before kernel g; gap nk after the last kernel)
    gslot = np.searchsorted(kstart, t, side="right").astype(np.int64)
    kslot = np.maximum(gslot - 1, 0)
    gpu_ev = proc == 1

    # kernel compute: the fastest run of a kernel of the same name (fault stalls only lengthen)
    dur = (kern["end"] - kern["start"]).astype(np.int64)
    names = kern["name"]
    fastest: dict[int, int] = {}
    for nm, d in zip(names.tolist(), dur.tolist(), strict=True):
        fastest[nm] = min(d, fastest.get(nm, d))

    seg_parts: list[np.ndarray] = []
    n_seg = 0
    ops: list = []
    n_alloc = len(allocs)
    # last gap in which each allocation is used, for placing its release
    last_gap = np.full(n_alloc, -1, dtype=np.int64)
    np.maximum.at(last_gap, where[gpu_ev], kslot[gpu_ev] + 1)
    np.maximum.at(last_gap, where[~gpu_ev], gslot[~gpu_ev])
    u_gap = np.searchsorted(kstart, user["start"], side="right").astype(np.int64)
    u_alloc = _locate(allocs, user["address"], user["start"])
    rep.records_outside_allocations += int((u_alloc < 0).sum())
    np.maximum.at(last_gap, u_alloc[u_alloc >= 0], u_gap[u_alloc >= 0])
    free_gap = np.full(n_alloc, -1, dtype=np.int64)
    released = allocs["end"] > 0
    free_gap[released] = np.maximum(
        np.searchsorted(kstart, allocs["end"][released], side="right"), last_gap[released]
    )

    def add_touch_op(sel: np.ndarray, make) -> None:
        nonlocal n_seg
        a, p, ac = where[sel], page[sel], acc[sel].copy()
        k = _first_per_page(a, p, ac)
        seg = _segments(a[k], p[k], ac[k])
        seg_parts.append(seg)
        ops.append(make(n_seg, n_seg + len(seg)))
        n_seg += len(seg)

    # events sorted by time already; split them by slot with one stable sort
    cpu_idx = np.flatnonzero(~gpu_ev)
    cpu_idx = cpu_idx[np.argsort(gslot[cpu_idx], kind="stable")]
    cpu_bounds = np.searchsorted(gslot[cpu_idx], np.arange(nk + 2))
    gpu_idx = np.flatnonzero(gpu_ev)
    gpu_idx = gpu_idx[np.argsort(kslot[gpu_idx], kind="stable")]
    gpu_bounds = np.searchsorted(kslot[gpu_idx], np.arange(nk + 1))
    for g in range(nk + 1):
        # the gap before kernel g: CPU touches and user prefetches in time order
        sel = cpu_idx[cpu_bounds[g] : cpu_bounds[g + 1]]
        ups = np.flatnonzero((u_gap == g) & (u_alloc >= 0))
        cuts = [(int(user["start"][u]), int(u)) for u in ups]
        pos = 0
        phase = 0
        for ts, u in cuts + [(None, None)]:
            end = len(sel) if ts is None else int(np.searchsorted(t[sel], ts, side="left"))
            if end > pos:
                phase += 1
                add_touch_op(
                    sel[pos:end],
                    lambda lo, hi, g=g, ph=phase: CpuOp(f"cpu{g}" + (f".{ph}" if ph > 1 else ""), lo, hi, 0),
                )
                rep.cpu_ops += 1
            pos = end
            if u is not None:
                ai = int(u_alloc[u])
                pf_first = int(user["address"][u]) // PAGE_SIZE - int(allocs["address"][ai]) // PAGE_SIZE
                pf_n = -(-(int(user["address"][u]) % PAGE_SIZE + int(user["value"][u])) // PAGE_SIZE)
                pf_n = min(pf_n, -(-int(allocs["bytes"][ai]) // PAGE_SIZE) - pf_first)
                dst = 0 if int(user["kind"][u]) == DTOH else gpu
                prev = ops[-1] if ops else None
                if (
                    isinstance(prev, PrefetchOp)
                    and prev.alloc == ai
                    and prev.processor == dst
                    and prev.start_page + prev.num_pages == pf_first
                ):
                    ops[-1] = PrefetchOp(ai, dst, prev.start_page, prev.num_pages + pf_n)
                else:
                    ops.append(PrefetchOp(ai, dst, pf_first, pf_n))
                    rep.prefetch_ops += 1
        for fi in np.flatnonzero(free_gap == g).tolist():
            ops.append(FreeOp(int(fi)))
            rep.frees += 1
        if g == nk:
            break
        sel = gpu_idx[gpu_bounds[g] : gpu_bounds[g + 1]]
        kname = trace.kernel_names[names[g]] if 0 <= names[g] < len(trace.kernel_names) else "kernel"
        if len(sel):
            rep.kernels_with_touches += 1
        add_touch_op(
            sel, lambda lo, hi, g=g, kname=kname: KernelOp(kname, gpu, lo, hi, int(fastest[int(names[g])]))
        )
    rep.kernels = nk
    rep.touches_from_faults = int(from_fault.sum())
    rep.touches_estimated = (
        int((~from_fault).sum())
        - rep.cpu_touches_estimated
        - rep.gpu_touches_estimated
        - rep.block_fill_touches
    )

    segs = np.concatenate(seg_parts) if seg_parts else np.zeros(0, dtype=SEGMENT_DTYPE)
    alloc_objs = [
        Alloc(f"a{i}@0x{int(a['address']):x}", int(a["bytes"]), AllocKind.MANAGED)
        for i, a in enumerate(allocs)
    ]
    if not alloc_objs:
        raise TraceFileError(
            f"{trace.source or 'trace'}: no unified-memory activity to import "
            "(no page faults or migrations on managed memory)"
        )
    params = {
        "imported_from": os.path.basename(trace.source) if trace.source else "",
        "touch_mode": touches,
        **{
            f"import_{k}": v
            for k, v in rep.as_dict().items()
            if isinstance(v, int | bool) and not isinstance(v, str)
        },
    }
    w = Workload(name, alloc_objs, ops, segs, np.zeros(0, dtype=np.uint32), 0, params)
    w.validate()
    return w, rep
