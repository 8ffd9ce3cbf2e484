"""Policies on the compiled fault loop (engine/fault_loop.py, engine/loop_stops.py).

With a compiled policy attached, a kernel's fault loop still runs as one compiled call: its
kernels are called from inside it. A live Python hook can run from it too — the loop returns to
Python twice a batch (``begin_batch``, ``after_batch``) — though by default a run whose service
stops for allocations or chunk use takes the Python batch loop
(``GpuKernelRun.python_hooks_in_loop``, measured faster there): the tests here switch the
compiled loop on for all. Each run is compared with the reference path (every fault
interpreted, every hook called by ``replayable_faults.BottomHalf``): the answer, the hooks'
calls and the ejection record must be the same, and the stops must be those the policy needs.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run_with_policies as run
from numba import njit
from test_policy_batch import LLM, RANDOM, MruBatch, NoopAll, WholeBlockBatch, answer, same
from test_policy_compiled import CASES, RandomVictim, ReplayDups, _policy

from uvmlab.engine import loop_stops
from uvmlab.engine.gpu import GpuKernelRun
from uvmlab.engine.kernel_loop import KernelLoop
from uvmlab.engine.loop_layout import HOOK, MID_BATCH
from uvmlab.policy import Policy
from uvmlab.policy.library import REGISTRY


@pytest.fixture(autouse=True)
def in_loop(monkeypatch):
    monkeypatch.setattr(GpuKernelRun, "python_hooks_in_loop", True)


@pytest.fixture
def stops(monkeypatch):
    """The loop's calls and stops of the runs in a test (by status: HOOK, MID_BATCH)."""
    seen = {HOOK: 0, MID_BATCH: 0, "calls": 0}
    hook, call = loop_stops.LoopStops.hook, KernelLoop.__call__

    def counted(self):
        seen[self.status] += 1
        return hook(self)

    def counted_call(self, idle):
        seen["calls"] += 1
        return call(self, idle)

    monkeypatch.setattr(loop_stops.LoopStops, "hook", counted)
    monkeypatch.setattr(KernelLoop, "__call__", counted_call)
    return seen


def test_compiled_kernels_never_leave_the_loop(stops):
    # a prefetch kernel that decides rows, a victim kernel and a replay kernel that decide
    # other than the driver: not one return to Python per batch
    policies = [REGISTRY["forward"](window=16), RandomVictim(seed=3), ReplayDups()]
    fast, hooks = run(LLM, True, policies, "150%")
    assert hooks.ejections == 0 and hooks.kernels is not None and not hooks.python_hooks
    assert stops[HOOK] == 0 and stops["calls"] > 0
    ref, _ = run(LLM, False, [REGISTRY["forward"](window=16), RandomVictim(seed=3), ReplayDups()], "150%")
    same(fast, ref)
    assert fast.drv.counters["evictions"] > 0
    default, _ = run(LLM, True, [], "150%")
    assert answer(fast) != answer(default)  # the kernels decided


@pytest.mark.parametrize("spec,mem", [(RANDOM, None), (LLM, "150%")])
def test_python_batch_hooks_stop_the_loop_twice_a_batch(spec, mem, stops):
    fast, hooks = run(spec, True, [WholeBlockBatch(), MruBatch(), REGISTRY["replay-adaptive"]()], mem)
    ref, ref_hooks = run(spec, False, [WholeBlockBatch(), MruBatch(), REGISTRY["replay-adaptive"]()], mem)
    same(fast, ref)
    assert hooks.stats.keys() == ref_hooks.stats.keys()
    for h, s in ref_hooks.stats.items():
        assert hooks.stats[h]["calls"] == s["calls"], h
    batches = fast.drv.counters["fault_batches"]
    # begin_batch and after_batch of every batch the loop serviced (batches a block sent to
    # Python for the rest of its bottom half have none)
    assert 0 < stops[HOOK] <= 2 * batches and stops[HOOK] % 2 == 0
    assert hooks.stats["prefetch_batch"]["calls"] == batches


class LaterRaise(Policy):
    """A batch hook that fails at its ``n``-th call, mid-run."""

    name = "later-raise"
    params = {"n": 5}

    def start(self, info):
        self.calls = 0

    def prefetch_batch(self, ctx):
        self.calls += 1
        if self.calls == self.n:
            raise ValueError("fails late")
        return np.zeros(ctx.faulted.shape, dtype=bool)  # no prefetch: many batches


@njit(cache=True)
def _replay_late(
    gpu, batch, faults, unique, duplicates, throttled, pending, default_policy, replays, now_ns, state
):  # noqa: ARG001
    state[0] += 1
    if state[0] == 7:
        raise ValueError("replay kernel fails late")
    return 0


