"""One device call's captures (issue 13): the quick calibration, the suite and its hold-out set,
and the design space (``uvmlab.validation.space``), on the GPU of this machine, time-boxed.

Order (so that a call cut short keeps what matters most): a warm-up (``warmup.py``: the
calibration set's kernel cases for ``--warmup`` seconds, kept in ``space/warmup<i>/calib``,
never fitted), the ``calib`` micro-captures (the same-machine profile), the suite and the
hold-out suite, the design-space cases up to 1 GiB (training and hold-out alternating),
``calib`` again (within-session drift), the 2-4 GiB cases, then further suite / hold-out
repeats while time is left. No case starts after ``--deadline`` seconds; each capture is written
as soon as it is taken, with a manifest (GPU, driver, date, the seconds each capture took)
rewritten after every one.

``python -m uvmlab.validation.capture_space --out DIR --deadline 420``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from uvmlab.core.errors import UvmlabError
from uvmlab.cuda.executor import DEFAULT_THREADS, execute
from uvmlab.cuda.runtime import device_info
from uvmlab.validation.space import Case, GiB, cases
from uvmlab.validation.suite import SETS, build
from uvmlab.validation.warmup import WARMUP_S, warm_up

Job = tuple[str, str, Callable[[], Any], int]  # (directory, name, workload builder, threads)


def _interleave(a: list[Case], b: list[Case]) -> list[Case]:
    out: list[Case] = []
    for i in range(max(len(a), len(b))):
        out += [x[i] for x in (a, b) if i < len(x)]
    return out


def jobs(suite_repeats: int = 3) -> Iterator[Job]:
    """The captures of one call, in priority order."""

    def case_jobs(cs: list[Case], prefix: str) -> Iterator[Job]:
        for c in cs:
            yield f"{prefix}{c.set}", c.name, c.build, c.threads

    def suite_jobs(rep: int) -> Iterator[Job]:
        for set_name, specs in SETS.items():
            for name, spec in specs:
                yield (f"repeats/rep{rep}/{set_name}", name, (lambda s=spec: build(s)), DEFAULT_THREADS)

    calib = cases("calib")
    yield from case_jobs(calib, "space/run0/")
    yield from suite_jobs(0)
    small = [c for c in cases("train") + cases("holdout") if c.managed_bytes <= GiB]
    big = [c for c in cases("train") + cases("holdout") if c.managed_bytes > GiB]
    tr = [c for c in small if c.set == "train"]
    ho = [c for c in small if c.set == "holdout"]
    yield from case_jobs(_interleave(tr, ho), "space/run0/")
    yield from case_jobs(calib, "space/run1/")
    yield from case_jobs(big, "space/run0/")
    for rep in range(1, suite_repeats):
        yield from suite_jobs(rep)


def run(
    out: str,
    deadline_s: float,
    *,
    only: str | None = None,
    warmup_s: float | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Take the captures of :func:`jobs` into ``out`` until ``deadline_s`` seconds have passed,
    after a warm-up (``warmup.py``: ``warmup_s`` seconds, by default ``WARMUP_S`` for a whole
    session and none with ``only``) kept in ``space/warmup<i>/calib/``."""

    t0 = time.perf_counter()
    info = device_info()  # raises GpuUnavailableError without a GPU, before anything is written
    man: dict[str, Any] = {
        "format": "uvmlab-capture-session",
        "version": 1,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "gpu": info.get("gpu"),
        "driver": info.get("driver_version"),
        "deadline_s": deadline_s,
        "captures": [],
        "skipped": [],
    }
    os.makedirs(out, exist_ok=True)

    def write_manifest() -> None:
        man["elapsed_s"] = round(time.perf_counter() - t0, 3)
        with open(os.path.join(out, "manifest.json"), "w") as f:
            json.dump(man, f, indent=1)

    def take(d: str, name: str, make: Callable[[], Any], threads: int) -> None:
        el = time.perf_counter() - t0
        t = time.perf_counter()
        try:
            res = execute(make(), threads=threads)
        except UvmlabError as e:  # one bad case must not lose the others
            man["captures"].append({"path": f"{d}/{name}.json", "error": str(e)})
            log(f"{d}/{name}: error: {e}")
            return
        res.meta["suite_name"] = name
        res.meta["workload_set"] = d.rsplit("/", 1)[-1]
        res.save(os.path.join(out, d, f"{name}.json"))
        took = time.perf_counter() - t
        man["captures"].append(
            {"path": f"{d}/{name}.json", "seconds": round(took, 3), "started_s": round(el, 3)}
        )
        log(
            f"[{el:6.1f} s] {d}/{name}: {took:.2f} s, kernel/op times "
            f"{[round(r['time_ns'] / 1e6, 1) for r in res.ops if r['op'] == 'kernel'][:3]} ms"
        )
        write_manifest()

    wu_s = min(deadline_s, (0.0 if only else WARMUP_S) if warmup_s is None else warmup_s)
    wu = warm_up(lambda i, c: take(f"space/warmup{i}/calib", c.name, c.build, c.threads), wu_s, log=log)
    man["warmup"] = {"min_s": wu_s, "passes": len(wu.passes), "seconds": round(wu.seconds, 3)}
    for d, name, make, threads in jobs():
        if only and only not in f"{d}/{name}":
            continue
        if time.perf_counter() - t0 > deadline_s:
            man["skipped"].append(f"{d}/{name}")
            continue
        take(d, name, make, threads)
    calib = [c for c in man["captures"] if c["path"].startswith("space/run0/calib/") and "seconds" in c]
    man["calib_seconds"] = round(sum(c["seconds"] for c in calib), 3)
    write_manifest()
    log(
        f"done: {len(man['captures'])} captures, {len(man['skipped'])} skipped, "
        f"{man['elapsed_s']:.0f} s (calib {man['calib_seconds']:.0f} s, warm-up {wu.seconds:.0f} s)"
    )
    return man


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--deadline", type=float, default=420.0, help="seconds after which no new capture starts")
    ap.add_argument("--only", default=None, help="only captures whose path contains this")
    ap.add_argument(
        "--warmup",
        type=float,
        default=None,
        help=f"seconds of warm-up captures first (default {WARMUP_S:.0f}, none with --only; 0: none)",
    )
    a = ap.parse_args(argv)
    try:
        run(a.out, a.deadline, only=a.only, warmup_s=a.warmup, log=lambda s: print(s, flush=True))
    except UvmlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
