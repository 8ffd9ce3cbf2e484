"""Results as tables: pandas DataFrames and Parquet files with a fixed, documented schema.

Two shapes (docs/results.md):

* one result in one Parquet file (``Result.save("run.parquet")``): the event stream is the table,
  the rest of the result is JSON in the file's metadata; ``Result.load`` gives it back equal;
* any number of results as tidy tables (``write_tables``): ``runs.parquet`` (one row per run,
  the canonical totals as columns), ``ops.parquet``, ``events.parquet`` and ``samples.parquet``,
  each with a ``run`` column that joins them. That is the shape for pandas, DuckDB or Polars.

The column types are fixed here, not inferred, so that an empty table and a full one have the
same schema and a column never changes type between runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from uvmlab.core.counters import (
    EVENT_TYPES,
    EXTRA,
    OP_COLUMNS,
    RUN_COLUMNS,
    SAMPLE_COLUMNS,
    TOTAL_KEYS,
)
from uvmlab.results.io import events_to_columns, write_atomic
from uvmlab.results.result import Result

TABLES_VERSION = 1


# --- many results, tidy tables ----------------------------------------------------------------
def run_label(res: Result, default: str = "") -> str:
    """A short label for a run: the sweep point's label, else ``default``, else the workload."""
    point = res.meta.get("point") if isinstance(res.meta, dict) else None
    if isinstance(point, dict) and point.get("label"):
        return str(point["label"])
    return default or res.workload


def runs_frame(results: Sequence[Result], labels: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per run: identity columns, then every canonical total, then the model extras."""
    labels = list(labels) if labels is not None else [run_label(r) for r in results]
    rows = []
    for i, (r, lab) in enumerate(zip(results, labels, strict=True)):
        point = r.meta.get("point", {}) if isinstance(r.meta, dict) else {}
        row: dict[str, Any] = {
            "run": i,
            "label": lab,
            "workload": r.workload,
            "source": r.source,
            "gpu": r.gpu,
            "profile": r.profile,
            "gpu_memory_bytes": int(r.gpu_memory_bytes),
            "params": json.dumps(r.params, sort_keys=True),
            "policies": str(point.get("policies", r.meta.get("policies", "")) or ""),
            "seed": int(r.meta.get("seed", 0) or 0),
            "fatal": (r.fatal or {}).get("reason", "") if r.fatal else "",
            "wall_s": float(r.wall_s),
        }
        for k in (*TOTAL_KEYS, *EXTRA):
            row[k] = int(r.totals.get(k, 0))
        rows.append(row)
    return _typed(pd, rows, RUN_COLUMNS)


def ops_frame(results: Sequence[Result]) -> pd.DataFrame:
    """Every run's per-operation rows, with a ``run`` column."""
    rows = []
    for i, r in enumerate(results):
        for op in r.ops:
            rows.append({"run": i, **op})
    return _typed(pd, rows, OP_COLUMNS)


def events_frame(results: Sequence[Result]) -> pd.DataFrame:
    """Every run's event stream (those that recorded one), with a ``run`` column."""
    parts = []
    for i, r in enumerate(results):
        if r.events is None:
            continue
        cols = events_to_columns(r.events)
        parts.append(pd.DataFrame({"run": np.full(len(cols["time_ns"]), i, np.int64), **cols}))
    types = {"run": "int64", **EVENT_TYPES}
    if not parts:
        return _typed(pd, [], types)
    return _coerce(pd.concat(parts, ignore_index=True), types)


def samples_frame(results: Sequence[Result]) -> pd.DataFrame:
    """Residency samples in long form: one row per run, sample and page range."""
    parts = []
    for i, r in enumerate(results):
        s = r.samples
        if s is None or s.n_samples == 0 or s.n_bins == 0:
            continue
        S, B = s.n_samples, s.n_bins
        f = s.fractions()
        lo = np.arange(B, dtype=np.int64) * s.bin_pages
        hi = np.minimum(lo + s.bin_pages, s.total_pages)
        parts.append(
            pd.DataFrame(
                {
                    "run": np.full(S * B, i, np.int64),
                    "sample": np.repeat(np.arange(S), B),
                    "time_ns": np.repeat(s.time_ns, B),
                    "range": np.tile(np.arange(B), S),
                    "first_page": np.tile(lo, S),
                    "end_page": np.tile(hi, S),
                    "none": f[:, :, 0].ravel(),
                    "cpu": f[:, :, 1].ravel(),
                    "gpu": f[:, :, 2].ravel(),
                    "both": f[:, :, 3].ravel(),
                }
            )
        )
    if not parts:
        return _typed(pd, [], SAMPLE_COLUMNS)
    return _coerce(pd.concat(parts, ignore_index=True), SAMPLE_COLUMNS)


def _coerce(df: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    for c, t in types.items():
        if c not in df:
            df[c] = 0 if t != "string" else ""
        df[c] = df[c].astype(
            {"int64": "int64", "float64": "float64", "float32": "float32", "string": str, "bool": bool}[t]
        )
    extra = [c for c in df.columns if c not in types]
    return df[[*types, *extra]]


def _typed(pd: Any, rows: list[dict], types: dict[str, str]) -> pd.DataFrame:
    return _coerce(pd.DataFrame(rows, columns=list(types) if not rows else None), types)


def write_tables(
    results: Sequence[Result], out_dir: str | Path, labels: Sequence[str] | None = None
) -> dict[str, Path]:
    """Write runs / ops / events / samples tables as Parquet files in ``out_dir`` (atomically,
    one file at a time); returns their paths by table name."""
    out = Path(out_dir)
    frames = {
        "runs": runs_frame(results, labels),
        "ops": ops_frame(results),
        "events": events_frame(results),
        "samples": samples_frame(results),
    }
    paths = {}
    for name, df in frames.items():
        table = pa.Table.from_pandas(df, preserve_index=False)
        table = table.replace_schema_metadata({b"uvmlab.tables_version": str(TABLES_VERSION).encode()})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        paths[name] = out / f"{name}.parquet"
        write_atomic(paths[name], sink.getvalue().to_pybytes())
    return paths
