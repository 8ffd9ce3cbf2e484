"""Issue 13, item 6: the warm-up before the timed calibration captures (uvmlab/validation/warmup.py)
in ``calibrate --quick`` and in a capture session, without a GPU (the executor is replaced by a
fake that returns a capture of the case's operations)."""

from __future__ import annotations

import functools
import itertools
import json

import pytest

from uvmlab.core.errors import UvmlabError
from uvmlab.cuda.executor import RealRunResult
from uvmlab.cuda.plan import plan_workload
from uvmlab.validation import capture_space, cpu_phases, quick, session_capture
from uvmlab.validation.space import cases
from uvmlab.validation.warmup import warm_up, warmup_cases


class Clock:
    """A clock the fake captures advance by ``step`` seconds each."""

    def __init__(self, step: float) -> None:
        self.t = 100.0
        self.step = step

    def __call__(self) -> float:
        return self.t


def fake_capture(w, threads: int = 0) -> RealRunResult:
    """A capture of workload ``w``: its operations, 10 ms each, CPU phases with touches and faults."""
    ops = [
        {"index": p.index, "op": p.kind, "name": p.name, "time_ns": 10_000_000, "touches": p.touches}
        | ({"cpu_faults": 6} if p.kind == "cpu" else {})
        for p in plan_workload(w)
    ]
    return RealRunResult(w.name, {"time_ns": len(ops) * 1_000_000}, {}, ops, {}, {"threads": threads})


def test_warm_up_runs_whole_kernel_passes_until_its_time_is_up():
    wc = warmup_cases()
    names = [c.name for c in wc]
    # the calibration set's kernel cases: CPU first touch, faulting kernel, read-back
    assert names and all(c.kind == "kernel" and c.set == "calib" for c in wc)
    assert {c.name for c in cases("calib")} - set(names) == {
        "pingpong_64k_r100_c",
        "accessed_by_64m_c",
        "read_mostly_32m_c",
    }
    clock = Clock(2.0)
    taken: list[tuple[int, str]] = []

    def take(i, c):
        taken.append((i, c.name))
        clock.t += clock.step

    # 9 cases of 2 s: the first pass ends at 18 s, the second stops when 30 s have passed
    wu = warm_up(take, 30.0, clock=clock)
    per_pass = 30 // 2 - len(names)
    assert [len(p) for p in wu.passes] == [len(names), per_pass]
    assert taken == [(0, n) for n in names] + [(1, n) for n in names[:per_pass]]
    assert wu.seconds == pytest.approx(30.0)
    # started times are since the warm-up began, increasing
    starts = [t for p in wu.passes for _n, t in p]
    assert starts == sorted(starts) and starts[0] == 0
    # at least one whole pass however short the warm-up; none when it is off
    taken.clear()
    assert [len(p) for p in warm_up(take, 0.5, clock=clock).passes] == [len(names)]
    taken.clear()
    assert warm_up(take, 0.0, clock=clock).passes == [] and taken == []


def test_quick_calibration_warms_up_first_and_fits_only_the_timed_pass(tmp_path, monkeypatch):
    fitted: list[str] = []

    def fake_fit(captures, gpu, name, *, stamp, log=None):
        fitted.extend(r.workload for r in captures)
        raise UvmlabError("stop after the captures")  # the fit itself is tested in test_fit.py

    monkeypatch.setattr(quick, "device_info", lambda: {"gpu": "NVIDIA H100 80GB HBM3", "driver_version": "x"})
    monkeypatch.setattr(quick, "execute", fake_capture)
    monkeypatch.setattr(quick, "profile_from_captures", fake_fit)
    with pytest.raises(UvmlabError, match="stop after"):
        quick.calibrate_quick(str(tmp_path), log=lambda s: None, warmup_s=0.01)
    calib = [c.name for c in cases("calib")]
    assert fitted == calib  # the warm-up captures are never fitted
    assert sorted(p.stem for p in (tmp_path / "calib").glob("*.json")) == sorted(calib)
    warm = sorted(p.stem for p in (tmp_path / "calib-warmup0").glob("*.json"))
    assert warm == sorted(c.name for c in warmup_cases())
    man = json.loads((tmp_path / "manifest.json").read_text())
    paths = [c["path"] for c in man["captures"]]
    first_timed = next(i for i, p in enumerate(paths) if p.startswith("calib/"))
    assert all(p.startswith("calib-warmup") for p in paths[:first_timed])
    assert all(p.startswith("calib/") for p in paths[first_timed:])
    starts = [c["started_s"] for c in man["captures"]]
    assert starts == sorted(starts) and man["warmup"]["passes"] >= 1
    # cpu_phases reads the quick calibration's directory: warm-up and timed pass apart
    ps = cpu_phases.phases("q", root=tmp_path)
    assert {"run0", "warmup0"} <= {cpu_phases.calib_pass(p.path) for p in ps}
    labels = [k for k, _t, _ops in cpu_phases.passes(ps)]  # in the order they ran
    assert labels == [f"warmup{i}" for i in range(man["warmup"]["passes"])] + ["run0"]


