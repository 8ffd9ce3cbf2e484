"""The fault buffer as the driver reads it (uvm_gpu_replayable_faults.c): what a fetch sees when it
reads PUT, when it reads PUT again, what each flush mode discards, BATCH_FLUSH's choice between
them, and the batch sizes that follow from how many SMs hold a kernel's warps."""

import numpy as np
import pytest
from helpers import cpu_filled, run_engine

from uvmlab.driver.fault_buffer import CACHED_PUT, UPDATE_PUT, FaultBuffer, flush_mode, pushed


def filled(times: list[int]) -> FaultBuffer:
    """A buffer holding one entry per time in ``times`` (page i written at times[i])."""
    buf = FaultBuffer(16)
    n = len(times)
    buf.push(
        np.arange(n, dtype=np.int64),
        np.zeros(n, np.uint8),
        np.zeros(n, np.int32),
        np.array(times, np.int64),
    )
    return buf


def test_flush_mode_worked_example():
    """``num_duplicate_faults * 100 > num_cached_faults * ratio`` selects UPDATE_PUT; the default
    ratio is 50: 129 duplicates in a full batch of 256 re-read PUT, 128 do not."""
    assert flush_mode(129, 256, 50) == UPDATE_PUT
    assert flush_mode(128, 256, 50) == CACHED_PUT
    assert flush_mode(0, 256, 0) == CACHED_PUT  # no duplicate: never worth reading PUT
    assert flush_mode(1, 256, 0) == UPDATE_PUT
    assert flush_mode(256, 256, 100) == CACHED_PUT  # ratio 100: never


def test_fetch_takes_what_is_written_when_put_is_read():
    buf = filled([0, 0, 5, 10, 20])
    page, _, _ = buf.fetch(256, 6)
    np.testing.assert_array_equal(page, [0, 1, 2])  # written by t=6
    page, _, _ = buf.fetch(256, 25)  # everything before the cached PUT consumed: PUT read again
    np.testing.assert_array_equal(page, [3, 4])
    assert buf.n == 0


def test_cached_put_is_not_reread_until_consumed():
    """A fetch cut short by the batch size leaves entries before the cached PUT: the next fetch
    takes those only, even though more have been written since (fetch_fault_buffer_entries)."""
    buf = filled([0, 0, 5, 10, 20])
    assert len(buf.fetch(2, 6)[0]) == 2
    page, _, _ = buf.fetch(256, 30)
    np.testing.assert_array_equal(page, [2])
    np.testing.assert_array_equal(buf.fetch(256, 30)[0], [3, 4])


@pytest.mark.parametrize(("mode", "left"), [(CACHED_PUT, [3, 4]), (UPDATE_PUT, [4])])
def test_flush_modes(mode, left):
    """CACHED_PUT discards up to the PUT read at the fetch (t=6): entries written during the
    service survive; UPDATE_PUT reads PUT at the flush (t=12) and discards up to it."""
    buf = filled([0, 0, 5, 10, 20])
    buf.fetch(1, 6)
    dropped = buf.flush(mode, 12)
    assert dropped == 5 - 1 - len(left)
    np.testing.assert_array_equal(buf.page[: buf.n], left)


def test_push_keeps_write_order():
    buf = filled([10, 30])
    buf.push(np.array([7]), np.zeros(1, np.uint8), np.zeros(1, np.int32), np.array([20]))
    np.testing.assert_array_equal(buf.page[: buf.n], [0, 7, 1])
    assert buf.written(25) == 2


@pytest.mark.parametrize(
    "new_times", [[20, 20, 40], [40, 50], [5, 10]], ids=["interleave", "after", "before"]
)
def test_compiled_push_matches_the_buffer(new_times):
    """``pushed`` (the compiled loop writes a replay's entries after the last one, then calls it)
    leaves the arrays as ``FaultBuffer.push`` does, ties in write time in push order."""
    ref = filled([10, 20, 30])
    m = len(new_times)
    new = (np.arange(100, 100 + m), np.arange(1, m + 1, dtype=np.uint8), np.full(m, 5, np.int32))
    ref.push(*new, np.array(new_times, np.int64))
    got = filled([10, 20, 30])
    for a, v in zip((got.page, got.access, got.utlb, got.write_ns), (*new, new_times), strict=True):
        a[3 : 3 + m] = v
    assert pushed(got.page, got.access, got.utlb, got.write_ns, 3, m) == ref.n
    for a, b in (
        (got.page, ref.page),
        (got.access, ref.access),
        (got.utlb, ref.utlb),
        (got.write_ns, ref.write_ns),
    ):
        np.testing.assert_array_equal(a[: ref.n], b[: ref.n])


def test_few_sms_give_smaller_batches():
    """Each SM's uTLB reports at most ``utlb_fault_slots`` misses per replay: a stream on 2,048
    threads (8 blocks of 256, so 8 SMs) fills batches of at most 8 x 16 entries, one over every
    SM fills them to ``uvm_perf_fault_batch_count`` (the measured trend: 157 faults per CUPTI
    group at 2,048 threads, 238-244 at 16 K-256 K on the H100)."""
    per_batch = {}
    for threads in (2048, 65536):
        b, a = cpu_filled("64MiB")
        b.kernel("k", [b.run(a, stride=1)], threads=threads)
        c = run_engine(b.build()).drv.counters
        per_batch[threads] = c["gpu_faults"] / c["fault_batches"]
    assert per_batch[2048] <= 8 * 16
    assert per_batch[65536] > 1.5 * per_batch[2048]
