"""The calibration's benchmark workloads and their sizes (``calibrate.py`` says what each measures)."""

from __future__ import annotations

import numpy as np

from uvmlab.core.sizes import PAGE_SIZE, PAGES_PER_BLOCK
from uvmlab.workload.builder import WorkloadBuilder

# module references, not names: tests replace these functions with fakes
from uvmlab.workload.ir import Workload

BLOCK_PAGES = PAGES_PER_BLOCK  # 2 MiB VA block
BIG_PAGE = 64 << 10
PIECES = (64 << 10, 2 << 20)  # prefetch piece sizes per 2 MiB block
REPS = 3  # pinned copies (stable to 0.5 %) and the reported first_touch
# Bulk prefetch round trips: DtoH took 35 or 53 ms per 512 MiB (H100), 41 or 53 ms (H200), at
# random; with 32 rounds the trimmed mean moves by ~4 % (1 sigma, even odds between the modes)
# with the modes' frequencies. Each round is ~60 ms at the default size.
BULK_ROUNDS = 32
PIECE_ROUNDS = 3  # per-block prefetch calls: only reported (slope, intercept) and a floored fit
# rand2m: all-in-flight kernels. Their times were bimodal (18.7 or 23-26 ms within one run) and
# B is a difference of two times (T1 - Tp ~ 16 ms), so a 1 ms error in Tp is 6 % of B: 24
# repetitions (trimmed mean of 20) bring that to ~0.7 ms. Each costs ~1.4 s, nearly all of it the
# CPU initialisation of the 2 GiB buffer that makes every fault migrate a CPU-resident page.
FAULT_REPS = 24
SERIAL_EVERY = 3  # one serial rand2m per this many parallel ones: T1 varied ~1 % (one outlier)
TOUCH_REPS = 6  # stream / resident / back / cpu_resident rounds
# A resident kernel of 8 passes (~1 M touches) ran ~0.1 ms, so launch noise made run-to-run
# deviations of 38 %: ~134 M touches (~12 ms) make launch costs < 0.1 % of the timed region.
RESIDENT_TOUCHES = 1 << 27
CPU_TOUCHES = 1 << 23  # ~180 ms of numpy gathers per cpu_resident phase (was ~22 ms)
REMOTE_TOUCHES = 1 << 23  # ~13 ms per remote kernel (was ~1.6 ms)
REMOTE_ALLOCS = 6  # remote kernels on several pinned allocations (their placement differs)
REMOTE_KERNELS = 2  # per allocation
MAX_PASSES = 4096  # passes per op at small sizes: bounds the segment tables
CPU_FAULT_BYTES = 32 << 20  # cpu_fault: 8192 collapse faults (~0.3 s) per repetition
CPU_FAULT_REPS = 6
# Short latencies: bursts spread over the run (a state of these VMs can last seconds), each on
# its own pinned buffer (the placement of host memory differs); ~8 bursts per run.
LAT_SAMPLES = 25  # per burst and quantity (after LAT_WARM discarded ones)
LAT_WARM = 5
TRIM = 0.1  # fraction of the repetitions dropped at each end by the trimmed mean
WARM_HOST_BYTES = 4 << 30  # host memory touched once before measuring (see calibrate())
FAULT_BATCH = 256  # uvm_perf_fault_batch_count default; read from the machine when present
RAW_VERSION = 2  # raw files without "calibrate_version" are version 1 (fitted the old way)
#: constants the benchmarks do not measure (fixed values, reported without a spread)
UNMEASURED = (
    "bottom_half_ns",
    "evict_chunk_ns",
    "cpu_populate_ns_per_byte",
    "cpu_map_page_ns",
    "advise_block_ns",
    "read_dup_page_ns",
    "free_block_ns",
)


