"""``docs/validation.md``: the model against the real H100 and H200, per operation kind
(issue 13, items 1, 5, 7, 8). Everything in it is computed here from the stored sessions
(``sessions.py``) by running the model; nothing is typed in by hand but the limits section.

The headline is the GPU kernel-operation error on the hold-out set with the profile calibrated on
the same machine; then the acceptance figures (reached or not, in the first lines), the tables
per kind for every set and both profiles, leave-one-workload-out, the drift, the launch-shape
trend, the thrashing / remote-mapping counters and the fitted constants.
"""

from __future__ import annotations

import datetime as _dt
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from uvmlab.core.version import __version__
from uvmlab.timing.cost_model import load_profile
from uvmlab.validation.fit import (
    CPU_CONSTANTS,
    GPU_CONSTANTS,
    HOST_CONSTANTS,
    FitResult,
    Training,
    fit_profile,
)
from uvmlab.validation.kinds import profiles_for, score_set
from uvmlab.validation.runs import load_dir, workload_of
from uvmlab.validation.score import KIND_LABELS, KINDS, Score, Scores, Summary
from uvmlab.validation.sessions import DATA, REPEATS, Session, latest, session_profile_name, sessions
from uvmlab.validation.thrash_report import THRASH_HEADER, THRASH_INTRO, reference_note, thrash_row

SET_LABELS = {
    "calib": "calibration set (in-sample for the same-machine profile)",
    "train": "design-space training set",
    "holdout": "design-space hold-out set",
    "suite": "suite",
    "suite-holdout": "suite hold-out set",
}
#: (label, kind, statistic, target, lower is better)
ACCEPTANCE = (
    ("GPU kernel ops >= 5 ms: median abs error", "gpu_kernels", "median_abs", 0.15),
    ("GPU kernel ops >= 5 ms: share within 30 %", "gpu_kernels", "share_30", 0.90),
    ("CPU phases: median abs error", "cpu_phases", "median_abs", 0.10),
    ("bytes per op: median abs error", "bytes", "median_abs", 0.02),
    ("bytes per op: max abs error", "bytes", "max_abs", 0.05),
    ("GPU fault groups (fault-heavy kernels): median abs error", "fault_groups", "median_abs", 0.25),
    (
        "throttles / thrashing / remote maps: median abs error against the median of the stored "
        "repeats (the single run where none are stored)",
        "thrashing",
        "median_abs",
        0.25,
    ),
)


LIMITS = DATA / "validation_limits.md"


@dataclass
class GpuResults:
    session: Session
    profiles: dict[str, str]  # label -> profile name
    scores: dict[str, dict[str, Scores]] = field(default_factory=dict)  # profile -> set -> ..
    fit: FitResult | None = None  # the same-machine fit again, for its leave-one-workload-out
    fit_set: str = ""
    older: dict[str, Scores] = field(default_factory=dict)  # older session label -> suite-holdout
    # earlier design-space sessions of this GPU: label -> (their same-machine profile, their
    # scores by set) -- the acceptance figures again on another machine start (a replication)
    earlier: dict[str, tuple[str, dict[str, Scores]]] = field(default_factory=dict)


def _machine(s: Session) -> str:
    m = s.manifest()
    if not m:
        caps = load_dir(s.set_dir("suite"))
        m = {"gpu": caps[0].meta.get("gpu"), "driver": caps[0].meta.get("driver_version")} if caps else {}
    return f"{m.get('gpu')}, driver {m.get('driver')}"


def _lowo_rows(results: list[GpuResults]) -> list[list[str]]:
    rows = []
    for g in results:
        if g.fit is None:
            continue
        for kind, kf in g.fit.kinds.items():
            ins = statistics.median(abs(e) for e in kf.in_sample.values())
            lowo = statistics.median(abs(e) for e in kf.lowo.values()) if kf.lowo else None
            rows.append([g.session.gpu.upper(), f"`{g.fit_set}`", kind, str(kf.n_ops), _pct(ins), _pct(lowo)])
    return rows


def _stat(s: Summary, stat: str) -> float | None:
    if s.n == 0:
        return None
    if stat == "share_30":
        return s.within_30 / s.n
    return getattr(s, stat)


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:+.1%}" if signed else f"{x:.1%}"


