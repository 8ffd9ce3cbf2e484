"""Real-GPU tests of the executor and its counters (marked ``gpu``; skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from uvmlab.cuda.runtime import GpuMemoryRefusedError, gpu_available
from uvmlab.workload.builder import WorkloadBuilder

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason="no NVIDIA GPU with CuPy here")]

MiB = 1 << 20


def _execute(w, **kw):
    from uvmlab.cuda.executor import execute

    return execute(w, **kw)


@pytest.mark.parametrize("threads", [1, 96, 65536])
def test_kernel_writes_exactly_the_ir_pages(threads):
    b = WorkloadBuilder("order", seed=1)
    a = b.alloc("a", 16 * MiB)
    pages = np.random.default_rng(1).permutation(b.pages(a))[:1000]
    b.kernel(
        "w", [b.index(a, pages, access="write"), b.run(a, start=4001, count=3, stride=7, access="write")]
    )
    w = b.build()
    got = {}
    res = _execute(w, threads=threads, word=3, on_finish=lambda views: got.update(a=views[0].copy()))
    expect = np.zeros(b.pages(a), dtype=np.uint32)
    expect[pages] = np.arange(len(pages))
    expect[[4001, 4008, 4015]] = len(pages) + np.arange(3)
    words = got["a"].reshape(-1, 1024)
    np.testing.assert_array_equal(words[:, 3], expect)
    assert not words[:, :3].any() and not words[:, 4:].any()
    assert res.ops[0]["touches"] == 1003


def test_prefetch_bytes_are_exact_both_ways():
    b = WorkloadBuilder("pf")
    a = b.alloc("a", 64 * MiB)
    b.cpu("init", [b.run(a, access="write")])
    b.prefetch(a, "gpu0")
    b.kernel("read", [b.run(a)])
    b.prefetch(a, "cpu")
    b.cpu("read", [b.run(a)])
    res = _execute(b.build())
    init, to_gpu, read, to_cpu, cpu_read = res.ops
    assert to_gpu["bytes_htod"] == to_gpu["bytes_htod_user"] == 64 * MiB
    assert to_cpu["bytes_dtoh"] == to_cpu["bytes_dtoh_user"] == 64 * MiB
    assert read["bytes_htod"] == 0 and cpu_read["cpu_faults"] == 0
    assert res.totals["bytes_htod"] == 64 * MiB and res.totals["bytes_dtoh"] == 64 * MiB
    assert res.checks["records_complete"]


def test_demand_stream_moves_every_byte_and_accounts_for_it():
    b = WorkloadBuilder("seq")
    a = b.alloc("a", 256 * MiB)
    b.cpu("init", [b.run(a, access="write")])
    b.kernel("stream", [b.run(a)])
    b.cpu("back", [b.run(a)])
    res = _execute(b.build())
    k, back = res.ops[1], res.ops[2]
    assert k["bytes_htod"] == 256 * MiB  # from the driver's counters: every page had to move
    assert back["bytes_dtoh"] == 256 * MiB and back["cpu_faults"] > 0
    t = res.totals
    causes = sum(t.get(f"bytes_htod_{c}", 0) for c in ("fault", "prefetch", "user", "access_counter"))
    assert causes + res.extra["bytes_htod_other"] + res.extra["bytes_htod_unattributed"] == t["bytes_htod"]
    assert res.meta["uvm_params"]["uvm_perf_fault_batch_count"]
    assert res.meta["driver_version"]


def test_refuses_more_managed_memory_than_half_of_free():
    from uvmlab.cuda.runtime import load_cuda

    cp, _ = load_cuda()
    free, _total = cp.cuda.runtime.memGetInfo()
    b = WorkloadBuilder("too_big")
    a = b.alloc("a", int(free * 0.6) // 4096 * 4096)
    b.kernel("k", [b.run(a, count=1)])
    with pytest.raises(GpuMemoryRefusedError):
        _execute(b.build())
    assert cp.cuda.runtime.memGetInfo()[0] > free * 0.9  # nothing was allocated
