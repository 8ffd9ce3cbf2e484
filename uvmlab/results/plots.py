"""Plots of results (matplotlib, Agg): residency heatmap, activity over time, comparison bars.

Figures are built with ``matplotlib.figure.Figure`` and drawn by the Agg canvas, never through
``pyplot``: no GUI backend is ever touched (headless machines, worker processes) and a caller's
own pyplot state is left alone. Each function returns the Figure; ``png_bytes`` renders one.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from uvmlab.core.errors import UvmlabError
from uvmlab.core.files import FIGURE_SUFFIXES
from uvmlab.results.io import write_atomic
from uvmlab.results.tables import run_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from uvmlab.results.result import Result

#: colours of a page range's state: not populated, CPU, GPU 0, both (read-duplicated)
STATE_COLORS = {"none": "#eeeeee", "cpu": "#4c72b0", "gpu": "#55a868", "both": "#8172b2"}
CAUSE_COLORS = {
    "Coherence": "#4c72b0",
    "Prefetch": "#55a868",
    "Eviction": "#c44e52",
    "User": "#8172b2",
    "AccessCounters": "#ccb974",
    "other": "#937860",
}


def _figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure, dpi: int = 100, fmt: str = "png") -> bytes:
    """The figure as PNG (or ``fmt``: svg, pdf) bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    return buf.getvalue()


def save_png(fig: Figure, path: str, dpi: int = 100) -> None:
    """Write the figure in the format its suffix names (.png, .svg, .pdf); refuse others."""
    suffix = Path(path).suffix.lower() or ".png"
    if suffix not in FIGURE_SUFFIXES:
        raise UvmlabError(f"{path}: '{suffix}' is not a figure format; use {', '.join(FIGURE_SUFFIXES)}")
    write_atomic(Path(path), png_bytes(fig, dpi, suffix[1:]))


def time_unit(span_ns: float) -> tuple[str, float]:
    """A display unit for a time span: (name, ns per unit)."""
    if span_ns >= 2e9:
        return "s", 1e9
    if span_ns >= 2e6:
        return "ms", 1e6
    return "µs", 1e3


def _end_ns(res: Result) -> int:
    t = int(res.totals.get("time_ns", 0))
    if res.ops:
        t = max(t, max(int(o.get("start_ns", 0)) + int(o.get("time_ns", 0)) for o in res.ops))
    if res.samples is not None and res.samples.n_samples:
        t = max(t, int(res.samples.time_ns[-1]))
    return max(t, 1)


def _op_strip(ax: Any, res: Result, scale: float) -> None:
    """Kernels and CPU phases as coloured spans on a thin axis."""
    spans: dict[str, list[tuple[float, float]]] = {"kernel": [], "cpu": []}
    for o in res.ops:
        if o.get("op") in spans and o.get("time_ns", 0) > 0:
            spans[o["op"]].append((o["start_ns"] / scale, o["time_ns"] / scale))
    for sp, y, color in zip(spans.values(), (0, 1), ("#55a868", "#4c72b0"), strict=True):
        if sp:
            ax.broken_barh(sp, (y + 0.1, 0.8), facecolors=color, edgecolors="white", linewidth=0.3)
    ax.set_yticks([0.5, 1.5], ["kernels", "CPU"])
    ax.set_ylim(0, 2)
    ax.tick_params(axis="x", labelbottom=False)


