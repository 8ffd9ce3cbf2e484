"""``uvmlab report``, ``timeline``, ``export`` and ``plot``: registered by ``uvmlab.cli``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from uvmlab.cli.common import check_outputs
from uvmlab.cli.common import out as console
from uvmlab.core.errors import UvmlabError
from uvmlab.core.output import check_output
from uvmlab.lab.sweep.runner import load_sweep
from uvmlab.results import plots
from uvmlab.results.perfetto import write_timeline
from uvmlab.results.report import unique_labels, write_report
from uvmlab.results.result import Result
from uvmlab.results.tables import write_tables

if TYPE_CHECKING:
    from uvmlab.results.result import Result

ResultsArg = Annotated[
    list[Path],
    typer.Argument(help="Result files (.json or .parquet, from `uvmlab run --out`) or sweep directories."),
]


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("timeline")(timeline)
    app.command("export")(export)
    app.command("plot")(plot)


def load_results(paths: list[Path]) -> tuple[list[Result], list[str]]:
    """Results from files and sweep directories, with labels that tell them apart."""
    results: list[Result] = []
    names: list[str] = []
    for p in paths:
        try:
            is_dir = p.is_dir()
        except OSError as e:
            raise UvmlabError(f"{p}: {e.strerror or e}") from None
        if is_dir:
            _, points, done = load_sweep(p)
            if not done:
                raise UvmlabError(f"{p}: the sweep has no finished points yet")
            for pt in points:
                if pt.id in done:
                    results.append(done[pt.id])
                    names.append(pt.label)
        else:
            results.append(Result.load(p))
            names.append(p.stem)
    if not results:
        raise UvmlabError("no results given")
    return results, unique_labels(results, names)


def report(
    results: ResultsArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path("report.html"),
    title: Annotated[str, typer.Option("--title", help="Page title.")] = "uvmlab report",
) -> None:
    """One self-contained HTML page: summary tables and plots of one or several runs."""
    check_outputs(("--out", out), stdout=("--out",))
    res, labels = load_results(results)
    write_report(res, out, labels, title=title)
    console.print(f"wrote {out} ({len(res)} run(s))", highlight=False)


def timeline(
    result: Annotated[Path, typer.Argument(help="A result file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Trace file (JSON) to write.")] = Path(
        "timeline.json"
    ),
) -> None:
    """Write a saved result as a Chrome / Perfetto trace (open it in ui.perfetto.dev)."""
    check_outputs(("--out", out), stdout=("--out",))
    write_timeline(Result.load(result), out)
    console.print(f"wrote {out}", highlight=False)


def export(
    results: ResultsArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the tables.")] = Path("tables"),
) -> None:
    """Write results as Parquet tables: runs, ops, events, samples (docs/results.md)."""
    check_output(out, what="--out", directory=True)
    res, labels = load_results(results)
    paths = write_tables(res, out, labels)
    console.print("wrote " + ", ".join(str(p) for p in paths.values()), highlight=False)


PLOTS = ("residency", "activity", "compare")


def plot(
    kind: Annotated[str, typer.Argument(help="residency, activity or compare.")],
    results: ResultsArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path("plot.png"),
    dpi: Annotated[int, typer.Option("--dpi", min=30, max=600)] = 100,
) -> None:
    """Draw a residency heatmap, faults/migrations over time, or a comparison of runs (PNG)."""
    if kind not in PLOTS:
        raise UvmlabError(f"unknown plot {kind!r} (choose from {', '.join(PLOTS)})")
    check_outputs(("--out", out), figures=("--out",))
    res, labels = load_results(results)
    if kind == "compare":
        fig = plots.comparison_bars(res, labels)
    else:
        if len(res) != 1:
            raise UvmlabError(f"a {kind} plot shows one run; {len(res)} given")
        fig = plots.residency_heatmap(res[0]) if kind == "residency" else plots.activity_plot(res[0])
    plots.save_png(fig, str(out), dpi=dpi)
    console.print(f"wrote {out}", highlight=False)
