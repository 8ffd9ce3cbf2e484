"""The workload the model replays from a real program's unified-memory activity (``um_trace``).

:func:`to_workload` turns a :class:`~uvmlab.workload.importers.um_trace.UmTrace` into the IR (design.md §3):

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

import numpy as np

from uvmlab.core.errors import TraceFileError, WorkloadError
from uvmlab.core.sizes import PAGE_SIZE, VA_BLOCK_SIZE
from uvmlab.workload.importers.um_pages import (
    add_events,
    fill_fresh_blocks,
    first_per_page,
    first_time,
    infer_allocs,
    locate,
    lookup_first,
    pages_of,
    regions,
    segments,
)
from uvmlab.workload.importers.um_trace import (
    CAUSE_COHERENCE,
    CAUSE_PREFETCH,
    CAUSE_UNKNOWN,
    CAUSE_USER,
    CPU_FAULT,
    DTOH,
    FAULT_ACCESS,
    GPU_FAULT,
    HTOD,
    TOUCH_MODES,
    ImportReport,
    UmTrace,
)
from uvmlab.workload.ir import (
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
            FAULT_ACCESS[np.minimum(gf["flags"], 4)],
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
        idx, vp = pages_of(mig)
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

    allocs = regions(trace.allocs[trace.allocs["kind"] == AllocKind.MANAGED])
    if len(allocs) == 0:
        _, mpages = pages_of(r[(kind == HTOD) | (kind == DTOH)])
        allocs = infer_allocs(np.concatenate([vpage, mpages]))
        rep.allocations_inferred = True
    # A page copied to the GPU was resident on the CPU before. When no CPU event precedes its
    # first copy, the CPU made it resident without a record (a fault that populated more than
    # its page, a memcpy, a file read): add a CPU write before the op that first moves it, or
    # the replay would populate it on the GPU and copy nothing.
    ev = [t, vpage, proc, acc, from_fault]
    h = r[kind == HTOD]
    hidx, hpage = pages_of(h)
    if len(hpage):
        pages, fh = first_time(hpage, h["start"][hidx])
        fc = lookup_first(pages, vpage[proc == 0], t[proc == 0])
        fg = lookup_first(pages, vpage[proc == 1], t[proc == 1])
        need = fc > fh
        npg, tg = pages[need], np.minimum(fh, fg)[need]
        k = np.searchsorted(kstart, tg, side="right").astype(np.int64) - 1
        tc = np.where(k >= 0, kstart[np.maximum(k, 0)], tg) - np.uint64(1)
        rep.cpu_touches_estimated = add_events(ev, tc, npg, 0)
    # Likewise a page copied to the CPU was resident on the GPU. A kernel that first touches
    # fresh pages makes one fault record per fault group while the driver populates the whole
    # region it services, and moves no bytes: when no GPU event precedes a page's first copy to
    # the CPU, add a GPU write in the kernel of the first GPU event in its 2 MiB block (else in
    # the last kernel started before the copy).
    d = r[kind == DTOH]
    didx, dpage = pages_of(d)
    if len(dpage):
        t, vpage, proc = ev[0], ev[1], ev[2]
        pages, fd = first_time(dpage, d["start"][didx])
        fg = lookup_first(pages, vpage[proc == 1], t[proc == 1])
        moved = fg > fd
        npg, td = pages[moved], fd[moved]
        blk = npg * PAGE_SIZE // VA_BLOCK_SIZE
        fb = lookup_first(blk, vpage[proc == 1] * PAGE_SIZE // VA_BLOCK_SIZE, t[proc == 1])
        k = np.searchsorted(kstart, td, side="right").astype(np.int64) - 1
        tg = np.where(fb < td, fb, kstart[np.maximum(k, 0)] if len(kstart) else td)
        ok = (fb < td) | (k >= 0)
        rep.gpu_touches_estimated = add_events(ev, tg[ok], npg[ok], 1)
    if touches == "migrations":
        rep.block_fill_touches = fill_fresh_blocks(ev, allocs)
    t, vpage, proc, acc, from_fault = ev

    where = locate(allocs, vpage * PAGE_SIZE, t)
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
    u_alloc = locate(allocs, user["address"], user["start"])
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
        k = first_per_page(a, p, ac)
        seg = segments(a[k], p[k], ac[k])
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
