"""compiled.direct: a numba function called past the dispatcher's typing gives the dispatcher's
answer, and a key it has not seen (other argument types) goes through the dispatcher."""

from __future__ import annotations

import numpy as np
from numba import njit

from uvmlab.driver.compiled.direct import DirectCall, array_key


@njit(cache=False)
def _weighted(a, w, k):
    return (a * w).sum() + k


def test_direct_call_matches_the_dispatcher_for_each_key():
    call = DirectCall(_weighted)
    ints, floats = np.arange(5, dtype=np.int64), np.linspace(0.0, 1.0, 5)
    for a, w, k in ((ints, 2, 3), (ints, 5, -1), (floats, 2, 3), (floats[::2], 3, 0), (ints, 1, 7)):
        key = (array_key(a), type(w), type(k))
        assert call(key, a, w, k) == _weighted(a, w, k)
    # one entry per argument type: int64 C, float64 C, float64 strided (layout A)
    assert len(call._entries) == 3


def test_array_key_tells_apart_what_numba_types_apart():
    a = np.zeros(8, dtype=np.int64)
    ro = a.copy()
    ro.flags.writeable = False
    keys = {array_key(x) for x in (a, a.astype(np.int32), a[::2], a.reshape(2, 4), ro, a.reshape(2, 4).T)}
    assert len(keys) == 6
    assert array_key(a) == array_key(np.ones(3, dtype=np.int64))
