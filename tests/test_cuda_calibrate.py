"""CPU-only tests of the calibration fit: the committed profiles follow from the committed raw
measurements, and every benchmark workload is one the executor accepts."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

import pytest

from uvmlab.cuda import calibrate
from uvmlab.cuda.plan import plan_workload
from uvmlab.timing.cost_model import CostProfile, load_profile

DATA = Path(__file__).resolve().parents[1] / "uvmlab" / "cuda" / "data" / "calibration"
NAMES = ["h100-pcie5-measured", "h200-pcie5-measured"]
NUMERIC = [f.name for f in fields(CostProfile) if f.name not in ("name", "gpu", "sources")]


@pytest.mark.parametrize("name", NAMES)
def test_committed_profile_is_the_fit_of_its_raw_file(name, tmp_path):
    res = calibrate.refit(str(DATA / f"{name}.raw.json"), str(tmp_path), name)
    committed = load_profile(name)
    refitted = CostProfile.from_dict(json.loads((tmp_path / f"{name}.json").read_text()))
    assert committed == refitted
    assert set(res["spread"]) == set(NUMERIC)


@pytest.mark.parametrize("name", NAMES)
def test_every_constant_is_measured_and_explained(name):
    p = load_profile(name)
    for k in NUMERIC:
        v = getattr(p, k)
        assert math.isfinite(v) and v >= 0, k
        assert k in p.sources, f"{k} has no source"
    # physical sanity: nothing migrates faster than the link carries pinned copies
    assert p.prefetch_htod_gbps <= 1.05 * p.pinned_htod_gbps
    assert p.prefetch_dtoh_gbps <= 1.05 * p.pinned_dtoh_gbps
    assert "_reproducibility" in p.sources and "_measured" in p.sources


@pytest.mark.parametrize("name", NAMES)
def test_raw_runs_counted_every_byte(name):
    runs = json.loads((DATA / f"{name}.raw.json").read_text())["runs"]
    assert len(runs) >= 2
    for r in runs:
        raw = r["raw"]
        size = raw["prefetch"]["bytes_full"]
        assert raw["prefetch"]["htod_full_bytes"] == [size] * len(raw["prefetch"]["htod_full_ns"])
        assert raw["prefetch"]["dtoh_full_bytes"] == [size] * len(raw["prefetch"]["dtoh_full_ns"])
        # rand2m: each isolated fault moved one 64 KiB big page
        r2 = raw["rand2m_serial"]
        assert all(b == r2["touches"] * calibrate.BIG_PAGE for b in r2["bytes_htod"])


def test_benchmark_workloads_plan():
    size = 8 << 20
    for w in (calibrate.wl_prefetch(size), calibrate.wl_random(size, 512),
              calibrate.wl_random(size, 1), calibrate.wl_stream_back(size),
              calibrate.wl_first_touch(size), calibrate.wl_remote(size),
              calibrate.wl_pingpong(size)):
        assert plan_workload(w)
