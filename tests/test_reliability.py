"""Hostile input and hostile policies (docs/security.md): nothing crashes, hangs, escapes or
gets overwritten. Special files are made here, in the test's own directory — never the
machine's /dev/null."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import MiB

from uvmlab.api import simulate
from uvmlab.core.errors import RunInterrupted, UvmlabError, WorkloadError
from uvmlab.core.output import OutputError, check_output, write_atomic
from uvmlab.lab.sweep.runner import run_sweep
from uvmlab.lab.sweep.spec import SweepSpec
from uvmlab.policy import Policy
from uvmlab.policy.loader import build_hooks
from uvmlab.workload.bounds import MAX_PROCESSORS
from uvmlab.workload.builder import WorkloadBuilder
from uvmlab.workload.ir import Alloc, AllocKind, KernelOp, PrefetchOp

ROOT = Path(__file__).resolve().parents[1]


def _chardev(path: Path) -> bool:
    """A character device with the null device's numbers, in our own directory (root only)."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        return False
    return True


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "uvmlab", *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env
    )


# ---- output paths ------------------------------------------------------------------------------
@pytest.mark.slow  # a fresh interpreter
def test_run_out_to_a_device_node_leaves_it_a_device_and_fails_before_work(tmp_path: Path) -> None:
    node = tmp_path / "null"
    if not _chardev(node):
        pytest.skip("mknod needs root")
    t0 = time.monotonic()
    r = _cli("run", "stream:size=64MiB", "--out", str(node), cwd=tmp_path)
    assert r.returncode != 0
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "is a character device" in lines[0], r.stderr
    assert stat.S_ISCHR(os.lstat(node).st_mode)  # still the device, not a regular file
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    assert time.monotonic() - t0 < 120


def test_fifo_directory_and_under_a_file_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "file.txt").write_text("keep\n")
    for p, why in (
        (fifo, "FIFO"),
        (tmp_path, "directory"),
        (tmp_path / "file.txt" / "x.json", "(?i)not a directory"),
        (tmp_path / ("y" * 300 + ".json"), "too long"),
    ):
        with pytest.raises(OutputError, match=why):
            write_atomic(p, b"data")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert (tmp_path / "file.txt").read_text() == "keep\n"


def test_inputs_that_are_fifos_are_refused_not_waited_on(tmp_path: Path) -> None:
    from uvmlab.driver.params import Params
    from uvmlab.timing.cost_model import load_profile

    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # no writer ever comes: opening it to read would block forever
    with pytest.raises(UvmlabError, match="not a regular file"):
        Params.from_toml(fifo)
    with pytest.raises(UvmlabError, match="not a regular file"):
        load_profile(str(fifo))
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_streamed_timeline_follows_the_output_rules(tmp_path: Path) -> None:
    from uvmlab.results.perfetto import write_timeline

    res = simulate("stream:size=2MiB,passes=1", events=True)
    assert write_timeline(res, tmp_path / "new" / "deep" / "t.json") > 0  # parents are made
    (tmp_path / "target.json").write_text("old\n")
    os.symlink("target.json", tmp_path / "link.json")
    write_timeline(res, tmp_path / "link.json")
    assert (tmp_path / "link.json").is_symlink()  # resolved, not replaced
    assert json.loads((tmp_path / "target.json").read_text())["traceEvents"]
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OutputError, match="FIFO"):
        write_timeline(res, tmp_path / "fifo")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)


def test_symlink_is_resolved_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to("real.json")
    write_atomic(link, b"new")
    assert link.is_symlink() and target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # replacing keeps the mode


def test_dash_is_stdout_only_where_allowed(tmp_path: Path, capsysbinary) -> None:
    write_atomic("-", b"hello", stdout=True)
    assert capsysbinary.readouterr().out == b"hello"
    with pytest.raises(OutputError, match="stdout"):
        check_output("-")
    assert not (tmp_path / "-").exists()


