"""``uvmlab gpu-run``, ``capture``, ``calibrate``, ``validate`` and ``fit``: the real-GPU commands.

``uvmlab.cli.app`` calls :func:`register`; ``validate`` lives in ``uvmlab.cli.validate``.
Nothing here imports CuPy or the CUDA bindings at import time, and every command that needs a GPU
asks ``runtime.load_cuda`` first (``common.need_gpu``), so a machine without one gets
``GpuUnavailableError``, which the CLI's ``main`` prints as one line and turns into exit code 3,
before any work is done.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Annotated

import typer

from uvmlab.api import load_workload
from uvmlab.cli.common import err, need_gpu, out
from uvmlab.cli.validate import validate
from uvmlab.core.errors import UvmlabError
from uvmlab.core.units import fmt_bytes, fmt_ns, parse_size

# module references, not names: tests replace these functions with fakes
from uvmlab.cuda import executor, runtime
from uvmlab.cuda.adapter import result_from_real
from uvmlab.cuda.program_capture import capture_program
from uvmlab.driver.hal import get_gpu
from uvmlab.timing.cost_model import load_profile
from uvmlab.validation import calibrate as cal
from uvmlab.validation import fit as ft
from uvmlab.validation import quick, runs, sessions
from uvmlab.validation import suite as workload_sets
from uvmlab.validation.suite import HOLDOUT, SUITE, build, default_out, set_specs, suite_workloads
from uvmlab.validation.validate import gpu_key
from uvmlab.validation.warmup import WARMUP_S


def gpu_summary(res) -> str:
    """A real run's totals in a few lines (the model's ``Result.summary`` prints counters the
    GPU does not measure, such as raw faults and batches, as 0)."""
    t = res.totals
    checks = res.meta.get("checks", {})
    lines = [
        f"{res.workload} (gpu, {res.gpu}, driver {res.meta.get('driver_version', '?')}): "
        f"{fmt_ns(t.get('time_ns', 0))}",
        f"  GPU fault groups {t.get('gpu_fault_groups', 0):,} (faults serviced "
        f"{t.get('gpu_faults_notified', 0):,}); CPU faults {t.get('cpu_faults', 0):,}",
        f"  HtoD {fmt_bytes(t.get('bytes_htod', 0))} (fault "
        f"{fmt_bytes(t.get('bytes_htod_fault', 0))}, prefetch "
        f"{fmt_bytes(t.get('bytes_htod_prefetch', 0))}, user "
        f"{fmt_bytes(t.get('bytes_htod_user', 0))}); DtoH {fmt_bytes(t.get('bytes_dtoh', 0))}",
        f"  thrashing {t.get('thrashing_events', 0):,}, throttles {t.get('throttles', 0):,}, "
        f"remote maps {t.get('remote_maps', 0):,}",
    ]
    if checks.get("records_complete") is False:
        lines.append(
            f"  CUPTI lost records: causes and fault groups are lower bounds (missing "
            f"HtoD {fmt_bytes(checks.get('bytes_htod_missing', 0))}, DtoH "
            f"{fmt_bytes(checks.get('bytes_dtoh_missing', 0))})"
        )
    return "\n".join(lines)


def gpu_run(
    workload: Annotated[
        str,
        typer.Argument(
            help="Built-in spec (random:size=256MiB), a .uvmw trace file, or a suite or hold-out name."
        ),
    ],
    out_file: Annotated[
        Path | None, typer.Option("--out", "-o", help="Save the run as a Result (JSON).")
    ] = None,
    threads: Annotated[int, typer.Option(help="GPU threads in flight.")] = 65536,
    device: Annotated[int, typer.Option(help="CUDA device ordinal.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print totals as JSON.")] = False,
) -> None:
    """Run one workload on the real GPU (managed memory, CUPTI, driver counters)."""
    suite = dict(SUITE + HOLDOUT)
    # the workload is built first so that a bad spec says so even on a machine without a GPU
    w = build(suite[workload]) if workload in suite else load_workload(workload)
    need_gpu()
    res = result_from_real(executor.execute(w, threads=threads, device=device))
    if out_file is not None:
        res.save(out_file)
    if as_json:
        print(json.dumps(res.canonical()))
    else:
        out.print(gpu_summary(res))
        if out_file is not None:
            out.print(f"saved {out_file}")


def calibrate(
    name: Annotated[str | None, typer.Option(help="Profile name (default: <gpu>-pcie5).")] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Directory for <name>.json and <name>.raw.json.")
    ] = Path("."),
    size: Annotated[str, typer.Option(help="Buffer size of the benchmarks.")] = "512MiB",
    repeats: Annotated[
        int, typer.Option(help="Calibration runs (their spread is the reproducibility check).")
    ] = 2,
    refit: Annotated[
        Path | None, typer.Option(help="Refit a saved <name>.raw.json instead of measuring (no GPU needed).")
    ] = None,
    fault_reps: Annotated[
        int, typer.Option(help="All-in-flight rand2m fault repetitions per run (~1.4 s each at 512 MiB).")
    ] = cal.FAULT_REPS,
    quick_mode: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="About a minute of GPU time: capture the design space's calibration set now and fit "
            "the per-kind constants on it; writes <gpu>-pcie5-<date>.json stamped with GPU, driver "
            "and date.",
        ),
    ] = False,
    warmup: Annotated[
        float,
        typer.Option(
            help="With --quick: seconds of warm-up captures before the timed ones (kept in "
            "calib-warmup<i>/, never fitted; 0: none).",
        ),
    ] = WARMUP_S,
) -> None:
    """Measure the cost model's constants on this GPU and write a profile."""
    if quick_mode:
        if not 0 <= warmup <= quick.QUICK_BUDGET_S / 2:
            raise UvmlabError(f"--warmup must be 0 to {quick.QUICK_BUDGET_S / 2:.0f} seconds, got {warmup:g}")
        need_gpu()
        path = quick.calibrate_quick(str(out_dir), name, log=err.print, warmup_s=warmup)
        out.print(f"wrote {path}; use it with --profile {path}")
        return
    if repeats < 1:
        raise UvmlabError(f"--repeats must be at least 1, got {repeats}")
    nbytes = parse_size(size, what="benchmark size")
    if refit is not None:
        if not refit.is_file():
            raise UvmlabError(f"{refit}: no such raw calibration file")
        if name is None:
            name = refit.name.removesuffix(".json").removesuffix(".raw")
        res = cal.refit(str(refit), str(out_dir), name)
    else:
        need_gpu()
        if name is None:
            try:
                name = f"{gpu_key(runtime.device_info()['gpu'])}-pcie5-measured"
            except UvmlabError:
                name = "gpu-measured"
        res = cal.calibrate(
            str(out_dir),
            name,
            size=nbytes,
            repeats=repeats,
            fault_reps=fault_reps,
            log=err.print,
        )
    spread = res["spread"]
    over = sorted(((v, k) for k, v in spread.items() if v > 0.10), reverse=True)
    out.print(f"wrote {out_dir / (name + '.json')} and {out_dir / (name + '.raw.json')}")
    out.print(
        "reproducibility (largest deviation between runs): "
        + (
            "every constant within 10 %"
            if not over
            else ", ".join(f"{k} {v:.0%}" for v, k in over) + "; the others within 10 %"
        )
    )
    out.print(f"use it with --profile {out_dir / (name + '.json')}")


