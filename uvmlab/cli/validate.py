"""``uvmlab validate``: the model against real-GPU captures, per operation kind and per workload.

Registered with the other real-GPU commands by ``uvmlab.cli.gpu.register``. Without ``--capture``
it needs no GPU: it reads the stored sessions and captures (``uvmlab/validation/data``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from uvmlab.cli.common import err, need_gpu, out
from uvmlab.core.errors import UvmlabError

# module references, not names: tests replace these functions with fakes
from uvmlab.cuda import runtime
from uvmlab.driver.hal import get_gpu
from uvmlab.validation import (
    fidelity_acceptance,
    fidelity_report,
    fidelity_results,
    kinds,
    session_capture,
    sessions,
)
from uvmlab.validation import suite as workload_sets
from uvmlab.validation import validate as v
from uvmlab.validation.suite import SETS, set_specs


def _names(only: list[str] | None) -> list[str] | None:
    """``--only a,b --only c`` -> [a, b, c]."""
    if not only:
        return None
    return [n.strip() for item in only for n in item.split(",") if n.strip()]


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
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the per-kind scores (n, median_abs, within_30, signed_median) of every stored "
            "session, per GPU, profile and set, as JSON; no GPU needed, nothing written.",
        ),
    ] = False,
    per_kind: Annotated[
        bool,
        typer.Option(
            "--per-kind/--no-per-kind",
            help="Put the per-kind report of the stored sessions (docs/validation.md's first part) "
            "before the per-workload tables (default; skipped with --only).",
        ),
    ] = True,
    deadline: Annotated[
        float, typer.Option(help="With --capture: seconds after which no new capture starts.")
    ] = 420.0,
) -> None:
    """Compare the model with real-GPU captures, per operation kind (GPU kernels, CPU phases,
    prefetch, advise / sync) and per workload; write the report.

    ``--capture`` first takes a whole session on this GPU (``uvmlab calibrate --quick``'s
    micro-captures, the suite, its hold-out set and the design space), stores it, fits the
    same-machine profile on its calibration captures and reports with it, beside the shipped
    profile (the drift). ``--set`` picks the workload sets of the per-workload tables.
    """
    if as_json:
        gpus = [get_gpu(g).name for g in gpu] if gpu else sorted({s.gpu for s in sessions.sessions()})
        print(json.dumps(kinds.evaluate(gpus, log=err.print), indent=1))
        return
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
    if capture and set_name == "all" and captures is None and holdout_captures is None and not names:
        need_gpu()
        with tempfile.TemporaryDirectory() as tmp:
            sess, prof = session_capture.capture_session(deadline, Path(tmp) / "session", log=err.print)
        keys = [sess.gpu]
        captures, holdout_captures = sess.repeats / "rep0" / "suite", sess.repeats / "rep0" / "holdout"
        profile = profile or prof.name
        capture = False  # captured: the per-workload tables read the new session
        out.print(f"stored session {sess.label}; same-machine profile {prof.name}")
    if capture:
        if captures is not None and "holdout" in sets[1:] and holdout_captures is None:
            # else the hold-out captures would land in the repository's stored set unasked
            raise UvmlabError(
                "--capture --captures DIR with --set all needs --holdout-captures "
                "DIR too (or --set suite / --set holdout)"
            )
        need_gpu()
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
    if per_kind and not names:
        gpus = keys or sorted({s.gpu for s in sessions.sessions()})
        results = fidelity_results.collect([g for g in gpus if sessions.sessions(g)], log=err.print)
        for line in fidelity_acceptance.summary_lines(results):
            out.print(line)
        text = fidelity_report.render(results) + "\n\n" + fidelity_report.appendix(text)
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


__all__ = ["validate"]