@pytest.mark.slow  # a fresh interpreter
def test_bad_output_fails_before_the_simulation(tmp_path: Path) -> None:
    """--out naming a directory fails at once: the hour of simulation is not lost."""
    r = _cli("run", "stream:size=4GiB,passes=50", "--out", str(tmp_path), cwd=tmp_path)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1
    assert "directory" in r.stderr


@pytest.mark.slow  # a fresh interpreter
def test_a_figure_with_a_wrong_suffix_is_refused_before_the_comparison_runs(tmp_path: Path) -> None:
    r = _cli("compare", "random:size=2MiB", "--policies", "mru,default", "--plot", "out.uvmw", cwd=tmp_path)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode != 0 and len(lines) == 1 and "figure format" in lines[0], r.stderr
    assert "running" not in r.stderr and not r.stdout.strip()  # refused before anything ran


# ---- the guard ---------------------------------------------------------------------------------
class _Custom(BaseException):
    pass


class _Shifty(int):
    """Passes an int check, then lies about its value on every use."""

    def __index__(self):
        return 10**9

    def __int__(self):
        return 10**9

    def __eq__(self, o):
        return True

    def __hash__(self):
        return 0


class _Raises(Policy):
    name = "raises"
    params = {"what": "kbd"}

    def decide_replay(self, ctx):
        exc = {
            "kbd": KeyboardInterrupt(),
            "exit": SystemExit(0),
            "genexit": GeneratorExit(),
            "custom": _Custom(),
        }[self.what]
        raise exc


@pytest.mark.parametrize("what", ["kbd", "exit", "genexit", "custom"])
def test_every_base_exception_ejects(what: str) -> None:
    r = simulate("random:size=8MiB", policies=_Raises(what=what))
    assert r.totals["policy_ejections"] == 1
    (e,) = r.meta["policy_ejected"]
    assert e["hook"] == "decide_replay" and "raised" in e["reason"]


class _Value(Policy):
    name = "value"
    params = {"v": "big"}

    def chunk_used(self, ctx):
        if self.v == "big":
            return 2**70
        if self.v == "shifty":
            return _Shifty(1)  # its stored value, 1 (BYPASS), is what is checked and used
        if self.v == "evil":

            class Evil:
                def __int__(self):
                    raise RuntimeError("no")

            return Evil()
        return float("nan")


@pytest.mark.parametrize("v, ejected", [("big", True), ("evil", True), ("nan", True), ("shifty", False)])
def test_decisions_are_coerced_once(v: str, ejected: bool) -> None:
    r = simulate("stream:size=24MiB,passes=2", gpu_memory="8MiB", check_invariants=True, policies=_Value(v=v))
    assert (r.totals["policy_ejections"] == 1) is ejected, r.meta["policy_ejected"]


class _Forger(Policy):
    name = "forger"

    def chunk_used(self, ctx):
        for attempt in (
            lambda: setattr(ctx, "block", -1),
            lambda: ctx._guard,
            lambda: ctx._view.allocs.clear(),
        ):
            try:
                attempt()
            except (AttributeError, TypeError):
                continue
            return 0
        raise RuntimeError("nothing reachable")


def test_contexts_are_read_only_and_counters_unforgeable() -> None:
    r = simulate("stream:size=24MiB,passes=2", gpu_memory="8MiB", check_invariants=True, policies=_Forger())
    assert r.totals["policy_ejections"] == 1 == len(r.meta["policy_ejected"])
    assert "nothing reachable" in r.meta["policy_ejected"][0]["reason"]


class _Signals(Policy):
    name = "signals"

    def decide_replay(self, ctx):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return 0


def test_a_hook_that_changes_signal_handlers_is_ejected_and_they_are_restored() -> None:
    before = signal.getsignal(signal.SIGINT)
    r = simulate("random:size=8MiB", policies=_Signals())
    assert r.totals["policy_ejections"] == 1 and "SIGINT" in r.meta["policy_ejected"][0]["reason"]
    assert signal.getsignal(signal.SIGINT) is before


