"""What a noisy counter is scored against: the median of every stored run of the case on the same
GPU kind (issue 13, item 5).

The thrashing counters of the ping-pong cases (``thrashing_events``, ``throttles``,
``remote_maps``) move a lot from run to run on one machine: eight repeats of the 4 MiB ping-pong
on one H100 start detect 16-304 thrashing pages, on another start 16-608, and the 256 KiB
case throttles 189-374 times. The driver's thrashing detector flags a page when its migrations
come within ``uvm_perf_thrashing_lapse_usec`` (500 µs) of each other, so a few tens of µs of
host jitter decide whether a round counts; one run is a draw from a wide distribution, not a
figure to score a model against within 25 %. Where several runs of a case are stored, the
counter's reference is their median and the spread is kept beside it; where only one run is
stored, the reference is that run and says so.

Which runs are pooled: every stored run of the case on the same GPU kind with the same driver,
module parameters, launch shape and operations, from every machine start:

* the design-space sets (``calib``, ``train``, ``holdout``): each session's own capture
  (``space/<gpu>-<date>/<set>/``), its ``calib-run1/`` for ``calib``, and the ping-pong repeats
  (``pingpong-repeats/<gpu>-<date>/rep<i>/<set>/``);
* the suite sets (``suite``, ``suite-holdout``): every session's ``repeats/<gpu>-<date>/rep<i>/
  {suite,holdout}/``.

All starts, not only the scored one: on the two H100 starts with eight repeats each, the
medians of a counter differ by less than the spread of either start's repeats (4 MiB
ping-pong: median 136 and 32, ranges 16-304 and 16-608; 256 KiB throttles: 290 and 242,
ranges 208-374 and 189-319), and the model has no per-machine quantity that these counters
depend on other than the fitted time constants, so a start's eight runs are a sample of the
same distribution; pooling halves the median's sampling error. A new GPU's repeats stored under
the same layout (``pingpong-repeats/h200-<date>/...``) are picked up by the same globs.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path

from uvmlab.cuda.adapter import load_real
from uvmlab.results.result import Result
from uvmlab.validation.score import Reference, is_thrash_case, reference
from uvmlab.validation.sessions import DATA, SET_PATHS

PINGPONG_REPEATS = "pingpong-repeats"


# --- the stored runs ------------------------------------------------------------------------------


def _dirs(gpu: str, label: str, data: Path) -> list[tuple[str, Path]]:
    """(machine start, directory) of every stored run directory of set ``label`` on ``gpu``."""
    family, _set_name, _sub = SET_PATHS[label]
    out: list[tuple[str, Path]] = []
    if family == "space":
        for d in sorted((data / "space").glob(f"{gpu}-*")):
            out.append((d.name, d / label))
            if label == "calib":
                out.append((d.name, d / "calib-run1"))
        for d in sorted((data / PINGPONG_REPEATS).glob(f"{gpu}-*/rep*/{label}")):
            out.append((d.parent.parent.name, d))
    else:
        sub = "suite" if label == "suite" else "holdout"
        for d in sorted((data / "repeats").glob(f"{gpu}-*/rep*/{sub}")):
            out.append((d.parent.parent.name, d))
    return [(start, d) for start, d in out if d.is_dir()]


def _name(r: Result) -> str:
    return str(r.meta.get("suite_name") or r.workload)


@functools.lru_cache(maxsize=32)
def stored_runs(gpu: str, label: str, data: Path = DATA) -> dict[str, list[tuple[str, Path, Result]]]:
    """Case name -> [(machine start, file, run)] of every stored run of a thrashing case (a
    ping-pong, accessed-by or read-mostly workload) of set ``label`` on GPU ``gpu``."""
    out: dict[str, list[tuple[str, Path, Result]]] = {}
    for start, d in _dirs(gpu, label, data):
        for f in sorted(d.glob("*.json")):
            if not is_thrash_case(f.stem):
                continue
            r = load_real(f)
            out.setdefault(_name(r), []).append((start, f.resolve(), r))
    return out


def _signature(r: Result) -> str:
    """What must be equal for two runs to be runs of the same experiment."""
    m = r.meta
    return json.dumps(
        [
            [(o.get("op"), o.get("name"), o.get("touches")) for o in r.ops],
            m.get("workload_params"),
            m.get("workload_seed"),
            m.get("driver_version"),
            m.get("uvm_params"),
            m.get("threads"),
        ],
        sort_keys=True,
        default=str,
    )


def pooled_runs(
    real: Result, gpu: str, label: str, own: Path | None, data: Path = DATA
) -> list[tuple[str, Result]]:
    """(machine start, run) of every stored run pooled with ``real`` (``own``: its file, when it
    is a stored one), ``real`` itself first; runs of another driver, other module parameters,
    launch shape, seed or operations are left out."""
    sig = _signature(real)
    own_path = own.resolve() if own is not None else None
    mine = ("scored", real)
    rest = []
    for start, f, r in stored_runs(gpu, label, data).get(_name(real), []):
        if f == own_path:
            mine = (start, real)
        elif _signature(r) == sig:
            rest.append((start, r))
    return [mine, *rest]


def references(
    real: Result, keys: Iterable[str], gpu: str, label: str, own: Path | None, data: Path = DATA
) -> dict[str, Reference]:
    """Counter -> :class:`Reference` of ``real`` among the stored runs of its case."""
    runs = pooled_runs(real, gpu, label, own, data)
    out = {}
    for k in keys:
        have = [(s, r.totals[k]) for s, r in runs if k in r.totals]  # absent: not measured
        out[k] = reference(real.totals.get(k, 0), [v for _s, v in have], len({s for s, _v in have}))
    return out


__all__ = ["PINGPONG_REPEATS", "pooled_runs", "references", "stored_runs"]
