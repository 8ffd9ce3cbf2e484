"""A fetched batch of replayable faults, in compiled code (uvm_gpu_replayable_faults.c):
adjacent duplicates coalesced at fetch (fetch_fault_buffer_entries), then sorted by (page, most
intrusive access first) and split into VA blocks (preprocess_fault_batch). The bottom half
(``replayable_faults.BottomHalf``) and the compiled fault loop (engine/fault_loop.py) both call
these.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from uvmlab.driver.va_space import BLOCK_SHIFT


@njit(cache=True)
def coalesce(
    page: np.ndarray,
    access: np.ndarray,
    utlb: np.ndarray,
    n_utlb: int,
    enabled: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``fetch_fault_buffer_try_merge_entry`` (uvm_gpu_replayable_faults.c): merge an entry into the last
    unfiltered entry
    of its uTLB with the same page (any access), else into the last unfiltered entry of the batch
    with the same page and an access type >= its own. Returns representative indices, their
    instance counts and their (most intrusive) access types."""
    n = len(page)
    rep_page = np.empty(n, np.int64)
    rep_access = np.empty(n, np.uint8)
    rep_count = np.empty(n, np.int32)
    m = coalesce_into(
        page, access, utlb, enabled, rep_page, rep_access, rep_count, np.empty(n_utlb, np.int64)
    )
    return rep_page[:m], rep_access[:m], rep_count[:m]


@njit(cache=True, inline="always")
def coalesce_into(
    page: np.ndarray,
    access: np.ndarray,
    utlb: np.ndarray,
    enabled: bool,
    rep_page: np.ndarray,
    rep_access: np.ndarray,
    rep_count: np.ndarray,
    last_of_utlb: np.ndarray,
) -> int:
    """``coalesce`` into arrays of the caller (``last_of_utlb``: scratch, one per uTLB);
    returns how many representatives."""
    last_of_utlb[:] = -1
    m = 0
    last = -1
    for i in range(len(page)):
        u = utlb[i]
        j = last_of_utlb[u] if enabled else -1
        if j >= 0 and rep_page[j] == page[i]:
            pass
        elif enabled and last >= 0 and rep_page[last] == page[i] and access[i] <= rep_access[last]:
            j = last
        else:
            j = -1
        if j >= 0:
            rep_count[j] += 1
            if access[i] > rep_access[j]:
                rep_access[j] = access[i]  # the more intrusive access becomes representative
            continue
        rep_page[m] = page[i]
        rep_access[m] = access[i]
        rep_count[m] = 1
        last_of_utlb[u] = m
        last = m
        m += 1
    return m


RADIX_BITS = 8  # a digit of the batch sort: 256 counters
RADIX_MIN = 32  # fewer entries: an insertion sort


