"""The model run on captured workloads: which workload a capture is of, and the model's Result of
it with the capture's machine settings (module parameters, launch shape).

A capture of the suite or its hold-out set (``uvmlab.cuda.suite``) names its workload by
``meta.suite_name``; a capture of the design space (``uvmlab.validation.space``) by its case
name and set. The model runs the same IR with the module parameters the machine reported and with
the kernels' launch shape (``meta.threads``, threads in flight).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from uvmlab.api import simulate
from uvmlab.core.errors import UvmlabError
from uvmlab.cuda.adapter import load_real
from uvmlab.cuda.plan import plan_workload
from uvmlab.results.result import Result
from uvmlab.validation.space import case_by_name
from uvmlab.validation.suite import suite_workloads


def workload_of(real: Result, family: str, set_name: str) -> Any:
    """The workload a capture of ``family`` (``suite``: the suite and its hold-out set;
    ``space``: the design space) and set ``set_name`` was taken of, built now (no GPU)."""
    name = str(real.meta.get("suite_name") or real.workload)
    if family == "suite":
        return suite_workloads([name], set_name)[0][1]

    return case_by_name(name, set_name).build()


def model_run(real: Result, w: Any, gpu: str, profile: Any) -> Result:
    """The model's run of ``w`` under the capture's module parameters and launch shape."""

    threads = int(real.meta.get("threads") or 0) or None
    return simulate(w, gpu=gpu, params=real.params, profile=profile, concurrency=threads)


def load_dir(directory: str | Path) -> list[Result]:
    """Every capture of a directory, sorted by name (an empty list if there is none)."""

    d = Path(directory)
    return [load_real(f) for f in sorted(d.glob("*.json"))] if d.is_dir() else []


def pairs(
    directory: str | Path,
    family: str,
    set_name: str,
    gpu: Any,
    profile: Any,
    log: Callable[[str], None] | None = None,
) -> Iterator[tuple[Result, Result, Any]]:
    """(capture, model Result, workload) for every capture of ``directory`` whose workload the
    set still builds the same way; a stale capture is skipped with a log line."""

    for real in load_dir(directory):
        try:
            w = workload_of(real, family, set_name)
        except UvmlabError as e:
            if log:
                log(f"skip {real.workload}: {e}")
            continue
        plan = plan_workload(w)
        if [(r["op"], r["name"]) for r in real.ops] != [(p.kind, p.name) for p in plan]:
            if log:
                log(f"skip {real.workload}: operations differ from the set's workload")
            continue
        yield real, model_run(real, w, gpu, profile), w


__all__ = ["load_dir", "model_run", "pairs", "workload_of"]