def residency_heatmap(res: Result, *, width: int = 600, title: str | None = None) -> Figure:
    """Page range (y) × simulated time (x), coloured by which processor holds the pages."""
    s = res.samples
    if s is None or s.n_samples == 0 or s.n_bins == 0:
        raise UvmlabError(
            f"{res.workload}: the result has no residency samples (run it with "
            f"--out, --timeline or uvmlab.api.simulate_sampled)"
        )
    end = _end_ns(res)
    unit, scale = time_unit(end)
    # step-hold the (unevenly spaced) samples onto an even time grid: each column shows the
    # state at its right edge, so the last column is the state the run ended in
    grid = (np.arange(width) + 1.0) * end / width
    col = np.clip(np.searchsorted(s.time_ns, grid, side="right") - 1, 0, s.n_samples - 1)
    f = s.fractions()[col]  # [W, B, 4]
    colors = np.array([_rgb(STATE_COLORS[k]) for k in ("none", "cpu", "gpu", "both")])
    img = np.clip(np.einsum("wbk,kc->bwc", f, colors), 0, 1)  # [B, W, 3]

    fig = _figure(9, 4.8)
    gs = fig.add_gridspec(2, 1, height_ratios=(1, 8))
    strip = fig.add_subplot(gs[0])
    ax = fig.add_subplot(gs[1], sharex=strip)
    _op_strip(strip, res, scale)
    total_mib = s.total_pages * 4096 / 2**20
    ax.imshow(
        img, aspect="auto", origin="lower", interpolation="nearest", extent=(0, end / scale, 0, total_mib)
    )
    for a in s.allocs:
        y0 = a["first_page"] * 4096 / 2**20
        if y0 > 0:
            ax.axhline(y0, color="black", linewidth=0.6)
        ax.text(
            1.005,
            (y0 + a["pages"] * 2048 / 2**20) / total_mib,
            a["name"],
            transform=ax.transAxes,
            va="center",
            fontsize=8,
            clip_on=False,
        )
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_ylabel("managed memory (MiB)")
    ax.legend(
        handles=[
            Patch(color=STATE_COLORS[k], label=lab)
            for k, lab in (
                ("gpu", "GPU 0"),
                ("cpu", "CPU"),
                ("both", "both (read-dup)"),
                ("none", "not populated"),
            )
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.13),
        ncol=4,
        fontsize=8,
        frameon=False,
    )
    strip.set_title(
        title or f"residency: {res.workload} on {res.gpu or 'model'}{_mem_note(res)}", loc="left", fontsize=10
    )
    return fig


def _mem_note(res: Result) -> str:
    if res.gpu_memory_bytes:
        return f", {res.gpu_memory_bytes / 2**20:,.0f} MiB GPU memory"
    return ""


