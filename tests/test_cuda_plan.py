"""CPU-only tests of the real-GPU backend's translation: segment encoding and op planning."""

from __future__ import annotations

import numpy as np
import pytest

from uvmlab.core.errors import WorkloadError
from uvmlab.cuda.plan import (
    WORDS_PER_PAGE,
    cpu_chunks,
    encode_kernel,
    expand_encoded,
    expand_ir,
    location_of,
    plan_workload,
)
from uvmlab.validation.suite import SUITE, suite_workloads
from uvmlab.workload.builder import WorkloadBuilder
from uvmlab.workload.ir import Access, Advice, CpuOp, KernelOp


def _mixed():
    b = WorkloadBuilder("mixed", seed=3)
    a = b.alloc("a", "8MiB")
    p = b.alloc("p", "1MiB", kind="pinned")
    d = b.alloc("d", "1MiB", kind="device")
    b.cpu("init", [b.run(a, access="write"), b.run(p, access="write")])
    rng = np.random.default_rng(0)
    b.kernel(
        "k",
        [
            b.run(a, start=5, count=7, stride=3),
            b.index(a, rng.integers(0, b.pages(a), 100), access="write"),
            b.run(p, access="atomic"),
            b.run(a, start=b.pages(a) - 1, count=4, stride=-2, access="atomic"),
            b.index(a, np.array([3, 3, 1]), access="read"),
            b.run(d, count=5, stride=0, access="write"),
        ],
    )
    b.kernel("k2", [b.index(a, np.arange(10, 0, -1))])
    b.sync()
    b.free(p)
    return b.build()


def test_encoded_kernel_expands_to_the_ir_touch_stream():
    w = _mixed()
    for op in w.ops:
        if isinstance(op, KernelOp):
            enc = encode_kernel(w, op)
            a0, p0, x0 = expand_ir(w, op.seg_lo, op.seg_hi)
            a1, p1, x1 = expand_encoded(enc)
            assert enc.total == len(p0) == w.touch_count(op)
            np.testing.assert_array_equal(a0, a1)
            np.testing.assert_array_equal(p0, p1)
            pinned_atomic = (x0 == Access.ATOMIC) & (a0 == w.alloc_index("p"))
            np.testing.assert_array_equal(np.where(pinned_atomic, Access.WRITE, x0), x1)


def test_expansion_in_pieces_equals_whole():
    w = _mixed()
    enc = encode_kernel(w, w.ops[1])
    whole = expand_encoded(enc)
    pieces = [expand_encoded(enc, lo, lo + 17) for lo in range(0, enc.total, 17)]
    for i in range(3):
        np.testing.assert_array_equal(whole[i], np.concatenate([p[i] for p in pieces]))


@pytest.mark.parametrize("name", [n for n, _ in SUITE])
def test_suite_kernels_encode_exactly(name):
    ((_, w),) = suite_workloads([name])
    for op in w.ops:
        if isinstance(op, KernelOp):
            enc = encode_kernel(w, op)
            a0, p0, _ = expand_ir(w, op.seg_lo, op.seg_hi)
            a1, p1, _ = expand_encoded(enc)
            np.testing.assert_array_equal(p0, p1)
            np.testing.assert_array_equal(a0, a1)
            # the pool slice shipped to the GPU holds only what this kernel needs
            n_index = int(
                w.segments[op.seg_lo : op.seg_hi]["count"][
                    w.segments[op.seg_lo : op.seg_hi]["kind"] == 1
                ].sum()
            )
            assert len(enc.pool) <= max(1, len(w.pool)) and (n_index == 0 or len(enc.pool) >= 1)


def test_encoding_is_compact_for_runs():
    b = WorkloadBuilder("big")
    a = b.alloc("a", "1GiB")
    b.kernel("k", [b.run(a), b.run(a, access="write")])
    w = b.build()
    enc = encode_kernel(w, w.ops[0])
    assert enc.total == 2 * (1 << 18)
    assert enc.nbytes < 200  # two segments, no per-touch data


def test_cpu_chunks_follow_ir_order_and_split():
    w = _mixed()
    op = w.ops[0]
    assert isinstance(op, CpuOp)
    got = list(cpu_chunks(w, op, word=5, chunk=300))
    a, p, x = expand_ir(w, op.seg_lo, op.seg_hi)
    np.testing.assert_array_equal(np.concatenate([c.words for c in got]), p * WORDS_PER_PAGE + 5)
    np.testing.assert_array_equal(np.concatenate([np.full(len(c.words), c.alloc) for c in got]), a)
    assert all(len(c.words) <= 300 for c in got)
    assert {c.access for c in got} == {Access.WRITE}


def test_plan_translates_every_op():
    w = _mixed()
    plan = plan_workload(w)
    assert [p.kind for p in plan] == ["cpu", "kernel", "kernel", "sync", "free"]
    assert plan[1].touches == w.touch_count(w.ops[1])
    assert plan[1].location == ("device", 0)
    b = WorkloadBuilder("adv")
    a = b.alloc("a", "4MiB")
    b.advise(a, "set_read_mostly")
    b.advise(a, "set_preferred_location", "cpu", start=512, num_pages=512)
    b.prefetch(a, "gpu0", start=16, num_pages=32)
    b.prefetch(a, "cpu")
    plan = plan_workload(b.build())
    assert plan[0].advice == Advice.SET_READ_MOSTLY and plan[0].nbytes == 4 << 20
    assert plan[1].location == ("host", 0) and plan[1].offset == 2 << 20
    assert (plan[2].offset, plan[2].nbytes, plan[2].location) == (16 * 4096, 32 * 4096, ("device", 0))
    assert plan[3].name == "prefetch->cpu" and plan[3].nbytes == 4 << 20


def test_plan_refuses_what_a_gpu_cannot_do():
    b = WorkloadBuilder("bad")
    d = b.alloc("d", "1MiB", kind="device")
    b.cpu("touch", [b.run(d)])
    with pytest.raises(WorkloadError, match="CPU cannot touch device allocation"):
        plan_workload(b.build())
    b = WorkloadBuilder("bad2")
    p = b.alloc("p", "1MiB", kind="pinned")
    b.prefetch(p, "gpu0")
    with pytest.raises(WorkloadError, match="not managed"):
        plan_workload(b.build())
    b = WorkloadBuilder("ok")
    a = b.alloc("a", "1MiB")
    b.kernel("k", [b.run(a)])
    with pytest.raises(WorkloadError, match="touch word"):
        plan_workload(b.build(), word=1024)


def test_locations():
    assert location_of(0) == ("host", 0)
    assert location_of(1) == ("device", 0)
    assert location_of(3) == ("device", 2)


def test_suite_is_small_and_covers_every_operation():
    names = [n for n, _ in SUITE]
    assert len(names) >= 12 and len(set(names)) == len(names)
    ops, advices, dests, kinds, accesses = set(), set(), set(), set(), set()
    for _, w in suite_workloads():
        assert w.managed_bytes <= 1 << 30
        for op in w.ops:
            ops.add(op.op)
            if op.op == "advise":
                advices.add(op.advice)
            if op.op == "prefetch":
                dests.add(op.processor == 0)
        kinds |= {a.kind for a in w.allocs}
        accesses |= set(np.unique(w.segments["access"]).tolist())
    assert ops == {"advise", "prefetch", "kernel", "cpu", "sync", "free"}
    assert advices == set(Advice)
    assert dests == {True, False}
    assert len(kinds) == 3
    assert accesses == {Access.READ, Access.WRITE, Access.ATOMIC}
