"""The heuristics working together in whole runs (prefetch, eviction, the H200 probe)."""

import pytest

import uvmlab


def test_stream_migrates_mostly_in_large_prefetch_regions():
    r = uvmlab.simulate("stream:size=32MiB,passes=1", events=True, check_invariants=True)
    t = r.totals
    assert t["bytes_htod_prefetch"] > 0.8 * t["bytes_htod"]
    mig = r.events[(r.events.event == "Migration") & (r.events.processor == 1)]
    # the tree grows regions beyond single 64 KiB big pages, within the block (uvm_perf_prefetch.c, worked
    # example A)
    assert mig.bytes.max() > 16 * 4096
    assert mig.bytes.max() <= 512 * 4096  # never beyond the 2 MiB block


@pytest.mark.slow  # subprocesses of the CLI or long model runs
def test_prefetch_disabled_random_migrates_4k_per_fault():
    r = uvmlab.simulate(
        "random:size=16MiB", params={"uvm_perf_prefetch_enable": 0}, events=True, check_invariants=True
    )
    mig = r.events[(r.events.event == "Migration") & (r.events.processor == 1)]
    assert r.totals["bytes_htod_prefetch"] == 0
    # each faulted page is its own run unless its neighbour faulted in the same batch
    assert r.totals["bytes_htod"] <= r.totals["gpu_faults"] * 4096
    assert (mig.bytes % 4096 == 0).all()


def test_access_counters_off_by_default_and_migrate_when_enabled():
    w = "stride:size=16MiB"
    base = dict(check_invariants=True)
    advised = uvmlab.api.load_workload(w)
    from uvmlab.workload.ir import Advice, AdviseOp

    # keep the data on the CPU and map it remotely, so the GPU's accesses are remote
    ops = [
        AdviseOp(0, Advice.SET_PREFERRED_LOCATION, 0, 0, advised.allocs[0].pages),
        AdviseOp(0, Advice.SET_ACCESSED_BY, 1, 0, advised.allocs[0].pages),
    ]
    advised.ops = ops + advised.ops
    off = uvmlab.simulate(advised, **base).totals
    on = uvmlab.simulate(
        advised,
        params={"uvm_perf_access_counter_migration_enable": 1, "uvm_perf_access_counter_threshold": 4},
        **base,
    ).totals
    assert off["bytes_htod_access_counter"] == 0
    assert on["bytes_htod_access_counter"] > 0


def test_all_heuristics_under_heavy_eviction_keep_invariants():
    r = uvmlab.simulate("llm:size=32MiB,tokens=4", gpu_memory="200%", check_invariants=True)
    assert r.totals["evictions"] > 0
    assert r.totals["bytes_dtoh_eviction"] > 0