def _rgb(h: str) -> tuple[float, float, float]:
    h = h.lstrip("#")
    return tuple(int(h[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


# --- activity over time --------------------------------------------------------------------
def activity_series(
    res: Result, bins: int = 200
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray], str]:
    """Per time bin: faults by kind and bytes migrated by direction and cause.

    Returns (bin edges in ns, {"GPU faults": n, "CPU faults": n},
    {"HtoD Coherence": bytes, ..., "DtoH Eviction": bytes}, source) where source says whether
    the numbers come from the event stream (exact), the samples or the per-op rows (spread
    evenly over the interval between two samples or over an operation).
    """
    end = _end_ns(res)
    edges = np.linspace(0, end, bins + 1)
    if res.events is not None and len(res.events):
        df = res.events
        t = df["time_ns"].to_numpy(np.float64)
        name = df["event"].astype(str).to_numpy()
        nb = df["bytes"].to_numpy(np.float64)
        cause = df["cause"].astype(str).to_numpy()
        proc = df["processor"].to_numpy(np.int64)
        faults = {
            "GPU faults": np.histogram(t[name == "GpuFault"], edges, weights=nb[name == "GpuFault"])[0],
            "CPU faults": np.histogram(t[name == "CpuFault"], edges)[0].astype(float),
        }
        moved: dict[str, np.ndarray] = {}
        mig = name == "Migration"
        for direction, sel in (("HtoD", mig & (proc > 0)), ("DtoH", mig & (proc == 0))):
            for c in sorted(set(cause[sel].tolist())):
                m = sel & (cause == c)
                moved[f"{direction} {c}"] = np.histogram(t[m], edges, weights=nb[m])[0]
        return edges, faults, moved, "events"
    if res.samples is not None and res.samples.n_samples > 1:
        s = res.samples
        tt = s.time_ns.astype(np.float64)
        cum = {k: v.astype(np.float64) for k, v in s.counters.items()}
        source = "samples"
    else:
        tt, cum = _ops_cumulative(res)
        source = "ops"

    def per_bin(v: np.ndarray) -> np.ndarray:
        return np.diff(np.interp(edges, tt, v)) if len(tt) else np.zeros(bins)

    faults = {
        "GPU faults": per_bin(cum.get("gpu_faults", np.zeros(len(tt)))),
        "CPU faults": per_bin(cum.get("cpu_faults", np.zeros(len(tt)))),
    }
    names = {
        "bytes_htod_fault": "HtoD Coherence",
        "bytes_htod_prefetch": "HtoD Prefetch",
        "bytes_htod_user": "HtoD User",
        "bytes_htod_access_counter": "HtoD AccessCounters",
        "bytes_htod_other": "HtoD other",
        "bytes_dtoh_fault": "DtoH Coherence",
        "bytes_dtoh_prefetch": "DtoH Prefetch",
        "bytes_dtoh_eviction": "DtoH Eviction",
        "bytes_dtoh_user": "DtoH User",
        "bytes_dtoh_other": "DtoH other",
    }
    moved = {names[k]: per_bin(v) for k, v in cum.items() if k in names and v[-1] > 0}
    return edges, faults, moved, source


def _ops_cumulative(res: Result) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    t = [0.0]
    acc = {
        "gpu_faults": [0.0],
        "cpu_faults": [0.0],
        "bytes_htod_prefetch": [0.0],
        "bytes_htod_other": [0.0],
        "bytes_dtoh_eviction": [0.0],
        "bytes_dtoh_other": [0.0],
    }
    for o in res.ops:
        start, dur = float(o.get("start_ns", 0)), float(o.get("time_ns", 0))
        g = {
            k: float(o.get(k, 0))
            for k in (
                "gpu_faults",
                "cpu_faults",
                "bytes_htod",
                "bytes_htod_prefetch",
                "bytes_dtoh",
                "bytes_dtoh_eviction",
            )
        }
        delta = {
            "gpu_faults": g["gpu_faults"],
            "cpu_faults": g["cpu_faults"],
            "bytes_htod_prefetch": g["bytes_htod_prefetch"],
            "bytes_htod_other": g["bytes_htod"] - g["bytes_htod_prefetch"],
            "bytes_dtoh_eviction": g["bytes_dtoh_eviction"],
            "bytes_dtoh_other": g["bytes_dtoh"] - g["bytes_dtoh_eviction"],
        }
        if start > t[-1]:
            t.append(start)
            for k in acc:
                acc[k].append(acc[k][-1])
        t.append(max(start + dur, t[-1] + 1e-3))  # strictly increasing for interp
        for k in acc:
            acc[k].append(acc[k][-1] + delta[k])
    return np.asarray(t), {k: np.asarray(v) for k, v in acc.items()}


def activity_plot(res: Result, *, bins: int = 200, title: str | None = None) -> Figure:
    """Faults per ms and migration bandwidth by cause (HtoD up, DtoH down) over time."""
    edges, faults, moved, source = activity_series(res, bins)
    end = edges[-1]
    unit, scale = time_unit(end)
    width_ns = edges[1] - edges[0]
    x = edges[:-1] / scale
    w = width_ns / scale
    fig = _figure(9, 5.2)
    gs = fig.add_gridspec(3, 1, height_ratios=(1, 4, 5))
    strip = fig.add_subplot(gs[0])
    ax1 = fig.add_subplot(gs[1], sharex=strip)
    ax2 = fig.add_subplot(gs[2], sharex=strip)
    _op_strip(strip, res, scale)
    for (k, v), color in zip(faults.items(), ("#c44e52", "#4c72b0"), strict=True):
        if v.sum() > 0:
            ax1.step(x, v / (width_ns / 1e6), where="post", label=k, color=color, linewidth=1)
    ax1.set_ylabel("faults / ms")
    if ax1.get_legend_handles_labels()[0]:
        ax1.legend(fontsize=8, loc="upper right")
    ax1.tick_params(axis="x", labelbottom=False)
    bottom_up = np.zeros(len(x))
    bottom_down = np.zeros(len(x))
    for k, v in moved.items():
        direction, cause = k.split(" ", 1)
        gbps = v / width_ns  # bytes per ns = GB/s
        color = CAUSE_COLORS.get(cause, CAUSE_COLORS["other"])
        if direction == "HtoD":
            ax2.bar(x, gbps, w, bottom=bottom_up, align="edge", color=color, label=k, linewidth=0)
            bottom_up += gbps
        else:
            ax2.bar(
                x,
                -gbps,
                w,
                bottom=-bottom_down,
                align="edge",
                color=color,
                label=k,
                linewidth=0,
                hatch="//",
                edgecolor="white",
            )
            bottom_down += gbps
    ax2.axhline(0, color="black", linewidth=0.5)
    ax2.set_ylabel("GB/s  (HtoD up, DtoH down)")
    ax2.set_xlabel(f"simulated time ({unit})")
    ax2.set_xlim(0, end / scale)
    if moved:
        ax2.legend(fontsize=8, loc="upper right", ncol=2)
    strip.set_title(
        title or f"faults and migrations: {res.workload} (from {source})", loc="left", fontsize=10
    )
    return fig


# --- comparisons -----------------------------------------------------------------------------
#: (total key, axis label, divisor) for comparison bars
COMPARE_METRICS: tuple[tuple[str, str, float], ...] = (
    ("time_ns", "time (ms)", 1e6),
    ("gpu_faults", "GPU faults (raw)", 1),
    ("bytes_htod", "HtoD (MiB)", 2**20),
    ("bytes_dtoh", "DtoH (MiB)", 2**20),
    ("evictions", "evictions (root chunks)", 1),
    ("thrashing_events", "thrashing events", 1),
)


def comparison_bars(
    results: Sequence[Result],
    labels: Sequence[str] | None = None,
    *,
    metrics: Sequence[tuple[str, str, float]] = COMPARE_METRICS,
    title: str | None = None,
) -> Figure:
    """One horizontal bar chart per metric, one bar per run (policy / parameter comparisons)."""
    labels = list(labels) if labels is not None else [run_label(r) for r in results]
    n = len(results)
    ncols = min(3, len(metrics))
    nrows = -(-len(metrics) // ncols)
    fig = _figure(
        3.2 * ncols + 0.12 * max(len(x) for x in labels) if labels else 9, nrows * (0.7 + 0.28 * max(n, 2))
    )
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    y = np.arange(n)
    for ax, (key, label, div) in zip(axes, metrics, strict=False):
        v = np.array([r.totals.get(key, 0) / div for r in results], dtype=float)
        colors = ["#c44e52" if r.fatal else "#4c72b0" for r in results]
        ax.barh(y, v, color=colors)
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", linewidth=0.3)
        differ = len(v) > 1 and np.ptp(v) > 0
        for i, val in enumerate(v):
            # the best (smallest) value is starred where the runs differ at all
            text = f"{val:,.0f}" if val >= 100 else f"{val:.3g}"
            ax.text(val, i, f" {text}" + (" *" if differ and val == v.min() else ""), va="center", fontsize=7)
        ax.margins(x=0.3)
        if not v.any():
            ax.set_xlim(0, 1)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    for ax in axes[::ncols]:
        ax.set_yticks(y, labels, fontsize=8)
    axes[0].invert_yaxis()
    if title:
        fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    return fig
