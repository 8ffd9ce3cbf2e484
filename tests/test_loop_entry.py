"""Per-run fixed costs the model skips: run_loop's entry point found by argument types
(engine/loop_entry.py) and the stalled-thread lists kept across engines (engine/stalls.POOL).
Neither may change an answer or call compiled code with arguments of other types."""

from __future__ import annotations

import numpy as np
from numba import typed

import uvmlab
from uvmlab.engine import loop_entry, stalls
from uvmlab.engine.gpu import GpuKernelRun
from uvmlab.engine.stalls import StalledThreads

SPEC = "sparse:size=16MiB,every=2"


def test_fingerprint_tells_apart_what_numba_types_apart():
    a = np.zeros(8, np.int64)
    fp = loop_entry.fingerprint
    base = fp((a, (a, 1.0), None, 3))
    assert base == fp((np.ones(8, np.int64), (np.zeros(3, np.int64), 2.0), None, 7))
    ro = a.copy()
    ro.setflags(write=False)
    two = np.zeros((4, 4), np.int64)
    variants = [
        (ro, (a, 1.0), None, 3),  # read-only: another numba type
        (a.astype(np.int32), (a, 1.0), None, 3),  # dtype
        (np.zeros(16, np.int64)[::2], (a, 1.0), None, 3),  # not contiguous: layout 'A'
        (two, (a, 1.0), None, 3),  # ndim
        (a, (a, 1), None, 3),  # int for float
        (a, (a, 1.0), None, 1 << 63),  # uint64
        (a, [a, 1.0], None, 3),  # a list is not a tuple
    ]
    for v in variants[:-1]:
        assert fp(v) != base
    # what the fingerprint cannot type sends the call to the dispatcher
    assert fp(variants[-1]) is None
    # typed lists (a compiled policy's kernels) by their numba type
    ints, floats = typed.List(), typed.List()
    ints.append(1)
    floats.append(1.0)
    more = typed.List()
    more.append(7)
    more.append(8)
    assert fp((a, ints)) == fp((a, more)) != fp((a, floats))
    assert fp((a, object())) is None


def test_entry_point_is_found_by_types_for_a_new_driver(monkeypatch):
    first = uvmlab.simulate(SPEC)
    assert loop_entry._BY_TYPES, "the first run registered its argument types"
    calls = []
    real = loop_entry.run_loop
    monkeypatch.setattr(loop_entry, "run_loop", lambda *a: calls.append(1) or real(*a))
    again = uvmlab.simulate(SPEC)  # a new driver: its first call skips the dispatcher
    assert calls == []
    assert again.totals == first.totals and again.ops == first.ops


def test_entry_point_is_found_by_types_with_a_compiled_policy(monkeypatch):
    # the library's compiled victim choice: its kernel bundle's typed lists are keyed by type
    first = uvmlab.simulate(SPEC, gpu_memory="50%", policies="recent")
    calls = []
    real = loop_entry.run_loop
    monkeypatch.setattr(loop_entry, "run_loop", lambda *a: calls.append(a[4] is None) or real(*a))
    again = uvmlab.simulate(SPEC, gpu_memory="50%", policies="recent")
    assert calls == []
    assert again.totals == first.totals and again.ops == first.ops


def test_stalled_lists_are_kept_across_engines_and_give_the_same_answers(monkeypatch):
    seen = []
    prepare = GpuKernelRun._prepare  # a kernel takes its lists when it first needs them

    def spy(self):
        prepare(self)
        seen.append(self.stalls)

    monkeypatch.setattr(GpuKernelRun, "_prepare", spy)
    first = uvmlab.simulate(SPEC)
    second = uvmlab.simulate(SPEC)
    assert seen[-1] is seen[0], "a later engine's kernel took the lists the first run left"
    assert second.totals == first.totals and second.ops == first.ops
    st = seen[-1]
    assert st.n == 0 and not st.phead.any() and not st.need_words.any() and not st.t[:, 0].any()


def test_lists_still_holding_threads_are_never_reused():
    pool: dict = {}
    st = StalledThreads.reused(pool, 64, 32, 2, 1024)
    idx = np.arange(3, dtype=np.int64)
    page = np.array([5, 6, 7], np.int64)
    stalls.append(
        idx, 3, 0, page, np.zeros(3, np.uint8), 32, st.t, st.meta, st.q_pos, st.q, st.phead, st.need_words
    )
    st.release(pool)  # still 3 stalled: not kept
    assert pool == {}
    assert StalledThreads.reused(pool, 64, 32, 2, 1024) is not st


def test_the_pool_keeps_the_latest_shapes():
    n = stalls.POOL_SHAPES + 2
    pool: dict = {}
    made = [StalledThreads.reused(pool, 64, 32, 2, 1024 * (i + 1)) for i in range(n)]
    for st in made:
        st.release(pool)
    assert list(pool.values()) == made[-stalls.POOL_SHAPES :]


def test_kernels_whose_touches_all_hit_take_no_lists(monkeypatch):
    # sparse: the first pass writes (faults), the three later ones read what it mapped
    calls = []
    prepare = GpuKernelRun._prepare

    def spy(self):
        calls.append(self.e.touches)
        prepare(self)

    monkeypatch.setattr(GpuKernelRun, "_prepare", spy)
    r = uvmlab.simulate("sparse:size=64MiB")
    assert [o["gpu_faults"] > 0 for o in r.ops if o["op"] == "kernel"] == [True, False, False, False]
    assert len(calls) == 1 and calls[0] == 0
