"""CPU phases of a capture session against their size and their time in the session (issue 13):
the tables behind the "CPU phases" limit of ``docs/validation.md``.

The model's CPU phases are linear in bytes and faults: a CPU first touch (``init``) or a CPU read
of GPU-resident memory (``read_back``) takes 6 CPU faults per 2 MiB VA block on every GPU and
session (the driver's prefetch ramp, uvm_perf_prefetch.c), and each block's work is the same. So a
phase's cost per byte should not depend on its size. This module measures whether it does, and
whether it depends instead on *when* in the session the phase ran:

* :func:`phases`: every CPU phase of a session (``manifest.json`` gives each capture's start
  time in the session), with its size, time and cost per GiB;
* :func:`per_size`: median ms per GiB (and IQR) per operation and size;
* :func:`per_window`: the same per window of time in the session;
* :func:`paired`: within each pass of the calibration set (the warm-up passes, ``calib``, then
  ``calib-run1``: same cases, a minute apart), the 1 GiB phase's cost per byte over the median
  256 MiB phase's; :func:`passes`: each pass's median cost per byte (the warm-up's effect);
* :func:`machine_state`: how much of the cost per byte moves with the machine (a capture's first
  touch and read-back, seconds-apart captures, correlated) rather than with the workload;
* :func:`floor`: the median absolute error of the best model that knows only the operation (one
  cost per byte) or the operation and size (one per size), fitted on the set itself: no model of
  those inputs can score that set better.

``python -m uvmlab.validation.cpu_phases [SESSION ...] [--dir DIR ...]`` prints the tables
(markdown) of stored sessions and of capture directories (``capture_space --out DIR``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from uvmlab.validation.sessions import DATA

MIN_PHASE_NS = 5_000_000  # as the per-kind scores (score.MIN_OP_NS)
MIB = 1 << 20


@dataclass(frozen=True)
class Phase:
    path: str  # the capture, as the manifest names it
    op: str  # init, read_back, ...
    mib: int  # bytes the phase touches
    ms: float
    started_s: float  # the capture's start in the session

    @property
    def ms_per_gib(self) -> float:
        return self.ms / self.mib * 1024


def _resolve(root: Path, session: str, path: str) -> Path:
    """The stored file of a manifest path: under ``root`` as written (a capture directory), else
    filed as a session (``space/run0/<set>`` -> ``space/<session>/<set>``, ``space/run1/calib``
    -> ``calib-run1``, ``repeats/rep<i>/...`` -> ``repeats/<session>/rep<i>/...``)."""
    direct = root / path
    if direct.is_file():
        return direct
    p = path.split("/")
    if p[0] == "space":
        sub = p[2] if p[1] == "run0" else f"{p[2]}-{p[1]}"  # calib-run1, calib-warmup0, ...
        return root / "space" / session / sub / p[3]
    return root / "repeats" / session / "/".join(p[1:])


def phases(session: str, data: Path = DATA, root: Path | None = None) -> list[Phase]:
    """Every CPU phase of at least 5 ms that faulted, of stored session ``session`` (or of a
    capture directory ``root`` holding ``manifest.json``), in the order they ran."""
    base = root if root is not None else data
    man_path = (root / "manifest.json") if root is not None else data / "space" / session / "manifest.json"
    man = json.loads(man_path.read_text())
    out = []
    for c in man.get("captures", []):
        if "started_s" not in c:
            continue
        f = _resolve(base, session, c["path"])
        if not f.is_file():
            continue
        for o in json.loads(f.read_text()).get("ops", []):
            if o.get("op") == "cpu" and o.get("time_ns", 0) >= MIN_PHASE_NS and o.get("cpu_faults", 0) > 0:
                mib = int(o.get("touches", 0)) * 4096 // MIB
                if mib:
                    out.append(Phase(c["path"], o["name"], mib, o["time_ns"] / 1e6, float(c["started_s"])))
    return out


def _q(v: list[float]) -> tuple[float, float, float]:
    if len(v) == 1:
        return v[0], v[0], v[0]
    q1, q2, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return q1, q2, q3


def per_size(
    ps: Iterable[Phase], ops: tuple[str, ...] = ("init", "read_back")
) -> dict[tuple[str, int], tuple[int, float, float, float]]:
    """(op, MiB) -> (n, median, q1, q3) of ms per GiB."""
    by: dict[tuple[str, int], list[float]] = defaultdict(list)
    for p in ps:
        if p.op in ops:
            by[(p.op, p.mib)].append(p.ms_per_gib)
    out = {}
    for k, v in sorted(by.items()):
        q1, med, q3 = _q(v)
        out[k] = (len(v), med, q1, q3)
    return out


def per_window(
    ps: Iterable[Phase], window_s: float = 40.0, op: str = "init"
) -> dict[tuple[int, int], tuple[int, float]]:
    """(window start s, MiB) -> (n, median ms per GiB) of operation ``op``."""
    by: dict[tuple[int, int], list[float]] = defaultdict(list)
    for p in ps:
        if p.op == op:
            by[(int(p.started_s // window_s * window_s), p.mib)].append(p.ms_per_gib)
    return {k: (len(v), statistics.median(v)) for k, v in sorted(by.items())}


_PASS = re.compile(r"^(?:space/(warmup\d+|run\d+)/calib|calib-(warmup\d+)|(calib))/")


def calib_pass(path: str) -> str | None:
    """The calibration pass a capture path belongs to: ``warmup<i>`` (the warm-up passes,
    ``warmup.py``), ``run0`` (the timed pass the profile is fitted on), ``run1`` (the calibration
    set again later in a session), as ``capture_space`` and ``calibrate --quick`` lay them out;
    None for any other capture."""
    m = _PASS.match(path)
    if m is None:
        return None
    return m.group(1) or m.group(2) or "run0"


def paired(ps: Iterable[Phase], op: str = "init", big: int = 1024, small: int = 256) -> dict[str, float]:
    """Calibration pass (:func:`calib_pass`) -> the ``big`` MiB phase's ms per GiB over the median
    ``small`` MiB one's, within the same pass."""
    by: dict[str, list[Phase]] = defaultdict(list)
    for p in ps:
        k = calib_pass(p.path)
        if k is not None and p.op == op:
            by[k].append(p)
    out = {}
    for run, mine in by.items():
        b = [p.ms_per_gib for p in mine if p.mib == big]
        s = [p.ms_per_gib for p in mine if p.mib == small]
        if b and s:
            out[run] = statistics.median(b) / statistics.median(s)
    return out


