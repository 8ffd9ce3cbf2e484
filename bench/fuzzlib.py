"""The harness the three fuzzers share: seeded cases run in forked workers under a wall-clock
limit and a memory limit, each case's outcome sorted into a class.

A case is a small JSON-able description made from a seed; a worker turns it into the hostile
thing (a file, a policy, an argument line) and runs it. Outcomes:

* ``ok`` — it ran and produced a result;
* ``clean`` — it ended in a ``UvmlabError`` (a one-line message; the expected answer to bad input);
* ``crash`` — any other exception, sorted by type and innermost uvmlab frame;
* ``hang`` — still running after the case's time limit (the worker is killed and replaced);
* ``memory`` — the worker's resident memory passed the limit (killed and replaced);
* ``died`` — the worker process ended on its own (a signal, ``os._exit``).

A fuzzer reports ``crash``, ``hang``, ``memory`` and ``died`` as failures; ``check`` lets it add
its own (a traceback on stderr, a policy that was not ejected).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

FAILURES = ("crash", "hang", "memory", "died")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def crash_class(e: BaseException) -> str:
    """``Type at file:line`` of the innermost frame inside uvmlab (or the innermost at all)."""
    frames = traceback.extract_tb(e.__traceback__)
    ours = [f for f in frames if "uvmlab" in f.filename.replace("\\", "/").split("/")]
    f = (ours or frames or [None])[-1]
    where = f"{'/'.join(f.filename.split('/')[-2:])}:{f.lineno}" if f is not None else "?"
    return f"{type(e).__name__} at {where}"


def _worker(conn: Connection, run_case: Callable[[Any], tuple[str, str]]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        try:
            got = run_case(msg)
        except BaseException as e:  # noqa: BLE001 - classifying every escape is the point
            got = ("crash", f"{crash_class(e)}: {' '.join(str(e).split())[:160]}")
        try:
            conn.send(tuple(got))
        except (OSError, ValueError):
            return


@dataclass
class _Slot:
    proc: Any = None
    conn: Connection | None = None
    case: Any = None
    index: int = -1
    t0: float = 0.0


@dataclass
class Report:
    """Counts per outcome, failure classes with one example case each."""

    name: str
    seed: int
    counts: Counter = field(default_factory=Counter)
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    kinds: Counter = field(default_factory=Counter)
    wall_s: float = 0.0
    stopped_by_time: bool = False

    @property
    def cases(self) -> int:
        return sum(self.counts.values())

    @property
    def failures(self) -> int:
        return sum(self.counts[k] for k in FAILURES) + self.counts["bad"]

    def add(self, case: Any, outcome: str, detail: str) -> None:
        self.counts[outcome] += 1
        if isinstance(case, dict) and "kind" in case:
            for k in str(case["kind"]).split("+"):
                self.kinds[k] += 1
        if outcome in FAILURES or outcome == "bad":
            key = f"{outcome}: {detail.split(': ')[0] if outcome == 'crash' else detail[:120]}"
            c = self.classes.setdefault(key, {"count": 0, "example": case, "detail": detail})
            c["count"] += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "fuzzer": self.name,
            "seed": self.seed,
            "cases": self.cases,
            "counts": dict(self.counts),
            "failures": self.failures,
            "classes": self.classes,
            "kinds": dict(self.kinds),
            "wall_s": round(self.wall_s, 1),
            "stopped_by_time": self.stopped_by_time,
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        }

    def print(self, as_json: bool = False) -> None:
        if as_json:
            print(json.dumps(self.to_dict(), default=str))
            return
        print(
            f"{self.name}: {self.cases} cases in {self.wall_s:.0f} s (seed {self.seed})"
            + (" - stopped by the time limit" if self.stopped_by_time else "")
        )
        for k, v in sorted(self.counts.items()):
            print(f"  {k:8s} {v}")
        if self.kinds:
            print("  kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(self.kinds.items())))
        for key, c in sorted(self.classes.items(), key=lambda kv: -kv[1]["count"]):
            print(
                f"  FAIL x{c['count']}: {key}\n      {c['detail'][:300]}\n      case: "
                f"{json.dumps(c['example'], default=str)[:300]}"
            )
        print(f"  failures: {self.failures}")


def run_cases(
    name: str,
    seed: int,
    cases: Iterator[Any],
    run_case: Callable[[Any], tuple[str, str]],
    *,
    workers: int,
    timeout_s: float,
    rss_limit: int,
    time_limit_s: float | None,
    check: Callable[[Any, str, str], tuple[str, str]] | None = None,
    progress: bool = True,
) -> Report:
    """Run every case (until ``time_limit_s``) in ``workers`` forked processes."""
    ctx = mp.get_context("fork")
    rep = Report(name, seed)
    t_start = time.monotonic()
    last_print = t_start
    slots = [_Slot() for _ in range(max(1, workers))]

    def spawn(s: _Slot) -> None:
        parent, child = ctx.Pipe()
        s.proc = ctx.Process(target=_worker, args=(child, run_case), daemon=True)
        s.proc.start()
        child.close()
        s.conn = parent
        s.case = None

    def kill(s: _Slot) -> None:
        if s.proc is not None and s.proc.is_alive():
            s.proc.kill()
        if s.proc is not None:
            s.proc.join(5)
        if s.conn is not None:
            s.conn.close()
        s.proc = s.conn = None

    def finish(s: _Slot, outcome: str, detail: str) -> None:
        if check is not None and outcome not in FAILURES:
            outcome, detail = check(s.case, outcome, detail)
        rep.add(s.case, outcome, detail)
        s.case = None

    it = iter(cases)
    exhausted = False
    index = 0
    for s in slots:
        spawn(s)
    try:
        while True:
            now = time.monotonic()
            if time_limit_s is not None and now - t_start > time_limit_s and not exhausted:
                exhausted = True
                rep.stopped_by_time = True
            for s in slots:
                if s.case is None and not exhausted:
                    try:
                        case = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    s.case, s.index, s.t0 = case, index, time.monotonic()
                    index += 1
                    try:
                        s.conn.send(case)
                    except (OSError, ValueError):
                        finish(s, "died", "the worker was gone before the case was sent")
                        kill(s)
                        spawn(s)
            busy = [s for s in slots if s.case is not None]
            if not busy:
                break
            ready = wait([s.conn for s in busy], timeout=0.1)
            for s in busy:
                if s.conn in ready:
                    try:
                        got = s.conn.recv()
                    except (EOFError, OSError):
                        s.proc.join(1)
                        code = s.proc.exitcode
                        finish(s, "died", f"worker ended (exit code {code})")
                        kill(s)
                        spawn(s)
                        continue
                    if len(got) > 2 and isinstance(s.case, dict):
                        s.case["kind"] = got[2]
                    finish(s, got[0], got[1])
                elif time.monotonic() - s.t0 > timeout_s:
                    finish(s, "hang", f"still running after {timeout_s:g} s")
                    kill(s)
                    spawn(s)
                elif rss_bytes(s.proc.pid) > rss_limit:
                    finish(s, "memory", f"resident memory over {rss_limit >> 20} MiB")
                    kill(s)
                    spawn(s)
            if progress and time.monotonic() - last_print > 10:
                last_print = time.monotonic()
                print(
                    f"  {name}: {rep.cases} cases, {rep.failures} failures, {last_print - t_start:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for s in slots:
            if s.conn is not None and s.case is None:
                with contextlib.suppress(OSError, ValueError):
                    s.conn.send(None)
            kill(s)
    rep.wall_s = time.monotonic() - t_start
    return rep


def arg_parser(description: str, cases: int, time_limit: float) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--cases", type=int, default=cases, help=f"cases to run (default {cases})")
    ap.add_argument("--seed", type=int, default=1, help="seed of the case generator")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 0))
    ap.add_argument(
        "--time-limit",
        type=float,
        default=time_limit,
        help=f"stop starting cases after this many seconds (default {time_limit:g})",
    )
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds before a case is a hang")
    ap.add_argument(
        "--rss-limit-mib",
        type=int,
        default=2048,
        help="resident memory of a worker before a case is a memory failure",
    )
    ap.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return ap


def run_parsed(name: str, a: argparse.Namespace, case_iter: Any, run_case: Any) -> Any:
    """``run_cases`` with the options every fuzzer's ``arg_parser`` reads (one place for them)."""
    return run_cases(
        name,
        a.seed,
        case_iter,
        run_case,
        workers=a.workers,
        timeout_s=a.timeout,
        rss_limit=a.rss_limit_mib << 20,
        time_limit_s=a.time_limit,
        progress=True,  # on stderr: stdout holds only the report
    )