def fit(
    gpu: Annotated[str, typer.Option(help="h100 or h200.")] = "h200",
    set_name: Annotated[
        str,
        typer.Option(
            "--set", help="Training set of the newest stored session: train (design space) or calib."
        ),
    ] = "train",
    name: Annotated[
        str | None, typer.Option(help="Name of the fitted profile (default: <gpu>-pcie5).")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for <name>.json.")] = Path("."),
) -> None:
    """Fit the cost constants per operation kind (GPU fault-path constants on kernel operations,
    CPU constants on CPU phases, free / advise constants on those operations) to the newest stored
    session's training captures; never to a hold-out set. No GPU needed."""
    if set_name not in ("train", "calib"):
        raise UvmlabError(f"--set must be train or calib, not {set_name!r}")
    key = get_gpu(gpu).name
    sess = sessions.latest(key)
    train = [
        ft.Training(r.workload, runs.workload_of(r, "space", set_name), r)
        for r in runs.load_dir(sess.set_dir(set_name))
    ]
    res = ft.fit_profile(
        load_profile(f"{key}-pcie5-measured"), train, gpu=key, name=name or f"{key}-pcie5", log=err.print
    )
    path = out_dir / f"{res.profile.name}.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(res.profile.to_json())
    for kind, kf in res.kinds.items():
        ins = statistics.median(abs(e) for e in kf.in_sample.values())
        lowo = statistics.median(abs(e) for e in kf.lowo.values()) if kf.lowo else float("nan")
        out.print(
            f"{kind}: {kf.n_ops} ops, in-sample median |error| {ins:.1%}, leave-one-workload-out "
            f"{lowo:.1%}; " + ", ".join(f"{f} {getattr(res.profile, f):.4g}" for f in kf.constants)
        )
    out.print(f"wrote {path}")


def capture(
    ctx: typer.Context,
    set_name: Annotated[str, typer.Option("--set", help="Workload set: suite or holdout.")] = "suite",
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Capture directory (default: the suite's uvmlab/validation/data/captures; the "
            "hold-out set's stored directory of this GPU, uvmlab/validation/data/holdout-<gpu>).",
        ),
    ] = None,
    only: Annotated[list[str] | None, typer.Option(help="Only these workloads (repeatable).")] = None,
    threads: Annotated[int | None, typer.Option(help="GPU threads in flight.")] = None,
    raw_sample: Annotated[
        Path | None, typer.Option(help="Also save the raw CUPTI records of one run here.")
    ] = None,
    list_only: Annotated[
        bool, typer.Option("--list", help="List the set's workloads (JSON lines); no GPU needed.")
    ] = False,
    managed: Annotated[
        str,
        typer.Option(
            help="With a program: libraries whose GPU arrays become managed memory "
            "(cupy, torch; comma-separated, or none)."
        ),
    ] = "cupy,torch",
) -> None:
    """Run a workload set (the validation suite or the hold-out set) on the GPU and save one
    capture per workload; or, given a program after ``--``, capture that program's unified-memory
    activity: ``uvmlab capture -o prog.npz -- python prog.py [args]`` (docs/importing.md)."""
    if ctx.args:
        if out_dir is None or out_dir.suffix != ".npz":
            raise UvmlabError("capturing a program needs --out FILE.npz")
        libs = tuple(x.strip() for x in managed.split(",") if x.strip() and x.strip() != "none")
        s = capture_program(list(ctx.args), str(out_dir), managed=libs)
        out.print(
            f"wrote {out_dir}: {s['records']:,} unified-memory records, {s['kernels']:,} kernels, "
            f"{s['allocations']} managed allocations in {s['wall_s']:.1f} s"
            + (f" (program exit: {s['exit']})" if s["exit"] != 0 else "")
        )
        if s["exit"] != 0:
            raise typer.Exit(1)
        return
    set_specs(set_name)  # an unknown set fails here, before any work
    if list_only:
        for n, w in suite_workloads(only, set_name):
            print(
                json.dumps(
                    {"name": n, "ops": len(w.ops), "managed": w.managed_bytes, "touches": w.touch_count()}
                )
            )
        return
    workload_sets.run_suite(
        str(out_dir) if out_dir is not None else default_out(set_name),
        only,
        threads=threads,
        raw_sample=str(raw_sample) if raw_sample is not None else None,
        set_name=set_name,
    )


def register(app: typer.Typer) -> None:
    """Add the real-GPU commands to the ``uvmlab`` app."""
    app.command("gpu-run")(gpu_run)
    app.command("capture", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
        capture
    )
    app.command("calibrate")(calibrate)
    app.command("validate")(validate)
    app.command("fit")(fit)


__all__ = ["gpu_summary", "register"]