class _UserCtrlC(Policy):
    """Stands in for the user: a real SIGINT arrives while a hook runs."""

    name = "ctrl-c"

    def decide_replay(self, ctx):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)
        return 0


def test_a_real_ctrl_c_stops_the_run_and_keeps_what_was_done() -> None:
    with pytest.raises(RunInterrupted) as got:
        simulate("random:size=8MiB", policies=_UserCtrlC())
    res = got.value.result
    assert res.meta["interrupted"] and res.totals["policy_ejections"] == 0
    assert res.totals["gpu_faults"] > 0  # the faults serviced before the interrupt are counted


# ---- isolation ---------------------------------------------------------------------------------
HOSTILE = """
import os, time
from uvmlab.policy import Policy


class P(Policy):
    def decide_replay(self, ctx):
        kind = {kind!r}
        if kind == "swallow":
            while True:
                try:
                    time.sleep(0.05)
                except BaseException:
                    pass
        if kind == "file":
            open("escaped.txt", "w").write("x")
        if kind == "stop":
            import signal
            os.kill(os.getpid(), signal.SIGSTOP)
        if kind == "exit":
            os._exit(0)
        if kind == "fork":  # as root too: RLIMIT_NPROC does not hold root, the process drops it
            if os.fork() == 0:
                time.sleep(600)
        if kind == "delattr":  # its snapshot is read-only as an in-process context is
            del ctx.faults
        return 0
"""


@pytest.mark.parametrize("kind", ["swallow", "file", "stop", "exit", "fork", "delattr"])
def test_isolated_hostile_hooks_are_ejected(tmp_path: Path, kind: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hostile.py").write_text(HOSTILE.format(kind=kind))
    hooks = build_hooks(str(tmp_path / "hostile.py"), isolate=True, hard_limit_s=2.0)
    r = simulate("random:size=8MiB", policies=hooks, check_invariants=True)
    assert r.totals["policy_ejections"] == 1, r.meta
    assert not (tmp_path / "escaped.txt").exists()
    assert all(s.policy.proc.poll() is not None for s in hooks.slots)  # its process is gone


def test_isolated_policy_decides_like_the_in_process_one() -> None:
    a = simulate("stream:size=24MiB,passes=2", gpu_memory="8MiB", policies="mru")
    b = simulate("stream:size=24MiB,passes=2", gpu_memory="8MiB", policies="mru", isolate=True)
    assert a.totals == b.totals and b.totals["policy_ejections"] == 0


# ---- the IR validator bounds the engine --------------------------------------------------------
def _one_kernel(**kw) -> WorkloadBuilder:
    b = WorkloadBuilder("w")
    a = b.alloc("a", kw.pop("size", "4MiB"), kw.pop("kind", "managed"))
    b.kernel("k", [b.run(a, stride=kw.pop("stride", 1), count=kw.pop("count", None))], **kw)
    return b


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: _one_kernel(compute_ns=(1 << 63) - 1).build(), "compute time"),
        (lambda: _one_kernel(gpu=MAX_PROCESSORS).build(), "GPU"),
        (lambda: _one_kernel(size=1 << 50).build(), "address space"),
    ],
)
def test_out_of_range_values_are_workload_errors(make, match: str) -> None:
    with pytest.raises(WorkloadError, match=match):
        make()


def test_names_must_be_valid_unicode() -> None:
    b = WorkloadBuilder("w")
    b.alloc("a\ud800", "4MiB")
    with pytest.raises(WorkloadError, match="surrogate"):
        b.build()


