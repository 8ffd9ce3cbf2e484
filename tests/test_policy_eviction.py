"""Eviction policies change the victim the way their docstrings say; Belady bounds LRU."""

import numpy as np
import pytest
from helpers import MiB, cpu_filled, residency_of, run_engine

from uvmlab import simulate
from uvmlab.policy.guard import Guard
from uvmlab.policy.loader import load_policy
from uvmlab.workload.builder import WorkloadBuilder
from uvmlab.workload.rodinia import GENERATORS as rodinia_generators
from uvmlab.workload.synthetic import describe

CPU_BIT, GPU_BIT = 1, 2


def _touch(b, a, blocks, page=0, name="k"):
    b.kernel(name, [b.index(a, np.array([blk * 512 + page for blk in blocks]))])


def _victim_after(policy, refault_blocks=(0,), refaults=1):
    """Capacity 3 chunks: fault blocks 0, 1, 2 (in that order), refault ``refault_blocks``
    ``refaults`` times at new pages, then fault block 3. Returns the evicted block."""
    b, a = cpu_filled("8MiB")
    for blk in (0, 1, 2):
        _touch(b, a, [blk], name=f"fault{blk}")
    for r in range(refaults):
        for blk in refault_blocks:
            _touch(b, a, [blk], page=100 + 40 * r, name=f"refault{blk}.{r}")
    _touch(b, a, [3], name="fault3")
    hooks = None if policy is None else Guard([load_policy(policy)])
    eng = run_engine(b.build(), gpu_memory=6 * MiB, hooks=hooks)
    assert eng.drv.counters["evictions"] == 1
    assert eng.drv.counters["policy_ejections"] == 0 if hooks else True
    gone = [blk for blk in range(3) if residency_of(eng, a, [blk * 512])[0] == CPU_BIT]
    assert len(gone) == 1
    return gone[0]


def test_lru_policy_and_the_driver_evict_the_least_recently_faulted():
    assert _victim_after(None) == 1 == _victim_after("lru")


def test_mru_evicts_the_most_recently_used_chunk():
    assert _victim_after("mru") == 0  # block 0 was refaulted last
    assert _victim_after("mru", refault_blocks=(1,)) == 1


def test_fifo_evicts_in_allocation_order_whatever_the_uses():
    assert _victim_after("fifo") == 0
    assert _victim_after("fifo", refault_blocks=(0, 1)) == 0


def test_fifo_chance_rotates_a_used_chunk_once():
    assert _victim_after("fifo-chance") == 1  # block 0 had a chance: it went to the tail
    assert _victim_after("fifo-chance", refault_blocks=(1,)) == 0


def test_lfu_evicts_the_least_used_block_most_recent_among_equals():
    # uses: block 1 three times, blocks 0 and 2 once; of 0 and 2, block 2 is more recent
    assert _victim_after("lfu", refault_blocks=(1,), refaults=2) == 2
    assert _victim_after("lfu", refault_blocks=(0, 2), refaults=1) == 1


def test_lfu_counts_survive_eviction():
    """A block that keeps coming back outranks blocks used once, even right after it returns."""
    b, a = cpu_filled("16MiB")
    for r in range(3):  # block 0 faults in, is pushed out by 1, 2, 3, and comes back
        _touch(b, a, [0], page=10 * r, name=f"hot{r}")
        _touch(b, a, [1 + r, 4 + r], name=f"cold{r}")
    eng = run_engine(b.build(), gpu_memory=6 * MiB, hooks=Guard([load_policy("lfu")]))
    assert residency_of(eng, a, [0])[0] == GPU_BIT


def test_tenant_quota_evicts_from_the_tenant_over_its_share():
    b = WorkloadBuilder("tenants")
    x = b.alloc("A/x", "4MiB")
    y = b.alloc("B/y", "4MiB")
    b.cpu("init", [b.run(x, access="write"), b.run(y, access="write")])
    _touch(b, y, [0], name="b0")  # B's chunk is the least recently used
    _touch(b, x, [0], name="a0")
    _touch(b, x, [1], name="a1")
    _touch(b, y, [1], name="b1")  # needs a chunk
    w = b.build()
    lru = run_engine(w, gpu_memory=6 * MiB)
    assert residency_of(lru, y, [0])[0] == CPU_BIT  # LRU takes B's old chunk
    q = run_engine(w, gpu_memory=6 * MiB, hooks=Guard([load_policy("tenant-quota(quotas=B=70)")]))
    assert residency_of(q, y, [0])[0] == GPU_BIT  # B is under its 70 %: A pays
    assert residency_of(q, x, [0])[0] == CPU_BIT


