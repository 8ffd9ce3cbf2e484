"""What every command group shares: the consoles, option types, parameter parsing, a progress bar
that appears only on long runs, and the totals table."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TimeElapsedColumn
from rich.table import Table

import uvmlab.cli.notices as notices
from uvmlab.api import simulate
from uvmlab.core.errors import UvmlabError
from uvmlab.core.files import FIGURE_SUFFIXES
from uvmlab.core.output import check_output
from uvmlab.core.units import fmt_bytes, fmt_ns

# a module reference, not a name: tests replace runtime.load_cuda with a fake
from uvmlab.cuda import runtime
from uvmlab.driver.params import Params, parse_param_assignment
from uvmlab.results.result import Result
from uvmlab.workload.bounds import DEFAULT_MAX_TOUCHES

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Module parameter, e.g. uvm_perf_prefetch_enable=0 (repeatable)."),
]
GpuOpt = Annotated[str, typer.Option("--gpu", help="GPU model: h200 or h100.")]
MemOpt = Annotated[
    str | None,
    typer.Option(
        "--gpu-memory",
        help="GPU memory for the model: a size ('16GiB') or an oversubscription ratio, "
        "'oversubscribe=1.5' (the workload needs 1.5x the GPU's memory; '150%' means the same).",
    ),
]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="Cost profile name or JSON file.")]
ParamFileOpt = Annotated[
    Path | None, typer.Option("--params-file", help="TOML file of module parameters ([params] table).")
]


IsolateOpt = Annotated[
    bool,
    typer.Option(
        "--isolate",
        help="Run each policy in a process of its own, under limits: a hook that hangs, loops or "
        "misbehaves is killed and ejected (docs/security.md).",
    ),
]
MaxTouchesOpt = Annotated[
    float | None,
    typer.Option(
        "--max-touches",
        help=f"Bound on a workload's work (touches, plus pages advice and prefetch cover); default "
        f"{DEFAULT_MAX_TOUCHES:.3g}.",
    ),
]


def need_gpu() -> None:
    """Fail fast, in one line, when there is no usable GPU (GpuUnavailableError, exit 3)."""
    runtime.load_cuda()


def max_touches(value: float | None) -> int | None:
    """``--max-touches`` as an int (it accepts 1e12)."""
    if value is None:
        return None
    if not 1 <= value <= 2**62:  # NaN fails this too
        raise UvmlabError(f"--max-touches must be between 1 and 2^62, got {value}")
    return int(value)


def check_outputs(
    *outputs: tuple[str, Path | None], stdout: tuple[str, ...] = (), figures: tuple[str, ...] = ()
) -> None:
    """Check every output path before any work starts (docs/security.md, "Output paths"):
    ``(option, path)`` pairs; options named in ``stdout`` may be ``-``; those in ``figures``
    must name a figure format (.png, .svg, .pdf)."""
    seen: dict[str, str] = {}
    for option, path in outputs:
        if path is None:
            continue
        suffix = Path(path).suffix.lower() or ".png"
        if option in figures and suffix not in FIGURE_SUFFIXES:
            raise UvmlabError(
                f"{option} {path}: '{suffix}' is not a figure format; use {', '.join(FIGURE_SUFFIXES)}"
            )
        target = check_output(path, what=option, stdout=option in stdout)
        key = str(target) if target is not None else "-"
        if target is not None and key in seen:
            raise UvmlabError(f"{option} and {seen[key]} name the same file {path}")
        seen[key] = option


def parse_params(assignments: list[str] | None, params_file: Path | None) -> Params:
    """The module parameters of ``--param k=v`` options over a ``--params-file``."""
    overrides: dict = {}
    if params_file is not None:
        overrides.update(Params.from_toml(params_file).changed())
    for a in assignments or []:
        k, v = parse_param_assignment(a)
        overrides[k] = v
    return Params.from_overrides(overrides)


class LazyProgress:
    """A progress bar that appears only when a run takes longer than a couple of seconds."""

    def __init__(self, label: str, quiet: bool = False) -> None:
        self.label = label
        self.t0 = time.monotonic()
        self.progress = None
        self.task = None
        self.quiet = quiet or notices.state.quiet or not err.is_terminal

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.progress is None:
            if time.monotonic() - self.t0 < 2.0:
                return
            self.progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                "{task.percentage:>3.0f}%",
                TimeElapsedColumn(),
                console=err,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=total)
        self.progress.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def simulate_with_progress(workload: Any, progress_label: str, quiet: bool = False, **kw: Any) -> Result:
    """``uvmlab.api.simulate`` with a progress bar on stderr for runs longer than 2 s."""
    bar = LazyProgress(progress_label, quiet)
    try:
        return simulate(workload, progress=bar, **kw)
    finally:
        bar.close()


TOTALS_SHOWN = [
    ("time", "time_ns"),
    ("GPU faults", "gpu_faults"),
    ("batches", "fault_batches"),
    ("CPU faults", "cpu_faults"),
    ("HtoD", "bytes_htod"),
    ("HtoD prefetch", "bytes_htod_prefetch"),
    ("DtoH", "bytes_dtoh"),
    ("evictions", "evictions"),
    ("thrashing", "thrashing_events"),
]


def _fmt(key: str, v: int) -> str:
    if key == "time_ns":
        return fmt_ns(v)
    if key.startswith("bytes"):
        return fmt_bytes(v)
    return f"{v:,}"


def results_table(title: str, rows: list[tuple[str, Result]]) -> Table:
    """One row of the main totals per result."""
    t = Table(title=title, title_justify="left")
    t.add_column("workload")
    for label, _ in TOTALS_SHOWN:
        t.add_column(label, justify="right")
    for name, r in rows:
        t.add_row(name, *[_fmt(k, r.totals.get(k, 0)) for _, k in TOTALS_SHOWN])
    return t
