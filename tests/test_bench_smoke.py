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
        "compiled: block service",
        "per-batch orchestration",
        "compiled prefetcher",
    ):
        assert figure in r.stdout