def collect(gpus: list[str], log: Callable[[str], None] | None = None) -> list[GpuResults]:

    out = []
    for gpu in gpus:
        s = latest(gpu)
        g = GpuResults(s, profiles_for(s))
        for plabel, prof in g.profiles.items():
            g.scores[plabel] = {}
            for label in s.sets():
                if log:
                    log(f"{gpu} {plabel}: {label}")
                g.scores[plabel][label] = score_set(s, label, prof, log=log)
        g.fit_set = "calib" if "calib" in s.sets() else "suite"
        family = "space" if g.fit_set == "calib" else "suite"
        train = [
            Training(r.workload, workload_of(r, family, g.fit_set), r) for r in load_dir(s.set_dir(g.fit_set))
        ]
        g.fit = fit_profile(load_profile(f"{gpu}-pcie5-measured"), train, gpu=gpu, name="lowo")
        for d in sorted(REPEATS.glob(f"{gpu}-*")):  # older days' suite hold-out captures
            old = Session(gpu, d.name.partition("-")[2], DATA / "space" / d.name, d)
            if old.date < s.date and old.set_dir("suite-holdout").is_dir():
                g.older[old.label] = score_set(old, "suite-holdout", g.profiles[_main_profile(g)])
        for old in sessions(gpu):
            same = session_profile_name(old)
            if old.date < s.date and old.has_space and same in profiles_for(old).values():
                if log:
                    log(f"{gpu} earlier session {old.label} ({same}): holdout")
                have: list[str] = [label for label in ("holdout", "train") if label in old.sets()]
                sets = {label: score_set(old, label, same) for label in have}
                g.earlier[old.label] = (same, sets)
        out.append(g)
    return out


def _main_profile(g: GpuResults) -> str:
    return "same-machine" if "same-machine" in g.scores else "shipped"


def _holdout(g: GpuResults) -> str:
    """The hold-out set the acceptance is judged on: the design space's, else the suite's."""
    return "holdout" if "holdout" in g.scores[_main_profile(g)] else "suite-holdout"


def _scored(sc: dict[str, Scores], holdout: str, kind: str) -> Scores:
    """The set an acceptance figure of ``kind`` is taken on: the hold-out set, else (no fault-heavy
    kernel or thrashing case in it) the training set."""
    if kind in ("fault_groups", "thrashing") and sc[holdout].summary()[kind].n == 0 and "train" in sc:
        return sc["train"]
    return sc[holdout]


def _acceptance_cell(
    sc: dict[str, Scores], holdout: str, kind: str, stat: str, target: float
) -> tuple[str, bool]:
    """One acceptance figure of one session's scores by set: the cell and whether it is reached."""
    scores = _scored(sc, holdout, kind)
    summ = scores.summary()[kind]
    v = _stat(summ, stat)
    ok = v is not None and (v >= target if stat == "share_30" else v <= target)
    note = f"; {reference_note(scores)}" if kind == "thrashing" and summ.n else ""
    return f"{_pct(v)} ({'reached' if ok else 'NOT reached'}, n={summ.n}{note})", ok


def acceptance_rows(results: list[GpuResults]) -> tuple[list[list[str]], list[str]]:
    rows, missed = [], []
    for label, kind, stat, target in ACCEPTANCE:
        row = [label, ("≥ " if stat == "share_30" else "≤ ") + f"{target:.0%}"]
        for g in results:
            cell, ok = _acceptance_cell(g.scores[_main_profile(g)], _holdout(g), kind, stat, target)
            row.append(cell)
            if not ok:
                missed.append(f"{g.session.gpu.upper()}: {label} = {cell.split(' ')[0]} (target {row[1]})")
        rows.append(row)
    return rows, missed


def earlier_rows(results: list[GpuResults]) -> tuple[list[str], list[list[str]]]:
    """The acceptance figures on the earlier design-space sessions, each under its own
    same-machine profile: the header and the rows (empty without such a session)."""
    cols = [(g, label) for g in results for label in g.earlier]
    rows = []
    for label, kind, stat, target in ACCEPTANCE:
        row = [label, ("≥ " if stat == "share_30" else "≤ ") + f"{target:.0%}"]
        for g, old in cols:
            row.append(_acceptance_cell(g.earlier[old][1], "holdout", kind, stat, target)[0])
        rows.append(row)
    header = ["figure", "target"] + [f"`{old}` (`{g.earlier[old][0]}`)" for g, old in cols]
    return header, rows if cols else []


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def _kind_table(scores: dict[str, Scores]) -> list[str]:
    rows = []
    for label, sc in scores.items():
        summ = sc.summary()
        for k in KINDS:
            s = summ[k]
            if s.n:
                rows.append(
                    [
                        label,
                        KIND_LABELS[k],
                        str(s.n),
                        _pct(s.median_abs),
                        _pct(s.signed_median, True),
                        f"{s.within_15}",
                        f"{s.within_30}",
                        s.worst,
                    ]
                )
    return _table(
        ["set", "kind", "n", "median abs", "signed median", "within 15 %", "within 30 %", "worst"], rows
    )


