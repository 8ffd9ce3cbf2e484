"""``uvmlab fit``: cost constants fitted per operation kind (uvmlab/validation/fit.py)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from uvmlab.api import simulate
from uvmlab.timing.cost_model import load_profile
from uvmlab.validation import fit as ft
from uvmlab.validation.runs import load_dir
from uvmlab.validation.sessions import latest, session_profile_name
from uvmlab.validation.space import kernel_case, pingpong_case, read_mostly_case

MiB = 1 << 20


def _workloads():
    return [
        kernel_case("s_r", "stream", 64 * MiB, 4096, "read"),
        kernel_case("s_w", "stream", 64 * MiB, 65536, "write"),
        kernel_case("r_r", "random", 64 * MiB, 16384, "read"),
        kernel_case("t_r", "stride", 128 * MiB, 65536, "read"),
    ]


def _training(truth, scale_cpu: float = 1.0):
    """The model's runs under ``truth`` standing in for captures (CPU phases scaled)."""
    out = []
    for w in _workloads():
        real = simulate(w, gpu="h200", profile=truth)
        for o in real.ops:
            if o["op"] == "cpu":
                o["time_ns"] = int(o["time_ns"] * scale_cpu)
        out.append(ft.Training(w.name, w, real))
    return out


@pytest.fixture(scope="module")
def truth():
    return replace(
        load_profile("h200-pcie5-measured"),
        htod_gbps=12.0,
        fault_block_ns=20000.0,
        cpu_populate_ns_per_byte=0.4,
        cpu_fault_ns=40000.0,
        name="truth",
    )


def test_fit_recovers_a_known_profile_kind_by_kind(truth):
    base = load_profile("h200-pcie5-measured")
    res = ft.fit_profile(base, _training(truth), gpu="h200", name="fitted")
    kern, cpu = res.kinds["kernel"], res.kinds["cpu"]
    # every operation's time is reproduced (the model is linear in the constants)
    assert max(abs(e) for e in kern.in_sample.values()) < 0.01
    assert max(abs(e) for e in cpu.in_sample.values()) < 0.01
    # the fault-path copy rate and the CPU populate cost are identified by these operations
    assert res.profile.htod_gbps == pytest.approx(12.0, rel=0.05)
    assert res.profile.cpu_populate_ns_per_byte == pytest.approx(0.4, rel=0.05)
    assert "fault_block_ns" in kern.constants and "cpu_populate_ns_per_byte" in cpu.constants
    # leave-one-workload-out predicts every fitted operation of the workload left out
    assert set(kern.lowo) == set(kern.in_sample)
    assert res.profile.name == "fitted" and "per kind" in res.profile.sources["htod_gbps"]
    # constants of no fitted kind are the base's
    assert res.profile.copy_latency_ns == base.copy_latency_ns


def test_resident_cpu_fault_cost_is_fitted_on_the_faults_it_stands_for():
    """A CPU write collapsing read duplicates costs cpu_fault_resident_ns (no copy): a training
    set with such faults (read-mostly) identifies it; one without them leaves the base value."""
    base = load_profile("h200-pcie5-measured")
    truth = replace(base, cpu_fault_resident_ns=3 * base.cpu_fault_resident_ns, name="truth")
    w = read_mostly_case("rm", 16 * MiB, 16384)
    train = [ft.Training(w.name, w, simulate(w, gpu="h200", profile=truth))]
    res = ft.fit_profile(base, train, gpu="h200", name="fitted")
    assert "cpu_fault_resident_ns" in res.kinds["cpu"].constants
    assert res.profile.cpu_fault_resident_ns == pytest.approx(truth.cpu_fault_resident_ns, rel=0.05)
    plain = ft.fit_profile(base, _training(truth)[:1], gpu="h200", name="plain").profile
    assert plain.cpu_fault_resident_ns == pytest.approx(base.cpu_fault_resident_ns, rel=1e-5)