@njit(cache=True)
def _replay_late_garbage(
    gpu, batch, faults, unique, duplicates, throttled, pending, default_policy, replays, now_ns, state
):  # noqa: ARG001
    state[0] += 1
    return 5 if state[0] == 7 else 1


class _Late(Policy):
    def kernel_state(self):
        return np.zeros(1, np.int64)


def _late(fn):
    return type(f"k-{fn.__name__}", (_Late,), {"name": f"k-{fn.__name__}", "replay_kernel": fn})()


LATE = [
    (RANDOM, None, lambda: [LaterRaise()], "prefetch_batch", "fails late"),
    (LLM, "150%", lambda: [_late(_replay_late)], "replay_kernel", "replay kernel fails late"),
    (LLM, "150%", lambda: [_late(_replay_late_garbage)], "replay_kernel", "returned 5"),
]
EARLY = [
    (s, m, (lambda k=k, f=f: [_policy(k, f)]), k, r) for s, m, k, f, r in CASES if "arity" not in f.__name__
]


@pytest.mark.parametrize(
    "spec,mem,make,hook,reason", LATE + EARLY, ids=[c[3] + "-" + c[4] for c in LATE + EARLY]
)
def test_a_policy_ejected_in_the_loop_is_ejected_as_on_the_reference_path(spec, mem, make, hook, reason):
    fast, hooks = run(spec, True, make(), mem)
    ref, ref_hooks = run(spec, False, make(), mem)
    assert hooks.ejections == ref_hooks.ejections == 1
    assert hooks.ejected == ref_hooks.ejected  # the hook, the reason and the time
    rec = hooks.ejected[0]
    assert rec["hook"] == hook and reason in rec["reason"], rec
    same(fast, ref)


@pytest.mark.parametrize("spec,mem", [(RANDOM, None), (LLM, "150%")])
def test_python_hooks_without_batch_hooks_stop_once_a_batch(spec, mem, stops):
    # no prefetch_batch / thrashing_batch: no stop before a batch's service; the hooks learn
    # the batch at its first stop (note_batch, or adopt_batch for the prefetch kernel's rows)
    def make():
        return [REGISTRY["forward"](window=16), MruBatch(), REGISTRY["replay-adaptive"]()]

    fast, hooks = run(spec, True, make(), mem)
    ref, ref_hooks = run(spec, False, make(), mem)
    same(fast, ref)
    assert hooks.stats.keys() == ref_hooks.stats.keys()
    for h, s in ref_hooks.stats.items():
        assert hooks.stats[h]["calls"] == s["calls"], h
    batches = fast.drv.counters["fault_batches"]
    assert hooks.python_hooks and not hooks.begin_hooks
    assert 0 < stops[HOOK] <= batches and hooks.stats["chunk_used_batch"]["calls"] > 0


def test_noop_policies_run_the_loop_and_keep_the_default_answer(stops):
    default, _ = run(LLM, True, [], "150%")
    noop, hooks = run(LLM, True, [NoopAll()], "150%")
    same(default, noop)
    assert hooks.ejections == 0 and stops[HOOK] > 0


def test_python_hooks_in_loop_false_takes_the_python_batch_loop(monkeypatch, stops):
    monkeypatch.setattr(GpuKernelRun, "python_hooks_in_loop", False)
    fast, hooks = run(LLM, True, [NoopAll()], "150%")
    assert stops["calls"] == 0 and hooks.stats["prefetch_batch"]["calls"] > 0
    default, _ = run(LLM, True, [], "150%")
    same(default, fast)


class NoopActivate(Policy):
    name = "noop-activate"

    def chunk_activate(self, ctx):
        return None


def test_the_default_loop_depends_on_the_stops(monkeypatch, stops):
    # batch and replay hooks: the compiled loop; allocation hooks: the Python batch loop
    monkeypatch.setattr(GpuKernelRun, "python_hooks_in_loop", None)
    default, _ = run(LLM, True, [], "150%")
    before = stops["calls"]
    batch, hooks = run(LLM, True, [NoopAll()], "150%")
    assert stops["calls"] > before and stops[HOOK] > 0 and hooks.stats["decide_replay"]["calls"] > 0
    same(default, batch)
    before = stops["calls"]
    alloc, hooks = run(LLM, True, [NoopActivate()], "150%")
    assert hooks.stops_for_allocation and stops["calls"] == before
    assert hooks.stats["chunk_activate"]["calls"] > 0
    same(default, alloc)
