"""``uvmlab gaia``: GAIA's page cache shared by the CPU and the GPU (docs/gaia-hmm.md)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from uvmlab.api import load_workload
from uvmlab.cli.common import GpuOpt, MemOpt, ParamFileOpt, ParamOpt, ProfileOpt, err, out, parse_params
from uvmlab.core.errors import UvmlabError
from uvmlab.core.units import fmt_bytes, fmt_ns
from uvmlab.gaia import scenarios
from uvmlab.gaia.compare import compare as run_compare
from uvmlab.gaia.compare import markdown_table, to_json
from uvmlab.gaia.costs import DEFAULT_HOST_COSTS
from uvmlab.gaia.engine import simulate_gaia

gaia_app = typer.Typer(no_args_is_help=True, help="GAIA: one OS page cache for CPU and GPU memory.")

PolicyOpt = Annotated[
    str | None,
    typer.Option("--policy", help="Prefetch / eviction policies (see `uvmlab policy list`)."),
]


def register(app: typer.Typer) -> None:
    app.add_typer(gaia_app, name="gaia")


def workload_from(spec: str):
    """A ``.uvmw`` file, or a built-in scenario: ``scan``, ``prodcons:size=64MiB,rounds=2``."""
    name, _, rest = spec.partition(":")
    if name not in scenarios.SCENARIOS:
        return load_workload(spec)
    kw: dict[str, object] = {}
    for item in filter(None, rest.split(",")):
        k, eq, v = item.partition("=")
        if not eq:
            raise UvmlabError(f"scenario option {item!r} is not KEY=VALUE")
        try:
            kw[k.strip()] = (
                int(v)
                if k.strip() in ("rounds", "kernels")
                else (float(v) if k.strip() == "cached" else v.strip())
            )
        except ValueError:
            raise UvmlabError(f"scenario option {item!r}: {v!r} is not a number") from None
    try:
        return scenarios.build(name, **kw)
    except TypeError:
        raise UvmlabError(
            f"scenario {name!r} takes {', '.join(scenarios.SPECS[name])} and cached, not {', '.join(kw)}"
        ) from None


def _write_atomic(path: Path, text: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise UvmlabError(f"{path}: cannot write: {e.strerror or e}") from None


@gaia_app.command()
def compare(
    scenario: Annotated[
        list[str] | None,
        typer.Option("--scenario", "-s", help="scan, prodcons or reread (repeatable; default all)."),
    ] = None,
    gpu: GpuOpt = "h200",
    profile: ProfileOpt = None,
    scale: Annotated[float, typer.Option("--scale", help="Multiply the scenarios' file sizes.")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="Save the rows (JSON).")] = None,
) -> None:
    """GAIA's shared page cache vs read + cudaMemcpy vs managed memory filled by the CPU, on the
    same file workloads: time, bytes over the link, page-cache hits on each side."""
    names = scenario or list(scenarios.SCENARIOS)
    for n in names:
        if n not in scenarios.SCENARIOS:
            raise UvmlabError(f"unknown scenario {n!r}; one of {', '.join(scenarios.SCENARIOS)}")
    if not 0 < scale <= 64:
        raise UvmlabError(f"--scale must be in (0, 64], got {scale}")
    rows = run_compare(
        names,
        gpu=gpu,
        profile=profile,
        scale=scale,
        progress=None if as_json else (lambda n: err.print(f"comparing {n} ...")),
    )
    if out_file is not None:
        _write_atomic(out_file, to_json(rows))
    if as_json:
        print(to_json(rows), end="")
        return
    out.print(markdown_table(rows), markup=False, highlight=False)
    h = DEFAULT_HOST_COSTS
    out.print(
        f"host costs assumed, not measured: storage {h.storage_read_gbps} GB/s read, "
        f"{h.storage_write_gbps} GB/s write; page-cache copy {h.memcpy_gbps} GB/s",
        markup=False,
    )


@gaia_app.command("run")
def run(
    workload: Annotated[
        str,
        typer.Argument(
            help="A .uvmw file with file allocations, or a scenario "
            "(scan, prodcons:rounds=2, reread:size=64MiB)."
        ),
    ],
    param: ParamOpt = None,
    params_file: ParamFileOpt = None,
    gpu: GpuOpt = "h200",
    gpu_memory: MemOpt = None,
    profile: ProfileOpt = None,
    policy: PolicyOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print totals as one JSON object.")] = False,
    ops: Annotated[bool, typer.Option("--ops", help="Show the per-operation table.")] = False,
) -> None:
    """Run a file workload on the GAIA model and print its totals."""
    w = workload_from(workload)
    if gpu_memory is not None and gpu_memory.strip().endswith("%"):
        raise UvmlabError("--gpu-memory takes a size for the GAIA model (e.g. 8GiB)")
    res = simulate_gaia(
        w,
        gpu=gpu,
        params=parse_params(param, params_file),
        profile=profile,
        gpu_memory=gpu_memory,
        policies=policy,
    )
    if as_json:
        print(json.dumps({"workload": res.workload, "totals": res.totals, "fatal": res.fatal}))
    else:
        t = res.totals
        out.print(
            f"{res.workload}: {fmt_ns(t['time_ns'])}; to GPU {fmt_bytes(t['bytes_htod'])}, "
            f"to host {fmt_bytes(t['bytes_dtoh'])}; host page cache {t['host_hits']:,} hits / "
            f"{t['host_misses']:,} misses; GPU page cache {t['gpu_hits']:,} hits / "
            f"{t['gpu_misses']:,} misses; {t['gpu_faults']:,} GPU faults, "
            f"{t['evictions']:,} evictions",
            markup=False,
        )
        if ops:
            for row in res.ops:
                out.print(
                    f"  {row['op_index']:>4} {row['op']:<9} {row['name']:<24} "
                    f"{fmt_ns(row['time_ns']):>10}  to GPU {fmt_bytes(row['bytes_htod']):>9}  "
                    f"to host {fmt_bytes(row['bytes_dtoh']):>9}",
                    markup=False,
                )
    if res.fatal:
        err.print(f"uvmlab: the run ended early: {res.fatal}", markup=False)
        raise typer.Exit(1)