@pytest.mark.parametrize(
    "case, match",
    [
        ("processor", "GPUs"),
        ("device", "device allocations"),
        ("spin", "touches of work"),
    ],
)
def test_what_the_machine_cannot_run_fails_before_running(case: str, match: str) -> None:
    b = _one_kernel()
    w = b.build()
    if case == "processor":
        w.ops.append(PrefetchOp(0, 2, 0, 1))
    elif case == "device":
        w.allocs.append(Alloc("d", 200 << 30, AllocKind.DEVICE))
    else:
        w.segments = np.concatenate([w.segments, w.segments[:1]])
        w.segments["stride"][-1] = 0
        w.segments["count"][-1] = 1 << 62
        w.ops.append(KernelOp("spin", 1, len(w.segments) - 1, len(w.segments), 0))
    t0 = time.monotonic()
    with pytest.raises(UvmlabError, match=match):
        simulate(w, gpus=1)
    assert time.monotonic() - t0 < 60


def test_max_touches_raises_the_bound() -> None:
    w = _one_kernel(count=1 << 14, stride=0).build()
    with pytest.raises(UvmlabError, match="max-touches"):
        simulate(w, max_touches=1000)
    assert simulate(w, max_touches=1 << 20).totals["touches"] == 1 << 14


def test_a_header_of_millions_of_ops_is_refused_before_parsing(tmp_path: Path) -> None:
    from uvmlab.workload.fileformat import read_workload, write_workload

    b = _one_kernel()
    w = b.build()
    write_workload(w, tmp_path / "w.uvmw")
    data = (tmp_path / "w.uvmw").read_bytes()
    # splice 2 Mi sync ops into the header and fix the lengths and checksum
    import struct
    import zlib

    hlen = struct.unpack_from("<Q", data, 12)[0]
    header = json.loads(data[20 : 20 + hlen])
    header["ops"] += [{"op": "sync"}] * (2 << 20)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((-(20 + len(text))) % 8)
    body = data[:12] + struct.pack("<Q", len(text)) + text + data[20 + hlen : -4]
    (tmp_path / "big.uvmw").write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    with pytest.raises(UvmlabError, match="operations"):
        read_workload(tmp_path / "big.uvmw")


# ---- sweeps and the driver model ---------------------------------------------------------------
def test_sweep_checks_every_point_before_the_first_runs(tmp_path: Path) -> None:
    spec = SweepSpec.from_cli("stream:size=4MiB,passes=1", gpu_memory="50%,nan%")
    with pytest.raises(UvmlabError, match="sweep point"):
        run_sweep(spec, tmp_path / "sw", workers=1)
    assert not (tmp_path / "sw" / "points").exists() or not any((tmp_path / "sw" / "points").iterdir())


def test_migrating_back_keeps_read_duplicated_pages_read_only() -> None:
    """Prefetch to the GPU, read-mostly on one page, prefetch to the CPU: the duplicated page is
    mapped read-only everywhere (a single map call with the highest permission made it RWA)."""
    b = WorkloadBuilder("rd")
    a = b.alloc("a", 2 * MiB)
    b.kernel("w", [b.run(a, access="write")])
    b.prefetch(a, "gpu0")
    b.advise(a, "set_read_mostly", "cpu", 0, 1)
    b.prefetch(a, "cpu")
    r = simulate(b.build(), check_invariants=True)
    assert r.fatal is None


def test_sparse_terabyte_costs_little_memory() -> None:
    """Per-page state is mapped lazily, without huge pages: 4 TiB of sparse VA with a few
    touched blocks adds far less than the 0.8 GiB per TiB it used to."""

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    before = rss()
    r = simulate("sparse:size=4TiB,every=65536,passes=1", gpu_memory="1GiB")
    assert r.totals["touches"] > 0
    assert rss() - before < 1 << 30


@pytest.mark.slow  # a fresh interpreter
def test_compare_checks_gpu_memory_before_the_first_run(tmp_path: Path) -> None:
    r = _cli("compare", "gemm:size=2MiB", "--policies", "mru", "--gpu-memory", "-5%", cwd=tmp_path)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith("uvmlab: error:"), r.stderr
