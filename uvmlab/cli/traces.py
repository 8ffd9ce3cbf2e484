"""``uvmlab trace import`` and ``uvmlab trace export``: real programs' traces in, page streams out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from uvmlab.api import load_workload
from uvmlab.cli.common import err, out
from uvmlab.cli.model import trace_app
from uvmlab.core.errors import UvmlabError
from uvmlab.core.units import fmt_bytes, fmt_ns
from uvmlab.results.export import check_suffix
from uvmlab.validation.programs import compare_program
from uvmlab.workload.fileformat import write_workload
from uvmlab.workload.importers import load_trace, to_workload
from uvmlab.workload.importers.um_trace import TOUCH_MODES
from uvmlab.workload.pagestream import PROCESSORS, write_libcachesim_csv


def _fmt(key: str, v: float) -> str:
    if key.startswith("bytes"):
        return fmt_bytes(v)
    if key.endswith("_ns"):
        return fmt_ns(v)
    return f"{int(v):,}"


def trace_import(
    source: Annotated[
        Path, typer.Argument(help="Nsight Systems / nvprof SQLite export, or a `uvmlab capture` file (.npz).")
    ],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Workload file to write (.uvmw).")],
    touches: Annotated[
        str,
        typer.Option(
            help="migrations: pages moved for a fault or by the prefetcher count as touched "
            "(default); faults: only faulting pages (docs/importing.md)."
        ),
    ] = "migrations",
    name: Annotated[str | None, typer.Option(help="Workload name (default: the file's stem).")] = None,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare", help="Replay it in the model and compare bytes and kernel time with the real run."
        ),
    ] = False,
    gpu: Annotated[
        str | None, typer.Option(help="GPU to replay on with --compare (default: the capture's, else h200).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """Turn a real program's unified-memory trace into a workload the model replays."""
    check_suffix(out_path, (".uvmw",), "workload")
    if touches not in TOUCH_MODES:
        raise UvmlabError(f"--touches {touches!r}: use {' or '.join(TOUCH_MODES)}")
    trace = load_trace(source)
    w, rep = to_workload(trace, name or source.stem, touches=touches)
    write_workload(w, out_path)
    report = {
        "workload": str(out_path),
        "ops": len(w.ops),
        "touches": w.touch_count(),
        "import": rep.as_dict(),
    }
    if compare:
        err.print(f"replaying {source.name} in the model ...")
        report["compare"] = compare_program(source, gpu=gpu, touches=touches)
    if as_json:
        print(json.dumps(report, default=str))
        return
    out.print(
        f"wrote {out_path}: {len(w.ops):,} ops, {w.touch_count():,} touches, {len(w.allocs)} allocations"
    )
    for line in rep.lines():
        out.print(f"  {line}")
    if compare:
        c = report["compare"]
        t = Table(
            title=f"{c['program']}: real run ({c['captured_on'] or 'trace'}) vs model ({c['gpu']})",
            title_justify="left",
        )
        for col in ("", "real", "model", "error"):
            t.add_column(col, justify="right" if col else "left")
        for key, row in c["rows"].items():
            e = row["error"]
            t.add_row(key, _fmt(key, row["real"]), _fmt(key, row["model"]), "-" if e is None else f"{e:+.1%}")
        out.print(t)
        out.print(f"  real bytes from the {c['bytes_source']}")


def trace_export(
    workload: Annotated[str, typer.Argument(help="A .uvmw file or a built-in spec.")],
    path: Annotated[Path, typer.Argument(help="Output file (.csv).")],
    fmt: Annotated[
        str, typer.Option("--format", help="libcachesim: libCacheSim's CSV trace (time,obj_id,obj_size,op).")
    ] = "libcachesim",
    processors: Annotated[str, typer.Option(help="Whose touches: gpu, cpu or all.")] = "gpu",
) -> None:
    """Write a workload's page stream for tools outside uvmlab (libCacheSim's cachesim)."""
    if fmt != "libcachesim":
        raise UvmlabError(f"--format {fmt!r}: the one page-stream format is libcachesim")
    check_suffix(path, (".csv",), "page-stream")
    if processors not in PROCESSORS:
        raise UvmlabError(f"--processors {processors!r}: use {', '.join(PROCESSORS)}")
    rows = write_libcachesim_csv(load_workload(workload), path, processors)
    out.print(
        f"wrote {path}: {rows:,} touches; run it with cachesim {path.name} csv lru 1gb -t "
        '"time-col=1, obj-id-col=2, obj-size-col=3, obj-id-is-num=true, has-header=true"'
    )


def register(app: typer.Typer) -> None:
    """Add ``import`` and ``export`` to the ``uvmlab trace`` group (``app`` is the root app)."""
    trace_app.command("import")(trace_import)
    trace_app.command("export")(trace_export)
