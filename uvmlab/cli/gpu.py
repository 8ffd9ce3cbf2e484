"""``uvmlab gpu-run``, ``capture``, ``calibrate``, ``validate`` and ``fit``: the real-GPU commands.

``uvmlab.cli.app`` calls :func:`register`. Nothing here imports CuPy or the CUDA bindings at
import time, and every command that needs a GPU asks ``runtime.load_cuda`` first, so a machine
without one gets ``GpuUnavailableError``, which the CLI's ``main`` prints as one line and turns
into exit code 3, before any work is done.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from uvmlab.api import load_workload
from uvmlab.core.errors import UvmlabError
from uvmlab.core.units import fmt_bytes, fmt_ns, parse_size

# module references, not names: tests replace these functions with fakes
from uvmlab.cuda import executor, runtime
from uvmlab.cuda.adapter import result_from_real
from uvmlab.driver.hal import get_gpu
from uvmlab.timing.cost_model import load_profile
from uvmlab.validation import calibrate as cal
from uvmlab.validation import fit as ft
from uvmlab.validation import suite as workload_sets
from uvmlab.validation import validate as v
from uvmlab.validation.suite import (
    HOLDOUT,
    SETS,
    SUITE,
    build,
    default_out,
    set_specs,
    suite_workloads,
)
from uvmlab.validation.validate import gpu_key

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


def _need_gpu() -> None:
    """Fail fast, in one line, when there is no usable GPU (GpuUnavailableError, exit 3)."""
    runtime.load_cuda()


def _names(only: list[str] | None) -> list[str] | None:
    """``--only a,b --only c`` -> [a, b, c]."""
    if not only:
        return None
    return [n.strip() for item in only for n in item.split(",") if n.strip()]


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
    _need_gpu()
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
) -> None:
    """Measure the cost model's constants on this GPU and write a profile."""
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
        _need_gpu()
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


def validate(
    captures: Annotated[
        Path | None,
        typer.Option(
            help="Directory of captures to compare (default: the stored sets); with --set all, the suite's."
        ),
    ] = None,
    gpu: Annotated[
        list[str] | None, typer.Option("--gpu", help="h100 or h200 (repeatable; default: every stored set).")
    ] = None,
    capture: Annotated[
        bool,
        typer.Option(
            "--capture",
            help="Run the chosen sets (--set) on this GPU first, into their "
            "stored directories (needs a GPU).",
        ),
    ] = False,
    set_name: Annotated[
        str,
        typer.Option(
            "--set",
            help="Workload set to capture and report: suite (in-sample: the "
            "profiles were partly fitted to it), holdout (out-of-sample) or "
            "all.",
        ),
    ] = "all",
    holdout_captures: Annotated[
        Path | None,
        typer.Option(help="Directory of hold-out captures (default: the stored ones) with --set all."),
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Markdown report.")] = Path(
        "docs/validation.md"
    ),
    only: Annotated[
        list[str] | None, typer.Option(help="Only these workloads (comma-separated, repeatable).")
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="Cost profile for the model (default: the GPU's measured one).")
    ] = None,
) -> None:
    """Compare the model with real-GPU captures of the validation suite and of the hold-out set;
    write the report.

    ``--set`` picks the workload sets both for ``--capture`` and for the report; the default,
    ``all``, captures and reports both. To keep the suite's captures (the ones the profiles were
    fitted to) and add the hold-out's, capture with ``--set holdout``.
    """
    if set_name not in (*SETS, "all"):
        raise UvmlabError(f"--set must be one of {', '.join((*SETS, 'all'))}, not {set_name!r}")
    sets = list(SETS) if set_name == "all" else [set_name]
    if holdout_captures is not None and set_name != "all":
        raise UvmlabError("--holdout-captures goes with --set all; with one set give --captures")
    names = _names(only)
    keys = [get_gpu(g).name for g in gpu] if gpu else None
    if names:
        known = {n for s in sets for n, _ in set_specs(s)}
        unknown = [n for n in names if n not in known]
        if unknown:  # before any work, GPU or model
            raise UvmlabError(
                f"unknown workload(s) {', '.join(unknown)} in --set {set_name}; "
                f"known: {', '.join(n for s in sets for n, _ in set_specs(s))}"
            )
    if capture:
        if captures is not None and "holdout" in sets[1:] and holdout_captures is None:
            # else the hold-out captures would land in the repository's stored set unasked
            raise UvmlabError(
                "--capture --captures DIR with --set all needs --holdout-captures "
                "DIR too (or --set suite / --set holdout)"
            )
        _need_gpu()
        here = v.gpu_key(runtime.device_info()["gpu"])
        if keys and keys != [here]:
            raise UvmlabError(f"--capture runs on this machine's GPU ({here}), not {', '.join(keys)}")
        keys = [here]
        # --captures names the first set's directory, --holdout-captures the hold-out's
        given = {sets[0]: captures}
        if holdout_captures is not None:
            given["holdout"] = holdout_captures
        dirs = {
            s: given.get(s)
            or v.STORED_SETS[s].get(here)
            or Path(f"{'captures' if s == 'suite' else s}-{here}")
            for s in sets
        }
        for s in sets:
            todo = [n for n, _ in set_specs(s) if n in names] if names else None
            if names and not todo:
                continue
            workload_sets.run_suite(str(dirs[s]), todo, set_name=s, log=err.print)
        captures = dirs[sets[0]]
        if "holdout" in sets and sets[0] != "holdout":
            holdout_captures = dirs["holdout"]
    sections = v.sections_for(
        keys,
        captures,
        names=names,
        profile=profile,
        log=err.print,
        sets=sets,
        holdout_captures=holdout_captures,
    )
    text = v.render(
        sections,
        notes=v.load_notes(),
        command="uvmlab validate"
        + (" --capture" if capture else "")
        + (f" --set {set_name}" if set_name != "all" else ""),
    )
    v.write_report(output, text)
    for s in sections:
        if s.no_captures:
            out.print(
                f"[bold]{s.title}[/bold]: no captures in {s.captures_dir}; the targets "
                f"cannot be evaluated (uvmlab validate --capture --set {s.set_name})"
            )
            continue
        out.print(
            f"[bold]{s.title}[/bold] ({len(s.rows)} workloads, profile {s.profile}"
            + (f"; {len(s.missing)} not captured" if s.missing else "")
            + ")"
        )
        for label, ok, txt in v.verdicts(s).items:
            mark = "n/a" if ok is None else ("met" if ok else "NOT MET")
            out.print(f"  {label}: {mark} ({txt})")
    out.print(f"wrote {output}")


