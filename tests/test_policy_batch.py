"""Batch-level hooks (``prefetch_batch``, ``thrashing_batch``) and the compiled policy form.

A batch hook decides for every VA block of a fault batch in one call; the compiled fault path
applies its rows without leaving compiled code, the reference path applies them where it takes
the same decisions, and both must give the same answer. The batch forms must also give the
answer of a per-page policy that takes the same decisions, and the compiled form of a policy
that of its Python source.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import random_moves
from helpers import run_with_policies as run

from uvmlab.engine.core import Engine
from uvmlab.policy import HINT_PIN, KEEP, Policy
from uvmlab.policy.library.prefetch_forward import PrefetchForward

STREAM = "stream:size=16MiB,passes=2"
RANDOM = "random:size=16MiB"
LLM = "llm:size=16MiB,tokens=2"
HAIR_TRIGGER = {
    "uvm_perf_thrashing_threshold": 1,
    "uvm_perf_thrashing_lapse_usec": 100000,
    "uvm_perf_thrashing_pin_threshold": 2,
}


def answer(eng: Engine) -> dict:
    drv = eng.drv
    va, pmm = drv.va, drv.pmm[0]
    return {
        "clock": eng.clock,
        "rows": eng.rows,
        "counters": {k: v for k, v in drv.counters.items() if k != "policy_ejections"},
        "residency": va.residency.tobytes(),
        "perm": va.perm.tobytes(),
        "pf": va.prefetch_fault_migrations.tobytes() + va.prefetch_last_proc.tobytes(),
        "lists": [pmm.list_chunks(n).tolist() for n in ("free", "va_block_used", "va_block_unused")],
    }


def same(a: Engine, b: Engine) -> None:
    x, y = answer(a), answer(b)
    for k in x:
        assert x[k] == y[k], k


class WholeBlockBatch(Policy):
    """always-max written as a batch hook: every page of every faulted block."""

    name = "whole-block-batch"

    def prefetch_batch(self, ctx):
        return np.ones(ctx.faulted.shape, dtype=bool)


class PinThrashingBatch(Policy):
    """PIN every faulted page the detector flags as thrashing."""

    name = "pin-thrashing-batch"

    def thrashing_batch(self, ctx):
        flagged = ctx.thrashing & ctx.faulted
        if not flagged.any():
            return None
        return np.where(flagged, HINT_PIN, KEEP)


class MruBatch(Policy):
    """MRU from the batch view: the chunks a batch used go to the head of the used list."""

    name = "mru-batch"

    def chunk_used_batch(self, ctx):
        for c in ctx.chunks.tolist():
            ctx.move_head(c)


class NoopAll(Policy):
    name = "noop-all"

    def prefetch_batch(self, ctx):
        return None

    def decide_replay(self, ctx):
        return 0


class NoopEvictionBatch(Policy):
    name = "noop-eviction-batch"

    def chunk_used_batch(self, ctx):
        assert len(ctx.chunks) == len(ctx.blocks) > 0 and set(ctx.chunks.tolist()) <= set(ctx.used.tolist())
        # the blocks' allocations, computed when read: one per block, read-only
        alloc = ctx.alloc
        assert alloc.dtype == np.int64 and len(alloc) == len(ctx.blocks) and (alloc >= 0).all()
        assert not alloc.flags.writeable


@pytest.mark.parametrize("spec,mem", [(STREAM, None), (RANDOM, None), (LLM, "150%")])
def test_batch_prefetch_equals_its_per_page_twin_on_both_paths(spec, mem):
    # always-max decides per page (reference path); its batch form decides per batch and keeps
    # the compiled path: one answer for all three
    ref, _ = run(spec, False, "always-max", mem)
    ref_b, _ = run(spec, False, [WholeBlockBatch()], mem)
    fast_b, hooks = run(spec, True, [WholeBlockBatch()], mem)
    same(ref, ref_b)
    same(ref_b, fast_b)
    assert fast_b.drv.fast.usable() and hooks.ejections == 0
    # one call per fault batch, not per page
    assert hooks.stats["prefetch_batch"]["calls"] == fast_b.drv.counters["fault_batches"]


@pytest.mark.parametrize("spec,mem", [(STREAM, None), (LLM, "150%"), ("pingpong:size=16MiB,rounds=3", None)])
def test_compiled_policy_equals_its_python_source(spec, mem):
    jit, _ = run(spec, True, [PrefetchForward(window=16)], mem)
    py, _ = run(spec, True, [PrefetchForward(window=16, compiled=False)], mem)
    ref, _ = run(spec, False, [PrefetchForward(window=16)], mem)
    same(jit, py)
    same(jit, ref)
    default, _ = run(spec, True, [NoopAll()], mem)
    assert jit.drv.counters["bytes_htod_prefetch"] != default.drv.counters["bytes_htod_prefetch"]


def test_thrashing_batch_on_both_paths():
    spec = "pingpong:size=16MiB,rounds=3"
    ref, _ = run(spec, False, [PinThrashingBatch()], params=HAIR_TRIGGER)
    fast, hooks = run(spec, True, [PinThrashingBatch()], params=HAIR_TRIGGER)
    same(ref, fast)
    assert fast.drv.counters["pins"] > 0 and hooks.ejections == 0
    assert fast.drv.fast.usable()


@pytest.mark.parametrize("spec", [LLM, "train:size=16MiB,steps=1"])
def test_chunk_used_batch_on_both_paths(spec):
    ref, _ = run(spec, False, [MruBatch()], "150%")
    fast, hooks = run(spec, True, [MruBatch()], "150%")
    same(ref, fast)
    assert hooks.ejections == 0 and not hooks.stops_for_use
    default, _ = run(spec, True, [], "150%")
    assert fast.drv.counters["evictions"] != default.drv.counters["evictions"]


def test_noop_policies_keep_the_default_answer_and_the_compiled_path():
    for spec, mem in ((RANDOM, None), (LLM, "150%")):
        default, _ = run(spec, True, [], mem)
        noop, hooks = run(spec, True, [NoopAll(), NoopEvictionBatch()], mem)
        same(default, noop)
        assert hooks.ejections == 0 and hooks.stats["chunk_used_batch"]["calls"] > 0
        # no live eviction hook: the compiled service never stops for one
        assert not hooks.stops_for_allocation and not hooks.stops_for_use
        assert not hooks.steers_block_service


class BadShape(Policy):
    name = "bad-shape"

    def prefetch_batch(self, ctx):
        return np.ones((ctx.faulted.shape[0], 3), dtype=bool)


class BadKind(Policy):
    name = "bad-kind"

    def thrashing_batch(self, ctx):
        return np.full(ctx.faulted.shape, 7, dtype=np.int8)


class Writes(Policy):
    name = "writes"

    def prefetch_batch(self, ctx):
        ctx.faulted[0, 0] = True  # read-only: raises, and the policy is ejected


class Sneaky(np.ndarray):
    """An array whose attributes run the policy's code when the driver reads them."""

    @property
    def shape(self):
        raise RuntimeError("runs outside the guarded call")


