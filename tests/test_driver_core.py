"""The modeled driver core against the driver's behaviour (docs/model.md).

Every run here uses the invariant checker after every fault batch and CPU fault.
"""

import numpy as np
import pytest
from helpers import MiB, cpu_filled, residency_of, run_engine

from uvmlab.driver.va_space import PERM_READ
from uvmlab.workload.builder import WorkloadBuilder

CPU_BIT, GPU_BIT = 1, 2


def test_gpu_read_of_cpu_resident_page_faults_once_and_migrates():
    b = WorkloadBuilder("one")
    a = b.alloc("buf", "2MiB")
    b.cpu("init", [b.run(a, 0, 512, access="write")])
    b.kernel("read", [b.run(a, 0, 1)])
    b.kernel("again", [b.run(a, 0, 1)])
    eng = run_engine(b.build())
    c = eng.drv.counters
    assert c["gpu_faults"] == 1
    assert eng.rows[2]["gpu_faults"] == 0  # the second kernel hits
    assert residency_of(eng, a, [0])[0] == GPU_BIT
    # uvm_perf_prefetch.c, worked example B: an isolated fault moves its 64 KiB big page: 1 fault page + 15
    # prefetched pages
    assert c["bytes_htod_fault"] == 4096
    assert c["bytes_htod_prefetch"] == 15 * 4096
    assert (residency_of(eng, a, range(16)) == GPU_BIT).all()
    assert (residency_of(eng, a, range(16, 512)) == CPU_BIT).all()


def test_prefetch_disabled_migrates_4k_per_fault():
    b, a = cpu_filled("8MiB")
    rng = np.random.default_rng(0)
    b.kernel("rand", [b.index(a, rng.permutation(2048)[:300])])
    eng = run_engine(b.build(), params={"uvm_perf_prefetch_enable": 0})
    c = eng.drv.counters
    assert c["bytes_htod"] == 300 * 4096
    assert c["bytes_htod_prefetch"] == 0
    assert c["migrations"] >= 1


def test_cpu_sequential_read_of_gpu_block_takes_six_faults():
    """the CPU fault path of uvm_va_block.c / the H200 probe 'back': 6 CPU faults per 2 MiB block (16, 16,
    32, 64, 128, 256 pages), and
    every fault produces one fault-page migration plus one prefetch run."""
    b, a = cpu_filled("4MiB")
    b.prefetch(a, "gpu0")
    b.cpu("back", [b.run(a)])
    eng = run_engine(b.build(), events=True)
    c = eng.drv.counters
    assert eng.rows[-1]["cpu_faults"] == 12
    assert eng.rows[-1]["bytes_dtoh"] == 4 * MiB
    assert c["bytes_dtoh_fault"] == 12 * 4096
    ev = eng.drv.log.to_pandas()
    mig = ev[(ev.event == "Migration") & (ev.processor == 0) & (ev.cause != "User")]
    assert len(mig) == 24
    assert mig.bytes.max() == 255 * 4096


def test_explicit_prefetch_moves_one_event_per_block_and_then_no_faults():
    b, a = cpu_filled("8MiB")
    b.prefetch(a, "gpu0")
    b.kernel("read", [b.run(a)])
    b.prefetch(a, "cpu")
    eng = run_engine(b.build(), events=True)
    c = eng.drv.counters
    assert c["bytes_htod_user"] == 8 * MiB and c["bytes_htod"] == 8 * MiB
    assert c["bytes_dtoh_user"] == 8 * MiB
    assert c["gpu_faults"] == 0
    ev = eng.drv.log.to_pandas()
    user = ev[(ev.event == "Migration") & (ev.cause == "User")]
    assert len(user) == 8 and set(user.bytes) == {2 * MiB}  # uvm_migrate.c: one 2 MiB event per block


def test_adjacent_and_interleaved_duplicates_are_coalesced_and_counted():
    b, a = cpu_filled()
    b.kernel("dups", [b.index(a, np.array([0, 0, 0, 7, 9, 7]))])
    eng = run_engine(b.build())
    c = eng.drv.counters
    assert c["gpu_faults"] == 6
    # raw entries minus distinct pages (uvm_gpu_replayable_faults.c): 6 - 3
    assert c["gpu_faults_duplicate"] == 3


