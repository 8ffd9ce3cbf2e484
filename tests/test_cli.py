"""The command line as a user meets it: tables, JSON, and one-line errors for bad input."""

import json
import subprocess
import sys

import pytest

from uvmlab.core.counters import TOTAL_KEYS


def uvmlab(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "uvmlab", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def assert_one_line_error(r, *needles):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_run_json_has_the_canonical_keys():
    r = uvmlab("run", "random:size=16MiB,seed=1", "--json")
    assert r.returncode == 0, r.stderr
    totals = json.loads(r.stdout)
    assert list(totals) == list(TOTAL_KEYS)
    assert totals["bytes_htod"] == totals["bytes_htod_fault"] + totals["bytes_htod_prefetch"]


@pytest.mark.slow  # subprocesses of the CLI or long model runs
def test_run_param_changes_behaviour():
    on = json.loads(uvmlab("run", "random:size=16MiB", "--json").stdout)
    off = json.loads(
        uvmlab("run", "random:size=16MiB", "--json", "--param", "uvm_perf_prefetch_enable=0").stdout
    )
    assert off["bytes_htod_prefetch"] == 0 < on["bytes_htod_prefetch"]


@pytest.mark.slow  # subprocesses of the CLI or long model runs
def test_run_saves_result_and_trace_roundtrip(tmp_path):
    trace = tmp_path / "w.uvmw"
    assert uvmlab("trace", "write", "stride:size=8MiB", str(trace)).returncode == 0
    info = uvmlab("trace", "info", str(trace))
    assert info.returncode == 0 and "stride" in info.stdout
    out = tmp_path / "r.json"
    r = uvmlab("run", str(trace), "--out", str(out))
    assert r.returncode == 0, r.stderr
    from uvmlab.results.result import Result

    assert Result.load(out).workload == "stride"


@pytest.mark.slow  # subprocesses of the CLI or long model runs
@pytest.mark.parametrize(
    "args,needles",
    [
        (["run", "random:size=-3GiB"], ["size"]),
        (["run", "random:size=lots"], ["size"]),
        (["run", "randon:size=1GiB"], ["random"]),
        (["run", "random:sise=1GiB"], ["size"]),
        (["run", "nosuchfile.uvmw"], ["nosuchfile.uvmw"]),
        (
            ["run", "random:size=8MiB", "--param", "uvm_perf_prefetch_treshold=40"],
            ["uvm_perf_prefetch_threshold"],
        ),
        (["run", "random:size=8MiB", "--param", "uvm_perf_prefetch_threshold=400"], ["0..100"]),
        (["run", "random:size=8MiB", "--gpu-memory", "lots"], ["GPU memory"]),
        (["run", "random:size=8MiB", "--gpu", "h300"], ["h200"]),
        (["trace", "info", "missing.uvmw"], ["missing.uvmw"]),
        (["run", "random:size=8MiB", "--gpu-memory"], ["--gpu-memory"]),
        (["nosuchcommand"], ["nosuchcommand"]),
    ],
)
def test_bad_input_gives_one_line_error(args, needles):
    assert_one_line_error(uvmlab(*args), *needles)


@pytest.mark.slow  # subprocesses of the CLI or long model runs
def test_corrupt_and_truncated_trace_files(tmp_path):
    good = tmp_path / "g.uvmw"
    assert uvmlab("trace", "write", "random:size=4MiB", str(good)).returncode == 0
    data = good.read_bytes()
    bad = tmp_path / "bad.uvmw"
    bad.write_bytes(data[: len(data) // 2])
    assert_one_line_error(uvmlab("run", str(bad)), "bad.uvmw")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(flipped))
    assert_one_line_error(uvmlab("trace", "info", str(bad)), "bad.uvmw")


def test_output_file_is_not_clobbered_by_a_failed_run(tmp_path):
    out = tmp_path / "r.json"
    out.write_text("previous")
    r = uvmlab("run", "random:size=bad", "--out", str(out))
    assert r.returncode != 0
    assert out.read_text() == "previous"


def test_fatal_fault_exits_nonzero_with_a_message(tmp_path):
    from uvmlab.workload.builder import WorkloadBuilder
    from uvmlab.workload.fileformat import write_workload

    b = WorkloadBuilder("dev")
    d = b.alloc("d", "2MiB", kind="device")
    b.cpu("oops", [b.run(d, 0, 1)])
    path = tmp_path / "dev.uvmw"
    write_workload(b.build(), path)
    r = uvmlab("run", str(path))
    assert r.returncode == 1
    assert "FATAL" in r.stdout and "device memory" in r.stdout


@pytest.mark.slow  # subprocesses of the CLI or long model runs
def test_demo_quick_prints_tables():
    r = uvmlab("demo", "--quick")
    assert r.returncode == 0, r.stderr
    assert "Oversubscription" in r.stdout and "stream" in r.stdout


def test_listing_commands():
    assert "vecsearch" in uvmlab("workloads").stdout
    assert "uvm_perf_fault_replay_policy" in uvmlab("params").stdout


@pytest.mark.slow  # subprocesses of the CLI or long model runs
def test_run_with_a_policy_changes_behaviour():
    base = json.loads(uvmlab("run", "random:size=16MiB", "--json").stdout)
    none = uvmlab("run", "random:size=16MiB", "--json", "--policy", "prefetch-none")
    assert none.returncode == 0, none.stderr
    assert json.loads(none.stdout)["bytes_htod_prefetch"] == 0 < base["bytes_htod_prefetch"]
    assert_one_line_error(uvmlab("run", "random:size=16MiB", "--policy", "lruu"), "lru")
