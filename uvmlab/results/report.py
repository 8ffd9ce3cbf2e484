"""One self-contained HTML page for one or several runs: summary tables and plots.

Everything is inline (CSS, PNG images as data: URIs, a few lines of script), so the file can be
mailed, attached to an issue or opened from disk with no network. Layout:

1. a summary table, one row per run, with the headline counters in human units;
2. with several runs, comparison bars of the headline counters;
3. every canonical counter (docs/results.md) per run, as exact numbers;
4. per run (up to ``max_detailed``): its summary, residency heatmap (sampled runs), faults and
   migrations over time, and its per-operation table.

Cells carry ``data-key`` / ``data-value`` attributes with the exact numbers, so a script (or a
test) can read the page back. The inline script only records, on ``<body>``, how many images
decoded and whether any script error happened (``data-images-loaded`` / ``data-js-errors``).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from uvmlab.core.counters import EXTRA, TOTALS
from uvmlab.core.errors import UvmlabError
from uvmlab.core.units import fmt_bytes, fmt_ns
from uvmlab.core.version import __version__
from uvmlab.policy.loader import NO_POLICY
from uvmlab.results import plots
from uvmlab.results.io import write_atomic
from uvmlab.results.tables import run_label

if TYPE_CHECKING:
    from uvmlab.results.result import Result

MAX_DETAILED = 24  # runs that get their own section with plots
MAX_OP_ROWS = 500  # per-operation rows shown per run

SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("time", "time_ns"),
    ("GPU faults", "gpu_faults"),
    ("batches", "fault_batches"),
    ("replays", "replays"),
    ("CPU faults", "cpu_faults"),
    ("HtoD", "bytes_htod"),
    ("HtoD prefetch", "bytes_htod_prefetch"),
    ("DtoH", "bytes_dtoh"),
    ("DtoH eviction", "bytes_dtoh_eviction"),
    ("evictions", "evictions"),
    ("thrashing", "thrashing_events"),
    ("remote maps", "remote_maps"),
)
OP_COLUMNS = (
    "op_index",
    "op",
    "name",
    "start_ns",
    "time_ns",
    "gpu_faults",
    "fault_batches",
    "cpu_faults",
    "bytes_htod",
    "bytes_dtoh",
    "evictions",
    "thrashing_events",
)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em auto;max-width:1200px;
padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
h3{font-size:1.05em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .5em}th{background:#f4f4f4;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.fatal td{background:#fde8e8}
img.plot{max-width:100%;height:auto;display:block;margin:.5em 0;border:1px solid #eee}
pre{background:#f8f8f8;padding:.6em;overflow-x:auto;font-size:.85em}
.meta{color:#666;font-size:.9em}.wrap{overflow-x:auto}
"""

SCRIPT = """
(function(){var b=document.body;b.dataset.jsErrors="0";
window.addEventListener("error",function(){b.dataset.jsErrors=String(+b.dataset.jsErrors+1);});
window.addEventListener("load",function(){var ok=0,im=document.images;
for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)ok++;}
b.dataset.imagesLoaded=String(ok);b.dataset.imagesTotal=String(im.length);});})();
"""


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _fmt(key: str, v: int) -> str:
    if key.endswith("_ns") or key == "time_ns":
        return fmt_ns(v)
    if key.startswith("bytes"):
        return fmt_bytes(v)
    return f"{v:,}"


def _num_td(key: str, v: int, human: bool = True) -> str:
    text = _fmt(key, v) if human else f"{v:,}"
    return f'<td class="n" data-key="{_e(key)}" data-value="{int(v)}" title="{int(v):,}">{_e(text)}</td>'


def _img(png: bytes, alt: str, cls: str) -> str:
    return (
        f'<img class="plot {cls}" alt="{_e(alt)}" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
    )


def _params_text(r: Result) -> str:
    parts = [f"{k}={v}" for k, v in sorted(r.params.items())]
    point = r.meta.get("point") if isinstance(r.meta, dict) else None
    if isinstance(point, dict) and point.get("policies") not in (None, "", *NO_POLICY):
        parts.append(f"policies={point['policies']}")
    return ", ".join(parts) or "defaults"


def unique_labels(results: Sequence[Result], names: Sequence[str] | None = None) -> list[str]:
    """Labels for runs: the sweep point label or workload name, made unique with ``names``
    (file names) or a number where two runs would read the same."""
    labels = [run_label(r) for r in results]
    if len(set(labels)) < len(labels):
        if names is not None and len(set(names)) == len(names):
            labels = [f"{lab} ({n})" for lab, n in zip(labels, names, strict=True)]
        else:
            labels = [f"{lab} #{i + 1}" for i, lab in enumerate(labels)]
    return labels


