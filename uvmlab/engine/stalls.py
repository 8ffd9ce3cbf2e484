"""A running kernel's stalled threads, kept between replays so a replay costs what it changes.

``GpuKernelRun`` (engine/gpu.py) re-executes its stalled threads at every replay and pushes
the first fault entries of those that still miss, in the order the SMs report them
(engine/arrival.py). Rebuilding that from a flat array costs O(threads stalled) per replay,
while a batch services a few hundred faults. Here every stalled thread has a slot (its thread:
``pos % conc``, as stalled touches lie within one window of ``conc`` touches), listed in two
places:

* its SM's queue, in touch order. New stalls always come after the old ones (the kernel issues
  its touches in order), and within one SM the report key grows with the touch position
  (arrival.py's note), so a replay's entries are the first ``rounds * burst`` threads of every
  SM's queue, ``burst`` at a time, SM by SM (``arrival.report``); the oldest stalled touch,
  which opens the issue window, is the least of the SMs' first ones. A queue entry is a touch
  position and its slot (``pos << slot_bits | slot``: checking it costs no division); a
  thread that completes frees its slot at once and leaves a stale entry (its slot holds
  another position, or none), dropped when a walk reaches it, so an SM's queue never holds
  more than the threads that run on it;
* its page's list (singly linked through the slots, rebuilt when the page is re-checked), with
  the least permission any of them needs (``need``, one byte a page, 0: no thread).

A replay re-checks only the VA blocks marked dirty (those whose mappings may have grown since
the last one), 8 pages a word, and within them only the pages now mapped with at least their
``need``. Stalling, completing and reporting cost O(threads stalled + completed + entries
written + SMs + dirty blocks); a replay that must look at everything (``ALL_DIRTY``) walks
every queue once.
"""

from __future__ import annotations

import threading

import numpy as np
from numba import njit

from uvmlab.core import sparse
from uvmlab.driver.compiled.borrow import view
from uvmlab.driver.va_space import BLOCK_SHIFT

# columns of the per-slot table (int64, one row per slot): POS1 is 1 + the touch position, 0 in
# a free slot, so a new table is all zeros (its memory is committed only where threads stall)
POS1, PAGE, ACC, P_NEXT = range(4)
N_FIELDS = 4
# cells of ``meta``: stalled threads, the dirty-block log, the dirty-word log
COUNT, N_DIRTY, ALL_DIRTY, N_DIRTY_W = range(4)
# rows of the per-SM queue bounds: first and one past the last entry (counters; the queue's
# index is the counter modulo its capacity)
Q_HEAD, Q_TAIL = range(2)
WORDS_PER_BLOCK = (1 << BLOCK_SHIFT) // 8
POOL_SHAPES = 2  # kernel shapes whose empty lists a pool keeps (StalledThreads.release)
# the process's pool: every engine's kernels take their lists from it and leave them there
POOL: dict[tuple[int, ...], StalledThreads] = {}
_POOL_LOCK = threading.Lock()


