"""CPU faults on pages the thrashing module flagged (uvm_va_block.c block_cpu_fault_locked,
uvm_perf_prefetch.c, uvm_perf_thrashing.c), as the driver services them.

A CPU fault goes through uvm_va_block_service_locked like a GPU fault, so the prefetcher treats
thrashing pages the same way for the CPU: no prefetch region is computed from a faulted page
that is thrashing, thrashing pages are masked out of the prefetch, and the 64 KiB growth skips a
region holding one. A flagged page that has been quiet for more than a lapse gets no hint, but
it stays flagged until its next migration resets it (thrashing_event_cb), which is what lets a
ping-pong's next CPU phase take its few large faults again (docs/validation.md, limits).
"""

from helpers import residency_of, run_engine

from uvmlab.driver.cpu_fault import cpu_fault
from uvmlab.driver.va_space import BLOCK_SHIFT, CPU
from uvmlab.workload.builder import WorkloadBuilder
from uvmlab.workload.ir import Access

CPU_BIT, GPU_BIT = 1, 2
US = 1000


def _flagged_block():
    """A 2 MiB buffer written by the GPU, pages 0-15 of its block flagged as thrashing by five
    alternating migrations 100 µs apart; the driver's clock a lapse and more after the last."""
    b = WorkloadBuilder("flagged")
    a = b.alloc("buf", "2MiB")
    b.kernel("w", [b.run(a, 0, 512, access="write")])
    eng = run_engine(b.build())
    drv = eng.drv
    base = int(drv.va.alloc_base[a])
    block = base >> BLOCK_SHIFT
    det = drv.thrashing
    t = drv.now_ns + 10_000 * US
    for i in range(5):  # GPU, CPU, GPU, CPU, GPU: per-page state from the 2nd, 3 counted gaps
        det.on_migration(block, range(16), CPU if i % 2 else 1, "fault", t + i * 100 * US)
    assert det.thrashing_mask(block)[:16].all() and det.thrashing_mask(block).sum() == 16
    drv.now_ns = t + 4 * 100 * US + 2 * det.lapse_ns  # quiet for more than a lapse
    return eng, a, base, block


def _fault(eng, page: int) -> int:
    """One CPU write fault; the bytes it moved to the CPU."""
    c = eng.drv.counters
    before = c["bytes_dtoh"]
    cpu_fault(eng.drv, page, int(Access.WRITE))
    return c["bytes_dtoh"] - before


def test_cpu_fault_on_a_flagged_page_moves_that_page_alone_and_resets_it():
    eng, a, base, block = _flagged_block()
    assert _fault(eng, base + 3) == 4096  # no prefetch region from a thrashing faulted page
    assert residency_of(eng, a, [3])[0] == CPU_BIT
    assert (residency_of(eng, a, [0, 1, 2, *range(4, 16)]) == GPU_BIT).all()
    mask = eng.drv.thrashing.thrashing_mask(block)
    # its migration came more than a lapse after its last event: page 3 is not thrashing any more
    assert not mask[3] and mask[:3].all() and mask[4:16].all()
    assert eng.drv.counters["throttles"] == 0 and eng.drv.counters["pins"] == 0


def test_prefetch_around_flagged_pages_leaves_them_on_the_gpu():
    eng, a, base, block = _flagged_block()
    # page 16 starts the next 64 KiB big page: it grows to that big page, none of it flagged
    assert _fault(eng, base + 16) == 16 * 4096
    # then faults walking up the block: the prefetch covers more and more of it, never 0-15
    moved = sum(_fault(eng, base + p) for p in (32, 64, 128, 256) if residency_of(eng, a, [p])[0] != CPU_BIT)
    assert moved > 0
    res = residency_of(eng, a, range(512))
    assert (res[:16] == GPU_BIT).all()
    assert (res[16:] == CPU_BIT).sum() > 16 * 4  # well beyond the faulted pages' big pages
    flagged = eng.drv.thrashing.thrashing_mask(block)
    assert flagged[:16].all() and not flagged[16:].any()


def test_without_flags_the_same_faults_prefetch_the_first_pages_too():
    """The control: the same fault at page 16 on an unflagged block may prefetch pages 0-15."""
    b = WorkloadBuilder("plain")
    a = b.alloc("buf", "2MiB")
    b.kernel("w", [b.run(a, 0, 512, access="write")])
    eng = run_engine(b.build())
    base = int(eng.drv.va.alloc_base[a])
    for p in (0, 16, 32, 64, 128, 256):
        if residency_of(eng, a, [p])[0] != CPU_BIT:
            _fault(eng, base + p)
    assert eng.drv.counters["cpu_faults"] == 6  # uvm_perf_prefetch.c: six faults a block
    assert (residency_of(eng, a, range(512)) == CPU_BIT).all()
