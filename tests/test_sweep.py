"""`uvmlab sweep`: the cross product, atomic per-point files, resume after a kill, engines."""

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from uvmlab.api import simulate
from uvmlab.core.errors import UvmlabError
from uvmlab.lab.sweep import SweepSpec, load_sweep, run_sweep
from uvmlab.results.result import Result

WORKLOAD = "stream:size=8MiB,passes=2"
AXES = ["--param", "uvm_perf_prefetch_enable=0,1", "--gpu-memory", "100%,125%,150%"]


def uvmlab(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "uvmlab", *args], capture_output=True, text=True, timeout=600, **kw
    )


def point_files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((d / "points").glob("*.json"))}


def stamps(d: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (d / "points").glob("*.json")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The sweep run once, uninterrupted."""
    d = tmp_path_factory.mktemp("ref") / "sweep"
    r = uvmlab("sweep", WORKLOAD, *AXES, "-o", str(d), "-j", "2")
    assert r.returncode == 0, r.stderr
    assert "6 computed, 0 already done" in r.stdout
    return d


def test_spec_is_the_cross_product_with_stable_ids():
    spec = SweepSpec.from_cli(
        WORKLOAD,
        params=["uvm_perf_prefetch_enable=0,1", "uvm_perf_fault_replay_policy=1,2,3"],
        gpu_memory="50%,150%",
    )
    pts = spec.points()
    assert len(pts) == 2 * 3 * 2
    assert len({p.id for p in pts}) == len(pts) == len({p.label for p in pts})
    assert [p.id for p in pts] == [p.id for p in SweepSpec.from_dict(spec.to_dict()).points()]
    assert pts[0].label == "uvm_perf_prefetch_enable=0, uvm_perf_fault_replay_policy=1, mem=50%"
    assert pts[0].config["params"] == {"uvm_perf_fault_replay_policy": 1, "uvm_perf_prefetch_enable": 0}
    one = SweepSpec.from_cli(WORKLOAD).points()
    assert len(one) == 1 and one[0].label == "stream"


@pytest.mark.slow  # subprocesses of the CLI
@pytest.mark.parametrize(
    "args,needle",
    [
        (["--param", "uvm_perf_prefetch_enabel=0,1"], "uvm_perf_prefetch_enabel"),
        (["--param", "uvm_perf_prefetch_threshold=50,500"], "uvm_perf_prefetch_threshold"),
        (["--param", "uvm_perf_prefetch_enable=0,,1"], "empty value"),
        (["--gpu-memory", "50%,50%"], "repeated"),
        (["--gpu-memory", "lots"], "lots"),
        (["--engine", "dask"], "dask"),
    ],
)
def test_bad_sweeps_fail_with_one_line_before_running(tmp_path, args, needle):
    d = tmp_path / "s"
    r = uvmlab("sweep", WORKLOAD, *args, "-o", str(d))
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not (d / "points").exists() or not any((d / "points").iterdir())


@pytest.mark.slow
def test_points_are_the_runs_themselves(reference):
    spec, points, done = load_sweep(reference)
    assert len(points) == len(done) == 6
    for p in points:
        r = done[p.id]
        assert r.meta["point"]["id"] == p.id and r.wall_s == 0.0
        assert r.samples is not None  # sweeps sample residency by default (heatmaps)
    p = points[4]  # prefetch on, 125 %
    direct = simulate(WORKLOAD, params={"uvm_perf_prefetch_enable": 1}, gpu_memory="125%")
    assert done[p.id].totals == direct.totals and done[p.id].ops == direct.ops
    log = [json.loads(x) for x in (reference / "log.jsonl").read_text().splitlines()]
    assert sorted(e["id"] for e in log) == sorted(p.id for p in points)


@pytest.mark.slow
def test_sweep_killed_part_way_resumes_to_exactly_the_same_results(reference, tmp_path):
    d = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvmlab", "sweep", WORKLOAD, *AXES, "-o", str(d), "-j", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not point_files(d) if (d / "points").exists() else True:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # kill -9: no cleanup of any kind
        proc.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its workers, should any remain
    before = stamps(d)
    assert 1 <= len(before) < 6
    r = uvmlab("sweep", WORKLOAD, *AXES, "-o", str(d), "--resume", "-j", "2")
    assert r.returncode == 0, r.stderr
    assert f"{6 - len(before)} computed, {len(before)} already done" in r.stdout
    after = stamps(d)
    assert {k: after[k] for k in before} == before  # nothing done was rewritten
    assert point_files(d) == point_files(reference)  # same set, same bytes
    assert not list((d / "points").glob(".*"))  # no temp file left behind


@pytest.mark.slow
def test_ctrl_c_stops_the_sweep_and_resume_finishes_it(reference, tmp_path):
    d = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvmlab", "sweep", WORKLOAD, *AXES, "-o", str(d), "-j", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not ((d / "points").exists() and point_files(d)):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    _, err = proc.communicate(timeout=60)
    # 130, or killed by SIGINT (which a shell also shows as 130): CPython 3.11 re-raises a
    # handled Ctrl-C at exit when it landed inside exec()'d code
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "--resume" in err and "Traceback" not in err
    r = uvmlab("sweep", WORKLOAD, *AXES, "-o", str(d), "--resume")
    assert r.returncode == 0, r.stderr
    assert point_files(d) == point_files(reference)


@pytest.mark.slow
def test_finished_sweep_is_not_redone_and_not_overwritten(reference):
    before = stamps(reference)
    r = uvmlab("sweep", WORKLOAD, *AXES, "-o", str(reference), "--resume")
    assert r.returncode == 0 and "0 computed, 6 already done" in r.stdout
    assert stamps(reference) == before
    r = uvmlab("sweep", WORKLOAD, *AXES, "-o", str(reference))
    assert r.returncode != 0 and "--resume" in r.stderr and "Traceback" not in r.stderr
    assert stamps(reference) == before


@pytest.mark.slow
def test_an_extended_sweep_reuses_the_points_it_shares(reference, tmp_path):
    d = tmp_path / "copy"
    (d / "points").mkdir(parents=True)
    for name, blob in point_files(reference).items():
        (d / "points" / name).write_bytes(blob)
    (d / "sweep.json").write_bytes((reference / "sweep.json").read_bytes())
    spec = SweepSpec.from_cli(WORKLOAD, params=["uvm_perf_prefetch_enable=1"], gpu_memory="100%,150%,200%")
    out = run_sweep(spec, d, resume=True, workers=1)
    assert len(out.reused) == 2 and len(out.computed) == 1 and not out.errors
    assert [r.workload for r in out.ordered()] == ["stream"] * 3


@pytest.mark.slow
def test_sweep_report_compares_the_points(reference, tmp_path):
    r = uvmlab("sweep", WORKLOAD, *AXES, "-o", str(reference), "--resume", "--report")
    assert r.returncode == 0, r.stderr
    html = (reference / "report.html").read_text()
    assert html.count('<tr class="fatal"') + html.count("<tr data-run=") == 6
    assert "uvm_perf_prefetch_enable=0, mem=150%" in html
    out = tmp_path / "again.html"
    r = uvmlab("report", str(reference), "-o", str(out))
    assert r.returncode == 0 and out.exists()
    r = uvmlab("export", str(reference), "-o", str(tmp_path / "tables"))
    assert r.returncode == 0, r.stderr
    import pandas as pd

    runs = pd.read_parquet(tmp_path / "tables" / "runs.parquet")
    assert len(runs) == 6 and runs["label"].is_unique


@pytest.mark.slow  # subprocesses of the CLI
def test_policy_axis_none_is_the_default_driver(tmp_path):
    spec = SweepSpec.from_cli("random:size=4MiB,seed=5", policies="default")
    out = run_sweep(spec, tmp_path / "s", workers=1)
    (res,) = out.ordered()
    assert res.totals == simulate("random:size=4MiB,seed=5").totals


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("uvmlab.policy.loader") is None, reason="uvmlab.policy.loader not there yet"
)
def test_policy_axis_runs_each_policy(tmp_path):
    spec = SweepSpec.from_cli("random:size=4MiB,seed=5", policies="default,lru", gpu_memory="150%")
    assert [p.label for p in spec.points()] == ["policy=default", "policy=lru"]
    out = run_sweep(spec, tmp_path / "s", workers=2)
    assert not out.errors
    none, lru = out.ordered()
    assert none.totals == simulate("random:size=4MiB,seed=5", gpu_memory="150%").totals
    direct = simulate("random:size=4MiB,seed=5", gpu_memory="150%", policies="lru")
    assert lru.totals == direct.totals
    with pytest.raises(UvmlabError, match="no-such-policy"):
        SweepSpec.from_cli(WORKLOAD, policies="default,no-such-policy").points()


def test_missing_workload_file_fails_before_any_point(tmp_path):
    spec = SweepSpec.from_cli(str(tmp_path / "gone.uvmw"))
    with pytest.raises(UvmlabError, match="gone.uvmw"):
        run_sweep(spec, tmp_path / "s")


@pytest.mark.slow  # subprocesses of the CLI
def test_trace_file_sweep_is_known_by_content(tmp_path):
    trace = tmp_path / "w.uvmw"
    assert uvmlab("trace", "write", "stride:size=4MiB", str(trace)).returncode == 0
    spec = SweepSpec.from_cli(str(trace), gpu_memory="100%,150%")
    out = run_sweep(spec, tmp_path / "s", workers=2)
    assert len(out.results) == 2 and not out.errors
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    trace.rename(moved / "w.uvmw")
    again = SweepSpec.from_cli(str(moved / "w.uvmw"), gpu_memory="100%,150%")
    assert [p.id for p in again.points()] == [p.id for p in out.points]


@pytest.mark.slow
def test_local_and_ray_engines_give_identical_results(tmp_path):
    pytest.importorskip("ray", reason="Ray not installed (pip install 'uvmlab[ray]')")
    spec = SweepSpec.from_cli(WORKLOAD, params=["uvm_perf_prefetch_enable=1"], gpu_memory="100%,150%")
    local = run_sweep(spec, tmp_path / "local", engine="local", workers=2)
    ray_ = run_sweep(spec, tmp_path / "ray", engine="ray", workers=2)
    assert not local.errors and not ray_.errors
    assert point_files(tmp_path / "local") == point_files(tmp_path / "ray")  # bit for bit
    assert [r.fingerprint() for r in local.ordered()] == [r.fingerprint() for r in ray_.ordered()]
    assert all(isinstance(r, Result) for r in ray_.ordered())