def _passes(target_touches: int, pages: int, least: int) -> int:
    """Passes over ``pages`` pages that make about ``target_touches`` touches."""
    return int(min(MAX_PASSES, max(least, target_touches // max(1, pages))))


# --- workloads (pure builders, testable without a GPU) ------------------------------------------


def wl_prefetch(size: int, rounds: int = PIECE_ROUNDS, bulk_rounds: int = BULK_ROUNDS) -> Workload:
    """Whole-buffer prefetches both ways (``bulk_rounds`` times), then ``rounds`` times: one call
    per 2 MiB block moving a 64 KiB piece, then the whole block, each way."""
    b = WorkloadBuilder("cal_prefetch")
    buf = b.alloc("buf", size)
    b.cpu("init", [b.run(buf, access="write")])
    for _ in range(bulk_rounds):
        b.prefetch(buf, "gpu0")
        b.prefetch(buf, "cpu")
    n = b.pages(buf) // BLOCK_PAGES
    for _ in range(rounds):
        for piece in PIECES:
            for dest in ("gpu0", "cpu"):
                for k in range(n):
                    b.prefetch(buf, dest, start=k * BLOCK_PAGES, num_pages=piece // PAGE_SIZE)
    return b.build()


def wl_random(size: int, step_pages: int, seed: int = 0) -> Workload:
    b = WorkloadBuilder(f"cal_rand{step_pages * 4}k", seed=seed)
    buf = b.alloc("buf", size)
    b.cpu("init", [b.run(buf, access="write")])
    pages = np.arange(0, b.pages(buf), step_pages, dtype=np.int64)
    np.random.default_rng(seed).shuffle(pages)
    b.kernel("touch", [b.index(buf, pages)])
    return b.build()


def wl_stream_back(
    size: int, passes: int | None = None, reps: int = TOUCH_REPS, cpu_passes: int | None = None
) -> Workload:
    """CPU init, then ``reps`` times: GPU demand stream, resident passes, CPU read-back (faults),
    CPU passes over the now CPU-resident buffer. Pass counts default to ~RESIDENT_TOUCHES and
    ~CPU_TOUCHES touches per phase."""
    b = WorkloadBuilder("cal_stream_back")
    buf = b.alloc("buf", size)
    pages = b.pages(buf)
    passes = _passes(RESIDENT_TOUCHES, pages, 8) if passes is None else passes
    cpu_passes = _passes(CPU_TOUCHES, pages, 8) if cpu_passes is None else cpu_passes
    b.cpu("init", [b.run(buf, access="write")])
    for r in range(reps):
        b.kernel(f"stream{r}", [b.run(buf)])
        b.kernel(f"resident{r}", [b.run(buf)] * passes)
        b.cpu(f"back{r}", [b.run(buf)])
        b.cpu(f"cpu_resident{r}", [b.run(buf)] * cpu_passes)
    return b.build()


def wl_cpu_fault(size: int, reps: int = CPU_FAULT_REPS) -> Workload:
    """CPU faults that move no data: a read-mostly buffer is read by the GPU (which duplicates
    every page; the CPU keeps its copy, mapped read-only), then the CPU writes one word per page:
    each write faults once and only revokes the GPU's duplicate (the suite's ``read_mostly``
    measured 38-39 us per such fault on both GPUs, with DtoH 0). ``reps`` rounds."""
    b = WorkloadBuilder("cal_cpu_fault")
    buf = b.alloc("buf", size)
    b.cpu("init", [b.run(buf, access="write")])
    b.advise(buf, "set_read_mostly", "gpu0")
    for r in range(reps):
        b.kernel(f"gpu_read{r}", [b.run(buf)])
        b.cpu(f"cpu_write{r}", [b.run(buf, access="write")])
    return b.build()


def wl_first_touch(size: int) -> Workload:
    b = WorkloadBuilder("cal_first_touch")
    buf = b.alloc("buf", size)
    b.kernel("first_touch", [b.run(buf, stride=BLOCK_PAGES, access="write")])
    return b.build()


def wl_remote(size: int, passes: int | None = None, reps: int = REMOTE_KERNELS) -> Workload:
    """``reps`` GPU kernels of ``passes`` passes (default ~REMOTE_TOUCHES touches) over pinned
    host memory."""
    b = WorkloadBuilder("cal_remote")
    buf = b.alloc("buf", size, kind="pinned")
    passes = _passes(REMOTE_TOUCHES, b.pages(buf), 16) if passes is None else passes
    b.cpu("init", [b.run(buf, access="write")])
    for r in range(reps):
        b.kernel(f"remote{r}", [b.run(buf)] * passes)
    return b.build()


def wl_pingpong(size: int, rounds: int = 4) -> Workload:
    b = WorkloadBuilder("cal_pingpong")
    buf = b.alloc("buf", size)
    for r in range(rounds):
        b.kernel(f"gpu_write{r}", [b.run(buf, access="write")])
        b.cpu(f"cpu_write{r}", [b.run(buf, access="write")])
    return b.build()


# --- fitting (pure) ------------------------------------------------------------------------------