class SubclassMask(Policy):
    name = "subclass-mask"

    def prefetch_batch(self, ctx):
        return np.zeros(ctx.faulted.shape, dtype=bool).view(Sneaky)


@pytest.mark.parametrize("policy", [BadShape, BadKind, Writes, SubclassMask])
def test_bad_batch_decisions_eject_and_the_run_keeps_the_default(policy):
    default, _ = run(RANDOM, True, [])
    for fast in (True, False):
        eng, hooks = run(RANDOM, fast, [policy()])
        assert hooks.ejections == 1
        same(default, eng)


def test_batch_hook_under_isolation_gives_the_in_process_answer():
    # the batch context crosses to the policy's process: arrays as values, resident on demand
    from uvmlab.api import simulate

    here = simulate("stream:size=8MiB,passes=1", policies="forward(window=8)")
    there = simulate("stream:size=8MiB,passes=1", policies="forward(window=8)", isolate=True)
    assert here.totals == there.totals and there.totals["policy_ejections"] == 0


class RandomBatch(Policy):
    """The batch forms and the per-allocation hooks, deciding at random (seeded): random
    prefetch rows, random hint kinds, random list moves, random victims and replays."""

    name = "random-batch"

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = np.random.default_rng(seed)

    def prefetch_batch(self, ctx):
        r = self.rng.random()
        if r < 0.3:
            return None
        mask = self.rng.random(ctx.faulted.shape) < 0.3
        if r < 0.6:
            return mask
        return mask, self.rng.random(len(ctx.blocks)) < 0.5

    def thrashing_batch(self, ctx):
        if self.rng.random() < 0.5:
            return None
        kinds = self.rng.integers(-1, 3, ctx.faulted.shape)
        kinds[self.rng.random(ctx.faulted.shape) < 0.9] = KEEP
        return kinds

    def chunk_used_batch(self, ctx):
        random_moves(self.rng, ctx)

    def chunk_activate(self, ctx):
        random_moves(self.rng, ctx)

    def eviction_prepare(self, ctx):
        lists = np.concatenate((ctx.used, ctx.unused))
        if not len(lists) or self.rng.random() < 0.5:
            return None
        return int(lists[self.rng.integers(len(lists))])

    def decide_replay(self, ctx):
        return int(self.rng.integers(-1, 2))


@pytest.mark.parametrize(
    "seed,spec,mem,params",
    [
        (1, LLM, "150%", None),
        (2, "pingpong:size=16MiB,rounds=3", None, HAIR_TRIGGER),
        (3, "train:size=16MiB,steps=1", "67%", None),
        (4, RANDOM, "150%", None),
        (5, "graph:size=16MiB,levels=3", "67%", HAIR_TRIGGER),
        (6, "stream:size=16MiB,passes=3", "50%", None),
        (7, "vecsearch:size=16MiB,queries=16", "150%", None),
    ],
)
def test_random_batch_decisions_give_one_answer_on_both_paths(seed, spec, mem, params):
    # whatever a batch policy decides, the compiled path applies it as the reference path does
    # (random rows, kinds, list moves, victims and replays: every way the paths could part)
    ref, ref_hooks = run(spec, False, [RandomBatch(seed)], mem, params)
    fast, fast_hooks = run(spec, True, [RandomBatch(seed)], mem, params)
    same(ref, fast)
    assert ref_hooks.ejections == fast_hooks.ejections == 0, fast_hooks.ejected
    assert fast_hooks.stats["prefetch_batch"]["calls"] > 0
