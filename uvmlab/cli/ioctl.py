"""``uvmlab ioctl``: capture, decode and replay ioctl traces; the driver's module stack."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from uvmlab.api import simulate
from uvmlab.cli.common import out
from uvmlab.core.errors import UvmlabError
from uvmlab.frontend import report
from uvmlab.frontend.capture import capture
from uvmlab.frontend.client import managed_advise_session
from uvmlab.frontend.decode import decode, write_parquet, write_timeline
from uvmlab.frontend.replay import replay_records
from uvmlab.frontend.trace import read_trace, write_trace
from uvmlab.workload.fileformat import write_workload

ioctl_app = typer.Typer(
    no_args_is_help=True, help="The driver's front end: capture, decode and replay ioctl traces."
)


def register(app: typer.Typer) -> None:
    app.add_typer(ioctl_app, name="ioctl")


def _table(title: str, rows: list[dict]) -> Table:
    t = Table(title=title)
    if not rows:
        t.add_column("(none)")
        return t
    for k in rows[0]:
        t.add_column(str(k))
    for r in rows:
        t.add_row(*[str(v) for v in r.values()])
    return t


@ioctl_app.command("capture", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def capture_cmd(
    ctx: typer.Context,
    out_path: Annotated[
        Path, typer.Option("--out", "-o", help="Trace file to write (a .gz name compresses it).")
    ] = Path("trace.ioctl.gz"),
) -> None:
    """Run a program with the ioctl shim preloaded: uvmlab ioctl capture -o T.ioctl.gz -- PROG ARGS."""
    argv = list(ctx.args)
    s = capture(argv, out_path)
    out.print(f"{s.trace}: {s.bytes_raw} bytes of records; {argv[0]} exited with {s.returncode}")


@ioctl_app.command("demo")
def demo_cmd(
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Trace file to write.")] = Path(
        "model-managed_advise.ioctl.gz"
    ),
) -> None:
    """Write a *modelled* trace: managed_advise.cu's driver calls answered by uvmlab's front end."""
    mc = managed_advise_session()
    write_trace(mc.records, out_path)
    out.print(f"{out_path}: {len(mc.records)} modelled calls (not a capture of a real driver)")


@ioctl_app.command("decode")
def decode_cmd(
    trace: Annotated[Path, typer.Argument(help="Trace written by 'uvmlab ioctl capture'.")],
    calls: Annotated[int, typer.Option("--calls", help="List the first N calls (0: none).")] = 40,
    tree: Annotated[int, typer.Option("--tree", help="Show the first N tree changes (0: none).")] = 40,
    family: Annotated[
        str | None, typer.Option("--family", help="List only these families: rm,os,uvm,mmap.")
    ] = None,
    parquet: Annotated[Path | None, typer.Option("--parquet", help="Write every call here.")] = None,
    timeline: Annotated[
        Path | None, typer.Option("--timeline", help="Write a Perfetto (Chrome JSON) timeline here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print statistics and summary as JSON.")] = False,
) -> None:
    """Name every call, show the RM object tree as it grows, summarise by call type."""
    dec = decode(read_trace(trace))
    stats = report.naming_stats(dec)
    if parquet is not None:
        write_parquet(dec, parquet)
    if timeline is not None:
        write_timeline(dec, timeline)
    if as_json:
        print(json.dumps({"stats": stats, "summary": dec.summary()}, indent=1))
        return
    fams = set(family.split(",")) if family else None
    if calls:
        out.print(_table(f"{trace.name}: calls", report.call_rows(dec, families=fams, limit=calls)))
    if tree:
        out.print(_table("RM object tree as it grows", report.tree_rows(dec, limit=tree)))
    out.print(_table("calls by type", dec.summary()))
    out.print(
        f"{stats['named']}/{stats['calls']} calls named ({stats['named_pct']} %); the RM model "
        f"answered {stats['rm_model_agreed']}/{stats['rm_model_checked']} allocs/frees/dups as the "
        f"driver did; {stats['objects_alive_at_end']} objects alive at the end"
    )
    if stats["unnamed"]:
        rows = [{"call (raw)": k, "count": v} for k, v in stats["unnamed"].items()]
        out.print(_table("not named", rows))
    for d in dec.disagreements[:10]:
        out.print(f"model disagrees: {d}")


@ioctl_app.command("replay")
def replay_cmd(
    trace: Annotated[Path, typer.Argument(help="Trace written by 'uvmlab ioctl capture'.")],
    gpu: Annotated[str, typer.Option("--gpu", help="GPU model: h200 or h100.")] = "h200",
    workload_out: Annotated[
        Path | None, typer.Option("--workload-out", help="Also write the workload made from it (.uvmw).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Drive the UVM model from the trace's /dev/nvidia-uvm calls."""
    rep = replay_records(read_trace(trace), name=trace.name.split(".")[0])
    w = rep.workload()
    if w is None or rep.main is None:
        raise UvmlabError(f"{trace}: no managed memory was mapped through /dev/nvidia-uvm")
    if workload_out is not None:
        write_workload(w, workload_out)
    res = simulate(w, gpu=gpu)
    calls = [dataclasses.asdict(c) for c in rep.main.calls]
    keys = ("time_ns", "bytes_htod", "bytes_dtoh", "gpu_faults", "cpu_faults")
    totals = {k: res.totals.get(k, 0) for k in keys}
    if as_json:
        doc = {
            "checked": rep.checked,
            "agreed": rep.agreed,
            "disagreements": rep.disagreements,
            "not_modelled": rep.main.ignored,
            "calls": calls,
            "totals": totals,
        }
        print(json.dumps(doc, indent=1))
        return
    out.print(_table("UVM calls that reached the model", calls))
    out.print(
        f"model status = driver status for {rep.agreed}/{rep.checked} UVM ioctls; "
        f"{len(w.allocs)} managed ranges; not modelled: {rep.main.ignored or 'none'}"
    )
    for d in rep.disagreements[:10]:
        out.print(f"model disagrees: {d}")
    out.print(_table("model totals", [totals]))


@ioctl_app.command("modules")
def modules_cmd() -> None:
    """The driver's modules in load order: dependencies, exported interfaces, device files."""
    out.print(_table("module stack (unload in reverse order)", report.module_rows()))
