"""The per-workload report as markdown (``docs/validation.md``'s appendix)."""

from __future__ import annotations

import datetime as _dt
import subprocess
from pathlib import Path

from uvmlab.core.units import fmt_bytes, fmt_ns
from uvmlab.core.version import __version__
from uvmlab.results.io import write_atomic
from uvmlab.timing.cost_model import load_profile
from uvmlab.validation.stored import (
    NOTES,
)
from uvmlab.validation.suite import HOLDOUT, set_specs
from uvmlab.validation.validate_compare import (
    KIND_GROUPS,
    Section,
    rel_error,
)
from uvmlab.validation.validate_verdicts import (
    fmt_err,
    fmt_value,
    verdicts,
)


def _git_version() -> str:
    """The model's version as git knows it (the errors change as the model is tuned)."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if rev.returncode != 0:
            return ""
        # modified tracked files only: new untracked files change nothing until code imports them
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "uvmlab"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev.stdout.strip() + (" with local changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def _table(header: list[str], rows: list[list[str]], right_from: int = 1) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _section_md(sec: Section) -> list[str]:
    L: list[str] = []
    dates = sec.meta_values("date")
    drivers = sec.meta_values("driver_version")
    # the suite keeps its plain heading; other sets say which set and that it is out-of-sample
    L.append(f"## {sec.gpu_name}" if sec.set_name == "suite" else f"## {sec.title}")
    L.append("")
    if sec.no_captures:
        L.append(
            f"- **no captures of the {sec.set_label}** in `{_rel(sec.captures_dir)}`: the "
            f"{sec.sample or ''} targets cannot be evaluated on this GPU yet. Capture them on "
            f"an {sec.gpu_name} with `uvmlab validate --capture --set {sec.set_name}`."
        )
        L.append(f"- workloads waiting for a capture: {', '.join(sec.missing)}")
        L.append("")
        return L
    L += _sample_lines(sec)
    m = sec.rows[0].real.meta if sec.rows else {}
    cuda = m.get("cuda_runtime")
    link = f", PCIe gen {m['pcie_gen']} x{m['pcie_width']}" if m.get("pcie_gen") else ""
    L.append(
        f"- GPU: {sec.gpu_name}{link}; driver {', '.join(drivers) or 'unknown'}"
        + (f", CUDA runtime {cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else "")
        + (f", kernel {m['kernel']}" if m.get("kernel") else "")
    )
    L.append(
        f"- captured: {dates[0][:10] if dates else 'unknown'}"
        + (f" ({dates[0]} to {dates[-1]})" if len(dates) > 1 else "")
        + f"; captures: `{_rel(sec.captures_dir)}`"
    )
    changed = sorted({k for c in sec.rows for k in c.real.params})
    L.append(
        f"- model: GPU spec `{sec.key}`, cost profile `{sec.profile}` "
        f"({load_profile(sec.profile).gpu}), module parameters as read from the machine's "
        "sysfs: " + (", ".join(changed) if changed else "all at the driver's defaults")
    )
    if sec.missing:
        L.append(f"- **no capture** for: {', '.join(sec.missing)}")
    for s in sec.stale:
        L.append(f"- **stale capture, not compared** ({s})")
    L.append("")

    L.append("### Targets")
    L.append("")
    L += _table(
        ["target", "met", "numbers"],
        [
            [t, "n/a" if ok is None else ("yes" if ok else "**no**"), txt]
            for t, ok, txt in verdicts(sec).items
        ],
        right_from=99,
    )
    L.append("")

    L.append("### Time and bytes migrated")
    L.append("")
    rows = []
    for c in sec.rows:
        r = [f"`{c.name}`"]
        for key in ("time_ns", "bytes_htod", "bytes_dtoh"):
            lb = c.lower_bound(key)
            r += [
                fmt_value(key, c.real_value(key), lb),
                fmt_value(key, c.model_value(key)),
                fmt_err(c.error(key)),
            ]
            if key == "time_ns" and sec.repeats:
                t = sec.repeats.get(c.name, [])
                r.append(f"{fmt_ns(t[0])} – {fmt_ns(t[-1])} ({len(t)})" if t else "")
        rows.append(r)
    spread = ["real min – max (runs)"] if sec.repeats else []
    L += _table(
        [
            "workload",
            "time real",
            "time model",
            "error",
            *spread,
            "HtoD real",
            "HtoD model",
            "error",
            "DtoH real",
            "DtoH model",
            "error",
        ],
        rows,
    )
    L.append("")
    if sec.repeats:
        L.append(
            "The real time is the median run of the repetitions captured in one session "
            "(`uvmlab/validation/data/repeats/`); *min – max* is their range: the noise floor "
            "that no model of this machine can beat."
        )
        L.append("")

    L.append("### Faults")
    L.append("")
    rows = []
    for c in sec.rows:
        r = [f"`{c.name}`"]
        for key in ("gpu_fault_groups", "cpu_faults"):
            lb = c.lower_bound(key)
            err = fmt_err(c.error(key))
            if lb:
                err = "n/a (CUPTI lost records)"
            r += [fmt_value(key, c.real_value(key), lb), fmt_value(key, c.model_value(key)), err]
        served_real = c.real.totals.get("gpu_faults_notified")
        served_model = c.model_value("gpu_faults_notified")  # the same counter (GpuPageFaultCount)
        r += [
            fmt_value("n", served_real),
            f"{served_model:,}",
            fmt_err(None if served_real is None else rel_error(served_model, served_real)),
        ]
        rows.append(r)
    L += _table(
        [
            "workload",
            "GPU fault groups real",
            "model",
            "error",
            "CPU faults real",
            "model",
            "error",
            "GPU faults serviced real",
            "model",
            "error",
        ],
        rows,
    )
    L.append("")
    L.append(
        "GPU fault groups: CUPTI's GPU_PAGE_FAULT records on the GPU, fault batches in the "
        "model. GPU faults serviced (not a target, shown because it explains the fault "
        "groups): the driver's GpuPageFaultCount counter on both sides, one per fault-buffer "
        "entry left after fetch-time merging (uvm_gpu_replayable_faults.c notifies every such "
        "entry, a page's duplicates from other uTLBs and entries of pages already serviced "
        "included; model: `gpu_faults_notified`)."
    )
    L.append("")

    L.append("### Where the time goes")
    L.append("")
    rows = []
    for c in sec.rows:
        kr, km = c.kind_times(c.real), c.kind_times(c.model)
        r = [f"`{c.name}`"]
        for label, _kinds in KIND_GROUPS:
            r.append(
                "–" if kr[label] == 0 and km[label] == 0 else f"{fmt_ns(kr[label])} / {fmt_ns(km[label])}"
            )
        miss = c.largest_op_miss()
        r.append(f"{miss[0]}: {'+' if miss[1] >= 0 else '−'}{fmt_ns(abs(miss[1]))}" if miss else "–")
        rows.append(r)
    L += _table(
        ["workload"]
        + [f"{label} real / model" for label, _ in KIND_GROUPS]
        + ["largest single-op miss (model − real)"],
        rows,
    )
    L.append("")
    pre = [
        (
            c.name,
            c.real.totals.get("bytes_htod_prefetch"),
            c.model_value("bytes_htod_prefetch"),
            c.lower_bound("bytes_htod_prefetch"),
        )
        for c in sec.rows
    ]
    L.append(
        "HtoD moved by the driver's prefetcher, real / model: "
        + "; ".join(
            f"`{n}` {fmt_value('bytes', r, lb)} / {fmt_bytes(mv)}" for n, r, mv, lb in pre if (r or mv)
        )
        + "."
    )
    L.append("")

    mw, gt, gw = sec.model_wall_s(), sec.gpu_time_s(), sec.gpu_wall_s()
    L.append(
        f"**Wall-clock time of the whole {sec.set_label}:** model {mw:.2f} s (plus a "
        f"{sec.warmup_s:.2f} s "
        f"warm-up that loads the compiled functions) vs the GPU's {gt:.2f} s of measured "
        f"operations ({gw:.2f} s of run loop): the model is "
        + (f"{gt / mw:.1f}x faster" if mw < gt else f"{mw / gt:.1f}x slower")
        + " than the GPU it models. Slowest in the model: "
        + ", ".join(
            f"`{c.name}` {c.model_wall_s:.2f} s (GPU {c.real.totals.get('time_ns', 0) / 1e9:.2f} s)"
            for c in sorted(sec.rows, key=lambda c: -c.model_wall_s)[:3]
        )
        + "."
    )
    L.append("")
    return L


def _sample_lines(sec: Section) -> list[str]:
    """The bullet that says whether this section's errors are in-sample, and why."""
    n = len(set_specs(sec.set_name))
    if sec.set_name == "holdout":
        return [
            f"- set: the **hold-out set** (`HOLDOUT` in `uvmlab/validation/suite.py`, {n} workloads: "
            "the suite's kinds with other sizes, seeds and shapes), **out-of-sample**: no "
            "constant of the model was fitted to these captures"
        ]
    if sec.set_name != "suite":
        return [f"- set: `{sec.set_name}`"]
    if not sec.fitted:
        return []
    return [
        f"- set: the validation suite, **in-sample**: {len(sec.fitted)} constants of "
        f"`{sec.profile}` ({', '.join(sec.fitted)}) are not the micro-benchmark calibration "
        f"`{sec.profile}-measured` but were fitted to the suite's captures, so these errors "
        "flatter the model; the hold-out set's are the out-of-sample test"
    ]


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(Path(__file__).resolve().parents[2]))
    except ValueError:
        return str(p)


