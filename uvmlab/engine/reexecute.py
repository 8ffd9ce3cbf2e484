"""Re-execution of a kernel's stalled threads at a replay (``GpuKernelRun``'s step, engine/replay_step.py).

The threads live in ``stalls.py``'s tables (a slot per thread, its SM's queue, its page's
list with the page's ``need``). A replay re-checks only the VA blocks marked dirty since the
last one, 8 pages a word (``_hits``), and within them only the pages now mapped with
at least their ``need``: the threads stalled on such a page complete and free their slots.
``missed`` is the check mode's count of the threads a re-execution would still complete.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from uvmlab.core.bitwords import trailing_zeros
from uvmlab.driver.compiled.borrow import view
from uvmlab.engine.stalls import (
    ACC,
    ALL_DIRTY,
    COUNT,
    N_DIRTY,
    N_DIRTY_W,
    P_NEXT,
    PAGE,
    POS1,
    Q_HEAD,
    Q_TAIL,
    WORDS_PER_BLOCK,
    live_slot,
    slot_bits,
)

_HIGH = np.uint64(0x8080808080808080)
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)


@njit(cache=True, inline="always")
def _retry_page(g, v, t, meta, phead, need):
    """Re-execute the threads stalled on page ``g``, which is mapped with permission ``v`` >=
    the page's ``need``: those it satisfies complete, freeing their slots. Returns how many.
    A page with one thread (the usual case) needs no look at its slot's fields."""
    h = phead[g]
    if h > 0:  # one thread, whose need is the page's
        t[h - 1, POS1] = 0
        phead[g] = 0
        need[g] = 0
        meta[COUNT] -= 1
        return 1
    done = 0
    least = 0
    kept = 0  # 1 + the last slot kept on the page's list
    n_kept = 0
    k = -h - 1
    phead[g] = 0
    while k >= 0:
        nx = t[k, P_NEXT]
        a = t[k, ACC]
        nd = a if a > 0 else 1
        if v >= nd:
            t[k, POS1] = 0
            done += 1
        else:
            if kept:
                t[kept - 1, P_NEXT] = k
            else:
                phead[g] = k + 1
            kept = k + 1
            n_kept += 1
            if least == 0 or nd < least:
                least = nd
        k = nx
    if kept:
        t[kept - 1, P_NEXT] = -1
    if n_kept > 1:
        phead[g] = -phead[g]
    need[g] = least
    meta[COUNT] -= done
    return done


@njit(cache=True, inline="always")
def _retry(g, perm, residency, gbit, t, meta, phead, need):
    """``_retry_page`` at the page's permission now; returns (completed, of them remote).
    ``gbit`` 0: no page is mapped remotely (residency is not read)."""
    v = perm[g]
    if v < need[g]:
        return 0, 0
    d = _retry_page(g, v, t, meta, phead, need)
    return d, (d if d and gbit != 0 and residency[g] & gbit == 0 else 0)


@njit(cache=True, inline="always")
def _retry_word(h, w, perm, residency, gbit, t, meta, phead, need):
    """``_retry`` every page of word ``w`` whose byte of ``h`` has its high bit set."""
    done = 0
    remote = 0
    while h:
        # the lowest byte left (one instruction: a search byte by byte cost ~4.5 steps and a
        # mispredicted exit a page where a word's eight pages all hit)
        bit = trailing_zeros(h)
        h ^= np.uint64(1) << bit
        g = w * 8 + np.int64(bit >> np.uint64(3))
        d, r = _retry(g, perm, residency, gbit, t, meta, phead, need)
        done += d
        remote += r
    return done, remote


@njit(cache=True, inline="always")
def _hits(perm_words, need_words, w):
    """The pages of word ``w`` mapped with at least their ``need`` (need != 0): with bytes
    below 128, ``((perm | H) - need) & H`` has a byte's high bit set where perm >= need, and
    ``(need + 0x7f) & H`` where need != 0."""
    nw = need_words[w]
    return ((perm_words[w] | _HIGH) - nw) & (nw + _LOW7) & _HIGH


@njit(cache=True)
def reexecute(
    perm: np.ndarray,
    residency: np.ndarray,
    gbit: int,
    t: np.ndarray,
    meta: np.ndarray,
    q_pos: np.ndarray,
    q: np.ndarray,
    phead: np.ndarray,
    need_words: np.ndarray,
    block_dirty: np.ndarray,
    dirty: np.ndarray,
    dirty_w: np.ndarray,
    hits: np.ndarray,
    hit_words: np.ndarray,
) -> tuple[int, int]:
    """Re-execute the stalled threads of the blocks and words marked dirty (of every block if
    ALL_DIRTY): those whose page is now mapped with enough permission complete. Clears the
    marks. Returns (completed, completed on a remote mapping). A block is scanned 8 pages a
    word (``_hits``)."""
    done = 0
    remote = 0
    # borrowed views: the helpers bind them without a reference count (compiled/borrow.py)
    perm, residency, t, meta, phead = view(perm), view(residency), view(t), view(meta), view(phead)
    need = view(need_words.view(np.uint8))
    perm_words = view(perm.view(np.uint64))
    if meta[ALL_DIRTY]:
        m = q_pos.shape[1] - 1
        sb = slot_bits(t.shape[0])
        for s in range(q.shape[1]):
            for i in range(q[Q_HEAD, s], q[Q_TAIL, s]):
                e = q_pos[s, i & m]
                k = e & ((1 << sb) - 1)
                if t[k, POS1] != (e >> sb) + 1:
                    continue
                g = t[k, PAGE]
                a = t[k, ACC]
                if perm[g] >= (a if a > 0 else 1):
                    d, r = _retry(g, perm, residency, gbit, t, meta, phead, need)
                    done += d
                    remote += r
    else:
        for j in range(meta[N_DIRTY_W]):
            w = dirty_w[j]
            h = _hits(perm_words, need_words, w)
            if h:
                d, r = _retry_word(h, w, perm, residency, gbit, t, meta, phead, need)
                done += d
                remote += r
    for d in range(meta[N_DIRTY]):
        b = dirty[d]
        block_dirty[b] = 0
        if meta[ALL_DIRTY]:
            continue
        w0 = b * WORDS_PER_BLOCK
        nh = 0
        for w in range(w0, w0 + WORDS_PER_BLOCK):  # branch-free: the words with a hit, listed
            h = _hits(perm_words, need_words, w)
            hits[nh] = h
            hit_words[nh] = w
            nh += h != 0
        for j in range(nh):
            dd, r = _retry_word(hits[j], hit_words[j], perm, residency, gbit, t, meta, phead, need)
            done += dd
            remote += r
    meta[N_DIRTY] = 0
    meta[ALL_DIRTY] = 0
    meta[N_DIRTY_W] = 0
    return done, remote


@njit(cache=True)
def missed(perm: np.ndarray, t: np.ndarray, q_pos: np.ndarray, q: np.ndarray) -> int:
    """How many stalled threads a re-execution would complete now (0 right after one)."""
    t, q_pos = view(t), view(q_pos)
    sb = slot_bits(t.shape[0])
    n = 0
    for s in range(q.shape[1]):
        for i in range(q[Q_HEAD, s], q[Q_TAIL, s]):
            k = live_slot(t, q_pos, s, i, sb)
            if k >= 0:
                a = t[k, ACC]
                if perm[t[k, PAGE]] >= (a if a > 0 else 1):
                    n += 1
    return n
