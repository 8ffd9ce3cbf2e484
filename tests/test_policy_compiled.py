"""Compiled policies: kernels the compiled code calls itself (``driver/compiled/policy_calls.py``).

A policy's ``prefetch_kernel`` / ``thrashing_kernel`` decide a fault batch in one compiled
call and its ``victim_kernel`` chooses every victim inside the compiled fault service. They
must give the answer of the same decisions taken by the Python hooks, on both fault paths, and
the guard must eject a kernel that raises, returns garbage or does not compile, as it ejects a
Python hook, with the driver's default from that call on.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run_with_policies as run
from numba import njit
from test_policy_batch import LLM, RANDOM, STREAM, answer, same

from uvmlab.core.errors import PolicyError
from uvmlab.driver.pmm_lists import LIST_UNUSED, LIST_USED
from uvmlab.policy import Policy
from uvmlab.policy.library import REGISTRY
from uvmlab.policy.library.evict_lru import EvictLru
from uvmlab.policy.library.evict_recent import EvictRecent
from uvmlab.policy.loader import build_hooks


def test_victim_kernel_equals_its_python_hook_on_both_paths():
    for spec in (LLM, "train:size=16MiB,steps=1"):
        jit, hooks = run(spec, True, [EvictRecent(spare=1)], "150%")
        assert hooks.kernels is not None and not hooks.stops_for_allocation  # the service never stops
        py, py_hooks = run(spec, True, [EvictRecent(spare=1, compiled=False)], "150%")
        assert py_hooks.kernels is None and py_hooks.stops_for_allocation
        ref, _ = run(spec, False, [EvictRecent(spare=1)], "150%")
        same(jit, py)
        same(jit, ref)
        assert hooks.ejections == 0
        lru, _ = run(spec, True, [EvictLru()], "150%")
        assert jit.drv.counters["evictions"] > 0
        assert answer(jit) != answer(lru)  # it chose other victims than LRU


@njit(cache=True)
def _random_victim(gpu, now_ns, chunk_state, owner, list_of, prev, nxt, list_count, state):  # noqa: ARG001
    # an LCG in state[0]: -1 (the driver's choice) or a chunk of va_block_used / unused, any place
    state[0] = (state[0] * 6364136223846793005 + 1442695040888963407) & 0x7FFFFFFFFFFFFFFF
    r = state[0] >> 20
    lst = LIST_USED if r & 1 else LIST_UNUSED
    n = list_count[lst]
    if n == 0 or r & 6 == 0:
        return -1
    c = nxt[chunk_state.shape[0] + lst]
    for _ in range((r >> 3) % n):
        c = nxt[c]
    return c


class RandomVictim(Policy):
    name = "random-victim"
    params = {"seed": 1}
    victim_kernel = _random_victim

    def kernel_state(self):
        return np.array([self.seed], dtype=np.int64)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_victim_the_kernel_picks_is_taken_alike_on_both_paths(seed):
    spec = "llm:size=16MiB,tokens=3"
    fast, hooks = run(spec, True, [RandomVictim(seed=seed)], "150%")
    ref, _ = run(spec, False, [RandomVictim(seed=seed)], "150%")
    same(fast, ref)
    assert hooks.ejections == 0 and fast.drv.counters["evictions"] > 0


def test_forward_runs_as_a_kernel_in_process():
    jit, hooks = run(STREAM, True, [REGISTRY["forward"](window=16)])
    assert hooks.kernels is not None and "prefetch_batch" not in hooks.stats  # the hook never ran
    py, py_hooks = run(STREAM, True, [REGISTRY["forward"](window=16, compiled=False)])
    assert py_hooks.kernels is None and py_hooks.stats["prefetch_batch"]["calls"] > 0
    same(jit, py)


@njit(cache=True)
def _replay_dups(
    gpu, batch, faults, unique, duplicates, throttled, pending, default_policy, replays, now_ns, state
):  # noqa: ARG001
    # replay now when a batch is mostly duplicates, defer a small one, else the driver's policy
    if duplicates * state[0] > faults:
        return 1
    return -1 if faults < state[1] else 0


class ReplayDups(Policy):
    name = "replay-dups"
    params = {"compiled": True}
    replay_kernel = _replay_dups

    def __init__(self, **params):
        super().__init__(**params)
        if not self.compiled:
            self.replay_kernel = None

    def kernel_state(self):
        return np.array([2, 64], dtype=np.int64)

    def decide_replay(self, ctx):
        return _replay_dups.py_func(
            0, ctx.batch, ctx.faults, ctx.unique, ctx.duplicates, 0, 0, 0, 0, 0, [2, 64]
        )


def test_replay_kernel_equals_its_python_hook():
    jit, hooks = run(LLM, True, [ReplayDups()], "150%")
    assert hooks._replay_kernel is not None and "decide_replay" not in hooks.stats
    py, py_hooks = run(LLM, True, [ReplayDups(compiled=False)], "150%")
    assert py_hooks.stats["decide_replay"]["calls"] > 0
    ref, _ = run(LLM, False, [ReplayDups()], "150%")
    same(jit, py)
    same(jit, ref)
    default, _ = run(LLM, True, [], "150%")
    assert answer(jit) != answer(default)


# ---- the guard --------------------------------------------------------------------------------
@njit(cache=True)
def _raising_prefetch(gpu, now_ns, blocks, n_pages, alloc, faulted, state, out, rows):  # noqa: ARG001
    if blocks.shape[0] > 0:
        raise ValueError("bad prefetch kernel")
    return 0


@njit(cache=True)
def _seven(gpu, now_ns, blocks, n_pages, alloc, faulted, state, out, rows):  # noqa: ARG001
    rows[:] = True
    out[:, :] = True
    return 7


@njit(cache=True)
def _bad_kind(gpu, now_ns, blocks, n_pages, alloc, faulted, state, kinds):  # noqa: ARG001
    kinds[0, 0] = 5
    return 1


@njit(cache=True)
def _raising_victim(gpu, now_ns, chunk_state, owner, list_of, prev, nxt, list_count, state):  # noqa: ARG001
    if chunk_state.shape[0] > 0:
        raise RuntimeError("bad victim kernel")
    return -1


@njit(cache=True)
def _free_victim(gpu, now_ns, chunk_state, owner, list_of, prev, nxt, list_count, state):  # noqa: ARG001
    return chunk_state.shape[0] + 3  # not a chunk


@njit(cache=True)
def _replay_raises(
    gpu, batch, faults, unique, duplicates, throttled, pending, default_policy, replays, now_ns, state
):  # noqa: ARG001
    if faults > 0:
        raise ValueError("bad replay kernel")
    return 0


@njit(cache=True)
def _replay_two(
    gpu, batch, faults, unique, duplicates, throttled, pending, default_policy, replays, now_ns, state
):  # noqa: ARG001
    return 2


@njit(cache=True)
def _wrong_arity(faulted):
    return 0


def _policy(kind, fn):
    return type(f"k-{fn.__name__}", (Policy,), {"name": f"k-{fn.__name__}", kind: fn})()


CASES = [
    (STREAM, None, "prefetch_kernel", _raising_prefetch, "raised ValueError: bad prefetch kernel"),
    (STREAM, None, "prefetch_kernel", _seven, "returned 7"),
    ("pingpong:size=16MiB,rounds=3", None, "thrashing_kernel", _bad_kind, "wrote hint kind 5"),
    (LLM, "150%", "victim_kernel", _raising_victim, "raised RuntimeError: bad victim kernel"),
    (LLM, "150%", "victim_kernel", _free_victim, "returned"),
    (RANDOM, None, "prefetch_kernel", _wrong_arity, "does not compile for its signature"),
    (LLM, "150%", "replay_kernel", _replay_raises, "raised ValueError: bad replay kernel"),
    (LLM, "150%", "replay_kernel", _replay_two, "returned 2"),
]


@pytest.mark.parametrize("spec,mem,kind,fn,reason", CASES, ids=[c[3].__name__ for c in CASES])
@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "reference"])
def test_a_failing_kernel_is_ejected_and_the_default_takes_over(spec, mem, kind, fn, reason, fast):
    eng, hooks = run(spec, fast, [_policy(kind, fn)], mem)
    assert hooks.ejections == 1, hooks.ejected
    rec = hooks.ejected[0]
    assert rec["hook"] == kind and reason in rec["reason"], rec
    assert hooks.kernels is None
    # every kernel here fails at its first call: the run is the driver's own
    default, _ = run(spec, fast, [], mem)
    same(eng, default)


def test_kernel_only_policies_load_and_compose_one_per_family():
    hooks = build_hooks([_policy("victim_kernel", _free_victim), REGISTRY["forward"]()])
    assert len(hooks.slots) == 2
    with pytest.raises(PolicyError, match="both decide eviction"):
        build_hooks([_policy("victim_kernel", _free_victim), EvictLru()])


def test_first_kernels_callback_runs_once_and_only_for_kernels():
    # the CLI announces the compile of the kernel versions of the fault service through it
    from uvmlab.driver import compiled

    calls = []
    compiled.on_first_kernels(lambda: calls.append(1))
    try:
        run(LLM, True, [EvictRecent(spare=1, compiled=False)], "150%")  # Python hooks only
        assert calls == []
        run(LLM, True, [EvictRecent(spare=1)], "150%")
        run(LLM, True, [EvictRecent(spare=1)], "150%")
        assert calls == [1]
    finally:
        compiled.on_first_kernels(None)
