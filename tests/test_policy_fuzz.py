"""Fuzz: random policies — random decisions, random requests, random exceptions and garbage —
never break the driver's invariants, checked after every fault batch and CPU fault."""

import numpy as np
import pytest
from helpers import MiB, random_moves, run_engine

from uvmlab.api import load_workload
from uvmlab.policy import Policy, Region
from uvmlab.policy.guard import Guard

GARBAGE = (None, 3, -7, 2.5, "head", (1, 2, 3), [None], object(), np.int64(9), True)


class RandomPolicy(Policy):
    """Every hook, deciding at random; with probability ``p_bad`` per call it raises or returns
    something the hook does not allow."""

    name = "random"

    def __init__(self, seed: int, p_bad: float) -> None:
        super().__init__()
        self.rng = np.random.default_rng(seed)
        self.p_bad = p_bad
        self.calls = 0

    def _bad(self):
        self.calls += 1
        r = self.rng.random()
        if r < self.p_bad / 2:
            raise RuntimeError("random failure")
        return r < self.p_bad

    def _garbage(self):
        return GARBAGE[self.rng.integers(len(GARBAGE))]

    def _maybe_migrate(self, ctx, alloc_first, alloc_pages):
        if self.rng.random() < 0.05:
            first = alloc_first + int(self.rng.integers(0, alloc_pages))
            n = int(self.rng.integers(1, max(2, alloc_first + alloc_pages - first + 1)))
            ctx.migrate(first, n)

    def prefetch_before_compute(self, ctx):
        if self._bad():
            return Region(-1, ctx.n_pages + 3) if self.rng.random() < 0.5 else self._garbage()
        self._maybe_migrate(ctx, ctx.alloc.first_page, ctx.alloc.pages)
        r = self.rng.integers(4)
        if r == 0:
            return 0
        if r == 1:
            return 2
        a, b = sorted(self.rng.integers(0, ctx.n_pages + 1, 2).tolist())
        return Region(a, b)

    def prefetch_on_tree_iter(self, ctx):
        if self._bad():
            return self._garbage()
        return bool(self.rng.random() < 0.5)

    def chunk_activate(self, ctx):
        if self._bad():
            ctx.move_head(-5)
            return None
        random_moves(self.rng, ctx)
        return None

    def chunk_used(self, ctx):
        if self._bad():
            return self._garbage()
        random_moves(self.rng, ctx)
        return int(self.rng.integers(2))

    def eviction_prepare(self, ctx):
        if self._bad():
            return 10**7 if self.rng.random() < 0.5 else self._garbage()
        lists = np.concatenate((ctx.used, ctx.unused))
        r = self.rng.integers(3)
        if r == 0 or not len(lists):
            return None
        if r == 1:
            return int(lists[self.rng.integers(len(lists))])
        k = int(self.rng.integers(0, len(lists) + 1))
        return [(int(c), "head" if self.rng.random() < 0.5 else "tail") for c in self.rng.choice(lists, k)]

    def decide_replay(self, ctx):
        if self._bad():
            return self._garbage()
        return int(self.rng.integers(-1, 2))

    def thrashing_hint(self, ctx):
        if self._bad():
            return np.full(len(ctx.pages) + 1, 9)
        if self.rng.random() < 0.5:
            return None
        return self.rng.integers(-1, 3, len(ctx.pages))


WORKLOADS = [
    "random:size=16MiB,seed=1",
    "stream:size=8MiB,passes=2",
    "llm:size=16MiB,tokens=4",
    "pingpong:size=8MiB,rounds=3",
    "stencil:size=8MiB,iters=2",
    "graph:size=16MiB,levels=3",
    "vecsearch:size=16MiB,queries=16",
    "train:size=16MiB,steps=1",
]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(24))
def test_random_policies_never_break_the_invariants(seed):
    spec = WORKLOADS[seed % len(WORKLOADS)]
    w = load_workload(spec)
    rng = np.random.default_rng(100 + seed)
    mem = int(max(2 * MiB, w.managed_bytes * rng.choice([0.3, 0.5, 0.67, 1.5])) // (2 * MiB) * 2 * MiB)
    p_bad = (0.0, 0.0, 0.0, 0.001, 0.01)[seed % 5]
    pol = RandomPolicy(seed, p_bad)
    eng = run_engine(
        w, gpu_memory=mem, concurrency=int(rng.choice([64, 512, 4096])), hooks=Guard([pol], budget_ms=1000)
    )  # checks invariants after every batch
    g = eng.drv.hooks
    assert eng.fatal is None, eng.fatal
    assert pol.calls > 0
    assert eng.drv.counters["policy_ejections"] == g.ejections == len(g.ejected) <= 1
    if p_bad == 0:
        assert g.ejections == 0 or "livelock" in g.ejected[0]["reason"], g.ejected
    # same inputs, same decisions, same result (the fuzz is reproducible)
    again = run_engine(
        w,
        gpu_memory=mem,
        concurrency=eng.concurrency,
        hooks=Guard([RandomPolicy(seed, p_bad)], budget_ms=1000),
    )
    assert again.drv.counters == eng.drv.counters
