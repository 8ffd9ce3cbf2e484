"""A small seeded sample of each fuzzer (bench/fuzz_*.py) and the isolation benchmark: the full
runs write docs/reliability.md; these keep the fuzzers themselves working and catch a
regression on the cases they draw. Counts are asserted (no failures), never times."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# each sample starts fresh interpreters and forks workers: a minute or more on a loaded box
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _fuzz(name: str, *args: str) -> dict:
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), "--json", "--workers", "1", *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep["cases"] > 0
    assert rep["failures"] == 0, json.dumps(rep["classes"], indent=1)[:3000]
    assert r.returncode == 0, r.stderr[-2000:]
    return rep


def test_fuzz_engine_sample():
    rep = _fuzz("fuzz_engine", "--cases", "60", "--seed", "7", "--time-limit", "300", "--timeout", "120")
    assert rep["counts"].get("clean", 0) > 0  # hostile files are refused cleanly ...
    assert rep["counts"].get("ok", 0) + rep["counts"].get("fatal", 0) > 0  # ... and valid ones run


def test_fuzz_cli_sample():
    rep = _fuzz("fuzz_cli", "--cases", "40", "--seed", "7", "--time-limit", "300", "--timeout", "120")
    assert rep["counts"].get("clean", 0) > 0


@pytest.mark.parametrize("seed", ["3"])
def test_fuzz_policies_sample(seed):
    rep = _fuzz("fuzz_policies", "--cases", "12", "--seed", seed, "--time-limit", "400", "--timeout", "120")
    assert rep["counts"].get("ok", 0) > 0


def test_bench_isolate_quick():
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_isolate.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["hooks"] and all(h["calls"] > 0 and h["ratio"] > 0 for h in out["hooks"].values())