def _shape_rows(sc: Scores) -> list[list[str]]:
    """Kernel time vs launch shape: the sweep's read kernels, real and model, by pattern."""
    by: dict[tuple[str, str], list[Score]] = {}
    for s in sc.by_kind["gpu_kernels"]:
        parts = s.workload.split("_")
        if len(parts) >= 4 and parts[1] == "r" and s.op == "touch":
            by.setdefault((parts[0], parts[2]), []).append(s)
    rows = []
    for (pat, size), ss in sorted(by.items()):
        ss.sort(key=lambda x: int(x.workload.split("_t")[-1].split("_")[0]))
        threads = [x.workload.split("_t")[-1] for x in ss]
        real = " / ".join(f"{x.real / 1e6:.0f}" for x in ss)
        model = " / ".join(f"{x.model / 1e6:.0f}" for x in ss)
        rows.append([pat, size, " / ".join(threads), real, model])
    return rows


def _thrash_rows(results: list[GpuResults]) -> list[list[str]]:
    rows = []
    for g in results:
        for label in ("calib", "train", "holdout", "suite", "suite-holdout"):
            if label not in g.scores[_main_profile(g)]:
                continue
            rows += [
                thrash_row(g.session.gpu.upper(), label, x)
                for x in g.scores[_main_profile(g)][label].by_kind["thrashing"]
            ]
    return rows


def thrash_lines(results: list[GpuResults]) -> list[str]:
    """One line per GPU: the thrashing figure, its reference and the single-run figure (the
    report's first lines say which reference the acceptance figure uses)."""
    out = []
    for g in results:
        scores = _scored(g.scores[_main_profile(g)], _holdout(g), "thrashing")
        summ = scores.summary()["thrashing"]
        if summ.n:
            out.append(
                f"{g.session.gpu.upper()} thrashing counters ({_holdout(g)}): median abs error "
                f"{_pct(summ.median_abs)} ({reference_note(scores)})"
            )
    return out


def _constants_rows(results: list[GpuResults]) -> list[list[str]]:

    profs = {g.session.gpu: load_profile(g.profiles[_main_profile(g)]) for g in results}
    rows = []
    for f, inv, unit, what in GPU_CONSTANTS + CPU_CONSTANTS + HOST_CONSTANTS:
        vals = []
        for gpu, p in profs.items():
            v = getattr(p, f)
            vals.append(f"{gpu.upper()} {v:.4g}" + (" GB/s" if inv else ""))
        rows.append([f"`{f}`", unit if not inv else "GB/s (fitted as ns per byte)", ", ".join(vals), what])
    return rows


def _drift_rows(results: list[GpuResults]) -> list[list[str]]:
    """Kernel ops of the calibration set taken twice in one session; the hold-out kernels under
    each profile; an older session's suite hold-out set under this session's profile."""
    rows = []
    for g in results:
        gpu = g.session.gpu.upper()
        if g.session.has_space:
            a = {r.workload: r for r in load_dir(g.session.space / "calib")}
            b = {r.workload: r for r in load_dir(g.session.space / "calib-run1")}
            d = [
                y["time_ns"] / x["time_ns"] - 1
                for name in sorted(set(a) & set(b))
                for x, y in zip(a[name].ops, b[name].ops, strict=False)
                if x["op"] == "kernel" and x["time_ns"] >= 5e6
            ]
            med = statistics.median(abs(x) for x in d) if d else None
            rows.append([gpu, "calibration kernels taken again later in the session", _pct(med), str(len(d))])
        for plabel in g.scores:
            s = g.scores[plabel][_holdout(g)].summary()["gpu_kernels"]
            rows.append(
                [
                    gpu,
                    f"{_holdout(g)} kernels, {plabel} profile `{g.profiles[plabel]}`",
                    _pct(s.median_abs),
                    str(s.n),
                ]
            )
        for label, sc in g.older.items():
            s = sc.summary()["gpu_kernels"]
            rows.append(
                [
                    gpu,
                    f"suite-holdout kernels of the older session `{label}`, profile "
                    f"`{g.profiles[_main_profile(g)]}`",
                    _pct(s.median_abs),
                    str(s.n),
                ]
            )
    return rows