@njit(cache=True, inline="always")
def _sort_order(
    page: np.ndarray, access: np.ndarray, key: np.ndarray, tmp: np.ndarray, hist: np.ndarray
) -> np.ndarray:
    """The stable order of entries by (page, access descending), in ``key[:n]`` (``tmp``:
    scratch as long; ``hist``: scratch for ``1 << RADIX_BITS`` counters, or shorter for
    numba's quicksort). Each entry's key carries its index in its low bits, so the keys are
    distinct and any correct sort of them gives the one stable order: an LSD radix sort of
    the (page, access) bits, 8 at a time, digits that every entry shares skipped (a batch of
    256 over 1 GiB: 3 passes; ~4x faster than numba's quicksort); a short batch an insertion
    sort; pages or accesses too high for that room a merge sort."""
    n = len(page)
    bits = 1
    while (1 << bits) < n:
        bits += 1
    top = 0
    top_acc = 0
    for i in range(n):
        top = max(top, page[i])
        top_acc = max(top_acc, int(access[i]))
    key = key[:n]
    if top_acc <= 3 and top < np.int64(1) << (62 - 2 - bits):
        # (page, 3 - access): the access takes 2 bits where 255 - access took 8, same order
        for i in range(n):
            key[i] = (((page[i] << 2) | (3 - np.int64(access[i]))) << bits) | i
        radix = np.int64(1) << RADIX_BITS
        if n < RADIX_MIN:
            for i in range(1, n):
                v = key[i]
                j = i - 1
                while j >= 0 and key[j] > v:
                    key[j + 1] = key[j]
                    j -= 1
                key[j + 1] = v
        elif hist.shape[0] >= radix:
            src, dst = key, tmp[:n]
            swapped = False
            shift = bits
            top_key = ((top << 2) | 3) << bits
            while shift < 63 and (top_key >> shift) != 0:
                hist[:radix] = 0
                for i in range(n):
                    hist[(src[i] >> shift) & (radix - 1)] += 1
                d0 = (src[0] >> shift) & (radix - 1)
                if hist[d0] != n:  # else every entry has this digit: the order stands
                    total = 0
                    for d in range(radix):
                        c = hist[d]
                        hist[d] = total
                        total += c
                    for i in range(n):
                        v = src[i]
                        d = (v >> shift) & (radix - 1)
                        dst[hist[d]] = v
                        hist[d] += 1
                    src, dst = dst, src
                    swapped = not swapped
                shift += RADIX_BITS
            if swapped:
                key[:] = src
        else:
            key.sort()
        mask = (np.int64(1) << bits) - 1
        for j in range(n):
            key[j] &= mask
        return key
    for i in range(n):
        key[i] = page[i] * 256 + (255 - np.int64(access[i]))  # (page, access descending)
    return np.argsort(key, kind="mergesort")


@njit(cache=True)
def preprocess_fault_batch(
    page: np.ndarray, access: np.ndarray, count: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """``preprocess_fault_batch`` (uvm_gpu_replayable_faults.c) on coalesced entries: sort by page,
    the most intrusive access first, ties in buffer order (a stable sort); a page's first entry
    is the one serviced (``keep``), the rest are duplicates, and ``num_duplicate_faults`` also
    counts the instances each entry merged at fetch. Returns the sorted pages and accesses,
    ``keep``, the start and stop of each VA block's run of entries, and the duplicate count."""
    n = len(page)
    sp = np.empty(n, np.int64)
    sa = np.empty(n, np.uint8)
    keep = np.empty(n, np.bool_)
    starts = np.empty(n, np.int64)
    stops = np.empty(max(n, 1 << RADIX_BITS), np.int64)  # room for the radix sort's counters
    nb, duplicates = preprocess_into(page, access, count, sp, sa, keep, starts, stops, np.empty(n, np.int64))
    return sp, sa, keep, starts[:nb].copy(), stops[:nb].copy(), duplicates


@njit(cache=True, inline="always")
def preprocess_into(
    page: np.ndarray,
    access: np.ndarray,
    count: np.ndarray,
    sp: np.ndarray,
    sa: np.ndarray,
    keep: np.ndarray,
    starts: np.ndarray,
    stops: np.ndarray,
    key: np.ndarray,
) -> tuple[int, int]:
    """``preprocess_fault_batch`` into arrays of the caller (``key``: scratch); returns the
    number of VA blocks and the duplicate count."""
    n = len(page)
    # ``starts`` and ``stops`` are written after the sort: its scratch until then
    order = _sort_order(page, access, key, starts, stops)
    duplicates = 0
    nb = 0
    for j in range(n):
        i = order[j]
        sp[j] = page[i]
        sa[j] = access[i]
        same = j > 0 and sp[j] == sp[j - 1]
        keep[j] = not same
        duplicates += count[i] if same else count[i] - 1
        if j == 0 or (sp[j] >> BLOCK_SHIFT) != (sp[j - 1] >> BLOCK_SHIFT):
            starts[nb] = j
            nb += 1
    for b in range(nb - 1):
        stops[b] = starts[b + 1]
    if nb:
        stops[nb - 1] = n
    return nb, duplicates
