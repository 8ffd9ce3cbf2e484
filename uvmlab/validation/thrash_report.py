"""The thrashing counters in ``docs/validation.md``: each counter against its reference (the
median of the stored runs of its case, ``references.py``), with the spread and the single run
beside it, so that a reader sees the run-to-run noise next to the model's error."""

from __future__ import annotations

from uvmlab.validation.score import Score, Scores

THRASH_INTRO = (
    "Throttles, thrashing pages and remote maps vary several-fold between runs of one case (a page "
    "is flagged when its migrations fall within the driver's 500 µs lapse, "
    "`uvm_perf_thrashing_lapse_usec`, so host jitter decides), so each counter is scored against "
    "the median of every stored run of the case on the same GPU kind, driver and module "
    "parameters: the session's own, the other sessions' and the ping-pong repeats "
    "(`data/pingpong-repeats/`), from every machine start (the starts' medians differ by less "
    "than each start's spread; `uvmlab/validation/references.py`). A counter with one stored run "
    "keeps it (runs = 1). The scored session's single run and the error against it stand beside; "
    "`model within` says whether the model's count falls within the runs' interquartile range, "
    "their range, or outside."
)

THRASH_HEADER = [
    "GPU",
    "set",
    "workload",
    "counter",
    "reference (median)",
    "runs (starts)",
    "spread: min–max (IQR)",
    "single run",
    "model",
    "model within",
    "error vs reference",
    "error vs single run",
]


def pct(x: float | None, signed: bool = False) -> str:
    """An error as a percentage (signed with ``signed``); a dash where there is none."""
    if x is None:
        return "–"
    return f"{x:+.1%}" if signed else f"{x:.1%}"


def thrash_row(gpu: str, label: str, s: Score) -> list[str]:
    """One counter of one case as a row of :data:`THRASH_HEADER`."""
    ref = s.ref
    return [
        gpu,
        label,
        s.workload,
        s.what,
        f"{s.real:.0f}",
        f"{ref.n} ({ref.starts})" if ref is not None else "1 (1)",
        ref.spread() if ref is not None else "single run",
        f"{s.single:.0f}",
        f"{s.model:.0f}",
        model_within(s),
        pct(s.err, True),
        pct(s.err_single, True),
    ]


def reference_note(scores: Scores) -> str:
    """What the thrashing figure of ``scores`` is scored against, and the single-run figure."""
    refs = [x.ref for x in scores.by_kind["thrashing"] if x.ref is not None and x.ref.from_repeats]
    if not refs:
        return "against the single run: no repeats of these cases are stored for this GPU"
    n, starts = max(r.n for r in refs), max(r.starts for r in refs)
    one = scores.thrashing_single()
    return (
        f"against the {scores.thrashing_reference()}, up to {n} runs from {starts} machine starts; "
        f"against the single run {pct(one.median_abs)}"
    )


def model_within(s: Score) -> str:
    """Where the model's count falls among the stored runs: ``IQR``, ``range`` or ``outside``."""
    ref = s.ref
    if ref is None or not ref.from_repeats:
        return "–"
    if ref.q1 <= s.model <= ref.q3:
        return "IQR"
    return "range" if ref.lo <= s.model <= ref.hi else "outside"


__all__ = ["THRASH_HEADER", "THRASH_INTRO", "model_within", "pct", "reference_note", "thrash_row"]
