"""The GPU's replayable fault buffer as the driver reads it: entries written over time, a PUT
pointer read at fetch, and the two flush modes of BATCH_FLUSH (uvm_gpu_replayable_faults.c).

Each entry carries the time the GPU writes it (``write_ns``). The driver sees only what is
written by the time it reads PUT, and reads PUT only when it has consumed everything up to the
PUT it read last (``fetch_fault_buffer_entries``: ``cached_put`` is refreshed when
``get == cached_put``). After a batch, ``fault_buffer_flush_locked`` discards entries up to
``cached_put`` (CACHED_PUT) or re-reads PUT first and discards everything written so far
(UPDATE_PUT); BATCH_FLUSH picks UPDATE_PUT when the batch's duplicates exceed
``uvm_perf_fault_replay_update_put_ratio`` percent of its fetched entries
(``uvm_parent_gpu_service_replayable_faults``). Entries written after the PUT the driver read
survive a CACHED_PUT flush and open the next batch, while the warps that wrote them fault again
at the replay: "the replay operation will make them show up again in the buffer as duplicates"
(the driver's comment on the ratio).
"""

from __future__ import annotations

import numpy as np
from numba import njit

CACHED_PUT, UPDATE_PUT = 0, 1  # UVM_GPU_BUFFER_FLUSH_MODE_* (uvm_gpu.h)


def flush_mode(num_duplicate_faults: int, num_cached_faults: int, update_put_ratio: int) -> int:
    """BATCH_FLUSH's choice after a batch (``uvm_parent_gpu_service_replayable_faults``):
    UPDATE_PUT when duplicates * 100 > fetched entries * ratio, else CACHED_PUT."""
    return UPDATE_PUT if num_duplicate_faults * 100 > num_cached_faults * update_put_ratio else CACHED_PUT


class FaultBuffer:
    """A FIFO of (page, access, uTLB, write time) entries, in the order the GPU writes them.

    Entries beyond ``capacity`` are dropped; the warp that raised them stays stalled and faults
    again at the next replay (the hardware's overflow behaviour as seen by the driver).
    """

    def __init__(self, capacity: int, arrays: tuple[np.ndarray, ...] | None = None) -> None:
        # ``arrays``: (page, access, utlb, write_ns) of ``capacity`` entries to use (their
        # contents are not read before they are written), else new ones
        self.capacity = capacity
        self.page, self.access, self.utlb, self.write_ns = arrays or (
            np.empty(capacity, dtype=np.int64),
            np.empty(capacity, dtype=np.uint8),
            np.empty(capacity, dtype=np.int32),
            np.empty(capacity, dtype=np.int64),
        )
        self.n = 0  # entries from index 0 (written or still to be written); fetch shifts the rest down
        self.overflows = 0
        self.cached_put_ns = -1  # when the driver last read PUT: entries written by then are before it

    def push(self, page: np.ndarray, access: np.ndarray, utlb: np.ndarray, write_ns: np.ndarray) -> None:
        """Add entries the GPU writes at ``write_ns`` (ascending); keep the buffer in write order."""
        room = self.capacity - self.n
        k = min(room, len(page))
        lo, hi = self.n, self.n + k
        self.page[lo:hi] = page[:k]
        self.access[lo:hi] = access[:k]
        self.utlb[lo:hi] = utlb[:k]
        self.write_ns[lo:hi] = write_ns[:k]
        self.n = hi
        self.overflows += len(page) - k
        if k and lo and self.write_ns[lo] < self.write_ns[lo - 1]:  # interleaves older entries
            order = np.argsort(self.write_ns[:hi], kind="stable")
            for a in (self.page, self.access, self.utlb, self.write_ns):
                a[:hi] = a[:hi][order]

    def written(self, t_ns: int) -> int:
        """How many entries at the head are written by ``t_ns``."""
        return int(np.searchsorted(self.write_ns[: self.n], t_ns, side="right"))

    def next_write_ns(self) -> int:
        """When the oldest entry is written (its interrupt); call only with ``n > 0``."""
        return int(self.write_ns[0])

    def fetch(self, k: int, now_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``fetch_fault_buffer_entries`` (BATCH_READY) at ``now_ns``: read PUT again only if
        every entry before the last PUT read has been consumed, then take at most ``k`` entries
        written before that PUT."""
        if self.written(self.cached_put_ns) == 0:
            self.cached_put_ns = now_ns
        return self._take(min(k, self.written(self.cached_put_ns)))

    def _take(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = (self.page[:k].copy(), self.access[:k].copy(), self.utlb[:k].copy())
        rest = self.n - k
        if rest and k:
            for a in (self.page, self.access, self.utlb, self.write_ns):
                a[:rest] = a[k : self.n]
        self.n = rest
        return out

    def flush(self, mode: int, now_ns: int) -> int:
        """``fault_buffer_flush_locked`` at ``now_ns``: discard the entries up to the cached PUT
        (CACHED_PUT) or up to PUT read now (UPDATE_PUT); return how many."""
        if mode == UPDATE_PUT:
            self.cached_put_ns = now_ns
        k = self.written(self.cached_put_ns)
        self._take(k)
        return k


# The same operations on the buffer's arrays, for compiled callers (engine/fault_loop.py):
# ``n`` is ``FaultBuffer.n``.


@njit(cache=True, inline="always")
def written(write_ns: np.ndarray, n: int, t: int) -> int:
    """``FaultBuffer.written``: entries at the head written by ``t``."""
    return int(np.searchsorted(write_ns[:n], t, side="right"))


@njit(cache=True, inline="always")
def drop(page: np.ndarray, access: np.ndarray, utlb: np.ndarray, write_ns: np.ndarray, n: int, k: int) -> int:
    """``FaultBuffer._take`` without the copies: the first ``k`` entries leave, the rest move
    to the front; returns the new ``n``."""
    rest = n - k
    if rest and k:
        for i in range(rest):
            page[i] = page[k + i]
            access[i] = access[k + i]
            utlb[i] = utlb[k + i]
            write_ns[i] = write_ns[k + i]
    return rest


@njit(cache=True)
def pushed(
    page: np.ndarray, access: np.ndarray, utlb: np.ndarray, write_ns: np.ndarray, n: int, m: int
) -> int:
    """``FaultBuffer.push`` of ``m`` entries the caller already wrote after the first ``n``
    (ascending write times, room checked): they are put in write order among the older ones;
    returns the new ``n``."""
    hi = n + m
    if m and n and write_ns[n] < write_ns[n - 1]:  # interleaves older entries
        order = np.argsort(write_ns[:hi], kind="mergesort")
        page[:hi] = page[:hi][order]
        access[:hi] = access[:hi][order]
        utlb[:hi] = utlb[:hi][order]
        write_ns[:hi] = write_ns[:hi][order]
    return hi


__all__ = ["CACHED_PUT", "UPDATE_PUT", "FaultBuffer", "drop", "flush_mode", "pushed", "written"]