def render(results: list[GpuResults], *, version: str = __version__, limits: str | None = None) -> str:
    acc, missed = acceptance_rows(results)
    today = _dt.date.today().isoformat()
    lines = ["# Validation: the model against real H100 and H200 GPUs", ""]
    if missed:
        lines += (
            [
                "**Not reached** (issue 13 acceptance, hold-out operations, profile calibrated "
                "on the same machine):",
                "",
            ]
            + [f"- {m}" for m in missed]
            + [""]
        )
    else:
        lines += ["Every acceptance figure of issue 13 is reached.", ""]
    lines += [
        "The thrashing counters are scored against the median of every stored run of the case on "
        "the same GPU kind (its spread and the single run are in the table under Thrashing):",
        "",
    ]
    lines += [f"- {t}" for t in thrash_lines(results)] + [""]
    lines += ["## Headline: GPU kernel operations on the hold-out set", ""]
    hrows = []
    for g in results:
        for plabel in g.scores:
            s = g.scores[plabel][_holdout(g)].summary()["gpu_kernels"]
            hrows.append(
                [
                    g.session.gpu.upper() + ("" if _holdout(g) == "holdout" else " (suite hold-out set)"),
                    f"{plabel} (`{g.profiles[plabel]}`)",
                    str(s.n),
                    _pct(s.median_abs),
                    _pct(s.signed_median, True),
                    f"{s.within_15}",
                    f"{s.within_30}",
                ]
            )
    lines += _table(
        ["GPU", "profile", "kernel ops >= 5 ms", "median abs", "signed median", "within 15 %", "within 30 %"],
        hrows,
    )
    sess = ", ".join(f"`{g.session.label}` ({_machine(g.session)})" for g in results)
    lines += [
        f"Generated {today} by `uvmlab validate` {version} from the stored sessions {sess}. "
        "The model needs no GPU; `uvmlab validate --json` prints the same figures per GPU, "
        "profile, set and kind.",
        "",
    ]
    lines += ["## Acceptance", ""] + _table(
        ["figure", "target"] + [g.session.gpu.upper() for g in results], acc
    )
    header, erows = earlier_rows(results)
    if erows:
        lines += [
            "The same figures on the earlier sessions of a GPU (another start of the machine, "
            "hold-out set, each under the profile calibrated on its own `calib` captures): how far "
            "a figure moves between sessions of one model.",
            "",
        ] + _table(header, erows)
    lines += [
        "Sets: " + "; ".join(f"`{k}` = {v}" for k, v in SET_LABELS.items()) + ". The "
        "same-machine profile is fitted on `calib` only (on `suite` for a session without the "
        "design space); nothing is fitted on `holdout` or `suite-holdout`.",
        "",
    ]
    for g in results:
        for plabel in g.scores:
            lines += [f"## {g.session.gpu.upper()}, {plabel} profile `{g.profiles[plabel]}`", ""]
            lines += _kind_table(g.scores[plabel])
    lines += [
        "## Leave-one-workload-out",
        "",
        "The same-machine fit again, each training workload's operations predicted by the constants "
        "fitted on the other workloads (linearised around the fit), beside the in-sample error.",
        "",
    ]
    lines += _table(
        ["GPU", "fitted on", "kind", "ops", "in-sample median abs", "LOWO median abs"], _lowo_rows(results)
    )
    lines += ["## Drift", ""] + _table(["GPU", "comparison", "median abs", "n"], _drift_rows(results))
    lines += ["## Kernel time against launch shape (read kernels, ms, real / model)", ""]
    for g in results:
        sc = g.scores[_main_profile(g)]
        rows = [r for k in ("calib", "train", "holdout") if k in sc for r in _shape_rows(sc[k])]
        if not rows:
            continue
        lines += [f"{g.session.gpu.upper()}:", ""] + _table(
            ["pattern", "size", "threads", "real ms", "model ms"], rows
        )
    lines += [
        "## Thrashing and remote mapping",
        "",
        THRASH_INTRO,
        "",
    ] + _table(THRASH_HEADER, _thrash_rows(results))
    lines += ["## Fitted constants", ""] + _table(
        ["constant", "unit", "value", "stands for"], _constants_rows(results)
    )
    limits = LIMITS.read_text() if limits is None and LIMITS.is_file() else limits
    if limits:
        lines += [limits.strip(), ""]
    return "\n".join(lines)


def summary_lines(results: list[GpuResults]) -> list[str]:
    """The headline and the acceptance verdicts, for the terminal."""
    out = []
    for g in results:
        for plabel in g.scores:
            s = g.scores[plabel][_holdout(g)].summary()["gpu_kernels"]
            out.append(
                f"{g.session.gpu.upper()} hold-out GPU kernels, {plabel} profile {g.profiles[plabel]}: "
                f"median |error| {_pct(s.median_abs)}, {s.within_30}/{s.n} within 30 %"
            )
    out += thrash_lines(results)
    _rows, missed = acceptance_rows(results)
    out += [f"NOT reached: {m}" for m in missed] or ["every acceptance figure reached"]
    return out


def appendix(text: str) -> str:
    """The per-workload report (``validate.render``) as an appendix: its headings one level down."""
    lines = ["# Appendix: per-workload totals against the stored suite and hold-out captures", ""]
    for line in text.splitlines():
        lines.append("#" + line if line.startswith("#") else line)
    return "\n".join(lines) + "\n"


__all__ = [
    "ACCEPTANCE",
    "GpuResults",
    "acceptance_rows",
    "appendix",
    "collect",
    "render",
    "summary_lines",
    "thrash_lines",
]
