"""``uvmlab sweep``: registered on the main app by ``uvmlab.cli``."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

import uvmlab.cli.notices as notices
from uvmlab.cli.common import IsolateOpt, MaxTouchesOpt, err, max_touches, results_table
from uvmlab.cli.common import out as console
from uvmlab.core.output import check_output
from uvmlab.lab.sweep.runner import default_directory, point_path, run_sweep
from uvmlab.lab.sweep.spec import SweepSpec
from uvmlab.results.report import write_report


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)


def sweep(
    workload: Annotated[
        str, typer.Argument(help="Built-in spec (stream:size=1GiB,seed=1) or a .uvmw trace file.")
    ],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="A module parameter axis: name=v1,v2,... (repeatable; the sweep runs the cross product).",
        ),
    ] = None,
    policies: Annotated[
        str | None,
        typer.Option(
            "--policies",
            help="Policy axis: policy specs separated by commas, 'default' for the "
            "driver's own behaviour, a+b for two policies together.",
        ),
    ] = None,
    gpu_memory: Annotated[
        str | None,
        typer.Option(
            "--gpu-memory", help="GPU memory axis: sizes or oversubscription ratios, e.g. 50%,100%,150%."
        ),
    ] = None,
    gpu: Annotated[str, typer.Option("--gpu", help="GPU model: h200 or h100.")] = "h200",
    profile: Annotated[str | None, typer.Option("--profile", help="Cost profile.")] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Sweep directory (default: sweeps/<workload>-<hash of the sweep>)."),
    ] = None,
    engine: Annotated[
        str, typer.Option("--engine", help="local (a process pool on this machine) or ray.")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option("--address", help="Ray cluster address (default: start a local Ray instance)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-j", help="Parallel points (default: the CPU count).", min=1)
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Finish an interrupted sweep: points already done are kept.")
    ] = False,
    report: Annotated[
        bool, typer.Option("--report", help="Write the comparison report to <dir>/report.html.")
    ] = False,
    events: Annotated[
        bool, typer.Option("--events", help="Record every point's event stream (larger files).")
    ] = False,
    no_samples: Annotated[
        bool, typer.Option("--no-samples", help="Do not sample residency over time (no heatmaps).")
    ] = False,
    isolate: IsolateOpt = False,
    max_touches_: MaxTouchesOpt = None,
) -> None:
    """Run a workload over the cross product of parameter, policy and GPU-memory values.

    One result file per point in the sweep directory, written atomically; an interrupted sweep
    (Ctrl-C, kill -9) continues with --resume and recomputes nothing already done.
    """
    spec = SweepSpec.from_cli(
        workload,
        params=param or [],
        policies=policies,
        gpu_memory=gpu_memory,
        gpu=gpu,
        profile=profile,
        events=events,
        samples=not no_samples,
    )
    if out is not None:
        check_output(out, what="--out", directory=True)
    bound = max_touches(max_touches_)
    directory = out if out is not None else default_directory(spec)
    # the points run in worker processes: compile once here, not in every worker at once
    notices.compile_model()
    bar = _Bar(f"sweep {spec.name}")
    # `kill` (SIGTERM) stops a sweep like Ctrl-C: the finally blocks end the local pool or the
    # Ray tasks and the Ray instance this sweep started, instead of leaving them running
    main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _terminate) if main else None
    try:
        res = run_sweep(
            spec,
            directory,
            engine=engine,
            workers=workers,
            address=address,
            resume=resume,
            progress=bar,
            isolate=isolate,
            max_touches=bound,
        )
    except KeyboardInterrupt:
        bar.close()
        points = spec.points()
        saved = sum(point_path(directory, p.id).exists() for p in points)
        again = " ".join(a if " " not in a else repr(a) for a in sys.argv[1:])
        err.print(
            f"interrupted: {saved} of {len(points)} points are saved in {directory}; "
            f"run again with --resume to finish (uvmlab {again}"
            f"{'' if resume else ' --resume'})",
            highlight=False,
            soft_wrap=True,
        )
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, old_term)
        bar.close()
    console.print(
        results_table(
            f"sweep {spec.name}: {len(res.results)} of {len(res.points)} points",
            list(zip(res.labels(), res.ordered(), strict=True)),
        )
    )
    console.print(
        f"{len(res.computed)} computed, {len(res.reused)} already done; results in {directory}",
        highlight=False,
    )
    notices.warn_ejections(res.ordered())  # points ran in workers: their warnings stayed there
    if report and res.results:
        path = write_report(
            res.ordered(),
            directory / "report.html",
            res.labels(),
            title=f"sweep: {spec.workload}",
            notes=[f"{len(res.points)} points on {spec.gpu}; directory {directory}"],
        )
        console.print(f"report: {path}", highlight=False)
    if res.errors:
        for pid, e in res.errors.items():
            label = next(p.label for p in res.points if p.id == pid)
            first = e.strip().splitlines()[-1] if e.strip() else "error"
            err.print(f"uvmlab: point {label} failed: {first}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class _Bar:
    """The sweep's progress bar on stderr (points done / total); silent when not a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.err = err
        self.progress = None
        self.task = None
        self.done = 0
        self.total = 0

    def __call__(self, done: int, total: int, last: str) -> None:
        self.done, self.total = done, total
        if not self.err.is_terminal:
            return
        if self.progress is None:
            self.progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.err,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=total)
        self.progress.update(
            self.task, completed=done, total=total, description=f"{self.label} {last}".strip()
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