def test_tenant_priority_evicts_the_lower_priority_tenant_first():
    b = WorkloadBuilder("tenants")
    x = b.alloc("lc/x", "4MiB")
    y = b.alloc("be/y", "4MiB")
    b.cpu("init", [b.run(x, access="write"), b.run(y, access="write")])
    _touch(b, x, [0], name="lc0")  # lc's chunk is the least recently used
    _touch(b, y, [0], name="be0")
    _touch(b, x, [1], name="lc1")
    _touch(b, y, [1], name="be1")  # needs a chunk
    w = b.build()
    lru = run_engine(w, gpu_memory=6 * MiB)
    assert residency_of(lru, x, [0])[0] == CPU_BIT  # LRU takes lc's old chunk
    p = run_engine(w, gpu_memory=6 * MiB, hooks=Guard([load_policy("tenant-priority(order=lc;be)")]))
    assert residency_of(p, x, [0])[0] == GPU_BIT  # lc is protected: be pays, with its own LRU
    assert residency_of(p, y, [0])[0] == CPU_BIT


def test_belady_evicts_the_block_needed_last():
    b, a = cpu_filled("8MiB")
    for blk in (0, 1, 2, 3, 1, 0):
        _touch(b, a, [blk], name=f"t{blk}")
    w = b.build()
    bel = run_engine(w, gpu_memory=6 * MiB, hooks=Guard([load_policy("belady")]))
    lru = run_engine(w, gpu_memory=6 * MiB)
    # at block 3's fault, block 2 is never used again: Belady evicts it; LRU evicts block 0,
    # then block 1 for block 0's return (the touch of block 1 is a hit)
    assert bel.drv.counters["evictions"] == 1
    assert lru.drv.counters["evictions"] == 2


def _generated():
    # The Rodinia-shaped generators (uvmlab.workload.rodinia) are left out: their reference
    # strings are long enough that one-thread-at-a-time runs take minutes each on the reference
    # path; tests/test_trends_pascal.py covers their eviction behaviour.
    rodinia = {g.__name__ for g in rodinia_generators}
    return [d["name"] for d in describe() if d["name"] not in rodinia]


@pytest.mark.slow
@pytest.mark.parametrize("name", _generated())
def test_belady_never_evicts_more_than_lru_on_generated_workloads(name):
    """Belady is MIN on the workload's reference string. The engine follows that string when the
    GPU runs one thread at a time; with thousands in flight the driver serves faults in batches,
    in fault-buffer order, and the bound is only a practical one (docs/policies.md has data)."""
    for size, ratio in (("8MiB", "150%"), ("16MiB", "300%")):
        spec = f"{name}:size={size}"
        lru = simulate(spec, gpu_memory=ratio, concurrency=1)
        bel = simulate(spec, gpu_memory=ratio, concurrency=1, policies="belady")
        assert bel.totals["policy_ejections"] == 0
        assert bel.totals["evictions"] <= lru.totals["evictions"], (spec, ratio)


@pytest.mark.parametrize("seed", range(4))
def test_belady_never_evicts_more_than_lru_on_random_block_sequences(seed):
    rng = np.random.default_rng(seed)
    b, a = cpu_filled("16MiB")
    for k in range(int(rng.integers(3, 8))):
        blocks = rng.integers(0, 8, int(rng.integers(4, 24)))
        pages = blocks * 512 + rng.integers(0, 512, len(blocks))
        b.kernel(f"k{k}", [b.index(a, pages)])
    w = b.build()
    for mem in (4 * MiB, 6 * MiB, 10 * MiB):
        lru = run_engine(w, gpu_memory=mem, concurrency=1).drv.counters["evictions"]
        bel = run_engine(w, gpu_memory=mem, concurrency=1, hooks=Guard([load_policy("belady")])).drv.counters[
            "evictions"
        ]
        assert bel <= lru, (seed, mem)


@pytest.mark.slow
def test_llm_sweep_oversubscribed_mru_and_lfu_beat_lru_and_belady_bounds_them():
    spec = "llm:size=32MiB"
    r = {
        p: simulate(spec, gpu_memory="150%", policies=None if p == "default" else p).totals
        for p in ("default", "mru", "lfu", "belady")
    }
    for p in ("mru", "lfu"):
        assert r[p]["time_ns"] < r["default"]["time_ns"], p
        assert r[p]["evictions"] < r["default"]["evictions"], p
    assert r["belady"]["evictions"] <= min(t["evictions"] for t in r.values())