@pytest.mark.parametrize("coalesce", [0, 1])
def test_duplicate_count_does_not_depend_on_coalescing(coalesce):
    b, a = cpu_filled()
    b.kernel("dups", [b.index(a, np.array([5, 5, 5, 5]))])
    eng = run_engine(b.build(), params={"uvm_perf_fault_coalesce": coalesce})
    assert eng.drv.counters["gpu_faults_duplicate"] == 3


@pytest.mark.parametrize(("coalesce", "notified"), [(1, 4), (0, 6)])
def test_gpu_page_fault_count_counts_coalesced_entries(coalesce, notified):
    """GpuPageFaultCount (uvm_tools.c) is bumped once per entry service_fault_batch_block_locked
    notifies: every entry left after fetch-time merging, a page's later entries in sort order
    included. One warp's six misses [0, 0, 0, 7, 9, 7]: coalescing merges the two repeats of page
    0 into its entry at fetch, but page 7's second entry is not adjacent to its first, so it is
    fetched, sorted after it and notified as a duplicate."""
    b, a = cpu_filled()
    b.kernel("dups", [b.index(a, np.array([0, 0, 0, 7, 9, 7]))])
    c = run_engine(b.build(), params={"uvm_perf_fault_coalesce": coalesce}).drv.counters
    assert c["gpu_faults"] == 6
    assert c["gpu_faults_notified"] == notified
    assert c["gpu_faults_duplicate"] == 3  # 6 entries, 3 pages, whether merged at fetch or not


def _four_blocks():
    b, a = cpu_filled("8MiB")
    b.kernel("k", [b.index(a, np.array([0, 512, 1024, 1536]))])
    return b.build()


def test_replay_policies_count_replays_as_the_spec_says():
    res = {
        p: run_engine(_four_blocks(), params={"uvm_perf_fault_replay_policy": p}).drv.counters
        for p in (0, 1, 2, 3)
    }
    block, batch, flush, once = res[0], res[1], res[2], res[3]
    # BATCH and BATCH_FLUSH replay once per batch; one batch holds all four faults
    assert batch["replays"] == batch["fault_batches"]
    assert flush["replays"] == flush["fault_batches"] == 1
    # BLOCK replays after every serviced VA block: at least the four blocks of the first batch
    assert block["replays"] >= 4 > batch["replays"]
    # ONCE replays once per bottom half
    assert once["replays"] == once["bottom_halves"]
    # Without a flush, warps replayed before their block is serviced fault again: duplicates
    assert block["gpu_faults"] > flush["gpu_faults"] == 4


def test_batch_without_flush_refetches_stale_faults():
    """BATCH replays without flushing: the faults still in the buffer are fetched later and
    found stale; BATCH_FLUSH discards them first (uvm_gpu_replayable_faults.c)."""
    b, a = cpu_filled("64MiB")
    b.kernel("all", [b.run(a, 0, 16384, stride=1)], threads=65536)  # every SM reports
    w = b.build()
    batch = run_engine(w, params={"uvm_perf_fault_replay_policy": 1}).drv.counters
    flush = run_engine(w, params={"uvm_perf_fault_replay_policy": 2}).drv.counters
    assert batch["gpu_faults"] > flush["gpu_faults"]
    assert batch["bytes_htod"] == flush["bytes_htod"] == 64 * MiB


def test_read_mostly_duplicates_and_a_write_collapses():
    b, a = cpu_filled("2MiB")
    b.advise(a, "set_read_mostly")
    b.kernel("read", [b.run(a)])
    b.cpu("read_back", [b.run(a)])
    b.kernel("write0", [b.run(a, 0, 1, access="write")])
    eng = run_engine(b.build())
    c = eng.drv.counters
    assert c["bytes_htod"] == 2 * MiB
    assert eng.rows[3]["cpu_faults"] == 0  # the CPU kept its read-only copy
    res = residency_of(eng, a, range(512))
    assert res[0] == GPU_BIT  # the write collapsed page 0 to the GPU
    assert (res[1:] == CPU_BIT | GPU_BIT).all()
    perm = eng.drv.va.perm[:, int(eng.drv.va.alloc_base[a]) + np.arange(1, 512)]
    assert (perm <= PERM_READ).all()


