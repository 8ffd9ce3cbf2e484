"""Perf modules listen to the driver's events (uvm_perf_events.c) without touching its code."""

import numpy as np
from helpers import cpu_filled

from uvmlab.driver.hal import get_gpu
from uvmlab.driver.params import Params
from uvmlab.driver.perf import events as pe
from uvmlab.engine.core import Engine
from uvmlab.timing.cost_model import load_profile


def test_a_module_sees_every_migration_and_fault():
    b, a = cpu_filled("8MiB")
    b.kernel("read", [b.index(a, np.array([0, 700, 1500, 1501]))])
    b.cpu("back", [b.run(a, 0, 1)])
    eng = Engine(b.build(), gpu=get_gpu("h200"), params=Params(), profile=load_profile())
    seen = {"pages": 0, "faults": 0, "dst": set()}

    def on_migration(*, block, pages, dst, cause, now_ns, transfer_copy, read_dup_enabled):
        seen["pages"] += len(pages)
        seen["dst"].add(dst)

    def on_fault(*, block, pages, processor, now_ns):
        seen["faults"] += len(pages)

    eng.drv.perf_events.register(pe.MIGRATION, on_migration)
    eng.drv.perf_events.register(pe.FAULT, on_fault)
    eng.run()
    c = eng.drv.counters
    assert seen["pages"] * 4096 == c["bytes_htod"] + c["bytes_dtoh"]
    assert seen["dst"] == {0, 1}
    assert seen["faults"] >= 4 + 1  # 4 GPU pages (3 blocks) and the CPU read-back page


def test_unknown_event_is_refused():
    import pytest

    with pytest.raises(ValueError, match="migration"):
        pe.PerfEvents().register("migrate", lambda **k: None)


def test_freeing_a_terabyte_destroys_only_the_blocks_it_touched():
    """A VA block exists once touched (uvm_va_block_t is created on first use); freeing the
    range destroys those, and frees their GPU chunks, not one event per 2 MiB of its VA."""
    b = cpu_filled("2MiB")[0]
    big = b.alloc("big", 1 << 40)
    touched = [3, 70_000, (1 << 28) - 1]  # pages: blocks 0, 136 and the last of 2^19
    b.kernel("touch", [b.index(big, np.array(touched))])
    b.cpu("back", [b.index(big, np.array([5 << 9]))])  # block 5, on the CPU only
    b.free(big)
    eng = Engine(b.build(), gpu=get_gpu("h200"), params=Params(), profile=load_profile(), check=True)
    destroyed: list[int] = []
    eng.drv.perf_events.register(pe.BLOCK_DESTROY, lambda *, block: destroyed.append(block))
    eng.run()
    base = int(eng.drv.va.alloc_base[big]) >> 9
    assert [blk - base for blk in destroyed] == sorted({p >> 9 for p in touched} | {5})
    va = eng.drv.va
    lo, hi = base, base + (1 << 19)
    assert (va.gpu_chunk[:, lo:hi] < 0).all()  # every chunk went back to the PMM
    assert not va.residency[lo << 9 : (lo << 9) + 4096].any()
    eng.check_invariants()
