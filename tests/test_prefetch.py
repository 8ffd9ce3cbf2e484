"""Tests for the bitmap-tree prefetcher (uvmlab/driver/perf/prefetch.py).

Expected values come from worked examples A–E of uvm_perf_prefetch.c's algorithm, from the CPU fault path of
uvm_va_block.c, and from
``ref_prefetch`` below: a slow, literal re-reading of uvm_perf_prefetch.c (580.142) written
independently of the numba kernel. It keeps page masks as 512-bit Python integers, shifts them as
``uvm_page_mask_shift_{left,right}`` do, walks the tree with the driver's iterator arithmetic
(``level_idx`` counting down from ``level_count - 1``) and fills the output with an emulation of
Linux ``bitmap_set``/``__bitmap_set`` so that even the degenerate regions of the offset clamp
behave as in the kernel.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uvmlab.driver.perf.prefetch import (
    PROC_INVALID,
    compute_prefetch_mask,
    effective_prefetch_min_faults,
    effective_prefetch_threshold,
    first_touch_shortcut_applies,
    hint_allowed,
    new_prefetch_info,
    prefetch_hint,
    update_prefetch_info,
)

PAGES = 512
PAGE_SIZE = 4096
W64 = (1 << 64) - 1
CPU, GPU0 = 0, 1


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def mask(pages, n: int = PAGES) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[list(pages)] = True
    return m


def rng(first: int, outer: int) -> range:
    return range(first, outer)


def pages_of(m: np.ndarray) -> set[int]:
    return set(np.flatnonzero(m).tolist())


def cpm(faulted, resident=None, thrashing=None, **kw) -> np.ndarray:
    kw.setdefault("block_first_page_va", 0)
    return compute_prefetch_mask(faulted, resident, thrashing, **kw)


# ---------------------------------------------------------------------------------------------
# reference implementation (slow, literal)
# ---------------------------------------------------------------------------------------------


def _to_bits(a: np.ndarray | None) -> int | None:
    if a is None:
        return None
    v = 0
    for i in np.flatnonzero(a):
        v |= 1 << int(i)
    return v


def _weight(bits: int, first: int, outer: int) -> int:
    if outer <= first:
        return 0
    return bin((bits >> first) & ((1 << (outer - first)) - 1)).count("1")


def _linux_bitmap_set(words: list[int], start: int, nbits: int) -> None:
    """bitmap_set(map, start, nbits): nbits is an unsigned int, __bitmap_set takes an int len."""
    nbits &= 0xFFFFFFFF
    length = nbits - (1 << 32) if nbits >= 1 << 31 else nbits
    size = (start + length) & 0xFFFFFFFF
    p = start // 64
    bits_to_set = 64 - (start % 64)
    mask_to_set = (W64 << (start % 64)) & W64  # BITMAP_FIRST_WORD_MASK(start)
    while length - bits_to_set >= 0:
        words[p] |= mask_to_set
        length -= bits_to_set
        bits_to_set = 64
        mask_to_set = W64
        p += 1
    if length:
        mask_to_set &= W64 >> ((-size) & 63)  # BITMAP_LAST_WORD_MASK(size)
        assert p < len(words), "bitmap_set would write past the page mask"
        words[p] |= mask_to_set


def _roundup_pow2(x: int) -> int:
    p = 1
    while p < x:
        p <<= 1
    return p


def ref_prefetch(
    faulted: np.ndarray,
    resident: np.ndarray | None,
    thrashing: np.ndarray | None,
    *,
    block_first_page_va: int,
    big_page_pages: int = 16,
    threshold: int = 51,
    dest_is_cpu: bool = False,
    cpu_resident_readable: np.ndarray | None = None,
    max_region: tuple[int, int] | None = None,
    driver_offset_clamp: bool = True,
    shortcut: bool = False,
    early_out: bool = True,
) -> np.ndarray:
    n = len(faulted)
    full = (1 << PAGES) - 1
    fault_bits = _to_bits(faulted)
    res_bits = _to_bits(resident)
    thr_bits = _to_bits(thrashing)
    m_first, m_outer = max_region if max_region is not None else (0, n)
    out = [0] * (PAGES // 64)

    if shortcut:
        _linux_bitmap_set(out, m_first, m_outer - m_first)
    else:
        # init_bitmap_tree_from_region
        tree = (res_bits | fault_bits) if res_bits is not None else fault_bits
        tree >>= m_first
        offset = 0
        leaf_count = m_outer - m_first
        level_count = _roundup_pow2(leaf_count).bit_length()  # ilog2(..) + 1

        # update_bitmap_tree_from_va_block: uvm_va_block_big_page_region_subset via
        # range_big_page_region_all on byte addresses.
        big_size = big_page_pages * PAGE_SIZE
        block_start = block_first_page_va * PAGE_SIZE
        start = block_start + m_first * PAGE_SIZE
        end = block_start + m_outer * PAGE_SIZE - 1
        first_addr = -(-start // big_size) * big_size
        outer_addr = (end + 1) // big_size * big_size
        if outer_addr <= first_addr:
            big_first, big_outer = 0, 0
        else:
            big_first = (first_addr - start) // PAGE_SIZE + m_first
            big_outer = (outer_addr - start) // PAGE_SIZE + m_first
        if big_first - m_first > 0:
            offset = big_page_pages - (big_first - m_first)
            leaf_count = (m_outer - m_first) + offset
            assert offset < big_page_pages and leaf_count <= PAGES
            tree = (tree << offset) & full
            level_count = _roundup_pow2(leaf_count).bit_length()

        # grow_fault_granularity
        def grow(first: int, outer: int) -> None:
            nonlocal tree
            if _weight(fault_bits, first, outer) and (
                thr_bits is None or _weight(thr_bits, first, outer) == 0
            ):
                a = first - m_first + offset
                b = outer - m_first + offset
                assert b <= leaf_count
                tree |= ((1 << (b - a)) - 1) << a

        if not big_outer:
            grow(m_first, m_outer)
        else:
            if big_first > m_first:
                grow(m_first, big_first)
            for page in range(big_first, big_outer, big_page_pages):
                grow(page, page + big_page_pages)
            if big_outer < m_outer:
                grow(big_outer, m_outer)

        # compute_prefetch_mask over scratch = faulted & ~thrashing, in faulted_region
        scratch = fault_bits & ~thr_bits if thr_bits is not None else fault_bits
        for page in range(m_first, m_outer):
            if not (scratch >> page) & 1:
                continue
            # compute_prefetch_region, with the bitmap-tree iterator of uvm_perf_prefetch.h
            node_idx = page - m_first + offset
            reg_first, reg_outer = 0, 0
            level_idx = level_count - 1
            while level_idx >= 0:
                max_leaves = 1 << ((level_count - 1) - level_idx)
                range_start = node_idx // max_leaves * max_leaves
                range_end = min(range_start + max_leaves, leaf_count)
                counter = _weight(tree, range_start, range_end)
                if counter * 100 > (range_end - range_start) * threshold:
                    reg_first, reg_outer = range_start, range_end
                level_idx -= 1
            if reg_outer:
                if driver_offset_clamp:
                    reg_first += m_first
                    if reg_first < offset:
                        reg_first = offset
                    else:
                        reg_first -= offset
                        if reg_first < m_first:
                            reg_first = m_first
                    reg_outer += m_first
                    if reg_outer < offset:
                        reg_outer = offset
                    else:
                        reg_outer -= offset
                        if reg_outer > m_outer:
                            reg_outer = m_outer
                else:
                    reg_first = max(reg_first + m_first - offset, m_first)
                    reg_outer = min(reg_outer + m_first - offset, m_outer)
            _linux_bitmap_set(out, reg_first, reg_outer - reg_first)
            if early_out and reg_outer == m_outer:
                break

    bits = 0
    for i, w in enumerate(out):
        bits |= w << (64 * i)
    bits &= ~fault_bits
    if dest_is_cpu and cpu_resident_readable is not None:
        bits &= ~_to_bits(cpu_resident_readable)
    if thr_bits is not None:
        bits &= ~thr_bits
    assert bits >> n == 0, "reference produced pages outside the block"
    return np.array([(bits >> i) & 1 for i in range(n)], dtype=bool)


# ---------------------------------------------------------------------------------------------
# worked examples of uvm_perf_prefetch.c's algorithm (2 MiB aligned block, 64 KiB big pages, threshold 51)
# ---------------------------------------------------------------------------------------------

# (fault page, D already holds [0, held), winning node, pages migrated by prefetch)
EXAMPLE_A = [
    (0, 0, (0, 16), rng(1, 16)),
    (16, 16, (0, 32), rng(17, 32)),
    (32, 32, (0, 64), rng(33, 64)),
    (64, 64, (0, 128), rng(65, 128)),
    (128, 128, (0, 256), rng(129, 256)),
    (256, 256, (0, 512), rng(257, 512)),
]


@pytest.mark.parametrize("fault,held,node,migrated", EXAMPLE_A)
@pytest.mark.parametrize("dest_is_cpu", [False, True])
def test_example_a_rows(fault, held, node, migrated, dest_is_cpu):
    resident = mask(range(held))
    # For a CPU destination the held pages are also mapped readable by the CPU (the CPU fault path of
    # uvm_va_block.c), so the
    # driver drops them from the mask; for a GPU they stay in it (the copy skips them).
    cpu_rr = resident if dest_is_cpu else None
    out = cpm(mask([fault]), resident, None, dest_is_cpu=dest_is_cpu, cpu_resident_readable=cpu_rr)
    expected_mask = set(range(*node)) - {fault}
    if dest_is_cpu:
        expected_mask -= set(range(held))
    assert pages_of(out) == expected_mask
    assert pages_of(out & ~resident) == set(migrated)


@pytest.mark.parametrize("dest_is_cpu", [False, True])
def test_example_a_sequential_sweep(dest_is_cpu):
    resident = np.zeros(PAGES, dtype=bool)
    faults, events = [], []
    for p in range(PAGES):
        if resident[p]:
            continue
        faulted = mask([p])
        out = cpm(
            faulted,
            resident,
            None,
            dest_is_cpu=dest_is_cpu,
            cpu_resident_readable=resident.copy() if dest_is_cpu else None,
        )
        new = out & ~resident
        faults.append(p)
        events.append(int(new.sum()))
        resident |= faulted | out
    assert faults == [0, 16, 32, 64, 128, 256]  # 6 faults per 2 MiB block
    assert events == [15, 15, 31, 63, 127, 255]
    assert [e + 1 for e in events] == [
        16,
        16,
        32,
        64,
        128,
        256,
    ]  # the CPU fault path of uvm_va_block.c, per fault event
    assert max(events) * PAGE_SIZE == 1_044_480
    assert resident.all()


def test_example_b_isolated_fault():
    out = cpm(mask([300]), None, None)
    assert pages_of(out) == set(range(288, 300)) | set(range(301, 304))
    # the same with an empty resident mask (D has state in the block but holds nothing)
    assert np.array_equal(cpm(mask([300]), np.zeros(PAGES, bool), None), out)


def test_example_c_several_faults():
    faults = [0, 1, 2, 3, 20, 40]
    out = cpm(mask(faults), None, None)
    assert pages_of(out) == set(range(64)) - set(faults)


def test_example_d_partial_residency():
    faults = [5, 40, 70, 100]
    out = cpm(mask(faults), mask(range(64)), None)
    assert pages_of(out) == set(range(128)) - set(faults)


# Example E: the block starts 5 pages before a 64 KiB boundary, so its first big page starts at
# block page 5 and offset = 16 - 5 = 11. A block never crosses 2 MiB, so it has 512 - 11 pages.
E_VA = 7 * PAGES + 11
E_N = PAGES - 11


@pytest.mark.parametrize("clamp", [True, False])
def test_example_e_big_pages_align_with_tree_nodes(clamp):
    # A fault anywhere in a real big page [5 + 16j, 21 + 16j) gives exactly that big page:
    # every 16-leaf node of the shifted tree is one real big page.
    for j in range(0, (E_N - 5) // 16):
        first = 5 + 16 * j
        for p in (first, first + 7, first + 15):
            out = cpm(mask([p], E_N), None, None, block_first_page_va=E_VA, driver_offset_clamp=clamp)
            assert pages_of(out) == set(range(first, first + 16)) - {p}


def test_example_e_prefix_fault():
    # Prefix pages 0-4 are tree leaves 11-15: the node [8,16) wins (5/8 set, [0,16) has 5/16).
    # Driver (580.142 compute_prefetch_region): start 8 < offset becomes page 11, end 16 - 11 = 5,
    # an inverted region, and bitmap_set of a negative length sets nothing.
    for p in range(5):
        out = cpm(mask([p], E_N), None, None, block_first_page_va=E_VA)
        assert not out.any()
        fixed = cpm(mask([p], E_N), None, None, block_first_page_va=E_VA, driver_offset_clamp=False)
        assert pages_of(fixed) == set(range(5)) - {p}


def test_example_e_node_over_virtual_leaves():
    # D holds the prefix 0-4, page 5 faults: leaves 11-31 are set, node [0,32) wins (21/32).
    # Driver: [0,32) maps to pages [11, 21), so 6-10 are not prefetched; the spec's clamp gives
    # [0, 21).
    resident = mask(range(5), E_N)
    out = cpm(mask([5], E_N), resident, None, block_first_page_va=E_VA)
    assert pages_of(out) == set(range(11, 21))
    fixed = cpm(mask([5], E_N), resident, None, block_first_page_va=E_VA, driver_offset_clamp=False)
    assert pages_of(fixed) == set(range(21)) - {5}


def test_example_e_sequential_sweep_driver_quirk():
    # The quirk makes a sequential sweep of such a block cost more faults than the 6 of an
    # aligned block: the prefix pages and part of the first big page fault one by one.
    def sweep(clamp: bool) -> list[int]:
        resident = np.zeros(E_N, dtype=bool)
        faults = []
        for p in range(E_N):
            if resident[p]:
                continue
            faulted = mask([p], E_N)
            out = cpm(faulted, resident, None, block_first_page_va=E_VA, driver_offset_clamp=clamp)
            ref = ref_prefetch(faulted, resident, None, block_first_page_va=E_VA, driver_offset_clamp=clamp)
            assert np.array_equal(out, ref)
            faults.append(p)
            resident |= faulted | out
        assert resident.all()
        return faults

    driver = sweep(True)
    fixed = sweep(False)
    assert driver[:10] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert len(driver) > len(fixed)
    assert fixed[0] == 0


def test_unaligned_partial_block_with_suffix():
    # VA page 3 mod 16, 37 pages: prefix 0-12, big page 13-28, suffix 29-36, offset 3.
    va = 5 * PAGES + 3
    out = cpm(mask([20], 37), None, None, block_first_page_va=va)
    assert pages_of(out) == set(range(13, 29)) - {20}
    out = cpm(mask([33], 37), None, None, block_first_page_va=va)
    assert pages_of(out) == set(range(29, 37)) - {33}
    for clamp in (True, False):
        for p in range(37):
            args = (mask([p], 37), mask(range(0, 37, 3), 37), None)
            kw = dict(block_first_page_va=va, driver_offset_clamp=clamp)
            assert np.array_equal(cpm(*args, **kw), ref_prefetch(*args, **kw))


# ---------------------------------------------------------------------------------------------
# threshold arithmetic and edge thresholds
# ---------------------------------------------------------------------------------------------

MIN_COUNTS = {2: 2, 4: 3, 8: 5, 16: 9, 32: 17, 64: 33, 128: 66, 256: 131, 512: 262}


@pytest.mark.parametrize("size,min_count", sorted(MIN_COUNTS.items()))
def test_threshold_minimum_counts(size, min_count):
    # Fault on page 0, D holds pages 1..c-1, so node [0, size) has c set pages, and node
    # [0, 2*size) at most 50 % (fails). Page size-1 is prefetched iff [0, size) passes.
    # With big pages of 1 page the grow step adds nothing.
    def passes(c: int, big: int) -> bool:
        out = cpm(mask([0]), mask(range(1, c)), None, big_page_pages=big)
        return bool(out[size - 1])

    found = min(c for c in range(1, size + 1) if passes(c, 1))
    assert found == min_count
    assert min_count * 100 > size * 51 >= (min_count - 1) * 100
    # The same with 64 KiB big pages for nodes larger than a big page (the fault grows 16
    # leaves, so D's pages 1..15 change nothing; below 32 the grown big page alone passes).
    if size >= 32:
        assert not passes(min_count - 1, 16)
        assert passes(min_count, 16)


def test_threshold_100_prefetches_nothing():
    # count * 100 > size * 100 never holds, not even for the faulted leaf itself.
    everything = np.ones(PAGES, dtype=bool)
    for faults in ([0], [300], list(range(0, 512, 7))):
        assert not cpm(mask(faults), everything, None, threshold=100).any()
    assert not cpm(mask([3], 37), None, None, threshold=100).any()


def test_threshold_99_is_grown_big_page():
    # Only full nodes pass: an isolated fault gets its big page and nothing more.
    out = cpm(mask([300]), None, None, threshold=99)
    assert pages_of(out) == set(range(288, 304)) - {300}


def test_threshold_0_whole_block():
    out = cpm(mask([300]), None, None, threshold=0)
    assert pages_of(out) == set(range(PAGES)) - {300}
    out = cpm(mask([300]), None, mask([7, 400]), threshold=0)
    assert pages_of(out) == set(range(PAGES)) - {300, 7, 400}
    # Driver clamp on an unaligned block: the root maps to [offset, n), pages 0-10 are lost.
    out = cpm(mask([300], E_N), None, None, block_first_page_va=E_VA, threshold=0)
    assert pages_of(out) == set(range(11, E_N)) - {300}
    out = cpm(
        mask([300], E_N),
        None,
        None,
        block_first_page_va=E_VA,
        threshold=0,
        driver_offset_clamp=False,
    )
    assert pages_of(out) == set(range(E_N)) - {300}
    # No walk start (the only faulted page is thrashing): nothing, even at threshold 0.
    assert not cpm(mask([300]), None, mask([300]), threshold=0).any()


# ---------------------------------------------------------------------------------------------
# thrashing, CPU destination, partial blocks, max_region
# ---------------------------------------------------------------------------------------------


def test_thrashing_page_blocks_its_big_page():
    # 290 thrashes, so big page 288-303 is not grown: leaf 300 stands alone and nothing passes
    # above the leaf itself. Big page 320-335 grows normally.
    out = cpm(mask([300, 330]), None, mask([290]))
    assert pages_of(out) == set(range(320, 336)) - {330}


def test_thrashing_faulted_page_is_not_walked():
    assert not cpm(mask([300]), None, mask([300])).any()
    # It still counts in the tree as a set leaf (it is faulted), but its big page is not grown.
    out = cpm(mask([300, 301]), None, mask([300]))
    assert pages_of(out) == set()  # 301's big page holds a thrashing page: only leaves 300-301
    out = cpm(mask([300, 301]), None, mask([300]), threshold=40)
    assert pages_of(out) == {302, 303}  # [300,304) has 2/4 = 50 % > 40 %


def test_thrashing_pages_removed_from_prefetch():
    out = cpm(mask([64]), mask(range(64)), mask([100, 127]))
    assert pages_of(out) == set(range(128)) - {64, 100, 127}


def test_cpu_destination_excludes_cpu_resident_readable():
    faults = [5, 40, 70, 100]
    readable = mask([0, 1, 2, 50, 120, 300])
    out = cpm(mask(faults), mask(range(64)), None, dest_is_cpu=True, cpu_resident_readable=readable)
    assert pages_of(out) == set(range(128)) - set(faults) - {0, 1, 2, 50, 120}
    # For a GPU destination the CPU mapping mask is ignored.
    out = cpm(mask(faults), mask(range(64)), None, dest_is_cpu=False, cpu_resident_readable=readable)
    assert pages_of(out) == set(range(128)) - set(faults)


def test_partial_block_37_pages():
    n = 37
    # Big pages 0-15 and 16-31, suffix 32-36.
    assert pages_of(cpm(mask([0], n), None, None)) == set(range(1, 16))
    assert pages_of(cpm(mask([36], n), None, None)) == {32, 33, 34, 35}
    out = cpm(mask([36], n), mask(range(32), n), None)
    assert pages_of(out) == set(range(36))
    for p in range(n):
        for res in (None, mask(range(0, n, 2), n), mask(range(20), n)):
            args = (mask([p], n), res, None)
            assert np.array_equal(cpm(*args), ref_prefetch(*args, block_first_page_va=0))


def test_small_block_without_big_pages_is_one_part():
    # 20 pages at VA 5 mod 16 contain no whole 64 KiB page: the region is one part, the
    # tree has no offset, and one fault grows the whole block.
    out = cpm(mask([3], 20), None, None, block_first_page_va=PAGES + 5)
    assert pages_of(out) == set(range(20)) - {3}


def test_max_region():
    # HMM-style max_prefetch_region [100, 200) in an aligned block: prefix 100-111 (offset 4),
    # big pages 112-191, suffix 192-199.
    region = (100, 200)
    out = cpm(mask([150]), None, None, max_region=region)
    assert pages_of(out) == set(range(144, 160)) - {150}
    out = cpm(mask([101]), None, None, max_region=region)
    assert pages_of(out) == set(range(100, 112)) - {101}
    out = cpm(mask([150]), None, None, max_region=region, threshold=0)
    assert pages_of(out) == set(range(100, 200)) - {150}
    with pytest.raises(ValueError):
        cpm(mask([50]), None, None, max_region=region)


def test_argument_checks():
    with pytest.raises(ValueError):
        cpm(np.zeros(0, bool))
    with pytest.raises(ValueError):
        cpm(np.zeros(513, bool))
    with pytest.raises(ValueError):
        cpm(mask([1], 37), block_first_page_va=500)  # crosses 2 MiB
    with pytest.raises(ValueError):
        cpm(mask([1]), big_page_pages=12)
    with pytest.raises(ValueError):
        cpm(mask([1]), threshold=101)
    with pytest.raises(ValueError):
        cpm(mask([1]), resident=np.zeros(10, bool))
    with pytest.raises(ValueError):
        cpm(mask([1]), max_region=(5, 5))
    assert effective_prefetch_threshold(101) == 51
    assert effective_prefetch_threshold(0) == 0
    assert effective_prefetch_min_faults(0) == 1
    assert effective_prefetch_min_faults(21) == 1
    assert effective_prefetch_min_faults(20) == 20


def test_no_fault_no_prefetch():
    assert not cpm(np.zeros(PAGES, bool), mask(range(300)), None).any()


# ---------------------------------------------------------------------------------------------
# first touch, prefetch_info and the hint
# ---------------------------------------------------------------------------------------------


def test_first_touch_shortcut_applies():
    assert first_touch_shortcut_applies(0, GPU0, GPU0)
    assert not first_touch_shortcut_applies(1, GPU0, GPU0)
    assert not first_touch_shortcut_applies(0, GPU0, CPU)
    assert not first_touch_shortcut_applies(0, GPU0, None)
    assert not first_touch_shortcut_applies(0, GPU0, PROC_INVALID)
    assert first_touch_shortcut_applies(0, CPU, CPU)


def test_prefetch_info_updates():
    last, count = new_prefetch_info(4)
    assert last.tolist() == [PROC_INVALID] * 4 and count.dtype == np.uint16
    assert update_prefetch_info(last, count, 2, GPU0, 3) == 3
    assert update_prefetch_info(last, count, 2, GPU0, 2) == 5
    assert update_prefetch_info(last, count, 2, CPU, 1) == 1  # new destination resets
    assert last[2] == CPU and count[2] == 1
    assert count[0] == 0 and last[0] == PROC_INVALID
    count[1], last[1] = 65535, GPU0
    assert update_prefetch_info(last, count, 1, GPU0, 2) == 1  # NvU16 wraps
    assert hint_allowed(1, 1) and not hint_allowed(1, 2) and hint_allowed(2, 2)


def _hint(faulted, resident=None, **kw):
    state = kw.pop("state")
    kw.setdefault("block", 0)
    kw.setdefault("dest", GPU0)
    kw.setdefault("block_first_page_va", 0)
    kw.setdefault("resident_anywhere_count", 1)
    return prefetch_hint(faulted, resident, None, last_proc=state[0], fault_migrations=state[1], **kw)


def test_prefetch_hint_min_faults_and_enable():
    state = new_prefetch_info(1)
    out = _hint(mask([300]), state=state, min_faults=3)
    assert not out.any() and state[1][0] == 1
    out = _hint(mask([400]), state=state, min_faults=3)
    assert not out.any() and state[1][0] == 2
    out = _hint(mask([200]), state=state, min_faults=3)
    assert pages_of(out) == set(range(192, 208)) - {200} and state[1][0] == 3
    # A different destination resets the count.
    out = _hint(mask([200]), state=state, min_faults=3, dest=CPU)
    assert not out.any() and state[0][0] == CPU and state[1][0] == 1
    # Disabled: no hint and prefetch_info untouched.
    out = _hint(mask([100]), state=state, enable=False, dest=GPU0)
    assert not out.any() and state[0][0] == CPU and state[1][0] == 1
    # Default min_faults = 1: the first fault already qualifies.
    state = new_prefetch_info(1)
    out = _hint(mask([300]), state=state)
    assert pages_of(out) == set(range(288, 304)) - {300}


def test_prefetch_hint_first_touch():
    state = new_prefetch_info(1)
    out = _hint(mask([300, 301]), state=state, resident_anywhere_count=0, preferred_location=GPU0)
    assert pages_of(out) == set(range(PAGES)) - {300, 301}
    # Post-filters still apply after the shortcut.
    out = prefetch_hint(
        mask([300]),
        None,
        mask([5]),
        block=0,
        dest=GPU0,
        last_proc=state[0],
        fault_migrations=state[1],
        block_first_page_va=0,
        resident_anywhere_count=0,
        preferred_location=GPU0,
    )
    assert pages_of(out) == set(range(PAGES)) - {300, 5}
    # Not resident nowhere, or not the preferred location: the tree.
    out = _hint(mask([300]), state=state, resident_anywhere_count=0, preferred_location=CPU)
    assert pages_of(out) == set(range(288, 304)) - {300}
    out = _hint(mask([300]), state=state, resident_anywhere_count=0)
    assert pages_of(out) == set(range(288, 304)) - {300}


# ---------------------------------------------------------------------------------------------
# randomized comparison with the reference, and properties
# ---------------------------------------------------------------------------------------------


def _random_case(r: random.Random) -> tuple[tuple, dict]:
    n = r.choice([PAGES, PAGES, r.randint(1, PAGES)])
    va = r.randint(0, 9) * PAGES + r.randint(0, PAGES - n)
    big = r.choice([16, 16, 16, 32, 1, 2, 64])

    def rand_mask(density: float) -> np.ndarray:
        if r.random() < 0.5:
            return np.array([r.random() < density for _ in range(n)], dtype=bool)
        m = np.zeros(n, dtype=bool)  # a few runs, like real residency
        for _ in range(r.randint(0, 4)):
            a = r.randrange(n)
            m[a : a + r.randint(1, 128)] = True
        return m

    if r.random() < 0.3:
        lo = r.randrange(n)
        region = (lo, r.randint(lo + 1, n))
    else:
        region = None
    m_first, m_outer = region if region is not None else (0, n)
    faulted = rand_mask(r.choice([0.005, 0.02, 0.1, 0.5]))
    faulted[:m_first] = False
    faulted[m_outer:] = False
    if not faulted.any() and r.random() < 0.9:
        faulted[r.randrange(m_first, m_outer)] = True
    resident = rand_mask(r.choice([0.1, 0.5, 0.9])) & ~faulted if r.random() < 0.8 else None
    thrashing = rand_mask(r.choice([0.002, 0.02, 0.1])) if r.random() < 0.4 else None
    dest_is_cpu = r.random() < 0.3
    cpu_rr = rand_mask(0.3) if r.random() < 0.5 else None
    kw = dict(
        block_first_page_va=va,
        big_page_pages=big,
        threshold=r.choice([51, 51, 0, 100, 99, 1, 50, r.randint(0, 100)]),
        dest_is_cpu=dest_is_cpu,
        cpu_resident_readable=cpu_rr,
        max_region=region,
        driver_offset_clamp=r.random() < 0.7,
    )
    return (faulted, resident, thrashing), kw


def test_random_against_reference():
    r = random.Random(20240580)
    for _ in range(3000):
        args, kw = _random_case(r)
        got = compute_prefetch_mask(*args, **kw)
        want = ref_prefetch(*args, **kw)
        assert np.array_equal(got, want), (kw, pages_of(got) ^ pages_of(want))


def test_random_early_out_never_matters():
    r = random.Random(7)
    for _ in range(500):
        args, kw = _random_case(r)
        assert np.array_equal(ref_prefetch(*args, **kw), ref_prefetch(*args, **kw, early_out=False))


@st.composite
def cases(draw):
    n = draw(st.sampled_from([PAGES, 37, 100, 256, 511]))
    va = draw(st.integers(0, 3)) * PAGES + draw(st.integers(0, PAGES - n))
    big = draw(st.sampled_from([16, 32]))
    idx = st.integers(0, n - 1)
    faulted = mask(draw(st.sets(idx, min_size=0, max_size=12)), n)
    resident = mask(draw(st.sets(idx, max_size=64)), n)
    for _ in range(draw(st.integers(0, 3))):  # runs
        a = draw(idx)
        resident[a : a + draw(st.integers(1, 200))] = True
    resident &= ~faulted
    thrashing = mask(draw(st.sets(idx, max_size=4)), n)
    cpu_rr = mask(draw(st.sets(idx, max_size=40)), n)
    kw = dict(
        block_first_page_va=va,
        big_page_pages=big,
        threshold=draw(st.integers(0, 100)),
        dest_is_cpu=draw(st.booleans()),
        cpu_resident_readable=cpu_rr,
        driver_offset_clamp=draw(st.booleans()),
    )
    return faulted, resident, thrashing, kw


def _offset(va: int, big: int) -> int:
    return va % big


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(cases())
def test_property_basic_invariants(case):
    faulted, resident, thrashing, kw = case
    n = len(faulted)
    out = compute_prefetch_mask(faulted, resident, thrashing, **kw)
    assert out.shape == (n,) and out.dtype == np.bool_
    assert not (out & faulted).any()
    assert not (out & thrashing).any()
    if kw["dest_is_cpu"]:
        assert not (out & kw["cpu_resident_readable"]).any()
    if kw["threshold"] == 100 or not (faulted & ~thrashing).any():
        assert not out.any()
    assert np.array_equal(out, ref_prefetch(faulted, resident, thrashing, **kw))


@SETTINGS
@given(cases())
def test_property_big_page_granularity(case):
    # In a block whose tree needs no offset, with threshold < 100, every faulted page whose part
    # (big page, suffix, or the whole region) holds no thrashing page gets that whole part:
    # the part is a full tree node, so the winning node contains it. The 64 KiB minimum of
    # uvm_perf_prefetch.c.
    faulted, resident, thrashing, kw = case
    kw.update(dest_is_cpu=False, threshold=min(kw["threshold"], 99))
    n = len(faulted)
    big = kw["big_page_pages"]
    va = kw["block_first_page_va"] // big * big  # aligned: offset 0
    if va % PAGES + n > PAGES:
        return
    kw["block_first_page_va"] = va
    out = compute_prefetch_mask(faulted, resident, thrashing, **kw)
    got = out | faulted
    has_big = n >= big
    for p in np.flatnonzero(faulted & ~thrashing):
        a, b = (p // big * big, min(p // big * big + big, n)) if has_big else (0, n)
        if not thrashing[a:b].any():
            assert got[a:b].all(), (p, a, b)


@SETTINGS
@given(cases(), st.integers(0, 100), st.integers(0, 100))
def test_property_monotone_in_threshold(case, t1, t2):
    # A lower threshold passes every node a higher one passes, so the winners only grow. With
    # the driver's clamp this holds only without an offset (a larger node that reaches into
    # the virtual leaves can map to fewer pages).
    faulted, resident, thrashing, kw = case
    lo, hi = sorted((t1, t2))
    if kw["driver_offset_clamp"] and _offset(kw["block_first_page_va"], kw["big_page_pages"]):
        kw["driver_offset_clamp"] = False
    out_lo = compute_prefetch_mask(faulted, resident, thrashing, **{**kw, "threshold": lo})
    out_hi = compute_prefetch_mask(faulted, resident, thrashing, **{**kw, "threshold": hi})
    assert not (out_hi & ~out_lo).any()


@SETTINGS
@given(cases(), st.sets(st.integers(0, PAGES - 1), max_size=100))
def test_property_monotone_in_residency(case, extra):
    # More pages on D only raise node counts: the prefetch set can only grow (CPU filter off,
    # since it depends on residency itself).
    faulted, resident, thrashing, kw = case
    n = len(faulted)
    kw["dest_is_cpu"] = False
    if kw["driver_offset_clamp"] and _offset(kw["block_first_page_va"], kw["big_page_pages"]):
        kw["driver_offset_clamp"] = False
    more = resident | mask([e for e in extra if e < n], n)
    out = compute_prefetch_mask(faulted, resident, thrashing, **kw)
    out_more = compute_prefetch_mask(faulted, more, thrashing, **kw)
    assert not (out & ~out_more).any()
