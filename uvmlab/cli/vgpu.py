"""``uvmlab vgpu``: vGPU types of a GPU, and scenario runs with several tenants."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from uvmlab.cli.common import err, out
from uvmlab.core.units import fmt_bytes, fmt_ns
from uvmlab.results.plots import comparison_bars, save_png
from uvmlab.results.tables import write_tables
from uvmlab.vgpu import export
from uvmlab.vgpu.host import VgpuHost
from uvmlab.vgpu.report import run_scenario
from uvmlab.vgpu.scenario import load_scenario
from uvmlab.vgpu.types import DEFAULT_TIMESLICE_CONFIRMED, types_for

vgpu_app = typer.Typer(no_args_is_help=True, help="Tenants sharing one GPU: vGPU types, scenario runs.")


def register(app: typer.Typer) -> None:
    app.add_typer(vgpu_app, name="vgpu")


@vgpu_app.command("types")
def types_cmd(
    gpu: Annotated[str, typer.Option("--gpu", help="h100, h200 or v100.")] = "h100",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    sysfs: Annotated[
        bool, typer.Option("--sysfs", help="Show the mdev sysfs tree a host with this GPU exposes.")
    ] = False,
) -> None:
    """The time-sliced vGPU types of a GPU (framebuffer, instances per GPU, time slice)."""
    types = types_for(gpu)
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "name": t.name,
                        "type_id": t.type_id,
                        "framebuffer_bytes": t.framebuffer_bytes,
                        "max_instances": t.max_instances,
                        "default_timeslice_ns": t.default_timeslice_ns,
                        "default_timeslice_confirmed": DEFAULT_TIMESLICE_CONFIRMED,
                        "source": t.source,
                        "confirmed": t.confirmed,
                    }
                    for t in types
                ],
                indent=1,
            )
        )
        return
    if sysfs:
        host = VgpuHost(gpu)
        base = f"/sys/class/mdev_bus/{host.pci_name}/mdev_supported_types"
        out.print(base + "/")
        for td in host.mdev.listdir(base):
            out.print(f"  {td}/")
            for attr in ("name", "description", "device_api", "available_instances"):
                out.print(f"    {attr}: {host.mdev.read(f'{base}/{td}/{attr}').strip()}")
            out.print("    create (write a UUID)  devices/")
        return
    tab = Table(title=f"vGPU types of {gpu} (time-sliced, C-series)")
    for col in ("type", "type id", "framebuffer", "max per GPU", "fixed share", "default time slice", "row"):
        tab.add_column(col, justify="right" if col not in ("type id", "row") else "left")
    for t in types:
        tab.add_row(
            t.name,
            t.type_id,
            f"{t.framebuffer_bytes >> 30} GiB",
            str(t.max_instances),
            f"1/{t.max_instances}",
            f"{t.default_timeslice_ns / 1e6:g} ms"
            + ("" if DEFAULT_TIMESLICE_CONFIRMED else " (unconfirmed)"),
            "confirmed" if t.confirmed else "unconfirmed",
        )
    out.print(tab)
    out.print(f"source: {types[0].source}")
    if not all(t.confirmed for t in types) or not DEFAULT_TIMESLICE_CONFIRMED:
        out.print(
            "unconfirmed: not read in the cited NVIDIA document (uvmlab/vgpu/types.py says why); "
            "do not rely on the exact value"
        )


@vgpu_app.command("run")
def run_cmd(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (TOML).")],
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Write result.json, tenants.parquet, ops.parquet, timeline.json (Perfetto), plots, "
            "and tables/ (the single-run Parquet tables, a run per tenant) here.",
        ),
    ] = None,
    no_alone: Annotated[
        bool, typer.Option("--no-alone", help="Skip the alone runs (no slowdown, no fairness).")
    ] = False,
    policy: Annotated[
        str | None, typer.Option("--policy", help="GPU-wide policy, replacing the scenario's.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Run a scenario: tenants together, then each alone; one row per tenant."""
    sc = load_scenario(scenario)
    if policy is not None:
        sc = dataclasses.replace(sc, policy=None if policy in ("default", "none") else policy)
    t0 = time.monotonic()
    last = [0.0]

    def progress(label: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] > 2.0 and now - t0 > 2.0:
            last[0] = now
            err.print(f"  {label}: {done}/{total} operations", highlight=False)

    res = run_scenario(sc, alone=not no_alone, progress=progress)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        res.save_json(out_dir / "result.json")
        export.write_parquet(res, out_dir)
        export.write_timeline(res, out_dir / "timeline.json")
        save_png(export.timeline_figure(res), str(out_dir / "timeline.png"))
        if not no_alone:
            save_png(export.tenants_figure(res), str(out_dir / "tenants.png"))
        # the single-run views, a tenant per run: runs.parquet has a row per tenant
        singles = res.tenant_results()
        write_tables(singles, out_dir / "tables", [t.name for t in sc.tenants])
        save_png(comparison_bars(singles, [t.name for t in sc.tenants]), str(out_dir / "compare.png"))
    if as_json:
        print(json.dumps(res.to_dict(), indent=1))
        return
    tab = Table(
        title=f"{sc.name}: {sc.mode} memory, {sc.scheduler.value} scheduler, "
        f"{fmt_bytes(res.together.capacity_bytes)} GPU memory"
    )
    cols = [
        "tenant",
        "makespan",
        "slowdown",
        "kernel p50",
        "kernel p99",
        "unit mean",
        "moved",
        "evicted",
        "fatal",
    ]
    for c in cols:
        tab.add_column(c, justify="left" if c in ("tenant", "fatal") else "right")
    for r in res.rows:
        ev = (
            ", ".join(
                f"{fmt_bytes(r[f'evicted_by_{o}'])} by {o}"
                for o in (x["tenant"] for x in res.rows)
                if r[f"evicted_by_{o}"]
            )
            or "0 B"
        )
        tab.add_row(
            r["tenant"],
            fmt_ns(r["makespan_ns"]),
            f"{r['slowdown']:.2f}x" if "slowdown" in r else "-",
            fmt_ns(r["kernel_p50_ns"]),
            fmt_ns(r["kernel_p99_ns"]),
            fmt_ns(r["unit_mean_ns"]) if r["units"] else "-",
            fmt_bytes(r["bytes_htod"] + r["bytes_dtoh"]),
            ev,
            r["fatal"] or "",
        )
    out.print(tab)
    if not no_alone:
        out.print(f"Jain's fairness index: {res.fairness:.3f}")
    if out_dir is not None:
        out.print(f"wrote {out_dir}/")