def test_device_allocation_never_migrates_and_cpu_touch_is_fatal():
    b = WorkloadBuilder("dev")
    d = b.alloc("weights", "4MiB", kind="device")
    m = b.alloc("buf", "2MiB")
    b.kernel("write", [b.run(d, access="write"), b.run(m, access="write")])
    b.cpu("bad", [b.run(d, 0, 1)])
    b.kernel("never", [b.run(m)])
    eng = run_engine(b.build(), events=True)
    c = eng.drv.counters
    assert c["bytes_htod"] == c["bytes_dtoh"] == 0
    assert (residency_of(eng, d, range(1024)) == GPU_BIT).all()
    assert eng.fatal is not None and eng.fatal["op"] == 1 and "device memory" in eng.fatal["reason"]
    assert len(eng.rows) == 2  # the context died: the last kernel never ran
    assert c["fatal_faults"] == 1
    assert (eng.drv.log.to_pandas().event == "FatalFault").sum() == 1


def test_pinned_host_memory_is_accessed_remotely_without_faults():
    b = WorkloadBuilder("pinned")
    h = b.alloc("host", "2MiB", kind="pinned")
    b.kernel("read", [b.run(h)])
    eng = run_engine(b.build())
    assert eng.drv.counters["gpu_faults"] == 0
    assert (residency_of(eng, h, range(512)) == CPU_BIT).all()


def test_accessed_by_keeps_data_in_place_and_maps_remotely():
    b, a = cpu_filled("2MiB")
    b.advise(a, "set_accessed_by", "gpu0")
    b.kernel("read", [b.run(a)])
    eng = run_engine(b.build())
    c = eng.drv.counters
    assert c["gpu_faults"] == 0  # SET_ACCESSED_BY mapped the GPU at once (uvm_policy.c)
    assert c["bytes_htod"] == 0 and c["remote_maps"] >= 1
    assert (residency_of(eng, a, range(512)) == CPU_BIT).all()


def test_preferred_location_cpu_keeps_pages_on_cpu_for_gpu_faults():
    b, a = cpu_filled("2MiB")
    b.advise(a, "set_preferred_location", "cpu")
    b.kernel("read", [b.run(a, 0, 8)])
    eng = run_engine(b.build())
    c = eng.drv.counters
    assert c["gpu_faults"] >= 1
    assert (
        c["bytes_htod"] == 0
    )  # block_select_processor_residency rule 12: to the preferred location, mapped remotely
    assert (residency_of(eng, a, range(8)) == CPU_BIT).all()


def test_preferred_location_gpu_first_touch_populates_whole_block():
    b = WorkloadBuilder("pref")
    a = b.alloc("buf", "4MiB")
    b.advise(a, "set_preferred_location", "gpu0")
    b.kernel("write", [b.run(a, 0, 1, access="write")])
    eng = run_engine(b.build())
    # uvm_perf_prefetch.c step 3: the first-touch shortcut populates the entire block on the preferred GPU
    assert (residency_of(eng, a, range(512)) == GPU_BIT).all()
    assert (residency_of(eng, a, range(512, 1024)) == 0).all()
    assert eng.drv.counters["bytes_htod"] == 0  # nothing was resident anywhere: no copies


def test_bytes_moved_equal_residency_changes():
    b, a = cpu_filled("16MiB")
    rng = np.random.default_rng(3)
    pages = rng.choice(4096, 700, replace=False)
    b.kernel("rand", [b.index(a, pages, access="write")])
    b.cpu("back", [b.index(a, np.sort(pages[:100]))])
    eng = run_engine(b.build())
    c = eng.drv.counters
    res = residency_of(eng, a, range(4096))
    on_gpu = int(np.count_nonzero(res & GPU_BIT))
    # every page started on the CPU: what is on the GPU now came over, minus what went back
    assert c["bytes_htod"] - c["bytes_dtoh"] == on_gpu * 4096
    assert (res != 0).all()