def test_quick_calibration_without_warmup_takes_the_calibration_set_only(tmp_path):
    caps, man = quick.capture_calib(
        tmp_path, lambda c: fake_capture(c.build(), c.threads), warmup_s=0, log=lambda s: None
    )
    assert [r.workload for r in caps] == [c.name for c in cases("calib")]
    assert man["warmup"] == {"passes": 0, "seconds": 0.0}
    assert not list(tmp_path.glob("calib-warmup*"))


def test_capture_session_warms_up_and_files_the_warmup_apart(tmp_path, monkeypatch):
    monkeypatch.setattr(
        capture_space, "device_info", lambda: {"gpu": "NVIDIA H100 80GB HBM3", "driver_version": "x"}
    )
    monkeypatch.setattr(capture_space, "execute", fake_capture)
    # a clock that moves 1 s a reading: exactly one whole warm-up pass, however fast the fake
    # captures are (with the real clock a fast machine starts a second pass and cuts it short)
    ticks = itertools.count()
    monkeypatch.setattr(
        capture_space, "warm_up", functools.partial(warm_up, clock=lambda: float(next(ticks)))
    )
    out = tmp_path / "stage"
    man = capture_space.run(
        str(out), 60.0, only="calib/stream_r_256m_t2048", warmup_s=0.01, log=lambda s: None
    )
    paths = [c["path"] for c in man["captures"]]
    assert man["warmup"]["passes"] == 1
    n_warm = len(warmup_cases())
    assert n_warm and all(p.startswith("space/warmup") for p in paths[:n_warm])
    assert paths[n_warm:] == [f"space/{r}/calib/stream_r_256m_t2048.json" for r in ("run0", "run1")]
    # with --only and no --warmup: none
    man2 = capture_space.run(str(tmp_path / "s2"), 60.0, only="calib/stream_r_256m_t2048", log=lambda s: None)
    assert man2["warmup"]["passes"] == 0
    s = session_capture.file_session(out, data=tmp_path / "data")
    filed = sorted(p.name for p in s.space.iterdir())
    assert filed == ["calib", "calib-run1", "calib-warmup0", "manifest.json"]
    assert [p.stem for p in (s.space / "calib").glob("*.json")] == ["stream_r_256m_t2048"]
    # the fitted and scored sets never include the warm-up
    assert s.sets() == ["calib"]
    # cpu_phases finds the stored warm-up captures through the manifest's paths
    ps = cpu_phases.phases(s.label, data=tmp_path / "data")
    assert {cpu_phases.calib_pass(p.path) for p in ps} == {"warmup0", "run0", "run1"}


def test_calibrate_quick_warmup_out_of_range_is_one_line(tmp_path):
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "uvmlab", "calibrate", "--quick", "--warmup", "500", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr and "--warmup" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not any(tmp_path.iterdir())


def test_calib_pass_names():
    cp = cpu_phases.calib_pass
    assert cp("space/run0/calib/a.json") == "run0" and cp("space/run1/calib/a.json") == "run1"
    assert cp("space/warmup2/calib/a.json") == "warmup2" and cp("calib-warmup0/a.json") == "warmup0"
    assert cp("calib/a.json") == "run0"
    assert cp("space/run0/holdout/a.json") is None and cp("calib-run1x/a.json") is None


def test_warmup_training_swaps_in_the_first_warmup_pass(tmp_path):
    import shutil

    from uvmlab.validation.fidelity_results import warmup_training
    from uvmlab.validation.sessions import Session, latest

    src = latest("h100")
    s = Session("h100", "2099-01-01", tmp_path / "space" / "h100-2099-01-01", tmp_path / "repeats" / "x")
    shutil.copytree(src.space / "calib", s.space / "calib")
    assert warmup_training(s) is None  # no warm-up captures: nothing to compare
    wu = s.space / "calib-warmup0"
    wu.mkdir()
    for name in ("stream_r_256m_t2048", "stream_r_1g_t65536"):
        d = json.loads((s.space / "calib" / f"{name}.json").read_text())
        d["meta"]["first_pass"] = True
        (wu / f"{name}.json").write_text(json.dumps(d))
    train = warmup_training(s)
    assert train is not None
    assert sorted(t.name for t in train) == sorted(c.name for c in cases("calib"))
    swapped = {t.name for t in train if t.real.meta.get("first_pass")}
    assert swapped == {"stream_r_256m_t2048", "stream_r_1g_t65536"}  # the rest from the timed pass