def passes(ps: Iterable[Phase]) -> list[tuple[str, float, dict[str, tuple[int, float]]]]:
    """Every calibration pass in the order it ran: (pass, its first start in the session,
    operation -> (n, median ms per GiB)) of its first touches and read-backs: whether the
    warm-up passes and the timed one cost the same per byte (``warmup.py``)."""
    by: dict[str, list[Phase]] = defaultdict(list)
    for p in ps:
        k = calib_pass(p.path)
        if k is not None:
            by[k].append(p)
    out = []
    for k, mine in by.items():
        ops = {
            op: (len(v), statistics.median(v))
            for op in ("init", "read_back")
            if (v := [p.ms_per_gib for p in mine if p.op == op])
        }
        out.append((k, min(p.started_s for p in mine), ops))
    return sorted(out, key=lambda r: r[1])


def machine_state(ps: Iterable[Phase]) -> dict[str, float] | None:
    """Whether the cost per byte moves with the machine rather than with the workload. Each
    first touch and read-back is taken as the log of its cost per byte over the median of its
    operation and size; returns their spread (``sd``), the correlation of a capture's first touch
    with its own read-back (``same_capture``: the same case, about half a second later), and of
    the first touches in the order they ran at lags 1 and 5 (``lag1``, ``lag5``: the next case,
    about a second later, and five cases later). None with too few phases."""
    ps = [p for p in ps if p.op in ("init", "read_back")]
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for p in ps:
        groups[(p.op, p.mib)].append(p.ms_per_gib)
    med = {k: statistics.median(v) for k, v in groups.items()}
    dev = {(p.path, p.op): math.log(p.ms_per_gib / med[(p.op, p.mib)]) for p in ps}
    same = [
        (v, dev[(path, "read_back")])
        for (path, op), v in dev.items()
        if op == "init" and (path, "read_back") in dev
    ]
    init = [dev[(p.path, "init")] for p in sorted(ps, key=lambda p: p.started_s) if p.op == "init"]
    if len(same) < 3 or len(init) < 7:
        return None
    try:
        return {
            "sd": statistics.pstdev(dev.values()),
            "same_capture": statistics.correlation(*zip(*same, strict=True)),
            "lag1": statistics.correlation(init[:-1], init[1:]),
            "lag5": statistics.correlation(init[:-5], init[5:]),
        }
    except statistics.StatisticsError:  # constant input
        return None


