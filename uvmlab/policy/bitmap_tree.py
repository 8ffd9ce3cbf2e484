"""The bitmap-tree prefetcher with gpu_ext's two prefetch hooks in it.

``uvmlab.driver.perf.prefetch`` computes the driver's mask in one numba kernel. When a prefetch
policy is attached, the same computation runs here in Python so that the hooks can be called
where gpu_ext calls them: ``prefetch_before_compute`` once per faulted, non-thrashing page (in
ascending order) inside ``compute_prefetch_mask``, and ``prefetch_on_tree_iter`` per tree node
from that page's leaf to the root when the first hook asked for the loop. The tree, the
big-page growth, the driver's offset clamp, the early exit at the end of the block and the
post-filter are those of the kernel; ``tests/test_policy_prefetch.py`` checks that a policy
that always answers DEFAULT gives the kernel's mask bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

from uvmlab.driver.perf.prefetch_tree import tree_alignment


@njit(cache=True)
def _build(faulted, resident, thrashing, block_first_page_va, big, m_first, m_outer):
    """The kernel's tree set-up: big-page offset, leaves, grow_fault_granularity, prefix sums."""
    has_big, offset, leaf_count = tree_alignment(block_first_page_va, big, m_first, m_outer)
    leaves = np.zeros(leaf_count, dtype=np.bool_)
    for p in range(m_first, m_outer):
        leaves[p - m_first + offset] = faulted[p] or (len(resident) > 0 and resident[p])
    # grow_fault_granularity_if_no_thrashing: each big page (and the prefix / suffix) that
    # holds a faulted page and no thrashing page is filled.
    part = big if has_big else leaf_count
    for a in range(0, leaf_count, part):
        b = min(a + part, leaf_count)
        pa = max(a, offset) - offset + m_first
        pb = b - offset + m_first
        any_fault = False
        any_thr = False
        for p in range(pa, pb):
            any_fault |= faulted[p]
            if len(thrashing) > 0:
                any_thr |= thrashing[p]
        if any_fault and not any_thr:
            leaves[max(a, offset) : b] = True
    cs = np.zeros(leaf_count + 1, dtype=np.int64)
    for t in range(leaf_count):
        cs[t + 1] = cs[t] + leaves[t]
    level_count = 1
    while (1 << (level_count - 1)) < leaf_count:
        level_count += 1
    return leaves, cs, offset, leaf_count, level_count


_EMPTY = np.zeros(0, dtype=np.bool_)


class BitmapTree:
    """``uvm_perf_prefetch_bitmap_tree_t`` for one block operation, built as the kernel does."""

    def __init__(
        self,
        faulted: np.ndarray,
        resident: np.ndarray | None,
        thrashing: np.ndarray | None,
        *,
        block_first_page_va: int,
        big: int,
        m_first: int,
        m_outer: int,
    ) -> None:
        self.leaves, self.cs, self.offset, self.leaf_count, self.level_count = _build(
            faulted,
            _EMPTY if resident is None else resident,
            _EMPTY if thrashing is None else thrashing,
            block_first_page_va,
            big,
            m_first,
            m_outer,
        )
        self.m_first, self.m_outer = m_first, m_outer

    def populated(self, n: int) -> np.ndarray:
        """The leaves in block-page terms (pages outside the region are False)."""
        out = np.zeros(n, dtype=bool)
        out[self.m_first : self.m_outer] = self.leaves[self.offset :]
        return out

    def leaf(self, page: int) -> int:
        return page - self.m_first + self.offset

    def node(self, leaf: int, level: int) -> tuple[int, int]:
        """The node at ``level`` (0 = the leaf) above ``leaf``: [s, e) in tree leaves."""
        size = 1 << level
        s = leaf - (leaf & (size - 1))
        return s, min(s + size, self.leaf_count)

    def count(self, s: int, e: int) -> int:
        return int(self.cs[e] - self.cs[s])

    def stock_region(self, leaf: int, threshold: int) -> tuple[int, int] | None:
        """compute_prefetch_region: the largest node whose populated share beats the threshold."""
        win = None
        for k in range(self.level_count):
            s, e = self.node(leaf, k)
            if self.count(s, e) * 100 > (e - s) * threshold:
                win = (s, e)
        return win

    def to_block(self, s: int, e: int, driver_offset_clamp: bool = True) -> tuple[int, int]:
        """Tree leaves -> block pages, with the driver's clamp (see prefetch_tree._to_pages)."""
        off, m_first, m_outer = self.offset, self.m_first, self.m_outer
        f, o = s + m_first, e + m_first
        if driver_offset_clamp:
            f = off if f < off else max(f - off, m_first)
            o = off if o < off else min(o - off, m_outer)
        else:
            f = max(f - off, m_first)
            o = min(o - off, m_outer)
        return f, o


@njit(cache=True)
def _stock_regions(cs, leaf_count, level_count, threshold, leaves, offset, m_first, m_outer):
    """compute_prefetch_region for every walk start at once, mapped back to block pages with
    the driver's clamp; (-1, -1) where no node passes."""
    k = len(leaves)
    f_out = np.full(k, -1, np.int64)
    o_out = np.full(k, -1, np.int64)
    for i in range(k):
        leaf = leaves[i]
        wf = -1
        wo = -1
        for lvl in range(level_count):
            size = 1 << lvl
            s = leaf - (leaf & (size - 1))
            e = min(s + size, leaf_count)
            if (cs[e] - cs[s]) * 100 > (e - s) * threshold:
                wf = s
                wo = e
        if wo < 0:
            continue
        f = wf + m_first
        o = wo + m_first
        f = offset if f < offset else max(f - offset, m_first)
        o = offset if o < offset else min(o - offset, m_outer)
        f_out[i] = f
        o_out[i] = o
    return f_out, o_out


def compute_mask(
    tree: BitmapTree,
    faulted: np.ndarray,
    thrashing: np.ndarray | None,
    *,
    threshold: int,
    region_for: Callable[[int, int, tuple[int, int] | None], tuple[int, int] | None],
    dest_is_cpu: bool,
    cpu_resident_readable: np.ndarray | None,
) -> np.ndarray:
    """compute_prefetch_mask + the post-filter, asking ``region_for(page, leaf, stock)`` for
    each walk start, where ``stock`` is the driver's region for it. ``region_for`` returns a
    block-page region ``(first, outer)`` or None."""
    n = len(faulted)
    out = np.zeros(n, dtype=bool)
    m_first, m_outer = tree.m_first, tree.m_outer
    starts = faulted[m_first:m_outer].copy()
    if thrashing is not None:
        starts &= ~thrashing[m_first:m_outer]
    pages = np.flatnonzero(starts) + m_first
    leaves = pages - m_first + tree.offset
    sf, so = _stock_regions(
        tree.cs, tree.leaf_count, tree.level_count, threshold, leaves, tree.offset, m_first, m_outer
    )
    for page, leaf, f, o in zip(pages.tolist(), leaves.tolist(), sf.tolist(), so.tolist(), strict=True):
        r = region_for(page, leaf, None if o < 0 else (f, o))
        if r is None:
            continue
        f, o = r
        if o > f:
            out[f:o] = True
        if o == m_outer:
            break  # the driver's early exit: the region reached the end of the block
    out &= ~faulted
    if thrashing is not None:
        out &= ~thrashing
    if dest_is_cpu and cpu_resident_readable is not None:
        out &= ~cpu_resident_readable
    return out
