"""Scenarios end to end: file errors, the memory modes' invariants, per-tenant accounting."""

from __future__ import annotations

import dataclasses
import errno
from pathlib import Path

import numpy as np
import pytest

from uvmlab.api import simulate
from uvmlab.vgpu.report import jain_index, run_scenario
from uvmlab.vgpu.run import run_tenants
from uvmlab.vgpu.scenario import ScenarioError, load_scenario, scenario_from_dict
from uvmlab.workload.synthetic import make_workload

MiB = 1 << 20


def sc(tenants, **top):
    d = {"gpu": "h100", "mode": "shared", **top, "tenant": tenants}
    return scenario_from_dict(d, where="test")


def T(name, workload, **kw):
    return {"name": name, "workload": workload, **kw}


# ---- the file ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, needle",
    [
        ("gpu = 'h100'", "no tenants"),
        ("gpu = 'h100'\nfoo = 1\n[[tenant]]\nname='a'\nworkload='stream'", "unknown key"),
        ("[[tenant]]\nname='a'\nworkload='stream'\n[[tenant]]\nname='a'\nworkload='stream'", "two tenants"),
        ("mode = 'mig'\n[[tenant]]\nname='a'\nworkload='stream'", "mode"),
        ("mode = 'partition'\n[[tenant]]\nname='a'\nworkload='stream'", "needs a vgpu_type"),
        (
            "scheduler = 'fixed-share'\n[[tenant]]\nname='a'\nworkload='s'\nshare=0.7\n"
            "[[tenant]]\nname='b'\nworkload='s'\nshare=0.7",
            "add up",
        ),
        ("[[tenant]]\nname='a'\nworkload='stream'\narrival='soon'", "cannot read time"),
        ("[[tenant]]\nname='a'\nworkload='stream'\nunit='tok'", "group"),
        ("[[tenant]]\nname='a b'\nworkload='stream'", "letters"),
        ("gpu = 'z900'\n[[tenant]]\nname='a'\nworkload='stream'", "unknown GPU"),
        ("this is = = not toml", "not valid TOML"),
        ("fault_service = 'magic'\n[[tenant]]\nname='a'\nworkload='stream'", "fault_service must be"),
    ],
)
def test_bad_scenario_files_say_what_is_wrong(tmp_path, text, needle):
    p = tmp_path / "s.toml"
    p.write_text(text)
    with pytest.raises(Exception) as ei:
        load_scenario(p)
    assert needle in str(ei.value)
    assert type(ei.value).__name__ in ("ScenarioError", "UvmlabError")


def test_missing_file(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "nope.toml")


# ---- one tenant is a plain run ----------------------------------------------------------------
def test_one_tenant_on_a_shared_pmm_is_the_single_run():
    """Several-VA-spaces support must not change what one process sees: the tenant's ops and
    counters equal simulate()'s (which uses the compiled fast path) exactly."""
    spec = "gemm:size=64MiB,tile=2MiB"
    s = sc([T("a", spec)], memory="48MiB")
    run = run_tenants(s, [make_workload(spec)])
    ref = simulate(spec, gpu="h100", gpu_memory=str(48 * MiB))
    eng = run.outcomes[0].engines[0]
    assert [r["time_ns"] for r in eng.rows] == [r["time_ns"] for r in ref.ops]
    for k in ("gpu_faults", "bytes_htod", "bytes_dtoh", "evictions", "replays"):
        assert run.outcomes[0].counters[k] == ref.totals[k], k
    assert ref.totals["evictions"] > 0  # the case covers eviction


# ---- memory modes -----------------------------------------------------------------------------
def _accounting_adds_up(run):
    names = [o.name for o in run.outcomes]
    for o in run.outcomes:
        by_others = sum(run.evicted.get((r, o.name), [0, 0])[1] for r in names)
        assert by_others == o.counters.get("bytes_dtoh_eviction", 0)
        chunks = sum(run.evicted.get((r, o.name), [0, 0])[0] for r in names)
        assert chunks == o.counters.get("evictions", 0)
    total = sum(o.counters.get("bytes_dtoh_eviction", 0) for o in run.outcomes)
    assert sum(b for _, b in run.evicted.values()) == total


def test_shared_oversubscription_evicts_across_tenants_and_adds_up():
    s = sc([T("a", "stream:size=48MiB,passes=3"), T("b", "stream:size=48MiB,passes=3")], memory="64MiB")
    run = run_tenants(s, [make_workload(t.workload) for t in s.tenants], check=True)
    assert run.evicted.get(("a", "b"), [0, 0])[0] > 0
    assert run.evicted.get(("b", "a"), [0, 0])[0] > 0
    _accounting_adds_up(run)


