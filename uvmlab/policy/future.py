"""The trace's future, for offline-bound policies (Belady): when is each VA block touched next?

The workload's GPU touch stream is expanded once, cut into runs of consecutive touches to one
VA block, and indexed per block. Positions count touches from the start of the workload in IR
order, CPU phases included, which is how the engine counts them (``Engine.touches``).

"Now" while a kernel runs is the set of touches not yet done: the stalled ones, waiting for a
fault, at their own positions, and every touch from the issue frontier (the first touch no
thread has issued yet) on. A block's next use is the earliest of those that touches it. This is
the textbook reference string; with tens of thousands of threads in flight the driver serves
stalled touches in fault-buffer order rather than trace order, which is why the model's Belady
is a bound in practice rather than a proof. No real driver can know any of this.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from uvmlab.driver.compiled.scan import expand, segment_columns
from uvmlab.workload.ir import CpuOp, KernelOp, Workload

INF = np.iinfo(np.int64).max
_CHUNK = 1 << 18


@njit(cache=True)
def _next_use(blocks, now, ptr, starts, ends, out):
    for i in range(len(blocks)):
        b = blocks[i]
        if b < 0 or b + 1 >= len(ptr):
            out[i] = INF
            continue
        lo = ptr[b]
        hi = ptr[b + 1]
        # first run of b that ends after now (runs of one block never overlap: ends ascend)
        while lo < hi:
            mid = (lo + hi) >> 1
            if ends[mid] > now:
                hi = mid
            else:
                lo = mid + 1
        if lo == ptr[b + 1]:
            out[i] = INF
        else:
            out[i] = max(starts[lo], now)


class FutureOracle:
    def __init__(self, workload: Workload, alloc_base: np.ndarray, n_blocks: int) -> None:
        run_start, run_end, run_block = [], [], []
        pos = 0
        page = np.empty(_CHUNK, dtype=np.int64)
        acc = np.empty(_CHUNK, dtype=np.uint8)
        for op in workload.ops:
            if not isinstance(op, KernelOp | CpuOp):
                continue
            total = workload.touch_count(op)
            if isinstance(op, KernelOp) and total:
                cols = segment_columns(workload.segments[op.seg_lo : op.seg_hi])
                seg_i = off = 0
                at = pos
                last = -1
                starts, blocks = [], []
                while True:
                    seg_i, off, n = expand(*cols, workload.pool, alloc_base, seg_i, off, page, acc)
                    if n == 0:
                        break
                    b = page[:n] >> 9
                    change = np.empty(n, dtype=bool)
                    change[0] = b[0] != last
                    np.not_equal(b[1:], b[:-1], out=change[1:])
                    idx = np.flatnonzero(change)
                    starts.append(idx + at)
                    blocks.append(b[idx])
                    last = int(b[-1])
                    at += n
                s = np.concatenate(starts)
                run_start.append(s)
                run_end.append(np.append(s[1:], pos + total))
                run_block.append(np.concatenate(blocks))
            pos += total
        self.total_touches = pos
        if run_start:
            s, e, b = (np.concatenate(x) for x in (run_start, run_end, run_block))
        else:
            s = e = b = np.zeros(0, dtype=np.int64)
        order = np.lexsort((s, b))
        self.starts = np.ascontiguousarray(s[order], dtype=np.int64)
        self.ends = np.ascontiguousarray(e[order], dtype=np.int64)
        self.ptr = np.searchsorted(b[order], np.arange(n_blocks + 1)).astype(np.int64)

    def next_use(self, blocks: np.ndarray, now: int) -> np.ndarray:
        blocks = np.asarray(blocks, dtype=np.int64).ravel()
        out = np.empty(len(blocks), dtype=np.int64)
        _next_use(blocks, int(now), self.ptr, self.starts, self.ends, out)
        return out


def position(engine: Any) -> int:
    """The engine's issue frontier: the first touch of the workload not yet issued."""
    k = getattr(engine, "kernel", None)
    if k is None or k.completed >= k.total:
        return int(engine.touches)
    op_base = int(engine.touches) - int(k.completed)  # all earlier ops ran to completion
    return op_base + int(k.base) + int(k.pos)


def stalled(engine: Any) -> tuple[np.ndarray, np.ndarray]:
    """Blocks that stalled threads wait for, and the earliest workload position among the
    stalled touches of each (sorted by block)."""
    k = getattr(engine, "kernel", None)
    if k is None or k.completed >= k.total or not len(k.st_page):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    op_base = int(engine.touches) - int(k.completed)
    blocks = np.asarray(k.st_page, dtype=np.int64) >> 9
    pos = np.asarray(k.st_pos, dtype=np.int64) + op_base
    order = np.lexsort((pos, blocks))
    ub, first = np.unique(blocks[order], return_index=True)
    return ub, pos[order][first]
