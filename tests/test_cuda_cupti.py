"""CPU-only tests of CUPTI record parsing: synthetic records and a sample recorded on a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from uvmlab.cuda.cupti_capture import (
    CAUSE,
    CPU_FAULT,
    DTOH,
    GPU_FAULT,
    HTOD,
    REMOTE_MAP,
    THRASHING,
    THROTTLING,
    UM_RECORD_DTYPE,
    attribute,
    combine,
    cupti_totals,
    summarize,
)
from uvmlab.cuda.uvm_counters import counter_deltas

SAMPLE = Path(__file__).resolve().parents[1] / "uvmlab" / "cuda" / "data" / "cupti_sample.npz"
MiB = 1 << 20


def recs(*rows):
    """rows of (kind, value, start, flags)"""
    a = np.zeros(len(rows), dtype=UM_RECORD_DTYPE)
    for i, (k, v, t, f) in enumerate(rows):
        a[i]["kind"], a[i]["value"], a[i]["start"], a[i]["flags"] = k, v, t, f
        a[i]["address"] = 0x7F0000000000 + i * 4096
    return a


def test_attribution_by_window():
    windows = np.array([[100, 200], [300, 400], [500, 600]], dtype=np.uint64)
    r = recs(
        (HTOD, 1, 50, 2),
        (HTOD, 1, 100, 2),
        (HTOD, 1, 250, 2),
        (HTOD, 1, 400, 2),
        (HTOD, 1, 550, 2),
        (HTOD, 1, 700, 2),
    )
    idx, rule = attribute(r, windows)
    assert idx.tolist() == [0, 0, 0, 1, 2, -1]
    assert rule == {"before_first": 1, "between": 1, "after_last": 1}


def test_totals_by_cause_and_kind():
    r = recs(
        (HTOD, 64 << 10, 1, CAUSE["coherence"]),
        (HTOD, 960 << 10, 2, CAUSE["prefetch"]),
        (HTOD, 2 * MiB, 3, CAUSE["user"]),
        (HTOD, 4096, 4, CAUSE["access_counters"]),
        (DTOH, 4096, 5, CAUSE["coherence"]),
        (DTOH, 61440, 6, CAUSE["prefetch"]),
        (DTOH, 2 * MiB, 7, CAUSE["user"]),
        (DTOH, 2 * MiB, 8, CAUSE["eviction"]),
        (GPU_FAULT, 3, 9, 1),
        (GPU_FAULT, 1, 10, 2),
        (CPU_FAULT, 0x4005D0, 11, 0),
        (CPU_FAULT, 0x4005D0, 12, 0),
        (THRASHING, 8192, 13, 0),
        (THROTTLING, 0, 14, 0),
        (REMOTE_MAP, 2 * MiB, 15, 2),
    )
    t = cupti_totals(r)
    assert t["bytes_htod"] == (64 << 10) + (960 << 10) + 2 * MiB + 4096
    assert (
        t["bytes_htod_fault"],
        t["bytes_htod_prefetch"],
        t["bytes_htod_user"],
        t["bytes_htod_access_counter"],
    ) == (64 << 10, 960 << 10, 2 * MiB, 4096)
    assert t["bytes_dtoh_fault"] == 4096 + 61440  # CPU-fault prefetch pages count as fault
    assert t["bytes_dtoh_prefetch"] == 61440
    assert (t["bytes_dtoh_user"], t["bytes_dtoh_eviction"]) == (2 * MiB, 2 * MiB)
    assert t["bytes_htod_other"] == 0 and t["bytes_dtoh_other"] == 0
    assert (t["gpu_fault_groups"], t["gpu_fault_records"]) == (4, 2)
    assert t["cpu_faults"] == 2  # one record per fault; value is a PC, not a count
    assert (t["thrashing_events"], t["throttles"], t["remote_maps"]) == (2, 1, 1)
    assert t["remote_maps_thrashing"] == 1


def test_counters_win_and_the_shortfall_is_reported():
    c = cupti_totals(recs((HTOD, MiB, 1, CAUSE["coherence"]), (HTOD, MiB, 2, CAUSE["prefetch"])))
    ctr = {"bytes_htod": 5 * MiB, "bytes_dtoh": 0, "cpu_faults": 0, "gpu_faults_notified": 7}
    t, ch = combine(c, ctr)
    assert t["bytes_htod"] == 5 * MiB
    assert t["bytes_htod_unattributed"] == 3 * MiB
    assert ch["bytes_htod_missing"] == 3 * MiB and ch["records_complete"] is False
    t, ch = combine(c, dict(ctr, bytes_htod=2 * MiB))
    assert t["bytes_htod_unattributed"] == 0 and ch["records_complete"] is True
    t, ch = combine(c, None)  # CUPTI alone: nothing to check against
    assert t["bytes_htod"] == 2 * MiB and ch == {}


def test_counter_deltas():
    a = np.zeros(10, dtype=np.uint64)
    b = a.copy()
    b[0], b[1], b[2], b[9] = 10, 20, 3, 4
    assert counter_deltas(a, b) == {
        "bytes_htod": 10,
        "bytes_dtoh": 20,
        "cpu_faults": 3,
        "gpu_faults_notified": 4,
    }


def _check_adds_up(s):
    for key, total in s["totals"].items():
        assert sum(o["totals"].get(key, 0) for o in s["ops"]) == total, key
    for part in [s] + s["ops"]:
        t = part["totals"]
        assert t["bytes_htod"] == (
            t["bytes_htod_fault"]
            + t["bytes_htod_prefetch"]
            + t["bytes_htod_user"]
            + t["bytes_htod_access_counter"]
            + t["bytes_htod_other"]
            + t["bytes_htod_unattributed"]
        )
        assert t["bytes_dtoh"] == (
            t["bytes_dtoh_fault"]
            + t["bytes_dtoh_eviction"]
            + t["bytes_dtoh_user"]
            + t["bytes_dtoh_other"]
            + t["bytes_dtoh_unattributed"]
        )


def test_summary_adds_up_on_synthetic_run():
    r = recs(
        (HTOD, MiB, 150, CAUSE["coherence"]), (DTOH, MiB, 350, CAUSE["coherence"]), (CPU_FAULT, 1, 360, 0)
    )
    w = np.array([[100, 200], [300, 400]], dtype=np.uint64)
    d = [
        {"bytes_htod": 2 * MiB, "bytes_dtoh": 0, "cpu_faults": 0, "gpu_faults_notified": 3},
        {"bytes_htod": 0, "bytes_dtoh": MiB, "cpu_faults": 1, "gpu_faults_notified": 0},
    ]
    s = summarize(r, w, d)
    _check_adds_up(s)
    assert s["checks"]["bytes_htod_missing"] == MiB
    assert s["ops"][1]["checks"]["records_complete"] is True


@pytest.fixture(scope="module")
def sample():
    assert SAMPLE.exists(), f"recorded sample missing: {SAMPLE}"
    z = np.load(SAMPLE)
    info = json.loads(bytes(z["info"]).decode())
    return z["records"], z["windows"], info


def test_recorded_sample_adds_up(sample):
    records, windows, info = sample
    assert records.dtype == UM_RECORD_DTYPE and len(records) > 100
    s = summarize(records, windows, info["deltas"])
    _check_adds_up(s)
    # the driver's counters never see less than the records that got through
    for o in s["ops"]:
        assert o["checks"]["bytes_htod_missing"] >= 0
        assert o["checks"]["bytes_dtoh_missing"] >= 0
    assert s["checks"]["attribution"]["before_first"] == 0


def test_recorded_sample_prefetches_are_exact(sample):
    """prefetch_roundtrip: whole-buffer prefetches move the buffer in 2 MiB USER records,
    few enough that CUPTI loses none, so records and counters agree to the byte."""
    records, windows, info = sample
    s = summarize(records, windows, info["deltas"])
    ops = info["ops"]
    pf = [i for i, o in enumerate(ops) if o["op"] == "prefetch"]
    to_gpu, to_cpu = pf[0], pf[1]
    size = ops[to_gpu]["bytes"]
    assert s["ops"][to_gpu]["totals"]["bytes_htod_user"] == size
    assert s["ops"][to_gpu]["totals"]["bytes_htod"] == size
    assert s["ops"][to_cpu]["totals"]["bytes_dtoh_user"] == size
    assert s["ops"][to_gpu]["checks"]["records_complete"]
    assert s["ops"][to_cpu]["checks"]["records_complete"]
    k = [i for i, o in enumerate(ops) if o["name"] == "gpu_read"][0]
    assert s["ops"][k]["totals"]["bytes_htod"] == 0  # resident after the prefetch: no faults
    c = [i for i, o in enumerate(ops) if o["name"] == "cpu_read"][0]
    assert s["ops"][c]["totals"]["cpu_faults"] == 0
