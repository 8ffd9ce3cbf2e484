"""The benchmarks run (at tiny sizes); their figures are not asserted — speed is not a test."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the benchmarks

ROOT = Path(__file__).resolve().parents[1]


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_model.py"), *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )


def test_bench_model_quick_runs():
    r = _bench("--quick")
    assert r.returncode == 0, r.stderr
    for figure in (
        "limit",
        "hit-heavy",
        "fault-heavy",
        "oversubscribed",
        "scale",
        "peak RSS",
        "touches/s",
        "real H200",
        "speed-up, heuristics on",
        "speed-up, heuristics off",
        "compiled kernels",
        "per-page hooks (Python)",
    ):
        assert figure in r.stdout
    assert "DIFFERENT" not in r.stdout  # both fault paths service the same faults


def test_bench_model_only_runs_the_selected_scenarios():
    r = _bench("--quick", "--only", "scale")
    assert r.returncode == 0, r.stderr
    assert "limit" in r.stdout and "scale sparse:" in r.stdout  # the limit: every ratio needs it
    assert "hit-heavy" not in r.stdout and "fault-heavy" not in r.stdout
    bad = _bench("--quick", "--only", "scael")
    assert bad.returncode != 0 and "unknown scenario scael" in bad.stderr


def test_profile_model_quick_runs():
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "profile_model.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    for figure in (
        "fault-heavy, heuristics on",
        "fault-heavy, heuristics off",
        "oversubscribed",
        "compiled fault loop",
        "block service",
        "re-check",
        "outside the loop",
        "compiled prefetcher",
    ):
        assert figure in r.stdout


def test_bench_model_json_has_every_row(tmp_path):
    import json

    out = tmp_path / "bench.json"
    r = _bench("--quick", "--only", "fault-heavy", "--json", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    printed = [line for line in r.stdout.splitlines() if line.strip()]
    assert len(data["rows"]) == len(printed)  # one JSON row per printed line
    assert data["figures"]["cpu_faults_per_s_off"] > 0 and data["date"] and data["machine"]


def test_bench_workloads_quick_json(tmp_path):
    import json

    out = tmp_path / "wl.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_workloads.py"), "--quick"]
        + ["--only", "random,mixed_kinds", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["workloads"]
    assert [w["workload"] for w in rows] == ["random:size=16MiB", "suite/random", "suite/mixed_kinds"]
    for w in rows:  # the ratio is the wall over the simulated time of the same run
        assert w["ratio"] == w["wall_s"] / w["sim_s"] and w["met"] == (w["ratio"] <= 0.1)
        # the CPU time of the same operations is counted, its ratio over the same simulated time
        assert w["cpu_s"] > 0 and w["cpu_ratio"] == w["cpu_s"] / w["sim_s"]
