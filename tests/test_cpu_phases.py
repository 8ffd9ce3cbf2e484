"""Issue 13: the CPU-phase tables behind the "CPU phases" limit (uvmlab/validation/cpu_phases.py),
on a synthetic capture directory laid out as ``capture_space --out DIR`` writes it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from uvmlab.validation.cpu_phases import floor, paired, per_size, per_window, phases

MIB = 1 << 20


def _op(name: str, mib: int, ms: float) -> dict:
    return {
        "op": "cpu",
        "name": name,
        "time_ns": int(ms * 1e6),
        "touches": mib * MIB // 4096,
        "cpu_faults": 6,
    }


def _write(root: Path, caps: list[tuple[str, float, list[dict]]]) -> None:
    man = {"captures": []}
    for path, t, ops in caps:
        f = root / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps({"ops": [*ops, {"op": "kernel", "name": "k", "time_ns": 9_000_000}]}))
        man["captures"].append({"path": path, "started_s": t, "seconds": 1.0})
    (root / "manifest.json").write_text(json.dumps(man))


@pytest.fixture
def run(tmp_path: Path) -> Path:
    _write(
        tmp_path,
        [
            ("space/run0/calib/s1.json", 0.5, [_op("init", 256, 100), _op("read_back", 256, 60)]),
            ("space/run0/calib/s2.json", 1.0, [_op("init", 256, 100), _op("read_back", 256, 60)]),
            # the 1 GiB phase of the first pass costs 1.25x per byte, of the second 1.0x
            ("space/run0/calib/g.json", 1.5, [_op("init", 1024, 500), _op("read_back", 1024, 240)]),
            ("space/run0/holdout/h.json", 50.0, [_op("init", 512, 200), _op("init", 8, 4)]),
            ("space/run1/calib/s1.json", 90.0, [_op("init", 256, 120)]),
            ("space/run1/calib/g.json", 91.0, [_op("init", 1024, 480)]),
        ],
    )
    return tmp_path


def test_cpu_phases_per_size_time_and_pass(run):
    ps = phases("x", root=run)
    assert len(ps) == 9  # the 4 ms phase is below the 5 ms floor; kernels are not CPU phases
    tab = per_size(ps)
    assert tab[("init", 256)][:2] == (3, 400.0) and tab[("init", 1024)][0] == 2
    assert paired(ps, "init") == {"run0": pytest.approx(1.25), "run1": pytest.approx(1.0)}
    assert paired(ps, "read_back") == {"run0": pytest.approx(1.0)}
    win = per_window(ps)
    assert win[(0, 256)] == (2, 400.0) and win[(80, 256)] == (1, 480.0)
    # one cost per byte per operation cannot fit the dearer 1 GiB phase; per size it can
    two = [
        p for p in ps if p.op == "init" and p.path in ("space/run0/calib/s1.json", "space/run0/calib/g.json")
    ]
    assert floor(two, by_size=True) == 0 and floor(two, by_size=False) == pytest.approx(50 / 450)
    assert floor([], by_size=False) is None


def test_cpu_phases_cli_reads_a_capture_directory_and_fails_in_one_line(run, tmp_path):
    cmd = [sys.executable, "-m", "uvmlab.validation.cpu_phases"]
    r = subprocess.run([*cmd, "--dir", str(run)], capture_output=True, text=True)
    assert r.returncode == 0 and "| init | 1024 | 2 |" in r.stdout and "run0 1.25, run1 1.00" in r.stdout
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    r = subprocess.run([*cmd, "--dir", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_best_scale_finds_the_level_and_leaves_the_spread():
    from uvmlab.validation.score import Score, best_scale

    # a model 25 % high everywhere: one factor removes all of it
    k, e = best_scale([Score("w", f"p{i}", "time_ns", r, 1.25 * r) for i, r in enumerate((10, 20, 30))])
    assert k == pytest.approx(0.8) and e == pytest.approx(0, abs=1e-9)
    # one model value against reals spread about it: the best factor balances the two nearest
    # (|1.25 k - 1| = |1 - k|: k = 8/9), and the spread leaves 1/9
    k, e = best_scale([Score("w", f"p{i}", "time_ns", r, 100) for i, r in enumerate((80, 100, 200))])
    assert k == pytest.approx(8 / 9, abs=1e-3) and e == pytest.approx(1 / 9, abs=2e-3)
    assert best_scale([])[0] == 1.0


def test_machine_state_sees_what_moves_with_the_machine():
    from uvmlab.validation.cpu_phases import Phase, machine_state

    # the machine's level moves slowly (four captures at a level, then the next); each
    # capture's read-back follows its first touch: same-capture and lag-1 correlations are high
    levels = [1.0] * 4 + [1.3] * 4 + [0.8] * 4 + [1.15] * 4
    ps = []
    for i, lv in enumerate(levels):
        path = f"space/run0/train/c{i}.json"
        mib = (256, 512)[i % 2]
        ps += [
            Phase(path, "init", mib, 0.4 * mib * lv, float(i)),
            Phase(path, "read_back", mib, 0.25 * mib * lv, i + 0.5),
        ]
    st = machine_state(ps)
    assert st is not None and st["same_capture"] == pytest.approx(1.0)
    assert st["lag1"] > 0.5 > st["lag5"] and st["sd"] > 0.1
    assert machine_state(ps[:4]) is None  # too few