def test_partition_never_exceeds_the_framebuffer():
    s = sc(
        [T("a", "stream:size=48MiB,passes=2", quota="16MiB"), T("b", "random:size=32MiB", quota="40MiB")],
        mode="partition",
        memory="64MiB",
    )
    run = run_tenants(s, [make_workload(t.workload) for t in s.tenants], check=True)
    for o in run.outcomes:
        assert 0 < o.max_held_bytes <= o.quota_bytes
    assert run.outcomes[0].counters["evictions"] > 0  # its 48 MiB do not fit 16 MiB
    assert not any(r != v for r, v in run.evicted)  # a partition only evicts itself
    _accounting_adds_up(run)


def test_quota_refuses_an_oversized_tenant_and_keeps_the_others_within_theirs():
    s = sc(
        [T("small", "stream:size=24MiB", quota="32MiB"), T("big", "stream:size=64MiB", quota="32MiB")],
        mode="quota",
        memory="128MiB",
    )
    run = run_tenants(s, [make_workload(t.workload) for t in s.tenants], check=True)
    small, big = run.outcomes
    assert "out of memory" in big.fatal and big.counters == {} and not big.records[0].demand_ns
    assert not small.fatal and 0 < small.max_held_bytes <= small.quota_bytes


def test_a_tenants_policy_applies_to_that_tenant_only():
    w = "stream:size=16MiB,passes=1"
    s = sc([T("a", w), T("b", w, policy="prefetch-none")], memory="1GiB")
    run = run_tenants(s, [make_workload(w)] * 2)
    a, b = run.outcomes
    assert a.counters["bytes_htod_prefetch"] > 0 == b.counters["bytes_htod_prefetch"]
    assert b.counters["gpu_faults"] > a.counters["gpu_faults"]


def test_vgpu_tenants_get_instances_and_give_them_back():
    s = sc(
        [
            T("a", "stream:size=16MiB", vgpu_type="H100-40C"),
            T("b", "stream:size=16MiB", vgpu_type="H100-40C"),
        ],
        mode="partition",
        scheduler="fixed-share",
    )
    run = run_tenants(s, [make_workload(t.workload) for t in s.tenants])
    assert all(o.uuid and o.vgpu_type == "H100-40C" for o in run.outcomes)
    assert [ts.share for ts in run.tenant_sched] == [0.5, 0.5]
    third = dataclasses.replace(s, tenants=[*s.tenants, dataclasses.replace(s.tenants[0], name="c")])
    with pytest.raises(ScenarioError) as ei:
        run_tenants(third, [make_workload("stream:size=16MiB")] * 3)
    assert "EUSERS" in str(ei.value) and errno.errorcode[errno.EUSERS] == "EUSERS"


def test_time_sharing_slows_gpu_bound_tenants_and_fairness():
    s = sc([T("a", "gemm:size=32MiB"), T("b", "gemm:size=32MiB")], memory="1GiB")
    res = run_scenario(s)
    slow = [r["slowdown"] for r in res.rows]
    # sharing slows each tenant, by less than 2x: only its GPU-bound part is time-sliced (with
    # the per-kind-fitted profiles of issue 13, 17-27 % of a 32 MiB gemm here; was 30 %+)
    assert all(1.1 < x <= 2.1 for x in slow)
    assert res.fairness > 0.95
    assert jain_index([1.0, 0.0]) == pytest.approx(0.5)


@pytest.mark.slow
def test_lc_tenant_protected_by_a_library_policy_gpu_ext_direction():
    """gpu_ext's two-tenant ordering (LC alone < co-located with policy < default UVM)."""
    s = sc(
        [
            T("lc", "llm:size=128MiB,layers=4,tokens=12", unit=r"tok(\d+)"),
            T("be", "train:size=256MiB,layers=4,steps=1"),
        ],
        memory="256MiB",
    )
    default = run_scenario(s)
    prot = run_scenario(dataclasses.replace(s, policy="tenant-priority(order=lc)"), alone=False)
    lc_alone = default.rows[0]["alone_unit_mean_ns"]
    lc_default = default.rows[0]["unit_mean_ns"]
    lc_prot = prot.rows[0]["unit_mean_ns"]
    assert lc_alone < lc_prot < lc_default
    assert prot.rows[0]["evicted_by_be"] < default.rows[0]["evicted_by_be"]
    assert default.rows[0]["extra_bytes_htod"] > 0  # lc refetched what be evicted


def test_units_group_ops():
    s = sc([T("lc", "llm:size=32MiB,layers=2,tokens=3", unit=r"tok(\d+)")], memory="1GiB")
    res = run_scenario(s, alone=False)
    assert res.rows[0]["units"] == 3
    assert np.isfinite(res.rows[0]["unit_p99_ns"])


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).resolve().parent.parent / "examples" / "vgpu").glob("*.toml")),
    ids=lambda p: p.stem,
)
def test_example_scenarios_load(path):
    s = load_scenario(path)
    assert s.tenants and all(t.workload for t in s.tenants)
