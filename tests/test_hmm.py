"""HMM worked examples: migration counts follow the protocol (uvm_hmm.c, lib/test_hmm.c).

Each example states why its counts are what they are. 4 MiB of malloc'd memory is 1024 pages in
two 2 MiB VA blocks.
"""

from __future__ import annotations

import pytest

import uvmlab
from uvmlab.core.errors import UvmlabError, WorkloadError
from uvmlab.cuda.plan import plan_workload
from uvmlab.driver.hal import get_gpu
from uvmlab.hmm.simulate import simulate_hmm
from uvmlab.hmm.support import hal_supports_hmm, machine_report
from uvmlab.policy.base import Policy
from uvmlab.workload.builder import WorkloadBuilder

MiB = 1 << 20


def _buf(b: WorkloadBuilder, kind: str = "pageable", size: str = "4MiB") -> int:
    return b.alloc("buf", size, kind)


def test_cpu_init_gpu_read_cpu_peek():
    b = WorkloadBuilder("peek")
    a = _buf(b)
    b.cpu("init", [b.run(a, access="write")])
    b.kernel("read", [b.run(a)])
    b.cpu("peek", [b.run(a, count=16)])
    b.cpu("peek2", [b.run(a, start=700, count=1)])
    t = simulate_hmm(b.build(), check_invariants=True).totals
    # malloc'd pages are populated by the kernel's anonymous faults, not by UVM
    assert t["hmm_cpu_anon_faults"] == 1024
    # the GPU read migrates every page to device-private memory (no read duplication)
    assert t["hmm_to_device"] == 1024 and t["bytes_htod"] == 4 * MiB
    # each CPU touch of a device-private page is one migrate_to_ram fault (UVM's CPU fault
    # path), which brings the page's 64 KiB CPU big page back: pages 0-15, then 688-703
    assert t["cpu_faults"] == 2 and t["hmm_to_ram_fault"] == 32
    assert t["hmm_device_private"] == 1024 - 32 and t["hmm_to_ram_eviction"] == 0


def test_gpu_first_touch_populates_device_private_pages_without_copies():
    b = WorkloadBuilder("first")
    a = _buf(b)
    b.kernel("fill", [b.run(a, access="write")])
    t = simulate_hmm(b.build(), check_invariants=True).totals
    assert t["hmm_populated_on_device"] == 1024
    assert t["hmm_to_device"] == 0 and t["bytes_htod"] == 0
    assert t["hmm_device_private"] == 1024


def test_eviction_of_device_chunks_migrates_them_back():
    b = WorkloadBuilder("evict")
    a = _buf(b)
    b.cpu("init", [b.run(a, access="write")])
    b.kernel("block0", [b.run(a, count=512)])
    b.kernel("block1", [b.run(a, start=512, count=512)])
    t = simulate_hmm(b.build(), gpu_memory=2 * MiB, check_invariants=True).totals
    # one 2 MiB root chunk: block 1's fault evicts block 0's chunk (dmirror_device_evict_chunk)
    assert t["hmm_to_device"] == 1024
    assert t["evictions"] == 1 and t["hmm_to_ram_eviction"] == 512
    assert t["bytes_dtoh_eviction"] == 2 * MiB
    assert t["hmm_device_private"] == 512


def test_explicit_migration_to_device_then_no_faults():
    b = WorkloadBuilder("migrate")
    a = _buf(b)
    b.cpu("init", [b.run(a, access="write")])
    b.prefetch(a, "gpu0")  # dmirror_migrate_to_device's job, done by UVM_MIGRATE on HMM ranges
    b.kernel("read", [b.run(a)])
    t = simulate_hmm(b.build(), check_invariants=True).totals
    assert t["hmm_to_device"] == 1024 and t["bytes_htod_user"] == 4 * MiB
    assert t["gpu_faults"] == 0


