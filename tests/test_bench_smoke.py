"""The benchmarks run (at tiny sizes); their figures are not asserted — speed is not a test."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_model_quick_runs():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_model.py"), "--quick"],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    for figure in ("limit", "hit-heavy", "fault-heavy", "oversubscribed"):
        assert figure in r.stdout
