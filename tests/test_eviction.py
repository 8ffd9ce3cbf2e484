"""Eviction under oversubscription follows the PMM's list rules (uvm_pmm_gpu.c, uvm_va_block.c)."""

import numpy as np
from helpers import MiB, cpu_filled, residency_of, run_engine

CPU_BIT, GPU_BIT = 1, 2


def _touch_blocks(b, a, blocks, page=0, name="k"):
    b.kernel(name, [b.index(a, np.array([blk * 512 + page for blk in blocks]))])


def test_plain_hits_do_not_refresh_the_lru():
    """Capacity 3 chunks; blocks 0,1,2 faulted in that order; block 0 then only *hit*; touching
    block 3 evicts block 0, the head of va_block_used."""
    b, a = cpu_filled("8MiB")
    for blk in (0, 1, 2):
        _touch_blocks(b, a, [blk], name=f"fault{blk}")
    _touch_blocks(b, a, [0], name="hit0")  # page 0 is mapped: a hit, no list update
    _touch_blocks(b, a, [3], name="fault3")
    eng = run_engine(b.build(), gpu_memory=6 * MiB)
    c = eng.drv.counters
    assert eng.rows[4]["gpu_faults"] == 0
    assert c["evictions"] == 1
    assert residency_of(eng, a, [0])[0] == CPU_BIT  # block 0 went back to the CPU
    assert residency_of(eng, a, [512])[0] == GPU_BIT
    assert residency_of(eng, a, [1536])[0] == GPU_BIT
    # eviction moves the block's GPU-resident pages (its 64 KiB big page) with cause eviction
    assert c["bytes_dtoh_eviction"] == 16 * 4096


def test_a_fault_moves_the_block_to_the_tail():
    b, a = cpu_filled("8MiB")
    for blk in (0, 1, 2):
        _touch_blocks(b, a, [blk], name=f"fault{blk}")
    _touch_blocks(b, a, [0], page=300, name="refault0")  # a new fault in block 0
    _touch_blocks(b, a, [3], name="fault3")
    eng = run_engine(b.build(), gpu_memory=6 * MiB)
    assert eng.rows[4]["gpu_faults"] == 1
    assert residency_of(eng, a, [512])[0] == CPU_BIT  # block 1 was the LRU victim
    assert residency_of(eng, a, [0])[0] == GPU_BIT


def test_unused_chunks_are_evicted_before_used_ones():
    """A block whose pages all went back to the CPU sits on va_block_unused and is picked
    before any used block, and evicting it copies nothing."""
    b, a = cpu_filled("8MiB")
    for blk in (0, 1, 2):
        _touch_blocks(b, a, [blk], name=f"fault{blk}")
    b.prefetch(a, "cpu", start=1024, num_pages=512)  # block 2 back to the CPU: chunk unused
    _touch_blocks(b, a, [3], name="fault3")
    eng = run_engine(b.build(), gpu_memory=6 * MiB)
    c = eng.drv.counters
    assert c["evictions"] == 1 and c["bytes_dtoh_eviction"] == 0
    assert residency_of(eng, a, [0])[0] == GPU_BIT and residency_of(eng, a, [512])[0] == GPU_BIT


def test_streaming_larger_than_memory_remigrates_every_pass():
    """A cyclic sweep larger than memory under LRU: every pass migrates everything again (the
    pages missing at a pass's start span more than the GPU's window of touches in flight)."""
    b, a = cpu_filled("64MiB")
    for p in range(3):
        b.kernel(f"pass{p}", [b.run(a)])
    fits = run_engine(b.build(), gpu_memory=128 * MiB).drv.counters
    over = run_engine(b.build(), gpu_memory=48 * MiB)
    c = over.drv.counters
    assert fits["bytes_htod"] == 64 * MiB and fits["evictions"] == 0
    for row in over.rows[1:]:
        assert row["bytes_htod"] == 64 * MiB
    assert c["evictions"] > 0
    assert over.drv.pmm[0].used_bytes <= 48 * MiB


def test_gpu_memory_never_exceeds_capacity_under_heavy_eviction():
    from uvmlab import simulate

    r = simulate("random:size=32MiB,seed=2", gpu_memory="200%", check_invariants=True)
    assert r.totals["evictions"] > 0
    assert r.totals["bytes_dtoh_eviction"] > 0
