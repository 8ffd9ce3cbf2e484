"""A killed Ray sweep takes its Ray processes with it (issue 15, item 7): `kill` (SIGTERM) and
SIGKILL of the sweep leave no Ray worker, raylet or GCS process behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a Ray instance starts in seconds to tens of seconds

WORKLOAD = "stream:size=64MiB,passes=20"  # seconds per point: the sweep is mid-run when killed
AXES = ["--param", "uvm_perf_prefetch_enable=0,1", "--gpu-memory", "50%,60%,70%,80%"]


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d.name))
    return kids


def _descendants(pid: int) -> set[int]:
    kids, out, todo = _children(), set(), [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_ray_sweep_leaves_no_ray_process(tmp_path, sig):
    pytest.importorskip("ray", reason="Ray not installed (pip install 'uvmlab[ray]')")
    d = tmp_path / "sweep"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvmlab",
            "sweep",
            WORKLOAD,
            *AXES,
            "-o",
            str(d),
            "-j",
            "2",
            "--engine",
            "ray",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        cwd=tmp_path,
    )
    group: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        workers: set[int] = set()
        while not workers:  # Ray up and running the points: a worker process holds a task
            if proc.poll() is not None:
                pytest.skip(f"the Ray sweep ended before it could be killed: {proc.stderr.read()[-500:]!r}")
            assert time.monotonic() < deadline, "no Ray worker started within 240 s"
            time.sleep(0.5)
            group = _descendants(proc.pid)
            workers = {p for p in group if "ray::run_point" in _cmdline(p)}  # a task running
        time.sleep(1.0)
        group = _descendants(proc.pid)
        os.kill(proc.pid, sig)  # the sweep only, as `kill PID` does: not its process group
        proc.wait(60)
        left: set[int] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            left = {p for p in group if _alive(p)}
            if not left:
                break
            time.sleep(0.5)
        assert not left, "still running after the sweep was killed: " + "; ".join(
            f"{p} {_cmdline(p)[:100]}" for p in sorted(left)
        )
    finally:
        for p in [proc.pid, *group]:
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.wait(10)
