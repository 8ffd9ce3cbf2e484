"""core.sparse: clearing a range returns exactly the positions that were set, and union() is
np.union1d of its parts whichever way it computes it (mask over a small range, sort over a
huge sparse one)."""

import numpy as np
import pytest

from uvmlab.core import sparse


@pytest.mark.parametrize("n", [50, 10_000, 1 << 30])  # mask, mask, sort
def test_union_is_union1d(n):
    rng = np.random.default_rng(1)
    parts = [np.unique(rng.integers(0, n, k)) for k in (0, 7, 300)]
    got = sparse.union(parts, n)
    want = np.union1d(np.union1d(parts[0], parts[1]), parts[2])
    assert got.tolist() == want.tolist()
    assert sparse.union([], n).tolist() == []


def test_clear_2d_returns_the_union_of_set_positions():
    rng = np.random.default_rng(2)
    a = np.zeros((2, 20_000), dtype=np.uint8)
    a[0, rng.integers(0, 20_000, 500)] = 3
    a[1, rng.integers(0, 20_000, 500)] = 1
    lo, hi = 1_000, 15_000
    want = np.union1d(np.flatnonzero(a[0, lo:hi]), np.flatnonzero(a[1, lo:hi]))
    before = a.copy()
    got = sparse.clear(a, lo, hi)
    assert got.tolist() == want.tolist()
    assert not a[:, lo:hi].any()
    assert (a[:, :lo] == before[:, :lo]).all() and (a[:, hi:] == before[:, hi:]).all()


@pytest.mark.parametrize("density", [0.0005, 0.5, 1.0])  # scattered, half, every byte set
@pytest.mark.parametrize(("lo", "hi"), [(1024, 9000), (512, 700), (0, 4096)])  # short rows, tiny
def test_clear_rows_reports_the_rows_that_held_something(density, lo, hi):
    rng = np.random.default_rng(3)
    a = (rng.random((2, 10_240)) < density).astype(np.uint8) * rng.integers(1, 4, (2, 10_240)).astype(
        np.uint8
    )
    before = a.copy()
    got = sparse.clear_rows(a, lo, hi, 512)
    rows = np.arange(lo, hi) // 512 - lo // 512
    want = np.zeros(-(-(hi - lo) // 512), dtype=bool)
    want[rows[before[:, lo:hi].any(axis=0)]] = True
    assert got.tolist() == want.tolist()
    assert not a[:, lo:hi].any()
    assert (a[:, :lo] == before[:, :lo]).all() and (a[:, hi:] == before[:, hi:]).all()
    one = before[0].copy()  # 1-D
    assert (
        sparse.clear_rows(one, lo, hi, 512).tolist()
        == (np.bincount(rows[before[0, lo:hi] != 0], minlength=len(want)) > 0).tolist()
    )


def test_clear_rows_needs_an_aligned_start():
    with pytest.raises(ValueError, match="multiple of the row"):
        sparse.clear_rows(np.zeros(1024, np.uint8), 100, 600, 512)


def test_take_gives_back_a_cleared_array_of_the_same_shape():
    sparse._POOL.clear()
    shape = (2, 300_000)  # over LAZY_BYTES: kept
    a = sparse.take(shape, np.uint8)
    a[0, 5] = 7
    a[1, 299_999] = 1
    a[1, 150_000:150_100] = 3
    sparse.give([a])
    b = sparse.take(shape, np.uint8)
    assert b is a and b.shape == shape and b.dtype == np.uint8 and not b.any()
    assert sparse.take(shape, np.uint8) is not a  # taken once: the next is new
    small = np.zeros(100, np.uint8)
    sparse.give([small])  # small arrays (the heap's) are not kept
    assert all(x is not small for x in sparse._POOL)
    sparse._POOL.clear()


def test_a_run_after_another_gets_the_answer_of_a_fresh_process():
    import uvmlab

    sparse._POOL.clear()
    fresh = uvmlab.simulate("sparse:size=512MiB,every=4")
    uvmlab.simulate("random:size=512MiB")  # same VA size: leaves its per-page arrays written
    again = uvmlab.simulate("sparse:size=512MiB,every=4")
    assert again.totals == fresh.totals and again.ops == fresh.ops
    sparse._POOL.clear()
