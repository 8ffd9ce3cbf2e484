"""The compiled eviction of a root chunk (``compiled/eviction.evict_block_chunk``, which reads and
writes residency and mappings 8 pages a word) against the reference path
(``eviction.evict_block_chunk``) on random block states: duplicates on the CPU, pages on the CPU
only, holes, a partial last block whose pages end inside a word."""

from __future__ import annotations

import numpy as np
import pytest

from uvmlab.api import load_workload
from uvmlab.core.sizes import BLOCK_SHIFT
from uvmlab.driver import eviction
from uvmlab.driver.hal import get_gpu
from uvmlab.driver.params import Params
from uvmlab.engine.core import Engine
from uvmlab.timing.cost_model import load_profile, profile_for_gpu

GPU = 1
# 771 pages: block 0 whole, block 1 of 259 pages (32 words and 3 pages)
SPEC = "random:size=3084KiB"


def engine() -> Engine:
    gpu = get_gpu("h200")
    return Engine(
        load_workload(SPEC),
        gpu=gpu,
        params=Params.from_overrides({}),
        profile=load_profile(profile_for_gpu(gpu.name)),
        concurrency=4096,
    )


def evict_both(block: int, residency: np.ndarray, perm: np.ndarray) -> tuple[Engine, Engine]:
    """Put the block in the given state on two fresh engines, evict it with the reference and
    with the compiled code."""
    engines = engine(), engine()
    for eng in engines:
        va = eng.drv.va
        lo = va.alloc_base[0] + (block << BLOCK_SHIFT)
        n = len(residency)
        va.residency[lo : lo + n] = residency
        va.perm[:, lo : lo + n] = perm
        va.gpu_chunk[GPU - 1, lo >> BLOCK_SHIFT] = 0
    ref, fast = engines
    vb = int(ref.drv.va.alloc_base[0] >> BLOCK_SHIFT) + block
    eviction.evict_block_chunk(ref.drv, GPU, vb, 0)
    assert fast.drv.fast is not None
    fast.drv.fast.evict_block_chunk(fast.drv, GPU, vb, 0)
    return ref, fast


def assert_same(ref: Engine, fast: Engine) -> None:
    a, b = ref.drv, fast.drv
    assert np.array_equal(a.va.residency, b.va.residency)
    assert np.array_equal(a.va.perm, b.va.perm)
    assert np.array_equal(a.va.gpu_chunk, b.va.gpu_chunk)
    assert dict(a.counters) == dict(b.counters)
    assert a.work_ns == b.work_ns


@pytest.mark.parametrize("block", [0, 1], ids=["whole", "partial"])
@pytest.mark.parametrize("seed", range(6))
def test_random_block_states(block, seed):
    rng = np.random.default_rng(seed)
    n = 512 if block == 0 else 259
    # runs of states, so that pages on the GPU only come in runs of several lengths
    residency = np.repeat(rng.choice(np.array([0, 1, 2, 3], np.uint8), n), rng.integers(1, 9, n))[:n]
    perm = rng.integers(0, 4, (2, n)).astype(np.uint8)
    ref, fast = evict_both(block, residency, perm)
    assert_same(ref, fast)
    assert ref.drv.counters["pages_evicted"] == int(np.count_nonzero(residency & 2))


@pytest.mark.parametrize("block", [0, 1], ids=["whole", "partial"])
@pytest.mark.parametrize("state", [2, 3, 0], ids=["gpu-only", "duplicated", "nothing"])
def test_uniform_blocks(block, state):
    n = 512 if block == 0 else 259
    residency = np.full(n, state, np.uint8)
    ref, fast = evict_both(block, residency, np.full((2, n), 3, np.uint8))
    assert_same(ref, fast)
    va = fast.drv.va
    lo = va.alloc_base[0] + (block << BLOCK_SHIFT)
    # no page is left nowhere: what was on the GPU is on the CPU, mapped by no one
    expect = 1 if state else 0
    assert np.all(va.residency[lo : lo + n] == expect)
    if state:
        assert not va.perm[:, lo : lo + n].any()
    assert fast.drv.counters["bytes_dtoh_eviction"] == (n * 4096 if state == 2 else 0)
