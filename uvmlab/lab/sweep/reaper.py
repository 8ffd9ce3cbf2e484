"""The processes of a Ray instance a sweep started end with the sweep, however it ends.

``ray.shutdown()`` leaves Ray's agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``)
running, and a sweep killed with SIGKILL runs no cleanup at all: Ray's raylet and workers follow
their parent, its agents do not. So a sweep that starts Ray also starts this reaper, in a session
of its own. Until the sweep ends, it notes the processes that appear under the sweep: Ray's
(pid and start time, so that a reused pid is never hit). It waits for its stdin to close (the
sweep closes it when it is done, the kernel when the sweep dies), then ends those processes and
their descendants: SIGTERM, and SIGKILL for any still there a few seconds later.

Run as a script (``python reaper.py PID:START EXCLUDED,...``), it imports nothing of uvmlab. Linux only
(it reads /proc); elsewhere the sweep does without it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Collection
from pathlib import Path

GRACE_S = 3.0
POLL_S = 0.5  #: how often the reaper looks for new processes under the sweep


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, /proc/PID/stat field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    return kids


def descendants(pid: int) -> list[tuple[int, int]]:
    """``(pid, start time)`` of every live descendant of ``pid`` (none off Linux)."""
    if not Path("/proc/self/stat").exists():
        return []
    kids, out, todo, seen = _children(), [], [pid], {pid}
    while todo:
        for c in kids.get(todo.pop(), []):
            if c not in seen:
                seen.add(c)
                todo.append(c)
                st = start_time(c)
                if st is not None:
                    out.append((c, st))
    return out


def _signal_all(procs: list[tuple[int, int]], sig: int) -> list[tuple[int, int]]:
    alive = []
    for pid, st in procs:
        if start_time(pid) == st:  # the same process, not a reused pid
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
            alive.append((pid, st))
    return alive


def reap(procs: list[tuple[int, int]]) -> None:
    """End ``procs`` and their descendants."""
    everyone = list(procs)
    for pid, st in procs:
        if start_time(pid) == st:
            everyone += descendants(pid)
    alive = _signal_all(everyone, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [(p, s) for p, s in alive if start_time(p) == s and not _zombie(p)]
    _signal_all(alive, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class Reaper:
    """The reaper process of a sweep, holding the processes Ray started under ``parent``."""

    def __init__(self, parent: int, exclude: Collection[int] = ()) -> None:
        """Reaps the descendants of ``parent`` but those in ``exclude`` (there before Ray
        started); Ray starts some of its processes after ``ray.init`` returns, so the reaper
        looks again every ``POLL_S`` while the sweep runs."""
        self.proc: subprocess.Popen[bytes] | None = None
        st = start_time(parent)
        if st is None:
            return
        self.proc = subprocess.Popen(
            [sys.executable, "-S", __file__, f"{parent}:{st}", ",".join(map(str, exclude))],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C or a kill of the sweep's group does not reach it
            close_fds=True,
        )

    def close(self, timeout: float = 2 * GRACE_S + 5) -> None:
        """The sweep is done: the reaper ends what is left of Ray, and we wait for it."""
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    p, s = argv[0].split(":")
    parent = (int(p), int(s))
    exclude = {int(x) for x in argv[1].split(",") if x} | {os.getpid()}
    procs: dict[int, int] = {}
    while True:
        if start_time(parent[0]) == parent[1]:
            procs.update((c, t) for c, t in descendants(parent[0]) if c not in exclude)
        ready, _, _ = select.select([sys.stdin], [], [], POLL_S)
        if ready:
            try:
                if os.read(sys.stdin.fileno(), 1 << 16):
                    continue
            except OSError:
                pass
            break  # closed: the sweep is done or dead
    reap(list(procs.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