def test_read_mostly_is_ignored_for_pageable_memory():
    def build(kind: str):
        b = WorkloadBuilder("rm")
        a = _buf(b, kind)
        b.cpu("init", [b.run(a, access="write")])
        b.advise(a, "set_read_mostly")
        b.kernel("read", [b.run(a)])
        b.cpu("read", [b.run(a)])
        return b.build()

    managed = uvmlab.simulate(build("managed")).totals
    hmm = simulate_hmm(build("pageable")).totals
    # managed memory keeps the CPU copy (a read duplicate): nothing comes back
    assert managed["bytes_dtoh"] == 0
    # uvm_hmm_set_read_duplication is a no-op: every page migrated and has to come back
    assert hmm["hmm_to_ram_fault"] == 1024 and hmm["bytes_dtoh"] == 4 * MiB


def test_prefetch_policy_reaches_hmm_memory():
    def run(policies):
        b = WorkloadBuilder("pf")
        a = _buf(b)
        b.cpu("init", [b.run(a, access="write")])
        b.kernel("read", [b.run(a, count=300)])  # 59 % of block 0: the tree prefetches the rest
        return simulate_hmm(b.build(), policies=policies).totals

    default, none = run(None), run("prefetch-none")
    assert default["bytes_htod_prefetch"] > 0 and default["hmm_to_device"] > 300
    assert none["bytes_htod_prefetch"] == 0 and none["hmm_to_device"] == 300


class _Spy(Policy):
    """Records the allocation kind of every chunk it could evict."""

    name = "spy"

    def start(self, info):
        self.alloc_kinds = [a.kind for a in info.allocs]
        self.calls = 0
        self.kinds = set()

    def eviction_prepare(self, ctx):
        self.calls += 1
        for blk in ctx.owner(ctx.used):
            if blk >= 0:
                self.kinds.add(self.alloc_kinds[int(ctx.alloc_of(int(blk)))])
        return None


def test_eviction_policy_reaches_hmm_memory():
    spy = _Spy()
    b = WorkloadBuilder("ev")
    a = _buf(b, size="6MiB")
    b.cpu("init", [b.run(a, access="write")])
    b.kernel("sweep", [b.run(a)])
    t = simulate_hmm(b.build(), gpu_memory=2 * MiB, policies=[spy]).totals
    assert t["evictions"] >= 2 and spy.calls == t["evictions"]
    assert spy.kinds == {"pageable"}
    assert t["hmm_to_ram_eviction"] == t["pages_evicted"] > 0


def test_plain_simulate_refuses_pageable_memory():
    b = WorkloadBuilder("plain")
    a = _buf(b)
    b.kernel("read", [b.run(a)])
    with pytest.raises(UvmlabError, match="hmm"):
        uvmlab.simulate(b.build())


def test_hal_gate_and_machine_report():
    assert hal_supports_hmm(get_gpu("h200"))
    old = get_gpu("p100")  # Pascal: the open kernel modules, and so HMM, start at Turing
    assert not hal_supports_hmm(old)
    b = WorkloadBuilder("x")
    b.kernel("k", [b.run(_buf(b))])
    with pytest.raises(UvmlabError, match="Turing"):
        simulate_hmm(b.build(), gpu=old)
    for gpu in ("h100", "h200"):
        rep = machine_report(gpu)
        # the captures stored in the package recorded the attribute on both lab GPUs
        assert rep.pageable_memory_access in (0, 1)
        assert ("cannot be validated" in rep.explain()) == (not rep.validation_possible)


def test_machine_report_reads_the_attributes_file(tmp_path):
    flat = tmp_path / "device_attributes_h200.json"
    flat.write_text(
        '{"name": "NVIDIA H200", "PageableMemoryAccess": 1, "driver_version": "999",'
        ' "date_utc": "2026-12-07"}'
    )
    rep = machine_report("h200", files=[("attrs", flat)])
    assert rep.pageable_memory_access == 1 and rep.validation_possible
    assert rep.details["date"] == "2026-12-07"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert machine_report("h200", files=[("bad", bad)]).pageable_memory_access is None


def test_real_gpu_backend_refuses_pageable_memory():
    b = WorkloadBuilder("real")
    b.kernel("k", [b.run(_buf(b))])
    with pytest.raises(WorkloadError, match="pageable memory"):
        plan_workload(b.build())
