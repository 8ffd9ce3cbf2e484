"""The compiled kernel loop (engine/fault_loop.py) gives the reference path's answers wherever it
hands back to Python: at every batch, mid-batch (a block for the reference path), at the end."""

from __future__ import annotations

import pytest
from test_fast_path import SMALL, assert_same

import uvmlab.engine.kernel_loop as fl
from uvmlab.engine.loop_layout import MID_BATCH

OFF = {"uvm_perf_prefetch_enable": 0, "uvm_perf_thrashing_enable": 0}
# blocks get per-page thrashing state: the compiled service hands them to the reference path
HAIR = {
    "uvm_perf_thrashing_threshold": 1,
    "uvm_perf_thrashing_lapse_usec": 100000,
    "uvm_perf_thrashing_pin_threshold": 2,
}


@pytest.fixture
def calls(monkeypatch):
    """How often the loop ran and returned mid-batch."""
    n = {"loop": 0, "mid": 0}
    call, hook = fl.KernelLoop.__call__, fl.KernelLoop.hook

    def counted_call(self, idle):
        n["loop"] += 1
        return call(self, idle)

    def counted_hook(self):
        n["mid"] += self.status == MID_BATCH
        return hook(self)

    monkeypatch.setattr(fl.KernelLoop, "__call__", counted_call)
    monkeypatch.setattr(fl.KernelLoop, "hook", counted_hook)
    return n


@pytest.mark.parametrize("policy", [1, 2, 3], ids=["batch", "batch_flush", "once"])
def test_returning_at_every_batch_changes_nothing(monkeypatch, calls, policy):
    monkeypatch.setattr(fl, "TICK_BATCHES", 1)
    eng = assert_same(SMALL["random"], params={**OFF, "uvm_perf_fault_replay_policy": policy})
    # one call per bottom half at least: every return and re-entry was compared
    assert calls["loop"] >= eng.drv.counters["bottom_halves"] > 1


def test_blocks_for_the_reference_path_mid_batch(calls):
    assert_same(SMALL["pingpong"], params=HAIR)
    assert calls["mid"] > 0  # the case really stopped mid-batch


def test_heuristics_on_under_eviction(calls):
    eng = assert_same(SMALL["llm"], gpu_memory="150%")
    assert calls["loop"] > 0 and eng.drv.counters["evictions"] > 0


def test_samples_taken_in_the_loop_are_the_python_loops(monkeypatch, calls):
    """A sampled run (``uvmlab run --out``) runs the compiled loop, which returns at each
    iteration where a sample is due: the same samples, totals and rows as the Python loop."""
    import numpy as np

    from uvmlab.api import simulate_sampled
    from uvmlab.engine.gpu import GpuKernelRun

    spec = "random:size=32MiB"
    got = simulate_sampled(spec, params=OFF, max_samples=8)
    assert calls["loop"] > 1, "the loop returned for samples within the kernel"
    ok = GpuKernelRun.compiled_ok
    monkeypatch.setattr(GpuKernelRun, "compiled_ok", lambda self: self.e.sampler is None and ok(self))
    want = simulate_sampled(spec, params=OFF, max_samples=8)
    assert got.totals == want.totals and got.ops == want.ops
    a, b = got.samples, want.samples
    assert len(a.time_ns) > 3  # samples inside the kernel, past the ops' own
    assert np.array_equal(a.time_ns, b.time_ns) and np.array_equal(a.residency, b.residency)
    assert a.counters.keys() == b.counters.keys()
    assert all(np.array_equal(a.counters[k], b.counters[k]) for k in a.counters)
