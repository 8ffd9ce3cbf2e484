"""Issue 13, item 5: thrashing counters are scored against the median of the stored runs of their
case on the same GPU kind (``uvmlab/validation/references.py``), not against one run.

A tiny synthetic data tree: one ping-pong case with runs on two machine starts (plus runs that
must not be pooled: another GPU, other module parameters), one accessed-by case with only the
scored run. No model run: the model's side is a Result built here.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from uvmlab.results.result import Result
from uvmlab.validation import kinds
from uvmlab.validation.references import references, stored_runs
from uvmlab.validation.score import THRASH_KEYS, Reference, Score, Scores, reference
from uvmlab.validation.sessions import DATA, Session

TEMPLATE = DATA / "space" / "h100-2026-12-07b" / "holdout" / "pingpong_4m_r16.json"


def _capture(path: Path, name: str, thrashing: int, throttles: int = 0, **meta: object) -> None:
    d = copy.deepcopy(json.loads(TEMPLATE.read_text()))
    d["workload"] = name
    d["meta"]["suite_name"] = name
    d["meta"].update(meta)
    d["totals"].update(thrashing_events=thrashing, throttles=throttles, remote_maps=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(d))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    own = tmp_path / "space" / "h100-2099-01-01" / "holdout"
    _capture(own / "pingpong_x.json", "pingpong_x", 16, 151)
    _capture(own / "accessed_by_y.json", "accessed_by_y", 0, 0)
    # same start, four repeats; another start, two
    for i, (t, th) in enumerate([(176, 274), (48, 323), (304, 359), (96, 215)]):
        _capture(
            tmp_path / f"pingpong-repeats/h100-2099-01-01/rep{i}/holdout/pingpong_x.json", "pingpong_x", t, th
        )
    for i, (t, th) in enumerate([(608, 223), (32, 288)]):
        _capture(
            tmp_path / f"pingpong-repeats/h100-2099-01-01c/rep{i}/holdout/pingpong_x.json",
            "pingpong_x",
            t,
            th,
        )
    # never pooled: another GPU kind, other module parameters
    _capture(tmp_path / "pingpong-repeats/h200-2099-01-01/rep0/holdout/pingpong_x.json", "pingpong_x", 9999)
    params = dict(json.loads(TEMPLATE.read_text())["meta"]["uvm_params"], uvm_perf_thrashing_lapse_usec="100")
    _capture(
        tmp_path / "pingpong-repeats/h100-2099-01-01/rep9/holdout/pingpong_x.json",
        "pingpong_x",
        9999,
        uvm_params=params,
    )
    return tmp_path


def _own(tree: Path, name: str) -> tuple[Result, Path]:
    from uvmlab.cuda.adapter import load_real

    p = tree / "space" / "h100-2099-01-01" / "holdout" / f"{name}.json"
    return load_real(p), p


def _model(real: Result, **totals: int) -> Result:
    return dataclasses.replace(real, totals={**real.totals, **totals}, source="model")


def test_reference_is_the_median_of_every_compatible_run_of_the_case(tree):
    real, own = _own(tree, "pingpong_x")
    refs = references(real, THRASH_KEYS, "h100", "holdout", own, tree)
    t = refs["thrashing_events"]
    # 7 runs: the scored one (16), four repeats of its start, two of another start; the H200 run
    # and the run with another lapse are left out
    assert (t.n, t.starts, t.single) == (7, 2, 16)
    assert t.median == 96 and (t.lo, t.hi) == (16, 608)
    assert t.q1 <= t.median <= t.q3
    assert refs["throttles"].median == 274 and refs["throttles"].single == 151
    # a case with only its own run keeps it, and says so
    real_y, own_y = _own(tree, "accessed_by_y")
    ry = references(real_y, THRASH_KEYS, "h100", "holdout", own_y, tree)["remote_maps"]
    assert ry.n == 1 and not ry.from_repeats and ry.spread() == "single run"


def test_scores_use_the_reference_and_keep_the_single_run(tree):
    real, own = _own(tree, "pingpong_x")
    refs = references(real, THRASH_KEYS, "h100", "holdout", own, tree)
    model = _model(real, thrashing_events=192, throttles=274)
    sc = Scores()
    sc.add(real, model, refs)
    by = {x.what: x for x in sc.by_kind["thrashing"]}
    assert by["thrashing_events"].real == 96 and by["thrashing_events"].err == pytest.approx(1.0)
    assert by["thrashing_events"].err_single == pytest.approx(11.0)  # 192 against the one run's 16
    assert by["throttles"].err == 0
    assert sc.summary()["thrashing"].median_abs == pytest.approx(0.5)
    assert sc.thrashing_single().median_abs == pytest.approx((11.0 + 274 / 151 - 1) / 2)
    assert sc.thrashing_reference() == "median of repeats"
    # without stored repeats the same capture is scored against itself
    sc1 = Scores()
    sc1.add(real, model)
    assert sc1.thrashing_reference() == "single run"
    assert sc1.summary()["thrashing"].median_abs == sc1.thrashing_single().median_abs


def test_new_repeats_of_another_gpu_are_picked_up_without_code_changes(tree):
    own = tree / "space" / "h200-2099-01-01" / "holdout" / "pingpong_x.json"
    _capture(own, "pingpong_x", 80)
    from uvmlab.cuda.adapter import load_real

    real = load_real(own)
    # the stored H200 repeat (9999, same start) and one more start filed the same way
    _capture(tree / "pingpong-repeats/h200-2099-01-02/rep0/holdout/pingpong_x.json", "pingpong_x", 40)
    stored_runs.cache_clear()
    t = references(real, THRASH_KEYS, "h200", "holdout", own, tree)["thrashing_events"]
    assert (t.n, t.starts, t.median) == (3, 2, 80)


def test_score_set_pools_the_stored_runs_and_json_round_trips(tree, monkeypatch):
    real, _own_path = _own(tree, "pingpong_x")
    model = _model(real, thrashing_events=192, throttles=274)
    monkeypatch.setattr(kinds, "pairs", lambda *a, **k: iter([(real, model, None)]))
    s = Session(
        "h100", "2099-01-01", tree / "space" / "h100-2099-01-01", tree / "repeats" / "h100-2099-01-01"
    )
    sc = kinds.score_set(s, "holdout", "h100-pcie5", data=tree)
    assert [x.ref.n for x in sc.by_kind["thrashing"] if x.ref] == [7, 7]
    d = json.loads(json.dumps(kinds.thrashing_json(sc)))
    assert d["reference"] == "median of repeats"
    assert d["single_run"]["median_abs"] == pytest.approx(sc.thrashing_single().median_abs, abs=1e-4)
    back = [Score.from_dict(x) for x in d["counters"]]
    assert back == sc.by_kind["thrashing"]
    r = reference(5, [])
    assert Reference.from_dict(json.loads(json.dumps(r.as_dict()))) == r and r.n == 1
