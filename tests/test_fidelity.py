"""Issue 13: per-kind scores, the measured design space, and measured trends as ratio tests.

The trend tests compare *ratios* of the model's operation times with the same ratios of the
stored H200 session (never absolute times): the model has to reproduce the direction and size
of what the GPU did when something changes (prefetching, access order, launch shape).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest

from uvmlab.results.result import Result
from uvmlab.validation import space
from uvmlab.validation.runs import load_dir, model_run, workload_of
from uvmlab.validation.score import Scores, rel, summarize
from uvmlab.validation.sessions import latest, session_profile_name


def _op(op, name, t, **kw):
    return {"op": op, "name": name, "time_ns": t, **kw}


def test_scores_group_operations_by_kind_and_never_mix_them():
    real = Result(
        workload="w",
        totals={"time_ns": 100_000_000},
        source="gpu",
        ops=[
            _op("cpu", "init", 60_000_000, bytes_htod=0),
            _op(
                "kernel", "k", 40_000_000, bytes_htod=256 << 20, gpu_fault_groups=50, gpu_faults_notified=5000
            ),
            _op("kernel", "tiny", 10_000),
        ],
    )
    model = Result(
        workload="w",
        totals={"time_ns": 100_000_000},
        source="model",
        ops=[
            _op("cpu", "init", 48_000_000, bytes_htod=0),  # 20 % fast
            _op(
                "kernel", "k", 52_000_000, bytes_htod=256 << 20, gpu_fault_groups=40, gpu_faults_notified=5500
            ),  # 30 % slow
            _op("kernel", "tiny", 99_999),
        ],
    )
    sc = Scores()
    sc.add(real, model)
    s = sc.summary()
    # the total is exact although both parts are wrong: exactly what per-kind scores expose
    assert s["totals"].median_abs == 0
    assert s["gpu_kernels"].n == 1 and s["gpu_kernels"].signed_median == pytest.approx(0.3)
    assert s["cpu_phases"].signed_median == pytest.approx(-0.2)
    assert s["gpu_kernels"].within_30 == 1 and s["gpu_kernels"].within_15 == 0
    assert s["fault_groups"].signed_median == pytest.approx(-0.2)
    # the same kernel's faults (GpuPageFaultCount on both sides): 10 % more faults, 20 % fewer
    # groups, so the batches are a third too large
    assert s["gpu_faults"].n == 1 and s["gpu_faults"].signed_median == pytest.approx(0.1)
    assert s["bytes"].n == 1 and s["bytes"].max_abs == 0
    assert rel(0, 0) == 0 and rel(1, 0) == float("inf")
    assert summarize([]).n == 0


def test_design_space_sets_are_fixed_and_disjoint():
    cal, train, hold = (space.cases(s) for s in space.SETS)
    assert len(cal) == 13 and len(train) == 100 and len(hold) == 59
    # the hold-out launch shapes and sizes are in no training case
    train_shapes = {c.threads for c in train if c.kind == "kernel"}
    train_sizes = {c.managed_bytes for c in train if c.kind == "kernel"}
    for c in hold:
        if c.kind == "kernel" and not c.args.get("prefetch"):
            assert c.threads not in train_shapes and c.managed_bytes not in train_sizes, c.name
    names = [c.name for c in train + hold]
    assert len(names) == len(set(names))
    # quick calibration stays small: far below any GPU's free memory, a few GiB in all
    assert space.total_bytes(cal) < 4 << 30 and max(c.managed_bytes for c in cal) <= 1 << 30


def test_kernel_case_carries_its_launch_shape():
    c = space.case_by_name("random_w_64m_t2048", "train")
    w = c.build()
    assert c.threads == 2048 and w.params["threads"] == 2048
    assert [o.op for o in w.ops] == ["cpu", "kernel", "kernel", "sync", "free"]  # writes: no read-back


@pytest.fixture(scope="module")
def h200():
    s = latest("h200")
    prof = session_profile_name(s)
    caps = {r.workload: r for d in ("calib", "train") for r in load_dir(s.set_dir(d))}

    def op_time(name: str, op: str, model: bool) -> float:
        real = caps[name]
        r = (
            model_run(real, workload_of(real, "space", real.meta["workload_set"]), "h200", prof)
            if model
            else real
        )
        return float(next(o["time_ns"] for o in r.ops if op in (o["name"], o["op"])))

    return op_time


def _ratio(f, a, b, op_a="touch", op_b="touch"):
    return f(a, op_a, True) / f(b, op_b, True), f(a, op_a, False) / f(b, op_b, False)


def test_demand_paging_is_several_times_slower_than_prefetching(h200):
    # measurements/README.md: H200 streams a CPU-filled buffer at 4.4 GB/s demand-paged, 30 GB/s
    # prefetched; here the same 1 GiB read kernel against the prefetch that replaces its faults
    model, real = _ratio(h200, "stream_r_1g_t65536", "stream_r_1g_t65536_pf", "touch", "prefetch")
    assert real > 3 and model > 3
    assert model == pytest.approx(real, rel=0.3)


def test_random_first_touch_costs_about_what_sequential_does(h200):
    # every page once, in random order or in order: the prefetcher turns both into whole-block
    # migrations, so the GPU takes 0.7-1.2x the sequential time; the model must agree in size
    model, real = [], []
    for size in ("256m", "1g"):
        for t in (2048, 8192, 65536, 262144):
            m, r = _ratio(h200, f"random_r_{size}_t{t}", f"stream_r_{size}_t{t}")
            model.append(m)
            real.append(r)
    assert max(real) < 1.5 and max(model) < 1.5
    assert statistics.median(m / r for m, r in zip(model, real, strict=True)) == pytest.approx(1, abs=0.25)


def test_few_threads_in_flight_slow_the_fault_path(h200):
    # the launch sweep: the same 256 MiB stream with 2,048 threads in flight against 65,536
    model, real = _ratio(h200, "stream_r_256m_t2048", "stream_r_256m_t65536")
    assert real > 1.15 and model > 1.15
    assert model == pytest.approx(real, rel=0.25)


def test_prefetch_on_versus_off(h200):
    model = (
        h200("stream_r_256m_t65536_pf", "prefetch", True) + h200("stream_r_256m_t65536_pf", "touch", True)
    ) / h200("stream_r_256m_t65536", "touch", True)
    real = (
        h200("stream_r_256m_t65536_pf", "prefetch", False) + h200("stream_r_256m_t65536_pf", "touch", False)
    ) / h200("stream_r_256m_t65536", "touch", False)
    assert real < 0.5 and model < 0.5
    assert model == pytest.approx(real, rel=0.3)


def test_capture_session_without_a_gpu_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "caps"
    r = subprocess.run(
        [sys.executable, "-m", "uvmlab.validation.capture_space", "--out", str(out), "--deadline", "1"],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_calibrate_quick_without_a_gpu_is_one_line(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "uvmlab", "calibrate", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 3 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not any(tmp_path.iterdir())


@pytest.mark.slow
def test_validate_json_prints_per_kind_figures():
    r = subprocess.run(
        [sys.executable, "-m", "uvmlab", "validate", "--json", "--gpu", "h100"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    sets = d["h100"]["profiles"]["same-machine"]["sets"]
    k = sets["suite-holdout"]["gpu_kernels"]
    assert set(k) == {"n", "median_abs", "within_30", "signed_median"} and k["n"] > 10


def test_kernel_launch_shape_travels_with_the_ir(tmp_path):
    from uvmlab.api import simulate
    from uvmlab.workload.fileformat import read_workload, write_workload

    w = space.kernel_case("k", "stream", 16 << 20, 2048, "read")
    assert {o.threads for o in w.ops if o.op == "kernel"} == {2048}
    path = tmp_path / "k.uvmw"
    write_workload(w, path)
    back = read_workload(path)
    assert back == w and [o.threads for o in back.ops if o.op == "kernel"] == [2048, 2048]
    # the op's launch shape is what the engine runs: the same as the run-wide concurrency
    a = simulate(w, gpu="h200", concurrency=65536)
    plain = space.kernel_case("k", "stream", 16 << 20, 0, "read")
    b = simulate(plain, gpu="h200", concurrency=2048)
    assert (
        a.ops[1]["time_ns"] == b.ops[1]["time_ns"] and a.ops[1]["fault_batches"] == b.ops[1]["fault_batches"]
    )
    c = simulate(plain, gpu="h200", concurrency=65536)
    assert c.ops[1]["fault_batches"] != a.ops[1]["fault_batches"]


def test_cupti_fault_groups_are_fault_batches():
    """The stored raw CUPTI records (H100, fault_groups.probe): one group per batch of at most
    uvm_perf_fault_batch_count serviced faults; with 16 K threads or more a group's record spans
    two batch intervals (its first fault was written while the batch before was serviced); the
    random cases lost their fault records (CUPTI's queue overflowed) and give no statistics."""
    import json

    from uvmlab.validation.fault_groups import PROBES, group_stats

    d = PROBES / "fault-groups-h100-2026-12-07"
    meta = json.loads((d / "meta.json").read_text())
    batch = int(meta["device"]["uvm_params"]["uvm_perf_fault_batch_count"])
    for threads in (2048, 16384, 65536, 262144):
        name = f"stream_r_256m_t{threads}"
        s = group_stats(d / f"{name}.npz", meta)
        assert s is not None and 100 <= s["faults_per_group"] <= batch, (name, s)
        if threads >= 16384:
            assert s["open_at_start"] == 2 and 1.5 < s["duration_us"] / s["start_gap_us"] < 2.5, (name, s)
            # each batch is what survived the flush of the one before: it opens just after the
            # batch two before it ends (its replay), long before the one just before ends
            assert 0 < s["after_end_2_us"] < 20 and s["after_end_1_us"] < -100, (name, s)
        else:  # few warps: a batch holds what one replay's warps report, written after it
            assert abs(s["after_end_1_us"]) < 5 and s["after_end_2_us"] > 100, (name, s)
    assert group_stats(d / "random_r_256m_t8192.npz", meta) is None


def test_fault_group_probe_without_a_gpu_is_one_error_and_writes_nothing(tmp_path, capsys):
    import importlib.util

    from uvmlab.validation import fault_groups

    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("a GPU backend is installed here")
    out = tmp_path / "probe"
    assert fault_groups.main([str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert not out.exists()
