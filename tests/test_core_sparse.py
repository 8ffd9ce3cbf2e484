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