def render_report(
    results: Sequence[Result],
    labels: Sequence[str] | None = None,
    *,
    title: str = "uvmlab report",
    max_detailed: int = MAX_DETAILED,
    notes: Sequence[str] = (),
) -> str:
    """The report page for ``results`` as an HTML string."""
    if not results:
        raise UvmlabError("no results to report")
    labels = list(labels) if labels is not None else unique_labels(results)
    out: list[str] = []
    w = out.append
    w('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">')
    w(f'<title>{_e(title)}</title><style>{CSS}</style></head>\n<body data-report="uvmlab">')
    w(f"<h1>{_e(title)}</h1>")
    w(
        f'<p class="meta">{len(results)} run(s); made by uvmlab {_e(__version__)}. Times are '
        f"simulated (model runs) or measured (real-GPU runs); hover a number for its exact "
        f"value.</p>"
    )
    for n in notes:
        w(f'<p class="meta">{_e(n)}</p>')

    # 1. summary
    w(
        '<section id="summary"><h2>Summary</h2><div class="wrap">'
        '<table class="summary" id="summary-table"><thead><tr><th>run</th><th>workload</th>'
        "<th>source</th><th>GPU</th><th>GPU memory</th><th>parameters</th>"
    )
    w("".join(f"<th>{_e(lab)}</th>" for lab, _ in SUMMARY_COLUMNS))
    w("<th>fatal</th></tr></thead><tbody>")
    for i, (r, lab) in enumerate(zip(results, labels, strict=True)):
        cls = ' class="fatal"' if r.fatal else ""
        mem = fmt_bytes(r.gpu_memory_bytes) if r.gpu_memory_bytes else "-"
        w(
            f'<tr{cls} data-run="{i}"><td><a href="#run-{i}">{_e(lab)}</a></td>'
            f"<td>{_e(r.workload)}</td><td>{_e(r.source)}</td><td>{_e(r.gpu)}</td>"
            f"<td>{_e(mem)}</td><td>{_e(_params_text(r))}</td>"
        )
        w("".join(_num_td(k, int(r.totals.get(k, 0))) for _, k in SUMMARY_COLUMNS))
        w(f"<td>{_e(r.fatal['reason']) if r.fatal else ''}</td></tr>")
    w("</tbody></table></div></section>")

    # 2. comparison
    if len(results) > 1:
        fig = plots.comparison_bars(results, labels)
        w('<section id="comparison"><h2>Comparison</h2>')
        w(_img(plots.png_bytes(fig, dpi=90), "comparison of the runs' counters", "comparison"))
        w(
            '<p class="meta">* marks the smallest value where the runs differ; red bars are '
            "runs whose context died.</p></section>"
        )

    # 3. all counters
    w(
        '<section id="counters"><h2>All counters</h2><div class="wrap">'
        '<table class="counters" id="counters-table"><thead><tr><th>counter</th><th>meaning</th>'
    )
    w("".join(f"<th>{_e(lab)}</th>" for lab in labels))
    w("</tr></thead><tbody>")
    for key, meaning in (*TOTALS.items(), *EXTRA.items()):
        if not any(key in r.totals for r in results):
            continue
        w(f"<tr><td><code>{_e(key)}</code></td><td>{_e(meaning)}</td>")
        w(
            "".join(
                _num_td(key, int(r.totals[key]), human=False) if key in r.totals else "<td>-</td>"
                for r in results
            )
        )
        w("</tr>")
    w("</tbody></table></div></section>")

    # 4. per run
    for i, (r, lab) in enumerate(zip(results, labels, strict=True)):
        if i >= max_detailed:
            w(
                f'<p class="meta">{len(results) - max_detailed} more run(s) are in the tables '
                f"above but get no section of their own.</p>"
            )
            break
        w(f'<section class="run" id="run-{i}"><h2>{_e(lab)}</h2>')
        w(f"<pre>{_e(r.summary())}</pre>")
        info = {
            "gpu": r.gpu,
            "profile": r.profile,
            "params": r.params,
            "gpu_memory_bytes": r.gpu_memory_bytes,
            **{k: v for k, v in r.meta.items() if k != "point"},
        }
        w(f'<p class="meta">{_e(json.dumps(info, sort_keys=True, default=str))}</p>')
        if r.samples is not None and r.samples.n_samples and r.samples.n_bins:
            fig = plots.residency_heatmap(r, title=f"residency: {lab}")
            w(_img(plots.png_bytes(fig, dpi=80), f"residency heatmap of {lab}", "heatmap"))
        fig = plots.activity_plot(r, title=f"faults and migrations over time: {lab}")
        w(_img(plots.png_bytes(fig, dpi=80), f"faults and migrations of {lab}", "activity"))
        w(_ops_table(r, i))
        w("</section>")
    w(f"<script>{SCRIPT}</script></body></html>\n")
    return "".join(out)


def _ops_table(r: Result, i: int) -> str:
    rows = r.ops[:MAX_OP_ROWS]
    more = len(r.ops) - len(rows)
    parts = [
        f"<details{' open' if len(r.ops) <= 20 else ''}><summary>per-operation table "
        f'({len(r.ops)} operations)</summary><div class="wrap">'
        f'<table class="ops" id="ops-{i}"><thead><tr>'
    ]
    parts.append("".join(f"<th>{_e(c)}</th>" for c in OP_COLUMNS))
    parts.append("</tr></thead><tbody>")
    for op in rows:
        parts.append("<tr>")
        for c in OP_COLUMNS:
            v = op.get(c, "")
            if isinstance(v, int) and c not in ("op_index",):
                parts.append(_num_td(c, v))
            else:
                parts.append(f"<td>{_e(v)}</td>")
        parts.append("</tr>")
    parts.append("</tbody></table></div>")
    if more > 0:
        parts.append(f'<p class="meta">{more} more operation(s) not shown.</p>')
    parts.append("</details>")
    return "".join(parts)


def write_report(
    results: Sequence[Result], path: str | Path, labels: Sequence[str] | None = None, **kw: object
) -> Path:
    """Render and write the report atomically; returns the path."""
    p = Path(path)
    write_atomic(p, render_report(results, labels, **kw).encode(), what="report", stdout=True)  # type: ignore[arg-type]
    return p
