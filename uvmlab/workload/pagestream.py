"""A workload's page stream, for tools outside uvmlab (cache simulators, trace analysers).

:func:`iter_touches` yields the touches of the chosen processors' ops in IR order, in chunks of
at most ``chunk`` touches (never the whole stream at once: a workload of 10⁹ touches streams in
bounded memory). Pages are numbered globally the way the model lays allocations out: each
allocation starts at the next 2 MiB boundary after the previous one (``driver/va_space.py``),
so a page number identifies one 4 KiB page of the workload and 512 consecutive numbers from a
multiple of 512 are one VA block.

:func:`write_libcachesim_csv` writes that stream in libCacheSim's CSV trace layout (header
``time,obj_id,obj_size,op``; ``time`` is the touch's position in the stream, ``obj_id`` the
global page number, ``obj_size`` 4096). Run it with
``cachesim pages.csv csv lru 1gb -t "time-col=1, obj-id-col=2, obj-size-col=3,
obj-id-is-num=true, has-header=true, delimiter=,"`` (libCacheSim's ``doc/quickstart_cachesim.md``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import numpy as np

from uvmlab.core.errors import UvmlabError
from uvmlab.core.sizes import PAGE_SIZE, VA_BLOCK_SIZE
from uvmlab.workload.ir import SEG_RUN, Access, CpuOp, KernelOp, Workload

BLOCK_PAGES = VA_BLOCK_SIZE // PAGE_SIZE
PROCESSORS = ("gpu", "cpu", "all")


def alloc_bases(w: Workload) -> np.ndarray:
    """First global page of each allocation (2 MiB aligned, in declaration order)."""
    base = np.zeros(len(w.allocs), dtype=np.int64)
    nxt = 0
    for i, a in enumerate(w.allocs):
        base[i] = nxt
        nxt += -(-a.pages // BLOCK_PAGES) * BLOCK_PAGES
    return base


def _expand(w: Workload, segs: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = segs["count"].astype(np.int64)
    n = int(counts.sum())
    seg_of = np.repeat(np.arange(len(segs)), counts)
    within = np.arange(n, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    s = segs[seg_of]
    run = s["kind"] == SEG_RUN
    page = np.where(run, s["start"] + within * s["stride"], 0)
    if not run.all():
        idx = ~run
        page[idx] = w.pool[s["start"][idx] + within[idx]]
    return base[s["alloc"]] + page, s["access"]


def iter_touches(
    w: Workload, processors: str = "gpu", chunk: int = 1 << 20
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(op index, global pages, accesses)`` chunks of the chosen processors' touches."""
    if processors not in PROCESSORS:
        raise UvmlabError(f"unknown processors {processors!r}: use {', '.join(PROCESSORS)}")
    want = (KernelOp,) if processors == "gpu" else (CpuOp,) if processors == "cpu" else (KernelOp, CpuOp)
    base = alloc_bases(w)
    for k, op in enumerate(w.ops):
        if not isinstance(op, want):
            continue
        segs = w.segments[op.seg_lo : op.seg_hi]
        lo = 0
        while lo < len(segs):
            # a slice of segments holding at most ``chunk`` touches (one segment may exceed it:
            # split it)
            cum = np.cumsum(segs["count"][lo:])
            hi = lo + max(1, int(np.searchsorted(cum, chunk, side="right")))
            part = segs[lo:hi].copy()
            if part["count"].sum() > chunk:  # one long segment: emit it piecewise
                s = part[0]
                for off in range(0, int(s["count"]), chunk):
                    piece = part[:1].copy()
                    c = min(chunk, int(s["count"]) - off)
                    if s["kind"] == SEG_RUN:
                        piece["start"] = int(s["start"]) + off * int(s["stride"])
                    else:
                        piece["start"] = int(s["start"]) + off
                    piece["count"] = c
                    yield (k, *_expand(w, piece, base))
            else:
                yield (k, *_expand(w, part, base))
            lo = hi


def write_libcachesim_csv(w: Workload, path: str | os.PathLike[str], processors: str = "gpu") -> int:
    """Write the page stream as a libCacheSim CSV trace (atomically, mode 0644); returns rows."""
    p = os.fspath(path)
    d = os.path.dirname(os.path.abspath(p))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{os.path.basename(p)}.", suffix=".tmp")
    rows = 0
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write("time,obj_id,obj_size,op\n")
            for _, pages, acc in iter_touches(w, processors):
                t = np.arange(rows, rows + len(pages), dtype=np.int64)
                op = np.where(acc >= Access.WRITE, "write", "read")
                lines = np.char.add(
                    np.char.add(
                        np.char.add(t.astype(str), ","), np.char.add(pages.astype(str), f",{PAGE_SIZE},")
                    ),
                    op,
                )
                f.write("\n".join(lines.tolist()))
                f.write("\n")
                rows += len(pages)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return rows
