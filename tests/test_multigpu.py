"""Several GPUs in one VA space: per-GPU residency, peer mappings vs migration as the driver
decides (uvm_va_block.c residency rules, uvm_va_space.c enable_peers), peer copies over the
HAL's link, per-GPU PMM and eviction. Worked examples on two GPUs; invariants checked after
every fault batch."""

import numpy as np
import pytest

from uvmlab.api import simulate
from uvmlab.core.errors import UvmlabError
from uvmlab.driver.hal import GPUS
from uvmlab.driver.peer import PEER_COPY_EFFICIENCY, Topology
from uvmlab.workload.builder import WorkloadBuilder

MiB = 1 << 20
SIZE = 8 * MiB


def two_gpu(*steps, size: int = SIZE):
    """A workload over one buffer the CPU initialises; ``steps`` are (kind, args) tuples."""
    b = WorkloadBuilder("two_gpu")
    buf = b.alloc("buf", size)
    b.cpu("init", [b.run(buf, access="write")])
    for kind, *args in steps:
        if kind == "kernel":
            gpu, access = args
            b.kernel(f"k_{gpu}_{access}", [b.run(buf, access=access)], gpu=gpu)
        elif kind == "advise":
            advice, proc = args
            b.advise(buf, advice, proc)
        elif kind == "prefetch":
            b.prefetch(buf, args[0])
        elif kind == "cpu":
            b.cpu("cpu_read", [b.run(buf)])
    b.sync()
    return b.build()


def run(w, gpu="h100", **kw):
    return simulate(w, gpu=gpu, check_invariants=True, **kw)


def test_topology_follows_the_link():
    nv = Topology(2, GPUS["h100"])  # NVLink peers: access, copy, fast link, native atomics
    assert nv.can_access[1, 2] and nv.can_copy_from[2, 1] and nv.native_atomics[1, 2]
    assert nv.closest_order[1] == [1, 2, 0]
    pcie = Topology(2, GPUS["gtx1080ti"])  # PCIe P2P: access and copy, no atomics, not fast
    assert pcie.can_access[1, 2] and not pcie.native_atomics[1, 2] and not pcie.fast_link[1, 2]
    assert pcie.closest_order[1] == [1, 2, 0]  # GPUs before the CPU
    none = Topology(2, GPUS["rtx5090"])  # no P2P: peers reach each other only through sysmem
    assert not none.can_access[1, 2] and not none.can_copy_from[1, 2]
    assert none.copy_sources(2) == [0]  # only sysmem: a peer's pages are staged through it
    assert nv.copy_sources(2) == [1, 0]  # the NVLink peer first
    assert not nv.can_access[0, 1]  # the CPU never maps vidmem here
    assert nv.peer_gbps == pytest.approx(GPUS["h100"].peer_gbps * PEER_COPY_EFFICIENCY)


def test_gpu_count_comes_from_the_workload():
    w = two_gpu(("kernel", "gpu1", "read"))
    r = run(w)
    assert r.meta["gpus"] == 2 and "bytes_dtod" in r.totals
    with pytest.raises(UvmlabError, match="gpu1"):
        simulate(w, gpu="h100", gpus=1)


def test_migration_between_gpus_is_a_peer_copy():
    w = two_gpu(("kernel", "gpu0", "write"), ("kernel", "gpu1", "write"))
    t = run(w).totals
    assert t["bytes_htod"] == SIZE  # CPU -> gpu0 once
    assert t["bytes_dtod"] == SIZE and t["bytes_gpu0_to_gpu1"] == SIZE
    assert t["bytes_gpu1_to_gpu0"] == 0 and t["bytes_dtoh"] == 0
    # without P2P the same migration is staged through sysmem: down, then up again
    s = run(w, gpu="rtx5090").totals
    assert s["bytes_dtod"] == 0
    assert s["bytes_dtoh"] == SIZE and s["bytes_htod"] == 2 * SIZE


def test_peer_copy_time_comes_from_the_link():
    w = two_gpu(("kernel", "gpu0", "write"), ("kernel", "gpu1", "write"))
    nv = run(w, gpu="h100").ops[2]["time_ns"]
    staged = run(w, gpu="rtx5090").ops[2]["time_ns"]  # same host link (PCIe 5), no peer link
    assert nv < staged


