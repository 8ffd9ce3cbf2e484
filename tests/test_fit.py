"""``uvmlab fit``: fault-path constants fitted to captured times (uvmlab/validation/fit.py)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from uvmlab.api import load_workload, simulate
from uvmlab.results.result import Result
from uvmlab.timing.cost_model import load_profile
from uvmlab.validation import fit as ft
from uvmlab.validation.suite import suite_workloads
from uvmlab.workload.ir import WorkloadBuilder


def _advice_and_free():
    b = WorkloadBuilder("advice_free")
    a = b.alloc("a", 8 << 20)
    b.cpu("init", [b.run(a, access="write")])
    b.advise(a, "set_read_mostly", "gpu0")
    b.kernel("read", [b.run(a)])
    b.cpu("write_back", [b.run(a, stride=4, access="write")])
    b.free(a)
    return b.build()


TRAINING = {
    "stream": "stream:size=16MiB,passes=1",
    "random": "random:size=16MiB",
    "stride": "stride:size=16MiB,stride=64KiB,passes=1",
    "pingpong": "pingpong:size=8MiB,rounds=2",
    "gemm": "gemm:size=12MiB,tile=1MiB",
    "train": "train:size=8MiB,steps=1",
    "vecsearch": "vecsearch:size=8MiB,queries=4",
}


def _training(truth):
    out = {}
    for name, spec in TRAINING.items():
        w = load_workload(spec)
        real = simulate(w, gpu="h200", profile=truth)
        out[name] = (w, real, real.totals["time_ns"])
    w = _advice_and_free()
    real = simulate(w, gpu="h200", profile=truth)
    out["advice_free"] = (w, real, real.totals["time_ns"])
    return out


def test_fit_recovers_the_times_of_a_known_profile():
    base = load_profile("h200-pcie5-measured")
    truth = replace(
        load_profile("h200-pcie5"), htod_gbps=7.5, fault_ns=900.0, cpu_fault_ns=30000.0, name="truth"
    )
    training = _training(truth)
    rep = ft.fit_profile(base, training, gpu="h200", name="fitted")
    # the fitted profile reproduces every training time (the model is linear in the constants)
    assert max(abs(e) for e in rep.errors.values()) < 0.005
    # the fault-path rate and the per-fault cost are identified by these workloads
    assert rep.profile.htod_gbps == pytest.approx(7.5, rel=0.02)
    assert rep.profile.fault_ns == pytest.approx(900.0, rel=0.05)
    assert rep.profile.name == "fitted" and "_fit" in rep.profile.sources
    # the constants not fitted are the base's
    assert rep.profile.copy_latency_ns == base.copy_latency_ns
    assert rep.profile.gpu_touch_ns == base.gpu_touch_ns


def test_constants_no_workload_exercises_are_kept():
    base = load_profile("h200-pcie5-measured")
    truth = replace(load_profile("h200-pcie5"), name="truth")
    w = load_workload("stream:size=8MiB,passes=1")
    real = simulate(w, gpu="h200", profile=truth)
    rep = ft.fit_profile(base, {"stream": (w, real, real.totals["time_ns"])}, gpu="h200", name="x")
    assert "advise_block_ns" in rep.fixed and "free_block_ns" in rep.fixed
    assert rep.profile.advise_block_ns == base.advise_block_ns


def test_median_run_is_a_real_run_with_the_median_time():
    runs = [Result(workload="w", totals={"time_ns": t}, ops=[]) for t in (5, 1, 4, 2)]
    assert ft.median_run(runs).totals["time_ns"] == 2  # lower middle of an even count
    assert ft.median_time(runs) == 3.0
    assert ft.median_run(runs[:3]).totals["time_ns"] == 4


@pytest.mark.slow
@pytest.mark.parametrize("gpu", ["h200", "h100"])
def test_shipped_profile_is_the_fit_of_the_stored_session(gpu):
    # the <gpu>-pcie5 profiles are reproducible from the repository: calibration + this fit
    sets = ft.session_sets(ft.latest_session(gpu))
    training = ft.suite_training(sets["suite"])
    assert len(training) == 15
    shipped = load_profile(f"{gpu}-pcie5")
    rep = ft.fit_profile(load_profile(f"{gpu}-pcie5-measured"), training, gpu=gpu, name=shipped.name)
    for field, _inverse in ft.FITTED:
        assert getattr(rep.profile, field) == pytest.approx(getattr(shipped, field), rel=1e-3, abs=1e-3), (
            field
        )
    # and the hold-out set, never fitted to, is predicted within the targets
    errs = ft.evaluate(shipped, sets["holdout"], dict(suite_workloads(set_name="holdout")), gpu)
    assert len(errs) == 12
    assert max(abs(e) for e in errs.values()) < 0.25
    assert sorted(abs(e) for e in errs.values())[5] < 0.10  # median of 12 (lower middle)


@pytest.mark.slow  # subprocesses of the CLI or long model runs
def test_cli_bad_session_is_one_line_error(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "uvmlab", "fit", "--session", str(tmp_path / "no")],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
