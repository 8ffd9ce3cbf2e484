"""The compiled fault path gives bit-identical answers to the reference path.

Each case runs one workload twice through the Engine — every fault through the interpreted
reference path, then with the compiled path for plain blocks — and compares the per-operation
rows, the counters, the clock and the final driver state (residency, mappings, prefetch info,
PMM lists, thrashing stamps). The cases cover every generator and the configurations that send
blocks back to the reference path part-way (advice, thrashing state, eviction, replay policies).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run_with_policies

from uvmlab.api import load_workload
from uvmlab.driver.hal import get_gpu
from uvmlab.driver.params import Params
from uvmlab.engine.core import Engine
from uvmlab.engine.setup import resolve_gpu_memory
from uvmlab.policy.library import REGISTRY
from uvmlab.timing.cost_model import load_profile, profile_for_gpu
from uvmlab.validation.suite import suite_workloads
from uvmlab.workload.builder import WorkloadBuilder
from uvmlab.workload.synthetic import WORKLOADS

pytestmark = pytest.mark.slow  # bit-identity over every generator and advice workload: minutes

SMALL = {
    "stream": "stream:size=24MiB,passes=2",
    "random": "random:size=32MiB",
    "stride": "stride:size=16MiB,stride=16KiB",
    "stencil": "stencil:size=16MiB,row=256KiB",
    "gemm": "gemm:size=24MiB,tile=1MiB",
    "graph": "graph:size=16MiB,levels=3",
    "pingpong": "pingpong:size=16MiB,rounds=3",
    "llm": "llm:size=24MiB,tokens=3",
    "vecsearch": "vecsearch:size=16MiB,queries=8",
    "train": "train:size=16MiB,steps=1",
    "sparse": "sparse:size=64MiB,every=4",
    "bfs": "bfs:size=8MiB",
    "backprop": "backprop:size=8MiB",
    "ra": "ra:size=8MiB,updates_per_entry=1",
    "fdtd": "fdtd:size=8MiB,steps=2",
    "hotspot": "hotspot:size=8MiB,iters=2",
}


def run(
    workload,
    fast: bool,
    params: dict | None = None,
    gpu_memory: str | None = None,
    concurrency: int = 4096,
    check: bool = False,
) -> Engine:
    w = load_workload(workload)
    gpu = get_gpu("h200")
    eng = Engine(
        w,
        gpu=gpu,
        params=Params.from_overrides(params or {}),
        profile=load_profile(profile_for_gpu(gpu.name)),
        gpu_memory_bytes=resolve_gpu_memory(gpu_memory, w, gpu),
        concurrency=concurrency,
        check=check,
        fast_path=fast,
    )
    eng.run()
    return eng


def state(eng: Engine) -> dict:
    drv = eng.drv
    va, th, pmm = drv.va, drv.thrashing, drv.pmm[0]
    return {
        "clock": eng.clock,
        "touches": eng.touches,
        "rows": eng.rows,
        "fatal": eng.fatal,
        "counters": dict(drv.counters),
        "residency": va.residency.copy(),
        "perm": va.perm.copy(),
        "gpu_chunk": va.gpu_chunk.copy(),
        "pf_last": va.prefetch_last_proc.copy(),
        "pf_count": va.prefetch_fault_migrations.copy(),
        "th_ts": th.block_last_ts.copy(),
        "th_proc": th.block_last_proc.copy(),
        "th_pages": th.block_has_pages.copy(),
        "lists": {
            name: pmm.list_chunks(name).tolist() for name in ("free", "va_block_used", "va_block_unused")
        },
        "chunk_state": pmm.state.copy(),
        "chunk_owner": pmm.owner.copy(),
    }


def assert_same(workload, **kw) -> Engine:
    ref = run(workload, False, **kw)
    fast = run(workload, True, **kw)
    a, b = state(ref), state(fast)
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert np.array_equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key
    return fast


def test_every_generator_has_a_case():
    # a new generator must join SMALL, so that speed never changes its answers unchecked
    assert set(SMALL) == set(WORKLOADS)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_generators_default_params(name):
    assert_same(SMALL[name])


ADVICE = [
    "read_mostly",
    "preferred_cpu_accessed_by_gpu",
    "preferred_gpu",
    "prefetch_roundtrip",
    "mixed_kinds",
]


@pytest.mark.parametrize("name", ADVICE)
def test_validation_suite_with_advice(name):
    # advice (read-mostly, preferred location, accessed-by), explicit prefetch, mixed kinds
    ((_, w),) = suite_workloads([name])
    assert_same(w)


@pytest.mark.parametrize(
    "name", ["read_mostly", "preferred_gpu", "preferred_cpu_accessed_by_gpu", "prefetch_roundtrip"]
)
def test_advice_workloads_under_thrashing_and_eviction(name):
    ((_, w),) = suite_workloads([name])
    assert_same(w, gpu_memory="40MiB")
    assert_same(w, params={"uvm_perf_thrashing_threshold": 1, "uvm_perf_thrashing_lapse_usec": 100000})


@pytest.mark.parametrize(
    "params",
    [
        {"uvm_perf_prefetch_enable": 0},
        {"uvm_perf_thrashing_enable": 0},
        {"uvm_perf_prefetch_threshold": 1, "uvm_perf_prefetch_min_faults": 3},
        # a hair trigger: blocks get per-page thrashing state, throttles and pins
        {
            "uvm_perf_thrashing_threshold": 1,
            "uvm_perf_thrashing_lapse_usec": 100000,
            "uvm_perf_thrashing_pin_threshold": 2,
        },
        {"uvm_perf_fault_replay_policy": 0},
        {"uvm_perf_fault_replay_policy": 1},
        {"uvm_perf_fault_replay_policy": 3},
    ],
    ids=str,
)
def test_params_that_change_the_service(params):
    assert_same(SMALL["pingpong"], params=params)
    assert_same(SMALL["random"], params=params, concurrency=64)


@pytest.mark.parametrize("spec", [SMALL["llm"], SMALL["stream"], SMALL["train"]])
def test_oversubscribed_eviction(spec):
    eng = assert_same(spec, gpu_memory="150%")
    assert eng.drv.counters["evictions"] > 0  # the case really evicted


def test_fast_path_keeps_invariants():
    eng = run(SMALL["pingpong"], True, gpu_memory="150%", check=True)
    assert eng.fatal is None


def test_one_chunk_gpu_evicts_every_block():
    eng = assert_same(SMALL["stream"], gpu_memory="2MiB")
    assert eng.drv.counters["evictions"] > 10


def advice_mix():
    """Preferred location CPU seen from GPU faults (remote mappings, block_select_processor_residency rules 9
    and 12), read
    duplication to the CPU and its collapse by CPU writes, and a preferred GPU under CPU reads."""
    b = WorkloadBuilder("advice_mix")
    a, c, d = (b.alloc(n, 8 << 20) for n in "acd")
    b.advise(a, "set_preferred_location", "cpu")
    b.cpu("init_a", [b.run(a, access="write")])
    b.kernel("gpu_reads_a", [b.run(a)])
    b.advise(c, "set_preferred_location", "cpu")
    b.kernel("gpu_first_touch_c", [b.run(c, access="write")])
    b.kernel("gpu_writes_d", [b.run(d, access="write")])
    b.advise(d, "set_read_mostly", "gpu0")
    b.cpu("cpu_reads_d", [b.run(d)])
    b.cpu("cpu_writes_d", [b.run(d, stride=2, access="write")])
    b.kernel("gpu_reads_d", [b.run(d)])
    b.advise(d, "unset_read_mostly", "gpu0")
    b.advise(d, "set_preferred_location", "gpu0")
    b.cpu("cpu_reads_d2", [b.run(d, stride=3)])
    b.kernel("gpu_reads_d2", [b.run(d)])
    b.sync()
    return b.build()


def test_advice_rules_that_send_pages_elsewhere():
    eng = assert_same(advice_mix())
    assert eng.drv.counters["remote_maps"] > 0 and eng.drv.counters["read_duplicates"] > 0


def migrate_mix():
    """cudaMemPrefetchAsync both ways over AccessedBy pages (re-mapped after each migration),
    a read-mostly range (duplicated, the reference path), ranges that start and end inside a
    block, pages resident nowhere, CPU faults whose pages AccessedBy GPUs map, and read
    duplicates collapsed over part of a range."""
    b = WorkloadBuilder("migrate_mix")
    a, c, d = b.alloc("a", 6 << 20), b.alloc("c", 4 << 20), b.alloc("d", 6 << 20)
    b.advise(a, "set_accessed_by", "gpu0")
    b.cpu("init_a", [b.run(a, access="write")])
    b.prefetch(a, "gpu0", start=100, num_pages=700)
    b.kernel("write_a", [b.run(a, stride=3, access="write")])
    b.prefetch(d, "gpu0", start=300, num_pages=900)  # resident nowhere: populated on the GPU
    b.prefetch(a, "cpu")
    b.cpu("read_a", [b.run(a)])
    b.advise(c, "set_read_mostly", "gpu0")
    b.cpu("init_c", [b.run(c, access="write")])
    b.prefetch(c, "gpu0")
    b.kernel("read_c", [b.run(c)])
    b.prefetch(d, "cpu", start=0, num_pages=1000)
    b.kernel("read_d", [b.run(d)])
    b.advise(d, "set_preferred_location", "cpu")
    b.advise(d, "set_accessed_by", "gpu0")
    b.cpu("write_d", [b.run(d, stride=2, access="write")])
    b.kernel("read_d_again", [b.run(d)])
    # read duplicates collapsed onto a preferred GPU, a preferred CPU, or the first holder
    e = b.alloc("e", 4 << 20)
    b.advise(e, "set_read_mostly", "gpu0")
    b.cpu("init_e", [b.run(e, access="write")])
    b.kernel("read_e", [b.run(e)])
    b.advise(e, "set_preferred_location", "gpu0", start=0, num_pages=300)
    b.advise(e, "set_preferred_location", "cpu", start=600, num_pages=200)
    b.advise(e, "unset_read_mostly", "gpu0", start=100, num_pages=900)
    b.kernel("write_e", [b.run(e, stride=5, access="write")])
    b.sync()
    return b.build()


@pytest.mark.parametrize("gpu_memory", [None, "6MiB"], ids=["fits", "evicts"])
def test_migrations_and_accessed_by(gpu_memory):
    # compiled migrations hand blocks back to the reference path (read duplication) or to
    # Python for a chunk (an evicted victim's AccessedBy pages are re-mapped) and go on
    eng = assert_same(migrate_mix(), gpu_memory=gpu_memory)
    c = eng.drv.counters
    assert c["bytes_htod_user"] > 0 and c["remote_maps"] > 0 and c["read_duplicates"] > 0
    if gpu_memory:
        assert c["evictions"] > 0  # a's blocks: prefetched back by eviction before their migration
    else:
        assert c["bytes_dtoh_user"] > 0


@pytest.mark.parametrize("name", ["mixed_kinds", "preferred_cpu_accessed_by_gpu"])
def test_remote_hits_cost_remote_touch_time(name):
    # the GPU scan reads residency only once a remote mapping can exist (pinned memory, or a
    # counted MapRemote): hits through such mappings must still be charged remote_touch_ns
    from dataclasses import replace

    from uvmlab.api import simulate

    ((_, w),) = suite_workloads([name])
    prof = load_profile(profile_for_gpu("h200"))
    base = simulate(w, profile=prof)
    slow = simulate(w, profile=replace(prof, remote_touch_ns=prof.remote_touch_ns + 100.0))
    assert slow.totals["time_ns"] > base.totals["time_ns"] + 100_000


def test_eviction_of_accessed_by_blocks_remaps_them():
    # victims with AccessedBy pages on the GPU are re-mapped to sysmem after eviction (the
    # reference path does it); plain victims are evicted by the compiled path
    b = WorkloadBuilder("evict_accessed_by")
    a, c = b.alloc("a", 8 << 20), b.alloc("c", 8 << 20)
    b.advise(a, "set_accessed_by", "gpu0")
    b.kernel("write_a", [b.run(a, access="write")])
    b.kernel("read_c", [b.run(c)])
    b.kernel("read_a", [b.run(a)])
    b.kernel("read_c_again", [b.run(c)])
    b.sync()
    eng = assert_same(b.build(), gpu_memory="8MiB")
    assert eng.drv.counters["evictions"] >= 4 and eng.drv.counters["remote_maps"] > 0


def test_eviction_with_access_counter_migrations_remaps_in_python():
    # map_remote_on_eviction applies only with access-counter migrations on: every victim is
    # then re-mapped, which the compiled path leaves to the reference path
    eng = assert_same(SMALL["llm"], gpu_memory="150%", params={"uvm_perf_access_counter_migration_enable": 1})
    assert eng.drv.counters["evictions"] > 0


@pytest.mark.parametrize(
    "policies",
    ["lru", "mru", "lfu", "fifo", "fifo-chance", "belady", "replay-adaptive", ["lfu", "replay-adaptive"]],
    ids=str,
)
def test_eviction_and_replay_policies_on_the_compiled_path(policies):
    # eviction and replay policies leave the compiled path usable: it stops at their hooks
    for spec in (SMALL["llm"], SMALL["train"]):
        ref, ref_hooks = run_with_policies(spec, False, policies, "150%")
        fast, fast_hooks = run_with_policies(spec, True, policies, "150%")
        a, b = state(ref), state(fast)
        for key in a:
            if isinstance(a[key], np.ndarray):
                assert np.array_equal(a[key], b[key]), (policies, key)
            else:
                assert a[key] == b[key], (policies, key)
        assert ref_hooks.ejections == fast_hooks.ejections == 0
        assert fast.drv.fast.usable()


def test_prefetch_and_thrashing_policies_keep_the_reference_path():
    for policies in ("tree", "pin-on-thrash"):
        eng, _hooks = run_with_policies(SMALL["stream"], True, policies, "150%")
        assert not eng.drv.fast.usable()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_library_policy_gives_the_reference_answer(name):
    # whichever path a library policy runs on, the answer is the reference path's
    ref, ref_hooks = run_with_policies(SMALL["llm"], False, name, "150%")
    fast, fast_hooks = run_with_policies(SMALL["llm"], True, name, "150%")
    a, b = state(ref), state(fast)
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert np.array_equal(a[key], b[key]), (name, key)
        else:
            assert a[key] == b[key], (name, key)
    assert ref_hooks.ejections == fast_hooks.ejections