def test_accessed_by_peer_maps_remotely_instead_of_migrating():
    w = two_gpu(
        ("kernel", "gpu0", "write"), ("advise", "set_accessed_by", "gpu1"), ("kernel", "gpu1", "read")
    )
    r = run(w)
    k1 = r.ops[3]
    assert k1["gpu_faults"] == 0 and k1["bytes_htod"] == 0  # mapped at advice time
    assert r.totals["bytes_dtod"] == 0 and r.totals["remote_maps"] > 0


def test_preferred_location_on_a_peer_keeps_data_there():
    # rule 12: a GPU1 fault on a page resident on the preferred GPU0 maps it remotely
    w = two_gpu(
        ("advise", "set_preferred_location", "gpu0"), ("kernel", "gpu0", "write"), ("kernel", "gpu1", "read")
    )
    r = run(w)
    assert r.totals["bytes_dtod"] == 0 and r.ops[3]["gpu_faults"] > 0
    assert r.totals["remote_maps"] > 0
    # without P2P GPU1 cannot map GPU0's memory: the page moves to GPU1 (rule 14)
    s = run(w, gpu="rtx5090")
    assert s.totals["bytes_htod"] == 2 * SIZE and s.totals["remote_maps"] == 0


def test_read_duplication_across_gpus_then_a_write_collapses():
    w = two_gpu(
        ("advise", "set_read_mostly", "gpu0"),
        ("kernel", "gpu0", "read"),
        ("kernel", "gpu1", "read"),
        ("kernel", "gpu1", "write"),
    )
    r = run(w)
    t = r.totals
    assert t["read_duplicates"] >= 2 * (SIZE // 4096)  # both GPUs got their own copy
    assert t["bytes_gpu0_to_gpu1"] == SIZE  # gpu1's copy came from its NVLink peer
    assert r.ops[4]["bytes_htod"] == 0 and r.ops[4]["bytes_dtod"] == 0  # the write: no copy


def test_each_gpu_evicts_only_its_own_memory():
    b = WorkloadBuilder("per_gpu_pmm")
    a0, a1 = b.alloc("a0", 16 * MiB), b.alloc("a1", 16 * MiB)
    b.cpu("init", [b.run(a0, access="write"), b.run(a1, access="write")])
    b.kernel("g1", [b.run(a1, access="write")], gpu="gpu1")  # fits on gpu1
    b.kernel("g0", [b.run(a0, access="write"), b.run(a1)], gpu="gpu0")  # 32 MiB on 16 MiB
    w = b.build()
    r = run(w, gpu_memory=16 * MiB)
    assert r.ops[1]["evictions"] == 0 and r.ops[2]["evictions"] > 0
    # gpu0 reads a1 from its peer (it was on gpu1), then evicts chunks to sysmem
    assert r.totals["bytes_gpu1_to_gpu0"] > 0 and r.totals["bytes_dtoh_eviction"] > 0


def test_multi_gpu_runs_the_reference_path_with_the_same_answers():
    w = two_gpu(("kernel", "gpu0", "write"), ("kernel", "gpu1", "read"), ("cpu",))
    a = simulate(w, gpu="h100", fast_path=True)
    b = simulate(w, gpu="h100", fast_path=False)
    assert a.totals == b.totals and [o["time_ns"] for o in a.ops] == [o["time_ns"] for o in b.ops]


def test_single_gpu_results_have_no_peer_counters():
    w = two_gpu(("kernel", "gpu0", "write"))
    r = simulate(w, gpu="h100")
    assert "bytes_dtod" not in r.totals and "gpus" not in r.meta


def test_ir_names_the_gpus_and_old_files_load(tmp_path):
    from uvmlab.workload.fileformat import read_workload, write_workload

    w = two_gpu(("kernel", "gpu1", "read"))
    assert w.gpus == 2
    p = tmp_path / "w.uvmw"
    write_workload(w, p)
    back = read_workload(p)
    assert back == w and back.gpus == 2
    one = two_gpu(("kernel", "gpu0", "read"))
    assert one.gpus == 1
    assert np.all([op.gpu == 1 for op in one.ops if op.op == "kernel"])


def test_policies_are_refused_with_several_gpus():
    w = two_gpu(("kernel", "gpu1", "read"))
    with pytest.raises(UvmlabError, match="one GPU only"):
        simulate(w, gpu="h100", policies=["lfu"])


def _random_workload(seed: int, n_gpus: int):
    rng = np.random.default_rng(seed)
    b = WorkloadBuilder(f"mix{seed}", seed=seed)
    allocs = [
        b.alloc(f"a{i}", int(rng.integers(1, 5)) * MiB + int(rng.integers(0, 8)) * 4096) for i in range(3)
    ]
    b.cpu("init", [b.run(a, access="write") for a in allocs])
    advice = [
        "set_preferred_location",
        "unset_preferred_location",
        "set_accessed_by",
        "unset_accessed_by",
        "set_read_mostly",
        "unset_read_mostly",
    ]
    for k in range(12):
        a = allocs[int(rng.integers(0, 3))]
        n = b.pages(a)
        kind = int(rng.integers(0, 6))
        if kind <= 2:
            pages = rng.integers(0, n, int(rng.integers(1, 2 * n)))
            acc = ("read", "write", "atomic")[int(rng.integers(0, 3))]
            b.kernel(f"k{k}", [b.index(a, pages, access=acc)], gpu=int(rng.integers(1, n_gpus + 1)))
        elif kind == 3:
            b.cpu(f"c{k}", [b.index(a, rng.integers(0, n, 32), access="write")])
        elif kind == 4:
            b.advise(a, advice[int(rng.integers(0, 6))], int(rng.integers(0, n_gpus + 1)))
        else:
            b.prefetch(a, int(rng.integers(0, n_gpus + 1)))
    return b.build()


@pytest.mark.parametrize("gpu", ["h100", "gtx1080ti", "rtx5090"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_invariants_hold_on_mixed_three_gpu_runs(gpu, seed):
    # NVLink peers, PCIe peers and no peers; 6 MiB per GPU, so GPUs evict too
    r = simulate(_random_workload(seed, 3), gpu=gpu, gpus=3, gpu_memory=6 * MiB, check_invariants=True)
    assert r.fatal is None or "memory" in r.fatal["reason"]
    t = r.totals
    assert t["bytes_dtod"] == sum(v for k, v in t.items() if k.startswith("bytes_gpu"))
    if gpu == "rtx5090":  # no P2P: every GPU-to-GPU move is staged through sysmem
        assert t["bytes_dtod"] == 0


@pytest.mark.slow  # subprocesses of the CLI or long model runs
def test_cli_too_few_gpus_is_a_one_line_error(tmp_path):
    import subprocess
    import sys

    from uvmlab.workload.fileformat import write_workload

    p = tmp_path / "two.uvmw"
    write_workload(two_gpu(("kernel", "gpu1", "read")), p)
    cmd = [sys.executable, "-m", "uvmlab", "run", str(p), "--gpu", "h100"]
    ok = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([*cmd, "--gpus", "1"], capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "needs 2 GPUs" in lines[0]


def test_gpus_writing_one_page_back_and_forth_thrash_and_pin():
    # two GPUs writing 64 KiB in turn, faster than the thrashing lapse: the thrashing module
    # (uvm_perf_thrashing.c) sees it across peers and pins pages, mapping them remotely
    b = WorkloadBuilder("gpu_pingpong")
    buf = b.alloc("buf", 64 << 10)
    b.cpu("init", [b.run(buf, access="write")])
    for i in range(20):
        b.kernel(f"g0_{i}", [b.run(buf, access="write")], gpu="gpu0", compute_ns=1000)
        b.kernel(f"g1_{i}", [b.run(buf, access="write")], gpu="gpu1", compute_ns=1000)
    t = run(b.build()).totals
    assert t["thrashing_events"] > 0 and t["pins"] > 0 and t["remote_maps"] > 0
    assert t["bytes_dtod"] < 40 * (64 << 10)  # pinned pages stop moving on every kernel
