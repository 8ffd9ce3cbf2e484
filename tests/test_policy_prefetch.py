"""Prefetch hooks: the Python tree walk equals the driver's kernel, and each built-in prefetch
policy changes decisions the way its docstring says."""

import numpy as np
import pytest
from helpers import MiB, cpu_filled, residency_of, run_engine

from uvmlab import simulate
from uvmlab.driver.perf import prefetch as pf
from uvmlab.policy import DEFAULT, ENTER_LOOP, Policy, Region
from uvmlab.policy.bitmap_tree import BitmapTree, compute_mask
from uvmlab.policy.guard import Guard
from uvmlab.policy.library.prefetch_stride import PrefetchStride

CPU_BIT, GPU_BIT = 1, 2
KEYS = (
    "time_ns",
    "gpu_faults",
    "fault_batches",
    "replays",
    "bytes_htod",
    "bytes_htod_prefetch",
    "bytes_dtoh",
    "evictions",
    "cpu_faults",
    "thrashing_events",
    "throttles",
    "pins",
)


def same(a, b):
    return {k: a.totals[k] for k in KEYS} == {k: b.totals[k] for k in KEYS}


def test_python_tree_walk_equals_the_driver_kernel():
    rng = np.random.default_rng(7)
    for _ in range(400):
        n = int(rng.choice([512, 512, rng.integers(1, 512)]))
        first_va = int(
            rng.choice([0, 512 * 3, 512 * 5 + 512 - n, 7 * 512 + int(rng.integers(0, 512 - n + 1))])
        )
        big = int(rng.choice([16, 32]))
        thr = int(rng.choice([0, 25, 51, 51, 90, 100]))
        faulted = rng.random(n) < rng.choice([0.01, 0.05, 0.3, 0.8])
        resident = (rng.random(n) < rng.choice([0.0, 0.2, 0.6])) & ~faulted
        thrashing = rng.random(n) < rng.choice([0.0, 0.0, 0.05])
        cpu = bool(rng.integers(0, 2))
        cpu_rr = (rng.random(n) < 0.3) if cpu else None
        want = pf.compute_prefetch_mask(
            faulted,
            resident,
            thrashing,
            block_first_page_va=first_va,
            big_page_pages=big,
            threshold=thr,
            dest_is_cpu=cpu,
            cpu_resident_readable=cpu_rr,
        )
        tree = BitmapTree(
            faulted, resident, thrashing, block_first_page_va=first_va, big=big, m_first=0, m_outer=n
        )
        got = compute_mask(
            tree,
            faulted,
            thrashing,
            threshold=thr,
            region_for=lambda page, leaf, stock: stock,
            dest_is_cpu=cpu,
            cpu_resident_readable=cpu_rr,
        )
        assert np.array_equal(got, want), (n, first_va, big, thr)


class AlwaysDefault(Policy):
    name = "always-default"

    def prefetch_before_compute(self, ctx):
        return DEFAULT


@pytest.mark.parametrize(
    "spec",
    ["stream:size=16MiB,passes=2", "random:size=16MiB,seed=3", "stride:size=16MiB", "pingpong:size=8MiB"],
)
def test_a_policy_that_always_answers_default_changes_nothing(spec):
    for mem in (None, "150%"):
        assert same(simulate(spec, gpu_memory=mem), simulate(spec, gpu_memory=mem, policies=AlwaysDefault()))


@pytest.mark.parametrize("threshold", [51, 30, 80])
def test_tree_policy_is_the_driver_tree_with_that_threshold(threshold):
    """``tree(threshold=T)`` walks the tree through on_tree_iter; it must take exactly the
    decisions of the driver run with uvm_perf_prefetch_threshold=T."""
    spec = "stride:size=16MiB,stride=16KiB"
    drv = simulate(spec, params={"uvm_perf_prefetch_threshold": threshold}, gpu_memory="150%")
    pol = simulate(spec, policies=f"tree(threshold={threshold})", gpu_memory="150%")
    assert same(drv, pol)
    assert pol.meta["policy_ejected"] == []


def test_tree_policy_compiles_its_helper_with_numba():
    from uvmlab.policy.library.prefetch_tree import PrefetchTree

    p = PrefetchTree(threshold=40)
    assert hasattr(p.passes, "py_func")  # a numba dispatcher
    assert p.passes(41, 100, 40) and not p.passes(40, 100, 40)


