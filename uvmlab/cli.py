"""The ``uvmlab`` command.

Every user-facing failure is a ``UvmlabError``: ``main`` prints it as one line on stderr and
exits non-zero. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from uvmlab.errors import UvmlabError
from uvmlab.units import fmt_bytes, fmt_ns

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="uvmlab: a faithful, programmable model of NVIDIA's UVM driver.")
trace_app = typer.Typer(no_args_is_help=True, help="Inspect workload trace files.")
app.add_typer(trace_app, name="trace")
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

ParamOpt = Annotated[list[str] | None, typer.Option(
    "--param", "-p", help="Module parameter, e.g. uvm_perf_prefetch_enable=0 (repeatable).")]
GpuOpt = Annotated[str, typer.Option("--gpu", help="GPU model: h200 or h100.")]
MemOpt = Annotated[str | None, typer.Option(
    "--gpu-memory", help="GPU memory for the model: a size ('16GiB') or an oversubscription "
                         "ratio ('150%' = the workload needs 1.5x the GPU's memory).")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="Cost profile name or JSON file.")]
ParamFileOpt = Annotated[Path | None, typer.Option(
    "--params-file", help="TOML file of module parameters ([params] table).")]


def _params(assignments: list[str] | None, params_file: Path | None):
    from uvmlab.driver.params import Params, parse_param_assignment

    overrides: dict = {}
    if params_file is not None:
        overrides.update(Params.from_toml(params_file).changed())
    for a in assignments or []:
        k, v = parse_param_assignment(a)
        overrides[k] = v
    return Params.from_overrides(overrides)


class _LazyProgress:
    """A progress bar that appears only when a run takes longer than a couple of seconds."""

    def __init__(self, label: str, quiet: bool = False) -> None:
        self.label = label
        self.t0 = time.monotonic()
        self.progress = None
        self.task = None
        self.quiet = quiet or not err.is_terminal

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.progress is None:
            if time.monotonic() - self.t0 < 2.0:
                return
            from rich.progress import BarColumn, Progress, TimeElapsedColumn

            self.progress = Progress("[progress.description]{task.description}", BarColumn(),
                                     "{task.percentage:>3.0f}%", TimeElapsedColumn(),
                                     console=err, transient=True)
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=total)
        self.progress.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _simulate(workload, progress_label: str, quiet: bool = False, **kw):
    from uvmlab.api import simulate

    bar = _LazyProgress(progress_label, quiet)
    try:
        return simulate(workload, progress=bar, **kw)
    finally:
        bar.close()


TOTALS_SHOWN = [("time", "time_ns"), ("GPU faults", "gpu_faults"), ("batches", "fault_batches"),
                ("CPU faults", "cpu_faults"), ("HtoD", "bytes_htod"),
                ("HtoD prefetch", "bytes_htod_prefetch"), ("DtoH", "bytes_dtoh"),
                ("evictions", "evictions"), ("thrashing", "thrashing_events")]


def _fmt(key: str, v: int) -> str:
    if key == "time_ns":
        return fmt_ns(v)
    if key.startswith("bytes"):
        return fmt_bytes(v)
    return f"{v:,}"


def results_table(title: str, rows: list[tuple[str, object]]) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("workload")
    for label, _ in TOTALS_SHOWN:
        t.add_column(label, justify="right")
    for name, r in rows:
        t.add_row(name, *[_fmt(k, r.totals.get(k, 0)) for _, k in TOTALS_SHOWN])
    return t


@app.command()
def run(workload: Annotated[str, typer.Argument(help="Built-in spec (random:size=2GiB,seed=1) "
                                                     "or a .uvmw trace file.")],
        param: ParamOpt = None, params_file: ParamFileOpt = None, gpu: GpuOpt = "h200",
        gpu_memory: MemOpt = None, profile: ProfileOpt = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print totals as one JSON object.")]
        = False,
        out_file: Annotated[Path | None, typer.Option("--out", "-o", help="Save the result (JSON).")]
        = None,
        ops: Annotated[bool, typer.Option("--ops", help="Show the per-operation table.")] = False,
        timeline: Annotated[Path | None, typer.Option(
            "--timeline", help="Write a Chrome/Perfetto trace (JSON) for ui.perfetto.dev.")]
        = None,
        events: Annotated[bool, typer.Option(
            "--events", help="Record the event stream (kept by --out and --parquet).")] = False,
        parquet: Annotated[Path | None, typer.Option(
            "--parquet", help="Save the result as Parquet (events as the table).")] = None,
        policy: Annotated[str | None, typer.Option(
            "--policy", help="Policies replacing the driver's decisions: NAME, NAME(k=v), "
                             "path/file.py[:Class], or a+b (see `uvmlab policy list`).")] = None,
        ) -> None:
    """Run one workload in the model and print its totals."""
    from uvmlab.results.sampling import record_samples

    prm = _params(param, params_file)
    # residency samples are cheap; take them whenever the result is kept (heatmaps, reports)
    keep = out_file is not None or parquet is not None or timeline is not None
    with record_samples(enabled=keep) as rec:
        res = _simulate(workload, f"simulating {workload}", quiet=as_json, gpu=gpu, params=prm,
                        profile=profile, gpu_memory=gpu_memory, policies=policy,
                        events=events or timeline is not None or parquet is not None)
    if keep:
        rec.attach(res)
    if out_file is not None:
        res.save(out_file)
    if parquet is not None:
        res.to_parquet(parquet)
    if timeline is not None:
        from uvmlab.results.perfetto import write_timeline

        write_timeline(res, timeline)
    if as_json:
        print(json.dumps(res.canonical()))
    else:
        out.print(res.summary())
        if ops:
            df = res.to_pandas()
            t = Table(title="per operation", title_justify="left")
            for c in ("op_index", "op", "name", "time_ns", "gpu_faults", "cpu_faults",
                      "bytes_htod", "bytes_dtoh", "evictions"):
                t.add_column(c, justify="right" if c not in ("op", "name") else "left")
            for r in df.itertuples():
                t.add_row(str(r.op_index), r.op, r.name, fmt_ns(r.time_ns), f"{r.gpu_faults:,}",
                          f"{r.cpu_faults:,}", fmt_bytes(r.bytes_htod), fmt_bytes(r.bytes_dtoh),
                          f"{r.evictions:,}")
            out.print(t)
    if res.fatal:
        raise typer.Exit(1)


@app.command()
def demo(gpu: GpuOpt = "h200",
         quick: Annotated[bool, typer.Option(help="Smaller sizes (for tests).")] = False) -> None:
    """A tour on built-in defaults: a handful of workloads, then oversubscription. No GPU needed."""
    from uvmlab.api import simulate

    size = "64MiB" if quick else "512MiB"
    small = "16MiB" if quick else "64MiB"  # prefetch off faults every page: keep it short
    specs = [f"stream:size={size},passes=2", f"random:size={size}", f"stride:size={size}",
             f"stencil:size={size}", f"gemm:size={size}", f"pingpong:size={size}",
             f"llm:size={size}", f"vecsearch:size={size}"]
    out.print(f"[bold]uvmlab demo[/bold]: the modeled nvidia-uvm (driver 580 defaults) on a "
              f"{gpu.upper()}, all heuristics on\n")
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
    for s in (f"stream:size={size},passes=2", f"random:size={size}", f"gemm:size={size}",
              f"llm:size={size}"):
        for ratio in ("50%", "100%", "125%", "150%", "200%"):
            rows.append((f"{s.split(':')[0]} @ {ratio}",
                         simulate(s, gpu=gpu, gpu_memory=ratio)))
    out.print(results_table("Oversubscription (workload size as % of GPU memory, LRU eviction)",
                            rows))


@app.command()
def workloads() -> None:
    """List the built-in workloads and their parameters."""
    from uvmlab.workload.synthetic import describe

    t = Table(title="built-in workloads (NAME:key=value,...)", title_justify="left")
    t.add_column("name")
    t.add_column("what it does")
    t.add_column("parameters (defaults)")
    for d in describe():
        t.add_row(d["name"], d["summary"],
                  ", ".join(f"{k}={v}" for k, v in d["params"].items()))
    out.print(t)


@app.command()
def params(all_params: Annotated[bool, typer.Option(
        "--all", help="Also the parameters the model does not use.")] = False) -> None:
    """The driver's module parameters: names, defaults, valid ranges, meaning."""
    from uvmlab.driver.params import describe

    t = Table(title="nvidia-uvm module parameters (driver 580 defaults)", title_justify="left")
    for c in ("name", "default", "valid", "meaning"):
        t.add_column(c)
    for row in describe(modeled_only=not all_params):
        t.add_row(*[str(x) for x in row])
    out.print(t)