def floor(ps: Iterable[Phase], by_size: bool) -> float | None:
    """Median absolute error of the best per-operation (``by_size``: per operation and size)
    cost per byte fitted on ``ps`` itself (the median of each group: the best in median terms)."""
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for p in ps:
        groups[(p.op, p.mib if by_size else 0)].append(p.ms_per_gib)
    errs = [abs(x / statistics.median(v) - 1) for v in groups.values() for x in v]
    return statistics.median(errs) if errs else None


def report(sessions: list[str], data: Path = DATA, dirs: list[Path] | None = None) -> list[str]:
    """The markdown tables of every stored session in ``sessions`` and every capture directory
    (``capture_space --out DIR``) in ``dirs``."""
    lines = []
    todo = [(s, phases(s, data)) for s in sessions]
    todo += [(str(d), phases(d.name, root=d)) for d in dirs or []]
    for label, ps in todo:
        lines += _tables(label, ps)
    return lines


def _tables(label: str, ps: list[Phase]) -> list[str]:
    lines = [f"### {label}", "", "| op | MiB | n | median ms/GiB | IQR |", "|---|---|---|---|---|"]
    for (op, mib), (n, med, q1, q3) in per_size(ps).items():
        lines.append(f"| {op} | {mib} | {n} | {med:.0f} | {q1:.0f}–{q3:.0f} |")
    lines += ["", "init, median ms/GiB per 40 s of the session (n):", ""]
    for (t, mib), (n, med) in per_window(ps).items():
        lines.append(f"- t {t}-{t + 40} s, {mib} MiB: {med:.0f} ({n})")
    for k, t, ops in passes(ps):
        per = ", ".join(f"{op} {med:.0f} ({n})" for op, (n, med) in ops.items())
        lines.append(f"- calibration pass `{k}` from {t:.0f} s: median ms/GiB {per}")
    for op in ("init", "read_back"):
        r = paired(ps, op)
        pairs = ", ".join(f"{k} {v:.2f}" for k, v in r.items()) or "–"
        lines.append(f"- {op}: 1 GiB over 256 MiB per byte within one calibration pass: {pairs}")
    st = machine_state(ps)
    if st is not None:
        lines.append(
            f"- machine state: log cost per byte over its operation and size's median, sd "
            f"{st['sd']:.3f}; correlation of a capture's first touch with its read-back "
            f"{st['same_capture']:.2f}, of successive first touches {st['lag1']:.2f} (lag 1), "
            f"{st['lag5']:.2f} (lag 5)"
        )
    for set_name in ("calib", "train", "holdout"):
        mine = [p for p in ps if p.path.startswith(f"space/run0/{set_name}/")]
        f1, f2 = floor(mine, False), floor(mine, True)
        if f1 is not None and f2 is not None:
            lines.append(
                f"- `{set_name}` ({len(mine)} phases): floor of one cost per byte per operation "
                f"{f1:.1%}, per operation and size {f2:.1%}"
            )
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sessions", nargs="*", help="stored sessions (default: every design-space session)")
    ap.add_argument(
        "--dir",
        action="append",
        type=Path,
        default=[],
        help="a capture directory with manifest.json (repeatable)",
    )
    a = ap.parse_args(argv)
    names = a.sessions
    if not names and not a.dir:
        names = sorted(d.name for d in (DATA / "space").glob("*-*") if (d / "manifest.json").is_file())
    try:
        print("\n".join(report(names, dirs=a.dir)))
    except (OSError, ValueError, KeyError, statistics.StatisticsError) as e:
        print(f"error: cannot read the CPU phases: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
