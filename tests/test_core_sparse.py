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
