"""Issue 13's acceptance figures (``ACCEPTANCE``) judged on the scored sessions
(``fidelity_results.py``): reached or not, on this session and on the earlier ones, and the
verdict lines the terminal prints.
"""

from __future__ import annotations

from uvmlab.validation.fidelity_results import GpuResults, holdout_set, main_profile
from uvmlab.validation.score import Scores, Summary, best_scale, summarize
from uvmlab.validation.thrash_report import pct, reference_note

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


def _stat(s: Summary, stat: str) -> float | None:
    if s.n == 0:
        return None
    if stat == "share_30":
        return s.within_30 / s.n
    return getattr(s, stat)


def scored(sc: dict[str, Scores], holdout: str, kind: str) -> Scores:
    """The set an acceptance figure of ``kind`` is taken on: the hold-out set, else (no fault-heavy
    kernel or thrashing case in it) the training set."""
    if kind in ("fault_groups", "thrashing") and sc[holdout].summary()[kind].n == 0 and "train" in sc:
        return sc["train"]
    return sc[holdout]


def _acceptance_cell(
    sc: dict[str, Scores], holdout: str, kind: str, stat: str, target: float
) -> tuple[str, bool]:
    """One acceptance figure of one session's scores by set: the cell and whether it is reached."""
    scores = scored(sc, holdout, kind)
    summ = scores.summary()[kind]
    v = _stat(summ, stat)
    ok = v is not None and (v >= target if stat == "share_30" else v <= target)
    note = f"; {reference_note(scores)}" if kind == "thrashing" and summ.n else ""
    return f"{pct(v)} ({'reached' if ok else 'NOT reached'}, n={summ.n}{note})", ok


def acceptance_rows(results: list[GpuResults]) -> tuple[list[list[str]], list[str]]:
    rows, missed = [], []
    for label, kind, stat, target in ACCEPTANCE:
        row = [label, ("≥ " if stat == "share_30" else "≤ ") + f"{target:.0%}"]
        for g in results:
            cell, ok = _acceptance_cell(g.scores[main_profile(g)], holdout_set(g), kind, stat, target)
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


def thrash_lines(results: list[GpuResults]) -> list[str]:
    """One line per GPU: the thrashing figure, its reference and the single-run figure (the
    report's first lines say which reference the acceptance figure uses)."""
    out = []
    for g in results:
        scores = scored(g.scores[main_profile(g)], holdout_set(g), "thrashing")
        summ = scores.summary()["thrashing"]
        if summ.n:
            out.append(
                f"{g.session.gpu.upper()} thrashing counters ({holdout_set(g)}): median abs error "
                f"{pct(summ.median_abs)} ({reference_note(scores)})"
            )
    return out


def cpu_lines(results: list[GpuResults]) -> list[str]:
    """One line per GPU and session: the hold-out CPU phases' error, and the lowest error one
    common factor on the model's CPU phases could reach, chosen on these phases themselves
    (``score.best_scale``): what is left there is their spread about any one level."""
    out = []
    for g in results:
        runs = [(g.session.label, g.scores[main_profile(g)], holdout_set(g))]
        runs += [(k, v[1], "holdout") for k, v in g.earlier.items()]
        for label, sc, set_name in runs:
            if set_name not in sc:
                continue
            rows = sc[set_name].by_kind["cpu_phases"]
            summ = summarize(rows)
            if not summ.n:
                continue
            k, e = best_scale(rows)
            out.append(
                f"{g.session.gpu.upper()} `{label}` CPU phases ({set_name}, n={summ.n}): median abs "
                f"error {pct(summ.median_abs)}, signed {pct(summ.signed_median, True)}; the best one "
                f"common factor on the model's CPU phases could do, chosen on these phases: {pct(e)} "
                f"(x{k:.2f})"
            )
    return out


def warmup_lines(results: list[GpuResults]) -> list[str]:
    """What the warm-up before the calibration (``warmup.py``) changes, per GPU whose scored
    session has warm-up captures: the hold-out CPU phases and GPU kernels under the same-machine
    profile and under the one fitted as before the warm-up (``warmup_training``)."""
    out = []
    for g in results:
        if g.first_seconds is None or "same-machine" not in g.scores:
            continue
        name, before = g.first_seconds
        after = g.scores["same-machine"]["holdout"].summary()
        b = before.summary()
        out.append(
            f"{g.session.gpu.upper()} `{g.session.label}` hold-out, calibrated after the warm-up "
            f"(`{g.profiles['same-machine']}`) / as before it (`{name}`, the kernel cases of the "
            f"first warm-up pass): CPU phases {pct(after['cpu_phases'].median_abs)} / "
            f"{pct(b['cpu_phases'].median_abs)}, GPU kernels {pct(after['gpu_kernels'].median_abs)} / "
            f"{pct(b['gpu_kernels'].median_abs)}"
        )
    return out or [
        "No scored session has warm-up captures (`warmup.py`, `calib-warmup<i>/`): the warm-up "
        'before the calibration is not measured on a GPU yet (limits, "CPU phases").'
    ]


def summary_lines(results: list[GpuResults]) -> list[str]:
    """The headline and the acceptance verdicts, for the terminal."""
    out = []
    for g in results:
        for plabel in g.scores:
            s = g.scores[plabel][holdout_set(g)].summary()["gpu_kernels"]
            out.append(
                f"{g.session.gpu.upper()} hold-out GPU kernels, {plabel} profile {g.profiles[plabel]}: "
                f"median |error| {pct(s.median_abs)}, {s.within_30}/{s.n} within 30 %"
            )
    out += thrash_lines(results)
    _rows, missed = acceptance_rows(results)
    out += [f"NOT reached: {m}" for m in missed] or ["every acceptance figure reached"]
    return out


__all__ = [
    "ACCEPTANCE",
    "acceptance_rows",
    "cpu_lines",
    "warmup_lines",
    "earlier_rows",
    "summary_lines",
    "thrash_lines",
]