def _sample_paragraph(sections: list[Section]) -> list[str]:
    """What is in-sample and what is not, above the summary table (empty when neither applies)."""
    fitted = [s for s in sections if s.set_name == "suite" and s.fitted]
    holdout = [s for s in sections if s.set_name == "holdout"]
    if not fitted and not holdout:
        return []
    text = "**In-sample and out-of-sample.** "
    if fitted:
        text += (
            "Some constants of the model's profiles ("
            + ", ".join(f"`{p}`" for p in dict.fromkeys(s.profile for s in fitted))
            + ") were fitted to the "
            "suite's captures (each GPU's section lists them), so the suite's time errors are "
            "**in-sample**: they say how well the fit reproduces the data it was fitted to, not "
            "how well the model predicts. "
        )
    if holdout:
        text += (
            f"The hold-out set (`HOLDOUT` in `uvmlab/validation/suite.py`, {len(HOLDOUT)} "
            "workloads: every synthetic kind of the suite and two of its advice workloads "
            "again, with other sizes, seeds and shapes) is captured the same way and nothing "
            "is ever fitted to it: its sections, with the same targets, are the "
            "**out-of-sample** test."
        )
        absent = [s.gpu_name for s in holdout if s.no_captures]
        if absent:
            text += (
                " Hold-out captures are **missing** for " + ", ".join(absent) + " (capture "
                "with `uvmlab validate --capture --set holdout` on each), so the "
                "out-of-sample targets are undecided there."
            )
    else:
        text += (
            "No hold-out set is reported here (`uvmlab validate --set all` adds it), so "
            "there is no out-of-sample figure."
        )
    return [text.strip(), ""]


