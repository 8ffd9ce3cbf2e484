"""``uvmlab hmm``: the GPU touching malloc'd memory through HMM (docs/gaia-hmm.md)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from uvmlab.api import load_workload
from uvmlab.cli.common import GpuOpt, MemOpt, ParamFileOpt, ParamOpt, ProfileOpt, out, parse_params
from uvmlab.core.units import fmt_bytes, fmt_ns
from uvmlab.driver.hal import get_gpu
from uvmlab.hmm.engine import HMM_COUNTERS
from uvmlab.hmm.scenarios import example
from uvmlab.hmm.simulate import simulate_hmm
from uvmlab.hmm.support import hal_supports_hmm, machine_report

hmm_app = typer.Typer(no_args_is_help=True, help="HMM: pageable memory and device-private pages.")


def register(app: typer.Typer) -> None:
    app.add_typer(hmm_app, name="hmm")


@hmm_app.command("run")
def run(
    workload: Annotated[
        str, typer.Argument(help="A .uvmw file with pageable allocations, or 'example' / 'example:SIZE'.")
    ],
    param: ParamOpt = None,
    params_file: ParamFileOpt = None,
    gpu: GpuOpt = "h200",
    gpu_memory: MemOpt = None,
    profile: ProfileOpt = None,
    policy: Annotated[
        str | None, typer.Option("--policy", help="Policies (see `uvmlab policy list`).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print totals as one JSON object.")] = False,
    ops: Annotated[bool, typer.Option("--ops", help="Show the per-operation migrations.")] = False,
) -> None:
    """Run a workload with pageable allocations on a modelled system with HMM."""
    name, _, size = workload.partition(":")
    w = example(size or "64MiB") if name == "example" else load_workload(workload)
    res = simulate_hmm(
        w,
        gpu=gpu,
        params=parse_params(param, params_file),
        profile=profile,
        gpu_memory=gpu_memory,
        policies=policy,
    )
    t = res.totals
    if as_json:
        print(json.dumps({"workload": res.workload, "totals": t, "fatal": res.fatal}))
    else:
        out.print(
            f"{res.workload}: {fmt_ns(t['time_ns'])}; to GPU {fmt_bytes(t['bytes_htod'])}, "
            f"to host {fmt_bytes(t['bytes_dtoh'])}; {t['gpu_faults']:,} GPU faults, "
            f"{t['cpu_faults']:,} UVM CPU faults",
            markup=False,
        )
        out.print("  " + ", ".join(f"{k.removeprefix('hmm_')} {t[k]:,}" for k in HMM_COUNTERS), markup=False)
        if ops:
            for row in res.ops:
                out.print(
                    f"  {row['op_index']:>4} {row['name']:<22} {fmt_ns(row['time_ns']):>10}  "
                    f"to device {row['hmm_to_device']:>8,}  created {row['hmm_populated_on_device']:>8,}"
                    f"  back(fault) {row['hmm_to_ram_fault']:>8,}  back(evict) "
                    f"{row['hmm_to_ram_eviction']:>8,}  device-private {row['hmm_device_private']:>8,}",
                    markup=False,
                )
    if res.fatal:
        raise typer.Exit(1)


@hmm_app.command()
def support(
    gpu: Annotated[list[str] | None, typer.Option("--gpu", help="h100, h200 (default both).")] = None,
) -> None:
    """Whether the modelled HAL serves HMM, and what the lab's real GPUs reported
    (PageableMemoryAccess), with the reason validation on them is or is not possible."""
    for g in gpu or ["h100", "h200"]:
        spec = get_gpu(g)
        rep = machine_report(spec.name)
        out.print(
            f"{spec.name}: model HAL {'serves' if hal_supports_hmm(spec) else 'cannot serve'} HMM "
            f"({spec.arch}); real machine: {rep.explain()}",
            markup=False,
        )
