"""The prefetcher's bitmap tree (uvm_perf_prefetch.c), over page bitmaps held as uint64 words.

uvm_perf_prefetch.c steps 2 and 4–6 for one VA block: the tree's leaves (``init_bitmap_tree_from_region``,
``update_bitmap_tree_from_va_block``), ``grow_fault_granularity``, the walk from every
faulted page (``compute_prefetch_region``: the largest node whose count passes the threshold)
and the post-filter. The driver keeps its page masks as words too (``uvm_page_mask_t``), and
counts a node with ``bitmap_weight`` over the leaves it spans: a node of 2^k leaves is one
masked popcount for k < 6 and 2^(k-6) word popcounts above, so one walk from a faulted page is
a few tens of instructions and no step loops over pages.

Two shortcuts keep the walk proportional to the winning regions, not to the faulted pages, and
neither changes the result: the walk goes from the root down and stops at the first node that
passes (the largest one, which is the winner), and a faulted page inside the previous page's
winning node is skipped (its nodes from that level up are the same nodes, so it has the same
winner). Both paths (:func:`uvmlab.driver.perf.prefetch.compute_prefetch_mask` and the
compiled block service) call :func:`tree_fill`; tests/test_prefetch.py compares it with a
per-page reading of the driver's rule.

The input and output are rows of one ``(ROWS, NWORDS)`` uint64 array (:func:`new_words`): bit
``i & 63`` of word ``i >> 6`` of a row is block page ``i``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from uvmlab.core.bitwords import ALL, ONE, ZERO, popcount, range_bits, set_range, trailing_zeros
from uvmlab.core.sizes import PAGES_PER_BLOCK

__all__ = [
    "NWORDS",
    "ROWS",
    "FAULT",
    "LEAF",
    "THR",
    "CPU_RR",
    "OUT",
    "new_words",
    "tree_alignment",
    "tree_fill",
]

NWORDS = PAGES_PER_BLOCK // 64
# Rows of the word array. Inputs: FAULT (the faulted pages), LEAF (resident on the destination
# or faulted), THR (thrashing), CPU_RR (resident and readable on the CPU when the destination is
# the CPU, else empty). Output: OUT. The rest is the tree's own working space, in leaf order.
FAULT, LEAF, THR, CPU_RR, OUT, _TREE, _STARTS, _TTHR = range(8)
ROWS = 8


def new_words() -> np.ndarray:
    """A zeroed word array for :func:`tree_fill`."""
    return np.zeros((ROWS, NWORDS), dtype=np.uint64)


@njit(cache=True)
def tree_alignment(block_first_page_va: int, big: int, m_first: int, m_outer: int) -> tuple[bool, int, int]:
    """The tree's alignment to big pages: (has a whole big page, offset, leaf count).

    The largest big-page-aligned sub-range of the region is found in VA terms
    (``uvm_va_block_big_page_region_subset``); the tree is shifted right by ``offset`` virtual
    (never set) leaves so that every aligned node of >= ``big`` leaves starts on a big-page
    boundary.
    """
    va_first = block_first_page_va + m_first
    big_first_va = (va_first + big - 1) // big * big
    big_outer_va = (block_first_page_va + m_outer) // big * big
    has_big = big_outer_va > big_first_va
    b_first = big_first_va - block_first_page_va
    offset = 0
    if has_big and b_first > m_first:
        offset = big - (b_first - m_first)
    return has_big, offset, (m_outer - m_first) + offset


@njit(cache=True, inline="always")
def _region_word(src: np.ndarray, i: int, a: int, b: int) -> np.uint64:
    """Word ``i`` of ``src`` restricted to pages ``[a, b)``; 0 outside the row."""
    if i < 0 or i >= NWORDS:
        return ZERO
    return src[i] & range_bits(i, a, b)


@njit(cache=True, inline="always")
def _shift_region(src: np.ndarray, dst: np.ndarray, a: int, b: int, sh: int) -> None:
    """``dst`` := the pages ``[a, b)`` of ``src``, page ``p`` moved to ``p + sh`` (the driver's
    ``uvm_page_mask_shift_right`` by ``a`` then ``shift_left`` by the tree's offset)."""
    if sh == 0:
        for j in range(NWORDS):
            dst[j] = src[j] & range_bits(j, a, b)
        return
    q = abs(sh) >> 6
    r = np.uint64(abs(sh) & 63)
    back = np.uint64(64) - r
    for j in range(NWORDS):
        if sh > 0:
            v = _region_word(src, j - q, a, b) << r
            if r:
                v |= _region_word(src, j - q - 1, a, b) >> back
        else:
            v = _region_word(src, j + q, a, b) >> r
            if r:
                v |= _region_word(src, j + q + 1, a, b) << back
        dst[j] = v


@njit(cache=True, inline="always")
def _smear(x: np.uint64, part: int) -> np.uint64:
    """Bit ``t`` of the result: any of bits ``[t, t + part)`` of ``x`` (``part`` a power of two)."""
    s = 1
    while s < part:
        x |= x >> np.uint64(s)
        s <<= 1
    return x


@njit(cache=True, inline="always")
def _grow(
    tree: np.ndarray, starts: np.ndarray, tthr: np.ndarray, part: int, offset: int, leaf_count: int
) -> None:
    """grow_fault_granularity(_if_no_thrashing): the parts (prefix, each big page, suffix) are
    the aligned runs of ``part`` leaves of the shifted tree (the prefix is the first run after
    the virtual leaves, the suffix the last, partial run; with no big page in the region the
    whole region is one part). A part that holds a faulted page and no thrashing page is
    filled, its virtual leaves excepted."""
    nw = (leaf_count + 63) >> 6
    if part < 64:
        m = (ONE << np.uint64(part)) - ONE
        lows = ALL // m  # one bit at the start of every part of the word
        for i in range(nw):
            g = _smear(starts[i], part) & ~_smear(tthr[i], part) & lows
            if g:
                tree[i] |= (g * m) & range_bits(i, offset, leaf_count)
        return
    per = part >> 6  # words per part
    for a in range(0, nw, per):
        any_f = ZERO
        any_t = ZERO
        for i in range(a, min(a + per, nw)):
            any_f |= starts[i]
            any_t |= tthr[i]
        if any_f and not any_t:
            for i in range(a, min(a + per, nw)):
                tree[i] |= range_bits(i, offset, leaf_count)


@njit(cache=True, inline="always")
def _node_count(tree: np.ndarray, s: int, size: int) -> int:
    """The set leaves of the aligned node ``[s, s + size)`` (``bitmap_weight``); leaves past the
    leaf count are never set, so the node's clip does not change its count."""
    if size < 64:
        m = (ONE << np.uint64(size)) - ONE
        return int(popcount((tree[s >> 6] >> np.uint64(s & 63)) & m))
    c = 0
    for i in range(s >> 6, (s + size) >> 6):
        c += int(popcount(tree[i]))
    return c


@njit(cache=True, inline="always")
def tree_fill(
    w: np.ndarray,
    block_first_page_va: int,
    big: int,
    threshold: int,
    m_first: int,
    m_outer: int,
    driver_offset_clamp: bool,
    shortcut: bool,
) -> None:
    """``w[OUT]`` := the pages to prefetch (uvm_perf_prefetch.c steps 2 and 4–6), from ``w[FAULT]``,
    ``w[LEAF]``, ``w[THR]`` and ``w[CPU_RR]`` (see the module docstring); the arguments are those
    of ``compute_prefetch_mask``. Faulted pages must lie in ``[m_first, m_outer)``."""
    out = w[OUT]
    for j in range(NWORDS):
        out[j] = ZERO
    if shortcut:
        # uvm_perf_prefetch.c step 3 (first touch on the preferred location): the whole region,
        # no tree.
        set_range(out, m_first, m_outer)
    else:
        _walk(w, out, block_first_page_va, big, threshold, m_first, m_outer, driver_offset_clamp)
    # The post-filter (uvm_perf_prefetch_prenotify_fault_migrations).
    fault, thr, cpu_rr = w[FAULT], w[THR], w[CPU_RR]
    for j in range(NWORDS):
        out[j] &= ~(fault[j] | thr[j] | cpu_rr[j])


@njit(cache=True, inline="always")
def _walk(
    w: np.ndarray,
    out: np.ndarray,
    block_first_page_va: int,
    big: int,
    threshold: int,
    m_first: int,
    m_outer: int,
    driver_offset_clamp: bool,
) -> None:
    """The tree (init_bitmap_tree_from_region + update_bitmap_tree_from_va_block), the growth
    and the walk from every non-thrashing faulted page (compute_prefetch_mask)."""
    has_big, offset, leaf_count = tree_alignment(block_first_page_va, big, m_first, m_outer)
    tree, starts, tthr = w[_TREE], w[_STARTS], w[_TTHR]
    # Leaves: page m_first is leaf `offset` (the driver's shifted page mask); the virtual
    # leaves [0, offset) stay 0.
    sh = offset - m_first
    _shift_region(w[LEAF], tree, m_first, m_outer, sh)
    _shift_region(w[FAULT], starts, m_first, m_outer, sh)
    _shift_region(w[THR], tthr, m_first, m_outer, sh)
    _grow(tree, starts, tthr, big if has_big else PAGES_PER_BLOCK, offset, leaf_count)

    level_count = 1  # ilog2(roundup_pow_of_two(leaf_count)) + 1
    while (1 << (level_count - 1)) < leaf_count:
        level_count += 1
    skip_first = 0  # the previous winner, in leaves: its pages have the same winner
    skip_outer = 0
    for i in range((leaf_count + 63) >> 6):
        todo = starts[i] & ~tthr[i]
        while todo:
            leaf = 64 * i + int(trailing_zeros(todo))
            todo &= todo - ONE
            if skip_first <= leaf < skip_outer:
                continue
            # compute_prefetch_region: the largest node with count * 100 > size * threshold
            # wins (a failing level does not stop the driver's walk up; from the root down,
            # the first node that passes is that one).
            win_first = 0
            win_outer = 0
            for k in range(level_count - 1, -1, -1):
                size = 1 << k
                s = leaf & -size
                e = min(s + size, leaf_count)  # nodes are clipped to leaf_count
                if _node_count(tree, s, size) * 100 > (e - s) * threshold:
                    win_first = s
                    win_outer = e
                    break
            if win_outer == 0:
                continue  # nothing passed: region (0,0), fill is a no-op, no early out
            skip_first, skip_outer = win_first, win_outer
            f, o = _to_pages(win_first, win_outer, m_first, m_outer, offset, driver_offset_clamp)
            if o > f:
                set_range(out, f, o)
            # Early out once the region reaches the end of the block. This never changes the
            # result: every later faulted page lies in this node, which also passes for it,
            # and any larger passing node would have won for this page too.
            if o == m_outer:
                return


@njit(cache=True, inline="always")
def _to_pages(
    win_first: int, win_outer: int, m_first: int, m_outer: int, offset: int, driver_offset_clamp: bool
) -> tuple[int, int]:
    """A winning node, tree leaves -> block pages, clamped to the region."""
    f = win_first + m_first
    o = win_outer + m_first
    if driver_offset_clamp:
        # compute_prefetch_region as written in 580.142: a start that falls among the virtual
        # leaves is set to `offset` (a page index!), not to the region start. For a block whose
        # first page is not big-page aligned (m_first == 0 < offset) this cuts [0, offset) out
        # of the region, or empties it (first > outer, and bitmap_set with a negative length
        # sets nothing for these small indices).
        if f < offset:
            f = offset
        else:
            f -= offset
            if f < m_first:
                f = m_first
        if o < offset:
            o = offset
        else:
            o -= offset
            if o > m_outer:
                o = m_outer
        return f, o
    # What the clamp is evidently meant to do (uvm_perf_prefetch.c step 5.4 as the spec words it).
    return max(f - offset, m_first), min(o - offset, m_outer)