def _pingpong(compute_ns: int, rounds: int = 12):
    """One page written in turn by the GPU and the CPU; each side computes ``compute_ns``."""
    b = WorkloadBuilder("pp")
    a = b.alloc("buf", "64KiB")
    for i in range(rounds):
        b.kernel(f"gpu{i}", [b.run(a, 0, 1, access="write")], compute_ns=compute_ns)
        b.cpu(f"cpu{i}", [b.run(a, 0, 1, access="write")], compute_ns=compute_ns)
    return b.build()


def test_pingpong_within_the_lapse_is_detected_as_thrashing():
    eng = run_engine(_pingpong(1000), events=True)
    c = eng.drv.counters
    assert c["thrashing_events"] >= 1
    assert c["throttles"] + c["pins"] >= 1


def test_slow_pingpong_is_never_thrashing():
    """thrashing_event_cb / the probe: rounds slower than the 500 µs lapse never trigger detection."""
    eng = run_engine(_pingpong(2_000_000))
    assert eng.drv.counters["thrashing_events"] == 0


def test_same_seed_same_result():
    from uvmlab import simulate

    r1 = simulate("random:size=16MiB,seed=5")
    r2 = simulate("random:size=16MiB,seed=5")
    r3 = simulate("random:size=16MiB,seed=6")
    assert r1.totals == r2.totals
    assert r1.ops == r2.ops
    assert r1.totals != r3.totals or r1.ops != r3.ops


def test_preprocess_fault_batch_sorts_and_counts_duplicates_as_the_driver():
    """preprocess_fault_batch (uvm_gpu_replayable_faults.c): entries sorted by page, the most
    intrusive access first, equal entries in buffer order; a page's later entries are
    duplicates, and so are the instances an entry merged at fetch; VA blocks cut the batch."""
    from uvmlab.driver.fault_batch import preprocess_fault_batch
    from uvmlab.workload.ir import Access

    page = np.array([5, 3, 5, 515, 3], np.int64)  # 515: the next 2 MiB VA block
    access = np.array([Access.READ, Access.WRITE, Access.WRITE, Access.READ, Access.WRITE], np.uint8)
    count = np.array([1, 2, 1, 1, 1], np.int32)  # the WRITE on page 3 merged two at fetch
    sp, sa, keep, starts, stops, dup = preprocess_fault_batch(page, access, count)
    assert sp.tolist() == [3, 3, 5, 5, 515]
    assert sa.tolist() == [Access.WRITE, Access.WRITE, Access.WRITE, Access.READ, Access.READ]
    assert keep.tolist() == [True, False, True, False, True]
    assert (starts.tolist(), stops.tolist()) == ([0, 4], [4, 5])
    assert dup == 1 + 1 + 1  # the merged instance, and the second entries of pages 3 and 5


@pytest.mark.parametrize("top", [64, 1 << 18, 1 << 50], ids=["dense", "1GiB", "huge-VA"])
def test_preprocess_fault_batch_order_is_a_stable_sort(top):
    """The batch's order is a stable sort by (page, access descending) at any batch size and
    page range (a packed-key sort, or a merge sort where pages leave no room for the index)."""
    from uvmlab.driver.fault_batch import preprocess_fault_batch

    rng = np.random.default_rng(top)
    # 31 / 32: either side of the radix sort's least batch; accesses past 3 (no IR access has
    # one) take the merge sort
    sizes = [(n, 4) for n in (1, 2, 31, 32, 255, 256, 257, 4096)] + [(300, 256)]
    for n, top_access in sizes:
        page = rng.integers(0, top, n).astype(np.int64)
        if n > 2:
            page[: n // 4] = page[n // 4 : 2 * (n // 4)]  # equal pages: the ties' order matters
        access = rng.integers(0, top_access, n).astype(np.uint8)
        count = rng.integers(1, 3, n).astype(np.int32)
        sp, sa, keep, _, _, dup = preprocess_fault_batch(page, access, count)
        order = np.argsort(page * 256 + (255 - access.astype(np.int64)), kind="stable")
        assert sp.tolist() == page[order].tolist() and sa.tolist() == access[order].tolist()
        again = np.r_[False, sp[1:] == sp[:-1]]
        assert keep.tolist() == (~again).tolist()
        assert dup == int(np.where(again, count[order], count[order] - 1).sum())
