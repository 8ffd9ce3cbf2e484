"""The compiled fault-arrival order (counting sorts) equals the lexsort reference for the ascending
touch positions that GpuKernelRun keeps for its stalled threads."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uvmlab.engine.arrival import arrival_entries, arrival_order, arrival_order_sorted


def random_sorted_positions(rng: np.random.Generator, n: int, conc: int) -> np.ndarray:
    """``n`` distinct ascending positions spread over a few multiples of ``conc`` (stalls left
    over from earlier windows mixed with new ones)."""
    span = conc * int(rng.integers(1, 5)) + int(rng.integers(0, conc))
    span = max(span, n)
    start = int(rng.integers(0, 3 * conc + 1))
    return np.sort(rng.choice(span, size=n, replace=False)).astype(np.int64) + start


CONFIGS = [  # conc, tpb, n_sm, n_utlb
    (1, 1, 1, 1),
    (1, 256, 132, 66),
    (7, 2, 3, 2),
    (7, 256, 132, 66),
    (64, 4, 5, 3),
    (256, 32, 132, 66),
    (256, 256, 132, 66),
    (1000, 32, 7, 4),
    (4096, 128, 132, 66),
    (65536, 256, 132, 66),
    (65536, 256, 144, 72),
    (300, 7, 1000, 9),
]


@pytest.mark.parametrize(("conc", "tpb", "n_sm", "n_utlb"), CONFIGS)
def test_counting_sort_matches_lexsort(conc: int, tpb: int, n_sm: int, n_utlb: int) -> None:
    rng = np.random.default_rng(conc * 7919 + tpb * 31 + n_sm)
    sizes = {0, 1, 2, 3, min(conc, n_sm // 2 + 1), min(conc, n_sm + 1), conc}
    sizes |= {int(rng.integers(1, conc + 1)) for _ in range(12)}
    for n in sorted(sizes):
        for _ in range(3):
            pos = random_sorted_positions(rng, n, conc)
            ref_order, ref_utlb = arrival_order(pos, conc, tpb, n_sm, n_utlb)
            order, utlb = arrival_order_sorted(pos, conc, tpb, n_sm, n_utlb)
            np.testing.assert_array_equal(order, ref_order)
            np.testing.assert_array_equal(utlb, ref_utlb)
            assert utlb.dtype == ref_utlb.dtype


def test_contiguous_window_and_gaps() -> None:
    """A full window of consecutive touches, and every other touch across window boundaries."""
    conc, tpb, n_sm, n_utlb = 4096, 256, 132, 66
    for pos in (
        np.arange(conc, dtype=np.int64) + 5 * conc + 17,
        np.arange(3, 3 + 3 * conc, 3, dtype=np.int64),
    ):
        ref_order, ref_utlb = arrival_order(pos, conc, tpb, n_sm, n_utlb)
        order, utlb = arrival_order_sorted(pos, conc, tpb, n_sm, n_utlb)
        np.testing.assert_array_equal(order, ref_order)
        np.testing.assert_array_equal(utlb, ref_utlb)


def test_entries_prefix_matches_reference() -> None:
    """What GpuKernelRun pushes: the first k entries in arrival order, scratch reused."""
    rng = np.random.default_rng(3)
    conc, tpb, n_sm, n_utlb = 2048, 64, 132, 66
    buffers = (
        np.empty(conc, np.int64),
        np.empty(conc, np.int64),
        np.empty((2, conc + 1), np.int64),
        np.empty((5, n_sm), np.int64),
    )
    out_page, out_acc = np.empty(conc, np.int64), np.empty(conc, np.uint8)
    out_utlb, out_write = np.empty(conc, np.int32), np.empty(conc, np.int64)
    for _ in range(20):
        n = int(rng.integers(1, conc + 1))
        k = int(rng.integers(0, n + 1))
        pos = random_sorted_positions(rng, n, conc)
        page = rng.integers(0, 1 << 20, size=n).astype(np.int64)
        acc = rng.integers(0, 4, size=n).astype(np.uint8)
        got = arrival_entries(
            pos,
            page,
            acc,
            n,
            conc,
            tpb,
            n_sm,
            n_utlb,
            k,
            out_page,
            out_acc,
            out_utlb,
            out_write,
            *buffers,
            1,
            0,
            1,
            conc,
        )
        assert got == k  # no uTLB reaches conc reports
        order, utlb = arrival_order(pos, conc, tpb, n_sm, n_utlb)
        np.testing.assert_array_equal(out_page[:k], page[order][:k])
        np.testing.assert_array_equal(out_acc[:k], acc[order][:k])
        np.testing.assert_array_equal(out_utlb[:k], utlb[order][:k])


def test_write_times_and_utlb_cap() -> None:
    """Each SM writes ``burst`` entries per round, round j at t0 + j * interval; a uTLB reports
    at most ``rounds`` rounds per replay, so few occupied SMs give few entries."""
    conc, tpb, n_sm, n_utlb, burst = 2048, 256, 132, 152, 8
    scratch = (np.empty(conc, np.int64), np.empty(conc, np.int64))
    scratch2 = (np.empty((2, conc + 1), np.int64), np.empty((5, n_sm), np.int64))
    outs = (np.empty(conc, np.int64), np.empty(conc, np.uint8), np.empty(conc, np.int32))
    write = np.empty(conc, np.int64)
    pos = np.arange(conc, dtype=np.int64)  # every thread stalled: 8 blocks of 256 on 8 SMs
    page, acc = pos.copy(), np.zeros(conc, np.uint8)
    k = arrival_entries(
        pos,
        page,
        acc,
        conc,
        conc,
        tpb,
        n_sm,
        n_utlb,
        conc,
        *outs,
        write,
        *scratch,
        *scratch2,
        burst,
        1000,
        4000,
        2,
    )
    assert k == 8 * 2 * burst  # 8 SMs x 2 rounds x 8
    np.testing.assert_array_equal(write[:k], 1000 + 4000 * (np.arange(k) // (8 * burst)))
    # the same kernel shape spread over every SM fills a batch at once
    big = 256 * n_sm
    pos = np.arange(big, dtype=np.int64)
    scratch = (np.empty(big, np.int64), np.empty(big, np.int64))
    scratch2 = (np.empty((2, big + 1), np.int64), np.empty((5, n_sm), np.int64))
    outs = (np.empty(big, np.int64), np.empty(big, np.uint8), np.empty(big, np.int32))
    write = np.empty(big, np.int64)
    k = arrival_entries(
        pos,
        pos.copy(),
        np.zeros(big, np.uint8),
        big,
        big,
        tpb,
        n_sm,
        n_utlb,
        big,
        *outs,
        write,
        *scratch,
        *scratch2,
        burst,
        0,
        4000,
        2,
    )
    assert k == n_sm * 2 * burst and (write[: n_sm * burst] == 0).all()


def test_unsorted_positions_rejected() -> None:
    with pytest.raises(ValueError, match="ascending"):
        arrival_order_sorted(np.array([5, 3], dtype=np.int64), 8, 2, 2, 1)
    with pytest.raises(ValueError, match="ascending"):
        arrival_order_sorted(np.array([4, 4], dtype=np.int64), 8, 2, 2, 1)


@settings(max_examples=300, deadline=None)
@given(
    conc=st.integers(1, 600),
    tpb=st.integers(1, 64),
    n_sm=st.integers(1, 40),
    n_utlb=st.integers(1, 20),
    data=st.data(),
)
def test_counting_sort_matches_lexsort_property(
    conc: int, tpb: int, n_sm: int, n_utlb: int, data: st.DataObject
) -> None:
    pos = np.array(sorted(data.draw(st.sets(st.integers(0, 4 * conc + 50), max_size=conc))), dtype=np.int64)
    ref_order, ref_utlb = arrival_order(pos, conc, tpb, n_sm, n_utlb)
    order, utlb = arrival_order_sorted(pos, conc, tpb, n_sm, n_utlb)
    np.testing.assert_array_equal(order, ref_order)
    np.testing.assert_array_equal(utlb, ref_utlb)