@trace_app.command("info")
def trace_info(path: Path) -> None:
    """Validate a .uvmw workload file and describe it."""
    from uvmlab.workload.fileformat import validate_file

    info = validate_file(path)
    t = Table(title=str(path), title_justify="left", show_header=False)
    for k, v in info.items():
        t.add_row(k, str(v))
    out.print(t)


@trace_app.command("write")
def trace_write(workload: str, path: Path) -> None:
    """Write a built-in workload to a .uvmw file."""
    from uvmlab.api import load_workload
    from uvmlab.workload.fileformat import write_workload

    write_workload(load_workload(workload), path)
    out.print(f"wrote {path}")


# Command groups that live beside the code they drive register themselves here.
for _module in ("uvmlab.policy.cli", "uvmlab.results.cli", "uvmlab.sweep.cli", "uvmlab.cuda.cli"):
    try:
        __import__(_module)
    except ModuleNotFoundError as _e:
        if _e.name != _module:
            raise
    else:
        sys.modules[_module].register(app)


def main() -> None:
    try:
        rc = app(standalone_mode=False)  # click returns the code of a typer.Exit here
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except UvmlabError as e:
        print(f"uvmlab: error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("uvmlab: interrupted")
        sys.exit(130)
    except (typer.Exit, SystemExit) as e:
        sys.exit(getattr(e, "exit_code", getattr(e, "code", 0)))
    except Exception as e:  # usage errors from click (typer ships its own copy of click)
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            print(f"uvmlab: error: {' '.join(e.format_message().split())} (see --help)",
                  file=sys.stderr)
            sys.exit(e.exit_code)
        if type(e).__name__ == "Abort":
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