def render(sections: list[Section], *, notes: str | None = None, command: str = "uvmlab validate") -> str:
    """``docs/validation.md`` as text."""
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    git = _git_version()
    L = ["# Validation: the model against real GPUs", ""]
    L.append(
        f"Generated by `{command}` on {now}; model: uvmlab {__version__}"
        + (f", git {git}" if git else "")
        + ". Regenerate from the stored captures (no GPU "
        "needed) with `uvmlab validate`; re-capture on a GPU with `uvmlab validate --capture` "
        "(`--set holdout`: the hold-out set only, leaving the suite's fitted captures alone)."
    )
    L.append("")
    suite = [s for s in sections if s.set_name == "suite"]
    L.append(
        "Each workload of the validation suite (`uvmlab/validation/suite.py`: "
        f"{len(suite[0].rows) if suite else 0} workloads covering every IR operation, "
        "none oversubscribed) ran on the GPU, serialised, with CUDA managed memory; the "
        "captures (JSON, in the repository) hold the driver's lossless counters, CUPTI "
        "records, per-operation times, the GPU, driver and every `nvidia_uvm` parameter. The "
        "model runs the same workload with that GPU's spec, its measured cost profile and "
        "the machine's module parameters. Error = (model − real) / real. Real bytes and CPU "
        "faults are the driver's counters (exact); fault groups are CUPTI records "
        '("≥": CUPTI lost records, a lower bound, not scored).'
    )
    L.append("")
    L += _sample_paragraph(sections)
    if len(sections) > 1:
        L.append("| target | " + " | ".join(s.title for s in sections) + " |")
        L.append("|---|" + "|".join("---" for _ in sections) + "|")
        vs = [verdicts(s).items for s in sections]
        for i, (label, _ok, _txt) in enumerate(vs[0]):
            if len({v[i][0] for v in vs}) > 1:  # "(whole suite)" / "(whole hold-out set)"
                label = label.split(" (whole ")[0] + " (whole set)"
            cells = []
            for v in vs:
                ok, txt = v[i][1], v[i][2]
                cells.append(
                    ("n/a" if ok is None else "met" if ok else "**not met**") + f" ({txt.split(';')[0]})"
                )
            L.append(f"| {label} | " + " | ".join(cells) + " |")
        L.append("")
    for s in sections:
        L += _section_md(s)
    if notes:
        L.append("## Discussion: where and why the model misses")
        L.append("")
        L.append(notes.strip())
        L.append("")
    return "\n".join(L)


def write_report(path: str | Path, text: str) -> Path:
    p = Path(path)
    write_atomic(p, text.encode())
    return p


def load_notes() -> str | None:
    return NOTES.read_text() if NOTES.is_file() else None