def _permuted(pages: int, seed: int = 0):
    b, a = cpu_filled(f"{pages * 4 // 1024}MiB")
    b.kernel("perm", [b.index(a, np.random.default_rng(seed).permutation(pages))])
    return b.build(), a


def test_prefetch_none_migrates_4k_per_fault():
    w, _ = _permuted(2048)
    eng = run_engine(w, hooks=Guard([Policy_from("prefetch-none")]))
    c = eng.drv.counters
    assert c["bytes_htod_prefetch"] == 0
    assert c["bytes_htod"] == c["bytes_htod_fault"] == 2048 * 4096  # each page once, 4 KiB
    base = run_engine(_permuted(2048)[0]).drv.counters
    assert base["bytes_htod_prefetch"] > 0  # the driver would have prefetched


def test_always_max_brings_the_whole_block_on_one_fault():
    b, a = cpu_filled("8MiB")
    b.kernel("one", [b.index(a, np.array([5, 512 + 300]))])
    eng = run_engine(b.build(), hooks=Guard([Policy_from("always-max")]))
    assert (residency_of(eng, a, range(1024)) == GPU_BIT).all()
    assert (residency_of(eng, a, range(1024, 2048)) == CPU_BIT).all()
    assert eng.drv.counters["bytes_htod"] == 4 * MiB


def test_adaptive_sequential_prefetches_forward_from_the_fault():
    b, a = cpu_filled("2MiB")
    b.kernel("one", [b.index(a, np.array([100]))])
    eng = run_engine(b.build(), hooks=Guard([Policy_from("adaptive-sequential(pages=64)")]))
    res = residency_of(eng, a, range(512))
    assert (res[100:164] == GPU_BIT).all()
    assert (res[:96] == CPU_BIT).all() and (res[176:] == CPU_BIT).all()  # big page 96..111


def test_stride_policy_prefetches_ahead_of_a_detected_stride():
    """One thread, a 40-page stride: the tree only fills each fault's 64 KiB big page; the stride
    detector, confident after three equal steps, prefetches four strides ahead."""
    b, a = cpu_filled("2MiB")
    b.kernel("stride", [b.run(a, 0, 12, stride=40)])
    w = b.build()
    base = run_engine(w, concurrency=1).drv.counters
    eng = run_engine(w, concurrency=1, hooks=Guard([PrefetchStride()]))
    c = eng.drv.counters
    assert base["gpu_faults"] == 12
    assert c["gpu_faults"] < base["gpu_faults"]
    assert c["bytes_htod_prefetch"] > base["bytes_htod_prefetch"]


def test_cross_block_migrates_past_the_va_block():
    w = "stream:size=16MiB,passes=1"
    base = simulate(w, concurrency=256)
    r = simulate(w, concurrency=256, policies="cross-block(blocks=2)")
    assert r.totals["bytes_htod_user"] > 0  # policy migrations are UVM_MIGRATE (cause user)
    assert r.totals["bytes_htod"] == base.totals["bytes_htod"]  # no page twice
    assert r.totals["fault_batches"] < base.totals["fault_batches"]
    assert r.meta["policy_ejected"] == []


def test_region_outside_the_block_is_ejected_and_the_driver_takes_over():
    class Wild(Policy):
        name = "wild"

        def prefetch_before_compute(self, ctx):
            return Region(0, ctx.n_pages + 1)

    spec = "stream:size=8MiB,passes=2"
    r = simulate(spec, policies=Wild(), events=True)
    assert r.totals["policy_ejections"] == 1
    (e,) = r.meta["policy_ejected"]
    assert e["hook"] == "prefetch_before_compute" and "outside" in e["reason"]
    ev = r.events[r.events.event == "PolicyEjected"]
    assert len(ev) == 1 and "outside" in ev["info"].iloc[0]
    assert same(r, simulate(spec))


def test_enter_loop_without_a_tree_hook_is_ejected():
    class Half(Policy):
        name = "half"

        def prefetch_before_compute(self, ctx):
            return ENTER_LOOP

    r = simulate("stream:size=8MiB,passes=1", policies=Half())
    assert r.totals["policy_ejections"] == 1
    assert "prefetch_on_tree_iter" in r.meta["policy_ejected"][0]["reason"]


def Policy_from(spec):  # noqa: N802 - reads like a constructor
    from uvmlab.policy.loader import load_policy

    return load_policy(spec)