def fit(
    gpu: Annotated[str, typer.Option(help="h100 or h200.")] = "h200",
    session: Annotated[
        Path | None,
        typer.Option(
            help="Directory of repeated captures (rep*/suite, rep*/holdout); default: the newest "
            "stored session of the GPU."
        ),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(help="Profile whose other constants are kept (default: <gpu>-pcie5-measured)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Name of the fitted profile (default: <gpu>-pcie5).")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for <name>.json.")] = Path("."),
) -> None:
    """Fit the fault-path constants of a profile to the suite's captured times (never to the
    hold-out set, which is then reported as the out-of-sample test). No GPU needed."""
    spec = get_gpu(gpu)
    key = gpu.lower()
    sets = ft.session_sets(session or ft.latest_session(key))
    if "suite" not in sets:
        raise UvmlabError("the session has no suite captures to fit on")
    prof = load_profile(base or f"{key}-pcie5-measured")
    rep = ft.fit_profile(
        prof,
        ft.suite_training(sets["suite"]),
        gpu=spec.name,
        name=name or f"{key}-pcie5",
        log=err.print,
    )
    path = out_dir / f"{rep.profile.name}.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(rep.profile.to_json())
    for f, _inv in ft.FITTED:
        out.print(
            f"  {f:26s} {getattr(rep.profile, f):12.4f}"
            + ("  (kept: nothing exercises it)" if f in rep.fixed else "")
        )

    def line(label: str, errs: dict[str, float]) -> str:
        worst = max(errs.items(), key=lambda kv: abs(kv[1]))
        return (
            f"{label}: median |time error| {statistics.median(map(abs, errs.values())):.1%}, "
            f"{sum(abs(e) <= 0.25 for e in errs.values())}/{len(errs)} within 25 %, worst "
            f"{worst[0]} {worst[1]:+.1%}"
        )

    out.print(line(f"suite (training, {len(rep.errors)} workloads)", rep.errors))
    if "holdout" in sets:
        out.print(
            line(
                "hold-out (out-of-sample)",
                ft.evaluate(
                    rep.profile, sets["holdout"], dict(suite_workloads(set_name="holdout")), spec.name
                ),
            )
        )
    out.print(f"wrote {path}")


def capture(
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
) -> None:
    """Run a workload set (the validation suite or the hold-out set) on the GPU and save one
    capture per workload."""
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
    app.command("capture")(capture)
    app.command("calibrate")(calibrate)
    app.command("validate")(validate)
    app.command("fit")(fit)


__all__ = ["gpu_summary", "register"]