def test_short_cpu_phases_are_fitted_on_all_together_never_chosen_by_their_time(truth):
    """A 64 KiB ping-pong's CPU phases take ~0.3 ms, a few past 1 ms when a thrashing throttle
    sleeps. Chosen by their time, only the slow ones were fitted on; now a workload's phases
    under MIN_FIT_CPU_PAGES pages are one row, all of them summed, whatever their times."""
    base = load_profile("h200-pcie5-measured")
    w = pingpong_case("pp", 64 << 10, 6)
    real = simulate(w, gpu="h200", profile=truth)
    clean = ft.fit_profile(base, [*_training(truth), ft.Training(w.name, w, real)], gpu="h200", name="a")
    for o in real.ops:
        if o["op"] == "cpu" and o["name"] in ("cpu_write1", "cpu_write4"):
            o["time_ns"] = 1_300_000  # a throttled round, past the 1 ms floor
    noisy = ft.fit_profile(base, [*_training(truth), ft.Training(w.name, w, real)], gpu="h200", name="b")
    # the same rows whichever rounds were slow: the short phases as one, none by itself
    assert set(noisy.kinds["cpu"].in_sample) == set(clean.kinds["cpu"].in_sample)
    assert "pp/6 short CPU phases" in clean.kinds["cpu"].in_sample
    assert not any(k.startswith("pp/cpu_write") for k in noisy.kinds["cpu"].in_sample)
    # with the truth's own times every row, the summed one too, is reproduced
    assert max(abs(e) for e in clean.kinds["cpu"].in_sample.values()) < 0.01


def test_gpu_constants_never_see_cpu_phases(truth):
    # CPU phases twice as slow change the CPU constants only: the GPU fault-path constants are
    # fitted on kernel operations (a fit on totals would trade one against the other)
    base = load_profile("h200-pcie5-measured")
    a = ft.fit_profile(base, _training(truth), gpu="h200", name="a").profile
    b = ft.fit_profile(base, _training(truth, scale_cpu=2.0), gpu="h200", name="b").profile
    for f, _inv, _unit, _what in ft.GPU_CONSTANTS:
        assert getattr(a, f) == getattr(b, f), f
    assert b.cpu_populate_ns_per_byte > 1.5 * a.cpu_populate_ns_per_byte


def test_every_fitted_constant_has_a_unit_and_a_meaning():
    for f, _inv, unit, what in ft.GPU_CONSTANTS + ft.CPU_CONSTANTS + ft.HOST_CONSTANTS:
        assert unit and len(what) > 20, f
    assert "``fault_block_ns``" in ft.__doc__


@pytest.mark.slow
def test_same_machine_profile_is_the_fit_of_the_stored_calibration_captures():
    s = latest("h200")
    shipped = load_profile(session_profile_name(s))
    train = [ft.Training(r.workload, kernel_or_case(r), r) for r in load_dir(s.set_dir("calib"))]
    res = ft.fit_profile(load_profile("h200-pcie5-measured"), train, gpu="h200", name=shipped.name)
    for f, _inv, _u, _w in ft.GPU_CONSTANTS + ft.CPU_CONSTANTS:
        assert getattr(res.profile, f) == pytest.approx(getattr(shipped, f), rel=1e-3, abs=1e-3), f


def kernel_or_case(real):
    from uvmlab.validation.runs import workload_of

    return workload_of(real, "space", "calib")


def test_median_run_is_a_real_run_with_the_median_time():
    from uvmlab.results.result import Result

    runs = [Result(workload="w", totals={"time_ns": t}, ops=[], source="gpu") for t in (4, 2, 9, 1)]
    assert ft.median_run(runs).totals["time_ns"] == 2  # lower middle of an even count
    assert ft.median_time(runs) == 3.0


@pytest.mark.parametrize(
    "args", [["fit", "--set", "holdout"], ["fit", "--gpu", "a100"], ["fit", "--gpu", "nosuch"]]
)
def test_cli_bad_arguments_are_one_line_errors(args):
    r = subprocess.run([sys.executable, "-m", "uvmlab", *args], capture_output=True, text=True)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
