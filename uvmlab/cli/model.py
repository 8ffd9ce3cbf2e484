"""The model's own commands: ``uvmlab run``, ``demo``, ``workloads``, ``params``, ``trace``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from uvmlab.api import load_workload, simulate
from uvmlab.cli.common import (
    GpuOpt,
    IsolateOpt,
    MaxTouchesOpt,
    MemOpt,
    ParamFileOpt,
    ParamOpt,
    ProfileOpt,
    check_outputs,
    err,
    max_touches,
    out,
    parse_params,
    results_table,
    simulate_with_progress,
)
from uvmlab.core.errors import RunInterrupted
from uvmlab.core.units import fmt_bytes, fmt_ns
from uvmlab.driver.params import describe as describe_params
from uvmlab.engine.sampling import record_samples
from uvmlab.results.export import check_suffix, save_result
from uvmlab.results.perfetto import write_timeline
from uvmlab.workload.fileformat import validate_file, write_workload
from uvmlab.workload.synthetic import describe as describe_workloads

trace_app = typer.Typer(no_args_is_help=True, help="Inspect workload trace files.")


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(demo)
    app.command()(workloads)
    app.command()(params)
    app.add_typer(trace_app, name="trace")


def run(
    workload: Annotated[
        str, typer.Argument(help="Built-in spec (random:size=2GiB,seed=1) or a .uvmw trace file.")
    ],
    param: ParamOpt = None,
    params_file: ParamFileOpt = None,
    gpu: GpuOpt = "h200",
    gpu_memory: MemOpt = None,
    profile: ProfileOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print totals as one JSON object.")] = False,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Save the result: .json (everything), .parquet (events as the table) or .csv "
            "(per-operation rows and a total row; events beside it as NAME.events.csv).",
        ),
    ] = None,
    ops: Annotated[bool, typer.Option("--ops", help="Show the per-operation table.")] = False,
    timeline: Annotated[
        Path | None,
        typer.Option(
            "--timeline",
            help="Write a Chrome/Perfetto trace (JSON) for ui.perfetto.dev. Records events: the run "
            "takes 10-40x longer (docs/performance.md, bench/bench_costs.py).",
        ),
    ] = None,
    events: Annotated[
        bool,
        typer.Option(
            "--events",
            help="Record the event stream (kept by --out and --parquet); the run takes 10-40x "
            "longer, on the reference fault path (docs/performance.md).",
        ),
    ] = False,
    parquet: Annotated[
        Path | None, typer.Option("--parquet", help="Save the result as Parquet (events as the table).")
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            help="Policies replacing the driver's decisions: NAME, NAME(k=v), "
            "path/file.py[:Class], or a+b (see `uvmlab policy list`).",
        ),
    ] = None,
    gpus: Annotated[
        int | None,
        typer.Option(
            "--gpus",
            min=1,
            help="GPUs of the --gpu part in the VA space (default: as many as the workload names).",
        ),
    ] = None,
    isolate: IsolateOpt = False,
    max_touches_: MaxTouchesOpt = None,
) -> None:
    """Run one workload in the model and print its totals."""
    check_outputs(("--out", out_file), ("--parquet", parquet), ("--timeline", timeline), stdout=("--out",))
    if out_file is not None and str(out_file) != "-":
        check_suffix(out_file)  # before the run: a typo costs nothing
    prm = parse_params(param, params_file)
    # residency samples are cheap; take them whenever the result is kept (heatmaps, reports)
    keep = out_file is not None or parquet is not None or timeline is not None
    with record_samples(enabled=keep) as rec:
        try:
            res = simulate_with_progress(
                workload,
                f"simulating {workload}",
                quiet=as_json,
                gpu=gpu,
                params=prm,
                profile=profile,
                gpu_memory=gpu_memory,
                policies=policy,
                events=events or timeline is not None or parquet is not None,
                gpus=gpus,
                isolate=isolate,
                max_touches=max_touches(max_touches_),
            )
        except RunInterrupted as stop:  # Ctrl-C: keep what was done, then stop
            if out_file is not None:
                stop.result.save(out_file)
                err.print(f"interrupted: the partial result is in {out_file}", highlight=False)
            raise
    if keep:
        rec.attach(res)
    if out_file is not None:
        if str(out_file) == "-":
            res.save(out_file)
        else:
            save_result(res, out_file)
    if parquet is not None:
        res.to_parquet(parquet)
    if timeline is not None:
        write_timeline(res, timeline)
    if as_json:
        print(json.dumps(res.canonical()))
    else:
        out.print(res.summary())
        if ops:
            df = res.to_pandas()
            t = Table(title="per operation", title_justify="left")
            for c in (
                "op_index",
                "op",
                "name",
                "time_ns",
                "gpu_faults",
                "cpu_faults",
                "bytes_htod",
                "bytes_dtoh",
                "evictions",
            ):
                t.add_column(c, justify="right" if c not in ("op", "name") else "left")
            for r in df.itertuples():
                t.add_row(
                    str(r.op_index),
                    r.op,
                    r.name,
                    fmt_ns(r.time_ns),
                    f"{r.gpu_faults:,}",
                    f"{r.cpu_faults:,}",
                    fmt_bytes(r.bytes_htod),
                    fmt_bytes(r.bytes_dtoh),
                    f"{r.evictions:,}",
                )
            out.print(t)
    if res.fatal:
        raise typer.Exit(1)


def demo(
    gpu: GpuOpt = "h200", quick: Annotated[bool, typer.Option(help="Smaller sizes (for tests).")] = False
) -> None:
    """A tour on built-in defaults: a handful of workloads, then oversubscription. No GPU needed."""
    size = "64MiB" if quick else "512MiB"
    small = "16MiB" if quick else "64MiB"  # prefetch off faults every page: keep it short
    specs = [
        f"stream:size={size},passes=2",
        f"random:size={size}",
        f"stride:size={size}",
        f"stencil:size={size}",
        f"gemm:size={size}",
        f"pingpong:size={size}",
        f"llm:size={size}",
        f"vecsearch:size={size}",
    ]
    out.print(
        f"[bold]uvmlab demo[/bold]: the modeled nvidia-uvm (driver 580 defaults) on a "
        f"{gpu.upper()}, all heuristics on\n"
    )
    rows = []
    for s in specs:
        rows.append((s.split(":")[0], simulate(s, gpu=gpu)))
    out.print(results_table("Workloads that fit in GPU memory", rows))
    rows = []
    for s in (f"random:size={small}",):
        for p in ({"uvm_perf_prefetch_enable": 0}, {}):
            label = "prefetch off" if p else "prefetch on"
            rows.append((f"{s.split(':')[0]} {small}, {label}", simulate(s, gpu=gpu, params=p)))
    out.print(results_table("The bitmap-tree prefetcher (uvm_perf_prefetch_enable)", rows))
    rows = []
    for s in (f"stream:size={size},passes=2", f"random:size={size}", f"gemm:size={size}", f"llm:size={size}"):
        for ratio in ("50%", "100%", "125%", "150%", "200%"):
            rows.append((f"{s.split(':')[0]} @ {ratio}", simulate(s, gpu=gpu, gpu_memory=ratio)))
    out.print(results_table("Oversubscription (workload size as % of GPU memory, LRU eviction)", rows))


def workloads() -> None:
    """List the built-in workloads and their parameters."""
    t = Table(title="built-in workloads (NAME:key=value,...)", title_justify="left")
    t.add_column("name")
    t.add_column("what it does")
    t.add_column("parameters (defaults)")
    for d in describe_workloads():
        t.add_row(d["name"], d["summary"], ", ".join(f"{k}={v}" for k, v in d["params"].items()))
    out.print(t)


def params(
    all_params: Annotated[
        bool, typer.Option("--all", help="Also the parameters the model does not use.")
    ] = False,
) -> None:
    """The driver's module parameters: names, defaults, valid ranges, meaning."""
    t = Table(title="nvidia-uvm module parameters (driver 580 defaults)", title_justify="left")
    for c in ("name", "default", "valid", "meaning"):
        t.add_column(c)
    for row in describe_params(modeled_only=not all_params):
        t.add_row(*[str(x) for x in row])
    out.print(t)


@trace_app.command("info")
def trace_info(path: Path) -> None:
    """Validate a .uvmw workload file and describe it."""
    info = validate_file(path)
    t = Table(title=str(path), title_justify="left", show_header=False)
    for k, v in info.items():
        t.add_row(k, str(v))
    out.print(t)


@trace_app.command("write")
def trace_write(workload: str, path: Path) -> None:
    """Write a built-in workload to a .uvmw file."""
    check_outputs(("PATH", path))
    write_workload(load_workload(workload), path)
    out.print(f"wrote {path}")