def queue_capacity(conc: int, tpb: int, n_sm: int) -> int:
    """A power of two >= the threads of the busiest SM: ``conc`` threads in blocks of ``tpb``,
    blocks round-robin over ``n_sm`` SMs."""
    n_tb = -(-conc // tpb)
    most = -(-n_tb // n_sm) * min(tpb, conc)
    return 1 << max(most - 1, 0).bit_length()


class StalledThreads:
    """The stalled threads of one kernel shape (at most ``conc``) over ``total_pages`` pages
    of VA (a multiple of 8: blocks are 512 pages)."""

    def __init__(self, conc: int, tpb: int, n_sm: int, total_pages: int) -> None:
        self.conc, self.tpb = conc, tpb
        self.key = (conc, tpb, n_sm, total_pages)  # its pool's key (``reused``)
        self.t = np.zeros((conc, N_FIELDS), dtype=np.int64)
        self.meta = np.zeros(4, dtype=np.int64)
        cap = queue_capacity(conc, tpb, n_sm)
        self.q_pos = np.empty((n_sm, cap), dtype=np.int64)
        self.q = np.zeros((2, n_sm), dtype=np.int64)
        self.cursor = np.empty(2 * n_sm, dtype=np.int64)  # arrival.report's scratch
        # per page and per block, written only where threads stall (sparse: 16 TiB of VA)
        # 1 + the slot heading the page's list, negative if the list holds more than one
        self.phead = sparse.zeros(total_pages, np.int32)
        self.need_words = sparse.zeros(total_pages // 8, np.uint64)  # ``need``, 8 pages a word
        self.block_dirty = sparse.zeros(total_pages >> BLOCK_SHIFT, np.uint8)
        self.dirty = np.empty(max(conc, 64), dtype=np.int64)  # the blocks marked
        self.dirty_w = np.empty(max(conc, 64), dtype=np.int64)  # the words (8 pages) marked
        self.hits = np.empty(WORDS_PER_BLOCK + 1, dtype=np.uint64)  # reexecute's scratch
        self.hit_words = np.empty(WORDS_PER_BLOCK + 1, dtype=np.int64)

    @classmethod
    def reused(
        cls, pool: dict[tuple[int, ...], StalledThreads], conc: int, tpb: int, n_sm: int, total_pages: int
    ) -> StalledThreads:
        """The lists a kernel of this shape left in ``pool`` (``release``: they hold no thread),
        taken out of it, else new ones: allocating them costs more than a small kernel, and
        their first writes cost a page fault per 4 KiB written (~2 us each on a VM: 16,384
        stalls write ~300 pages, ~0.5 ms), which a table used before does not pay."""
        key = (conc, tpb, n_sm, total_pages)
        st = pool.pop(key, None)
        if st is None or st.n:
            st = cls(conc, tpb, n_sm, total_pages)
        st.q[Q_HEAD] = st.q[Q_TAIL]  # stale entries: positions start again at 0
        st.clear_marks()
        return st

    def release(self, pool: dict[tuple[int, ...], StalledThreads]) -> None:
        """A kernel that ran to its end: its empty lists go to ``pool`` for the next kernel of
        their shape (of any engine of the process); ``pool`` keeps the ``POOL_SHAPES`` latest."""
        if self.n:
            return
        with _POOL_LOCK:  # engines may run in threads of one process
            pool.pop(self.key, None)
            pool[self.key] = self
            while len(pool) > POOL_SHAPES:
                del pool[next(iter(pool))]

    def clear_marks(self) -> None:
        """Forget the dirty marks (a replay clears them; a kernel may end without one)."""
        self.block_dirty[self.dirty[: self.meta[N_DIRTY]]] = 0
        self.meta[N_DIRTY] = self.meta[ALL_DIRTY] = self.meta[N_DIRTY_W] = 0

    @property
    def n(self) -> int:
        return int(self.meta[COUNT])

    def oldest(self) -> int:
        """The touch position of the oldest stalled thread; call only with ``n > 0``."""
        return int(oldest(self.t, self.q_pos, self.q))

    def mark_pages(self, page: np.ndarray) -> None:
        """The blocks of ``page`` may gain mappings before the next replay."""
        mark_blocks(page, self.block_dirty, self.dirty, self.meta)

    def mark_words(self, page: np.ndarray) -> None:
        """Only the pages ``page`` (their words) may gain mappings before the next replay."""
        mark_words(page, self.dirty_w, self.meta)

    def mark_all(self) -> None:
        """Any mapping may change before the next replay: it re-checks every stalled thread."""
        self.meta[ALL_DIRTY] = 1

    def recheck_arrays(self) -> tuple[np.ndarray, ...]:
        """The state :func:`reexecute` reads and updates, in the order of its arguments after
        ``(perm, residency, gbit)``: one place for the Python step and the compiled loop."""
        return (
            self.t,
            self.meta,
            self.q_pos,
            self.q,
            self.phead,
            self.need_words,
            self.block_dirty,
            self.dirty,
            self.dirty_w,
            self.hits,
            self.hit_words,
        )

    def in_order(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(touch position, page, access) of the stalled threads, oldest first."""
        n = self.n
        pos, page, acc = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.uint8)
        gather(self.t, self.q_pos, self.q, pos, page, acc)
        order = np.argsort(pos, kind="stable")
        return pos[order], page[order], acc[order]


@njit(cache=True)
def slot_bits(conc: int) -> int:
    """The low bits of a queue entry that hold its slot: enough for ``conc`` slots. An entry
    is ``pos << slot_bits | slot``, so checking it costs no division by ``conc``."""
    b = 0
    while (1 << b) < conc:
        b += 1
    return b


@njit(cache=True, inline="always")
def live_slot(t: np.ndarray, q_pos: np.ndarray, s: int, i: int, sb: int) -> int:
    """The table slot of entry ``i`` (a counter) of SM ``s``'s queue where its thread is still
    stalled (the slot holds its touch position; ``sb``: ``slot_bits`` of the table), else -1."""
    e = q_pos[s, i & (q_pos.shape[1] - 1)]
    k = e & ((1 << sb) - 1)
    return k if t[k, POS1] == (e >> sb) + 1 else -1


@njit(cache=True, inline="always")
def live(t: np.ndarray, q_pos: np.ndarray, s: int, i: int, sb: int) -> bool:
    """Entry ``i`` of SM ``s``'s queue is a thread still stalled (``live_slot``)."""
    return live_slot(t, q_pos, s, i, sb) >= 0


@njit(cache=True)
def oldest(t: np.ndarray, q_pos: np.ndarray, q: np.ndarray) -> int:
    """The least touch position of a stalled thread (-1: none); drops the stale entries at
    the head of each SM's queue."""
    t, q_pos, q = view(t), view(q_pos), view(q)
    sb = slot_bits(t.shape[0])
    m = -1
    for s in range(q.shape[1]):
        h = q[Q_HEAD, s]
        while h < q[Q_TAIL, s] and not live(t, q_pos, s, h, sb):
            h += 1
        q[Q_HEAD, s] = h
        if h < q[Q_TAIL, s]:
            p = q_pos[s, h & (q_pos.shape[1] - 1)] >> sb
            if m < 0 or p < m:
                m = p
    return m


@njit(cache=True)
def gather(
    t: np.ndarray, q_pos: np.ndarray, q: np.ndarray, pos: np.ndarray, page: np.ndarray, acc: np.ndarray
) -> None:
    """Copy the stalled threads, SM by SM, into ``pos``, ``page`` and ``acc``."""
    t, q_pos = view(t), view(q_pos)
    sb = slot_bits(t.shape[0])
    j = 0
    for s in range(q.shape[1]):
        for i in range(q[Q_HEAD, s], q[Q_TAIL, s]):
            k = live_slot(t, q_pos, s, i, sb)
            if k >= 0:
                pos[j] = t[k, POS1] - 1
                page[j] = t[k, PAGE]
                acc[j] = t[k, ACC]
                j += 1


@njit(cache=True)
def mark_blocks(page: np.ndarray, block_dirty: np.ndarray, dirty: np.ndarray, meta: np.ndarray) -> None:
    """Log the blocks of ``page`` not logged yet; past the log's room, mark everything."""
    if meta[ALL_DIRTY]:
        return
    nd = meta[N_DIRTY]
    for i in range(len(page)):
        b = page[i] >> BLOCK_SHIFT
        if block_dirty[b] == 0:
            if nd == len(dirty):
                meta[ALL_DIRTY] = 1
                break
            block_dirty[b] = 1
            dirty[nd] = b
            nd += 1
    meta[N_DIRTY] = nd


@njit(cache=True)
def mark_words(page: np.ndarray, dirty_w: np.ndarray, meta: np.ndarray) -> None:
    """Log the words (8 pages) of ``page``: where a service maps only the pages that faulted
    (no prefetch), a replay need re-check no other; past the log's room, mark everything."""
    if meta[ALL_DIRTY]:
        return
    nw = meta[N_DIRTY_W]
    last = -1
    for i in range(len(page)):
        w = page[i] >> 3
        if w == last:
            continue
        if nw == len(dirty_w):
            meta[ALL_DIRTY] = 1
            break
        dirty_w[nw] = w
        nw += 1
        last = w
    meta[N_DIRTY_W] = nw


@njit(cache=True)
def _compact(t, q_pos, q, s, sb):
    """Drop every stale entry of SM ``s``'s queue, keeping the order of the others."""
    m = q_pos.shape[1] - 1
    w = q[Q_HEAD, s]
    for i in range(q[Q_HEAD, s], q[Q_TAIL, s]):
        if live(t, q_pos, s, i, sb):
            q_pos[s, w & m] = q_pos[s, i & m]
            w += 1
    q[Q_TAIL, s] = w


@njit(cache=True)
def append(
    idx: np.ndarray,
    nf: int,
    base: int,
    page: np.ndarray,
    acc: np.ndarray,
    tpb: int,
    t: np.ndarray,
    meta: np.ndarray,
    q_pos: np.ndarray,
    q: np.ndarray,
    phead: np.ndarray,
    need_words: np.ndarray,
) -> None:
    """Stall the ``nf`` touches at chunk indices ``idx`` (ascending, after every stalled one):
    touch ``pos`` runs on thread ``pos % conc`` of thread block ``thread // tpb``, and blocks go
    round-robin over the SMs (arrival.py)."""
    t, meta, q_pos, q, phead = view(t), view(meta), view(q_pos), view(q), view(phead)
    n_sm = q.shape[1]
    cap = q_pos.shape[1]
    conc = t.shape[0]
    need = need_words.view(np.uint8)
    sb = slot_bits(conc)
    if nf and base + idx[nf - 1] >= np.int64(1) << (62 - sb):
        raise ValueError("touch position too large for a queue entry")
    # the slot and the SM follow from the last stall's without a division (the positions
    # ascend and lie within one window of ``conc``): append is the hot half of a replay. The
    # SM's queue tail is kept in a local while its thread block's stalls come (a store to
    # the tables may alias ``q`` for the compiler: the counter was loaded and stored per stall)
    k = -1
    prev = 0
    lo = hi = 0  # the slots of the thread block running on SM ``s``
    s = -1
    tail = 0  # q[Q_TAIL, s], written back when ``s`` changes and at the end
    full = 0  # the tail at which SM ``s``'s queue is full
    for j in range(nf):
        i = idx[j]
        p = i + base
        if k < 0:
            k = p % conc
        else:
            k += p - prev
            while k >= conc:
                k -= conc
        prev = p
        if k < lo or k >= hi:
            if s >= 0:
                q[Q_TAIL, s] = tail
            lo = k // tpb * tpb
            hi = lo + tpb
            s = k // tpb % n_sm
            tail = q[Q_TAIL, s]
            full = q[Q_HEAD, s] + cap
        g = page[i]
        a = acc[i]
        t[k, POS1] = p + 1
        t[k, PAGE] = g
        t[k, ACC] = a
        h = phead[g]
        if h == 0:
            t[k, P_NEXT] = -1
            phead[g] = k + 1
        else:
            t[k, P_NEXT] = abs(h) - 1
            phead[g] = -(k + 1)
        nd = a if a > 0 else 1
        if need[g] == 0 or nd < need[g]:
            need[g] = nd
        if tail == full:
            q[Q_TAIL, s] = tail
            _compact(t, q_pos, q, s, sb)
            tail = q[Q_TAIL, s]
            if tail == full:
                raise ValueError("an SM's queue of stalled threads overflowed")
        q_pos[s, tail & (cap - 1)] = (p << sb) | k
        tail += 1
    if s >= 0:
        q[Q_TAIL, s] = tail
    meta[COUNT] += nf
