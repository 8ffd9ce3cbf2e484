"""Borrowed views (uvmlab.driver.compiled.borrow): the same memory, no copy, C-contiguous only."""

import numpy as np
import pytest
from numba import njit

from uvmlab.driver.compiled.borrow import view


@njit
def _write_through(a):
    v = view(a)
    v[1] = 7
    return v.sum()


@njit
def _view_2d(a):
    v = view(a)
    return v[1, 2]


def test_a_view_reads_and_writes_the_array_itself():
    a = np.arange(5, dtype=np.int64)
    assert _write_through(a) == 0 + 7 + 2 + 3 + 4
    assert a[1] == 7  # written through: the view is the array's memory, not a copy


def test_a_two_dimensional_view_keeps_its_shape():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert _view_2d(a) == a[1, 2]


def test_a_strided_array_is_refused():
    with pytest.raises(ValueError, match="C-contiguous"):
        _write_through(np.arange(10, dtype=np.int64)[::2])
