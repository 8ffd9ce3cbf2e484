"""Run one workload under several policies and compare them with the driver's default."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from uvmlab.api import check_run, load_workload, simulate
from uvmlab.core.errors import UvmlabError
from uvmlab.core.files import FIGURE_SUFFIXES
from uvmlab.core.output import write_via
from uvmlab.core.units import fmt_bytes, fmt_ns
from uvmlab.policy.loader import NO_POLICY, build_hooks, split_top
from uvmlab.results.result import Result

#: (header, total key) of the comparison table, after policy / time / speedup
#: simulate()'s options that check_run checks too
_CHECKED = ("gpu", "params", "profile", "gpu_memory", "max_touches")
COLUMNS = (
    ("GPU faults", "gpu_faults"),
    ("HtoD fault", "bytes_htod_fault"),
    ("HtoD prefetch", "bytes_htod_prefetch"),
    ("HtoD user", "bytes_htod_user"),
    ("DtoH evict", "bytes_dtoh_eviction"),
    ("evictions", "evictions"),
    ("ejected", "policy_ejections"),
)


@dataclass
class Row:
    policy: str
    result: Result
    speedup: float  #: time of the driver default / time of this policy

    @property
    def totals(self) -> dict[str, int]:
        return self.result.totals


def parse_policy_list(text: str) -> list[str]:
    """``"lru,mru,tree(threshold=30)+lfu"`` -> one spec per run (commas inside () stay)."""
    specs = split_top(text, ",")
    if not specs:
        raise UvmlabError("--policies is empty: give names such as lru,mru,belady")
    return specs


def compare(
    workload: Any,
    specs: Sequence[str],
    *,
    policy_params: Mapping[str, Mapping[str, Any]] | None = None,
    budget_ms: float | None = None,
    progress: Callable[[str], None] | None = None,
    isolate: bool = False,
    **simulate_kw: Any,
) -> list[Row]:
    """Run ``workload`` with the driver's default, then with each policy spec (``isolate``: each
    policy in a process of its own, docs/security.md)."""
    w = load_workload(workload)
    hooks: list = []
    try:
        for s in specs:  # load all first: fail before running
            if s.strip().lower() not in NO_POLICY:
                hooks.append((s, build_hooks(s, budget_ms=budget_ms, params=policy_params, isolate=isolate)))
        # and the rest of what a run checks (GPU memory, profile, bound) before the first runs
        check_run(w, **{k: v for k, v in simulate_kw.items() if k in _CHECKED})
        if progress:
            progress("default")
        base = simulate(w, **simulate_kw)
        rows = [Row("default", base, 1.0)]
        t0 = max(1, base.totals["time_ns"])
        for spec, h in hooks:
            if progress:
                progress(spec)
            r = simulate(w, policies=h, **simulate_kw)
            label = "+".join(h.labels) or spec  # a file's policy by its name, not its path
            rows.append(Row(label, r, t0 / max(1, r.totals["time_ns"])))
        return rows
    finally:
        for _, h in hooks:
            h.close()


def table_rows(rows: Sequence[Row]) -> list[list[str]]:
    """Formatted cells: policy, time, speedup, then COLUMNS."""
    out = []
    for r in rows:
        t = r.totals
        cells = [r.policy, fmt_ns(t.get("time_ns", 0)), f"{r.speedup:.2f}x"]
        for _, k in COLUMNS:
            v = t.get(k, 0)
            cells.append(fmt_bytes(v) if k.startswith("bytes") else f"{v:,}")
        if r.result.fatal:
            cells[1] += " FATAL"
        out.append(cells)
    return out


def markdown(rows: Sequence[Row]) -> str:
    head = ["policy", "time", "speedup", *(h for h, _ in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(c) + " |" for c in table_rows(rows)]
    return "\n".join(lines)


def plot(rows: Sequence[Row], path: str | Path, title: str = "") -> None:
    """Bar charts of speedup and of evictions / bytes moved per policy (matplotlib)."""
    path = Path(path)
    names = [r.policy for r in rows]
    # a Figure on the Agg canvas, not pyplot: no global figure state, and pyplot (slow to
    # import) stays out of the command's start-up
    fig = Figure(figsize=(max(6.0, 2 + 0.7 * len(rows)), 9), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, 1, sharex=True)
    panels = (
        ("speedup vs driver default", [r.speedup for r in rows], "{:.2f}x"),
        ("evictions (root chunks)", [r.totals["evictions"] for r in rows], "{:,.0f}"),
        ("GiB host to device", [r.totals["bytes_htod"] / 2**30 for r in rows], "{:.2f}"),
    )
    for ax, (label, values, fmt) in zip(axes, panels, strict=True):
        bars = ax.bar(range(len(rows)), values, color=["0.55"] + ["C0"] * (len(rows) - 1))
        ax.set_title(label, fontsize=10)
        ax.bar_label(bars, fmt=fmt, fontsize=7)
        ax.margins(y=0.15)
        if fmt.endswith("x"):
            ax.axhline(1.0, color="0.3", lw=0.8, ls="--")
    axes[-1].set_xticks(range(len(rows)), names, rotation=40, ha="right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    suffix = path.suffix.lower() or ".png"
    if suffix not in FIGURE_SUFFIXES:
        raise UvmlabError(f"{path}: '{suffix}' is not a figure format; use {', '.join(FIGURE_SUFFIXES)}")
    write_via(path, lambda tmp: fig.savefig(tmp, dpi=120), what="plot")
