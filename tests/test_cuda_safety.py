"""CPU-only tests of the real-GPU backend's safety rule and of its behaviour without a GPU."""

from __future__ import annotations

import sys

import pytest

from uvmlab.core.errors import GpuUnavailableError, UvmlabError
from uvmlab.cuda import runtime
from uvmlab.cuda.runtime import GpuMemoryRefusedError, check_fits, footprint
from uvmlab.workload.builder import WorkloadBuilder

GiB = 1 << 30


def test_half_of_free_memory_is_the_limit():
    check_fits("w", 4 * GiB, 0, 8 * GiB)  # exactly half: allowed
    with pytest.raises(GpuMemoryRefusedError, match="exceed 50% of the GPU's free memory"):
        check_fits("w", 4 * GiB + 1, 0, 8 * GiB)
    with pytest.raises(GpuMemoryRefusedError, match="no free memory"):
        check_fits("w", 1, 0, 0)


def test_device_memory_counts_towards_the_total():
    check_fits("w", 1 * GiB, 6 * GiB, 8 * GiB)
    with pytest.raises(GpuMemoryRefusedError, match="managed \\+ device"):
        check_fits("w", 1 * GiB, 7 * GiB, 8 * GiB)


def test_refusal_is_a_uvmlab_error_with_one_line():
    with pytest.raises(UvmlabError) as e:
        check_fits("big", 100 * GiB, 0, 80 * GiB)
    assert "\n" not in str(e.value) and "'big'" in str(e.value)


def test_footprint_rounds_each_allocation_to_va_blocks():
    b = WorkloadBuilder("w")
    b.alloc("a", "4KiB")
    b.alloc("b", "3MiB")
    b.alloc("d", "1MiB", kind="device")
    b.alloc("p", "1GiB", kind="pinned")  # host memory: not on the GPU
    managed, device = footprint(b.build().allocs)
    assert managed == (2 + 4) << 20
    assert device == 2 << 20


def test_executor_refuses_before_touching_the_gpu(monkeypatch):
    """The refusal happens on the numbers alone: a fake GPU with 4 GiB free."""
    from uvmlab.cuda import executor

    class FakeRuntime:
        @staticmethod
        def getDeviceCount():
            return 1

        @staticmethod
        def memGetInfo():
            return 4 * GiB, 80 * GiB

    class FakeCupy:
        class cuda:
            runtime = FakeRuntime

    class FakeGpu:
        def __init__(self, device):
            self.cp = FakeCupy

    monkeypatch.setattr(executor, "_Gpu", FakeGpu)
    b = WorkloadBuilder("too_big")
    a = b.alloc("a", "3GiB")
    b.kernel("k", [b.run(a)])
    with pytest.raises(GpuMemoryRefusedError, match="too_big"):
        executor.execute(b.build())


@pytest.fixture
def no_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError


def _small():
    b = WorkloadBuilder("w")
    a = b.alloc("a", "2MiB")
    b.kernel("k", [b.run(a)])
    return b.build()


def test_no_gpu_every_entry_point_says_so_in_one_line(no_cupy, tmp_path):
    from uvmlab.cuda import executor
    from uvmlab.validation import calibrate, suite

    calls = [
        runtime.load_cuda,
        runtime.device_info,
        lambda: executor.execute(_small()),
        lambda: calibrate.run_benchmarks(2 << 20),
        lambda: calibrate.calibrate(str(tmp_path), "x"),
        lambda: suite.run_suite(str(tmp_path), ["pingpong"]),
    ]
    for call in calls:
        with pytest.raises(GpuUnavailableError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg and "CuPy" in msg
    assert runtime.gpu_available() is False


def test_cli_entry_points_exit_nonzero_without_gpu(no_cupy, tmp_path, capsys, monkeypatch):
    from uvmlab.cli import main

    codes = []
    for argv in (
        ["capture", "--out", str(tmp_path), "--only", "pingpong"],
        ["calibrate", "--out", str(tmp_path), "--name", "x"],
    ):
        monkeypatch.setattr(sys, "argv", ["uvmlab", *argv])
        with pytest.raises(SystemExit) as e:
            main()
        codes.append(e.value.code)
    assert codes == [3, 3]
    err = capsys.readouterr().err
    assert err.count("uvmlab: error:") == 2


def test_cupti_capture_without_cupti(monkeypatch):
    from uvmlab.cuda.cupti_capture import CuptiCapture

    monkeypatch.setitem(sys.modules, "cupti", None)
    with pytest.raises(GpuUnavailableError, match="cupti"):
        CuptiCapture()
