"""The per-architecture HAL: facts from the driver's uvm_<arch>.c files, GPU specs that use them,
estimated profiles derived from the calibrated one, and docs/hal.md generated from the data."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from uvmlab.api import simulate
from uvmlab.core.errors import UvmlabError
from uvmlab.driver.hal import GPUS, get_gpu
from uvmlab.driver.hal_arch import ARCHS, LINKS
from uvmlab.timing.cost_model import load_profile, profile_for_gpu
from uvmlab.workload.builder import WorkloadBuilder

ROOT = Path(__file__).resolve().parent.parent


def test_every_generation_has_a_profiled_gpu():
    assert {g.arch for g in GPUS.values()} == {"pascal", "volta", "ampere", "hopper", "blackwell"}
    for g in GPUS.values():
        name = profile_for_gpu(g.name, g.link)
        assert load_profile(name).name == name  # its own profile, not the default


def test_utlb_formula_per_architecture():
    # uvm_hopper.c: maxGpcCount x (2 per TPC + 1): GH100's 8 x 9 gives the 152 the model had
    assert ARCHS["hopper"].utlb_count(8, 9) == 152
    # Pascal and Volta: one uTLB per TPC plus the RGG one
    assert ARCHS["pascal"].utlb_count(6, 5) == 36
    assert ARCHS["volta"].utlb_count(6, 7) == 48
    assert GPUS["a100"].utlb_count == 8 * 17


def test_capabilities_differ_where_the_driver_says():
    assert not ARCHS["pascal"].non_replayable_faults and ARCHS["volta"].non_replayable_faults
    assert not ARCHS["pascal"].fault_cancel_va and ARCHS["hopper"].fault_cancel_va
    assert not ARCHS["pascal"].prefetch_faults  # uvm_force_prefetch_fault_support only
    assert not GPUS["gtx1080ti"].has_access_counters and GPUS["a100"].has_access_counters
    assert all(a.fault_entry_bytes == 32 and a.big_page_size == 64 << 10 for a in ARCHS.values())


def test_pascal_never_migrates_on_access_counters_even_when_forced():
    # a GPU reading CPU memory through an accessed-by mapping: on Hopper, forced-on access
    # counters pull the data over; Pascal has none, so everything stays remote
    b = WorkloadBuilder("remote_reads")
    buf = b.alloc("buf", "8MiB")
    b.cpu("init", [b.run(buf, access="write")])
    b.advise(buf, "set_preferred_location", "cpu")
    b.advise(buf, "set_accessed_by", "gpu0")
    for i in range(4):
        b.kernel(f"read{i}", [b.run(buf)])
    w = b.build()
    force = {"uvm_perf_access_counter_migration_enable": 1, "uvm_perf_access_counter_threshold": 1}
    hop = simulate(w, gpu="h100", params=force)
    pas = simulate(w, gpu="gtx1080ti", params=force)
    assert pas.totals["bytes_htod_access_counter"] == 0
    assert hop.totals["bytes_htod_access_counter"] > 0


def test_links_set_peer_bandwidth():
    assert GPUS["h100"].peer_gbps == 18 * LINKS["nvlink4"].gbps_per_link
    assert GPUS["gtx1080ti"].peer_gbps == LINKS["pcie3"].gbps_per_link  # PCIe P2P
    assert GPUS["rtx5090"].peer_gbps == 0.0  # no P2P on the board


def test_bad_spec_is_a_clear_error():
    with pytest.raises(UvmlabError, match="unknown architecture or link"):
        dataclasses.replace(GPUS["h100"], link="pcie9")
    with pytest.raises(UvmlabError, match="did you mean"):
        get_gpu("gtx1080")


def test_estimates_are_marked_and_calibrated_profiles_are_not():
    for g in GPUS.values():
        prof = load_profile(profile_for_gpu(g.name, g.link))
        consts = [k for k in prof.sources if not k.startswith("_")]
        if g.calibrated:
            assert "_measured" in prof.sources
        else:
            assert "_estimate" in prof.sources
            assert consts and all(prof.sources[k].startswith("estimate:") for k in consts)


def test_pcie3_gpu_copies_slower_than_pcie5():
    # the estimate scales link-bound bandwidths with the host link: 4x less raw on PCIe 3, so a
    # bulk prefetch (cudaMemPrefetchAsync, bandwidth-bound) takes several times longer
    b = WorkloadBuilder("prefetch")
    buf = b.alloc("buf", "64MiB")
    b.cpu("init", [b.run(buf, access="write")])
    b.prefetch(buf, "gpu0")
    w = b.build()
    slow = simulate(w, gpu="gtx1080ti").ops[1]["time_ns"]
    fast = simulate(w, gpu="h100").ops[1]["time_ns"]
    assert slow > 2.5 * fast
    assert load_profile("gtx1080ti-pcie3").prefetch_htod_gbps == pytest.approx(
        load_profile("h100-pcie5").prefetch_htod_gbps * 15.75 / 63, rel=1e-3
    )


def test_docs_and_profiles_are_generated_from_the_data():
    r = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "make_hal.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    text = (ROOT / "docs" / "hal.md").read_text()
    for g in GPUS.values():
        assert f"### {g.name}:" in text
