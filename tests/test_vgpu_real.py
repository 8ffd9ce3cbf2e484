"""The stored real co-location capture and the model's best-effort mode against it."""

from __future__ import annotations

from pathlib import Path

import pytest

from uvmlab.vgpu.realcheck import compare, gpu_of, host_gap_ns, load_capture

CAPS = sorted((Path(__file__).resolve().parent.parent / "uvmlab" / "vgpu" / "data").glob("colocate-*.json"))


@pytest.mark.parametrize("path", CAPS, ids=lambda p: p.stem)
def test_capture_is_stamped_and_complete(path):
    cap = load_capture(path)
    dev = cap["device"]
    assert dev["gpu"].startswith("NVIDIA") and dev["driver_version"] and dev["date"]
    assert set(cap["alone_before"]) == set(cap["workloads"]) == set(cap["alone_after"])
    for cfg in cap["colocated"]:
        assert len(cfg["results"]) == len(cfg["tenants"]) in (2, 4)
        for r in cfg["results"]:
            assert "error" not in r and len(r["rep_wall_ns"]) == cap["reps"]
    for a in cap["alone_before"].values():
        assert 0 <= host_gap_ns(a) < a["total_ns"] / cap["reps"]


def test_both_hopper_gpus_are_captured():
    assert {gpu_of(load_capture(p)) for p in CAPS} >= {"h100", "h200"}


@pytest.mark.slow
@pytest.mark.parametrize("path", CAPS, ids=lambda p: p.stem)
def test_more_processes_slow_stream_more_real_and_model(path):
    """The measured trend as ratios, on every stored GPU: four copies of a fault-heavy workload
    slow each other more than two do, on the GPU and in the model; two copies are matched within
    25 %; the overlap bound slows least, the slice model most, the shared fault buffer between."""
    cap = load_capture(path)
    rows = compare(cap, only=[["stream"] * 2, ["stream"] * 4], reps=3)
    two = [r for r in rows if r["n"] == 2]
    four = [r for r in rows if r["n"] == 4]
    mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    assert mean(four, "real_slowdown") > mean(two, "real_slowdown") > 1.0
    assert mean(four, "model_slowdown") > mean(two, "model_slowdown") > 1.0
    assert mean(two, "model_slowdown") == pytest.approx(mean(two, "real_slowdown"), rel=0.25)
    # The overlap variant (fault stalls do not hold the slice) never slows more than the
    # time-slice one. Whether the real slowdowns lie between the two depends on the profile: with
    # the per-kind fitted profiles (issue 13) two copies measure 1.29x against 1.20x in the model.
    for rs in (two, four):
        assert mean(rs, "model_overlap_slowdown") <= mean(rs, "model_slowdown")
        # one fault buffer for every VA space (the driver's) lies between the two bounds
        assert mean(rs, "model_overlap_slowdown") <= mean(rs, "model_shared_slowdown")
        assert mean(rs, "model_shared_slowdown") <= mean(rs, "model_slowdown") * 1.01
    # and, for four fault-heavy processes, it is at least as near the real slowdown as the slice
    # model (2 points of slack: on the H100 both are within about 5 %, on opposite sides)
    err = lambda k: abs(mean(four, k) / mean(four, "real_slowdown") - 1)  # noqa: E731
    assert err("model_shared_slowdown") <= err("model_slowdown") + 0.02
