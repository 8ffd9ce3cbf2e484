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
from typing import TYPE_CHECKING, Any

import numpy as np

from uvmlab.driver.events import EVENT_COLUMNS
from uvmlab.errors import TraceFileError
from uvmlab.results.schema import (
    EVENT_TYPES,
    EXTRA,
    OP_COLUMNS,
    RUN_COLUMNS,
    SAMPLE_COLUMNS,
    TOTAL_KEYS,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from uvmlab.results.result import Result

PARQUET_META_KEY = b"uvmlab.result"
TABLES_VERSION = 1


# --- the event stream --------------------------------------------------------------------------
def events_to_columns(df: pd.DataFrame) -> dict[str, list]:
    """An events DataFrame as plain Python column lists (JSON-ready, exact)."""
    out: dict[str, list] = {}
    for c in EVENT_COLUMNS:
        col = df.get(c, [])
        if EVENT_TYPES[c] == "int64":
            out[c] = [int(x) for x in np.asarray(col, dtype=np.int64)]
        else:
            out[c] = ["" if x is None else str(x) for x in col]
    return out


def events_from_columns(cols: dict[str, list]) -> pd.DataFrame:
    """The inverse of ``events_to_columns``: the DataFrame ``simulate(events=True)`` returns."""
    import pandas as pd

    n = {len(cols.get(c, [])) for c in EVENT_COLUMNS}
    if len(n) != 1:
        raise ValueError("event columns differ in length")
    data = {}
    for c in EVENT_COLUMNS:
        v = cols.get(c, [])
        data[c] = (np.asarray(v, dtype=np.int64) if EVENT_TYPES[c] == "int64"
                   else pd.Series([str(x) for x in v], dtype=object).astype(str))
    return pd.DataFrame(data, columns=list(EVENT_COLUMNS))


def _arrow_type(t: str) -> pa.DataType:
    import pyarrow as pa

    return {"int64": pa.int64(), "string": pa.string(), "float64": pa.float64(),
            "float32": pa.float32(), "bool": pa.bool_()}[t]


def _schema(types: dict[str, str], prefix: Sequence[tuple[str, str]] = ()) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([pa.field(k, _arrow_type(t)) for k, t in (*prefix, *types.items())])


def events_arrow(df: pd.DataFrame | None) -> pa.Table:
    """The event stream as an Arrow table with the fixed schema (empty when ``df`` is None)."""
    import pyarrow as pa

    cols = events_to_columns(df) if df is not None else {c: [] for c in EVENT_COLUMNS}
    return pa.table({c: pa.array(cols[c], type=_arrow_type(EVENT_TYPES[c]))
                     for c in EVENT_COLUMNS}, schema=_schema(EVENT_TYPES))


# --- one result, one file ---------------------------------------------------------------------
def write_result_parquet(res: Result, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from uvmlab.results.result import write_atomic

    d = res.to_dict()
    d.pop("events", None)  # they are the table
    d["has_events"] = res.events is not None
    table = events_arrow(res.events)
    table = table.replace_schema_metadata({PARQUET_META_KEY: json.dumps(d).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    write_atomic(path, sink.getvalue().to_pybytes())


def read_result_parquet(path: Path) -> Result:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from uvmlab.results.result import Result

    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise TraceFileError(f"{path}: no such file") from None
    except (OSError, pa.ArrowException) as e:
        raise TraceFileError(f"{path}: not a readable Parquet file ({e})") from None
    meta = (table.schema.metadata or {}).get(PARQUET_META_KEY)
    if meta is None:
        raise TraceFileError(f"{path}: a Parquet file, but not a uvmlab result")
    try:
        d = json.loads(meta)
    except json.JSONDecodeError as e:
        raise TraceFileError(f"{path}: result metadata is not valid JSON ({e.msg})") from None
    if not isinstance(d, dict):
        raise TraceFileError(f"{path}: not a uvmlab result file")
    if d.pop("has_events", False):
        missing = [c for c in EVENT_COLUMNS if c not in table.column_names]
        if missing:
            raise TraceFileError(f"{path}: event table lacks column(s) {', '.join(missing)}")
        d["events"] = {c: table.column(c).to_pylist() for c in EVENT_COLUMNS}
    return Result.from_dict(d, where=str(path))


# --- many results, tidy tables ----------------------------------------------------------------
def run_label(res: Result, default: str = "") -> str:
    """A short label for a run: the sweep point's label, else ``default``, else the workload."""
    point = res.meta.get("point") if isinstance(res.meta, dict) else None
    if isinstance(point, dict) and point.get("label"):
        return str(point["label"])
    return default or res.workload


def runs_frame(results: Sequence[Result], labels: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per run: identity columns, then every canonical total, then the model extras."""
    import pandas as pd

    labels = list(labels) if labels is not None else [run_label(r) for r in results]
    rows = []
    for i, (r, lab) in enumerate(zip(results, labels, strict=True)):
        point = r.meta.get("point", {}) if isinstance(r.meta, dict) else {}
        row: dict[str, Any] = {
            "run": i, "label": lab, "workload": r.workload, "source": r.source, "gpu": r.gpu,
            "profile": r.profile, "gpu_memory_bytes": int(r.gpu_memory_bytes),
            "params": json.dumps(r.params, sort_keys=True),
            "policies": str(point.get("policies", r.meta.get("policies", "")) or ""),
            "seed": int(r.meta.get("seed", 0) or 0),
            "fatal": (r.fatal or {}).get("reason", "") if r.fatal else "",
            "wall_s": float(r.wall_s)}
        for k in (*TOTAL_KEYS, *EXTRA):
            row[k] = int(r.totals.get(k, 0))
        rows.append(row)
    return _typed(pd, rows, RUN_COLUMNS)


def ops_frame(results: Sequence[Result]) -> pd.DataFrame:
    """Every run's per-operation rows, with a ``run`` column."""
    import pandas as pd

    rows = []
    for i, r in enumerate(results):
        for op in r.ops:
            rows.append({"run": i, **op})
    return _typed(pd, rows, OP_COLUMNS)


def events_frame(results: Sequence[Result]) -> pd.DataFrame:
    """Every run's event stream (those that recorded one), with a ``run`` column."""
    import pandas as pd

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
    import pandas as pd

    parts = []
    for i, r in enumerate(results):
        s = r.samples
        if s is None or s.n_samples == 0 or s.n_bins == 0:
            continue
        S, B = s.n_samples, s.n_bins
        f = s.fractions()
        lo = np.arange(B, dtype=np.int64) * s.bin_pages
        hi = np.minimum(lo + s.bin_pages, s.total_pages)
        parts.append(pd.DataFrame({
            "run": np.full(S * B, i, np.int64), "sample": np.repeat(np.arange(S), B),
            "time_ns": np.repeat(s.time_ns, B), "range": np.tile(np.arange(B), S),
            "first_page": np.tile(lo, S), "end_page": np.tile(hi, S),
            "none": f[:, :, 0].ravel(), "cpu": f[:, :, 1].ravel(), "gpu": f[:, :, 2].ravel(),
            "both": f[:, :, 3].ravel()}))
    if not parts:
        return _typed(pd, [], SAMPLE_COLUMNS)
    return _coerce(pd.concat(parts, ignore_index=True), SAMPLE_COLUMNS)


def _coerce(df: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    for c, t in types.items():
        if c not in df:
            df[c] = 0 if t != "string" else ""
        df[c] = df[c].astype({"int64": "int64", "float64": "float64", "float32": "float32",
                              "string": str, "bool": bool}[t])
    extra = [c for c in df.columns if c not in types]
    return df[[*types, *extra]]


def _typed(pd: Any, rows: list[dict], types: dict[str, str]) -> pd.DataFrame:
    return _coerce(pd.DataFrame(rows, columns=list(types) if not rows else None), types)


def write_tables(results: Sequence[Result], out_dir: str | Path,
                 labels: Sequence[str] | None = None) -> dict[str, Path]:
    """Write runs / ops / events / samples tables as Parquet files in ``out_dir`` (atomically,
    one file at a time); returns their paths by table name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from uvmlab.results.result import write_atomic

    out = Path(out_dir)
    frames = {"runs": runs_frame(results, labels), "ops": ops_frame(results),
              "events": events_frame(results), "samples": samples_frame(results)}
    paths = {}
    for name, df in frames.items():
        table = pa.Table.from_pandas(df, preserve_index=False)
        table = table.replace_schema_metadata({b"uvmlab.tables_version":
                                               str(TABLES_VERSION).encode()})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        paths[name] = out / f"{name}.parquet"
        write_atomic(paths[name], sink.getvalue().to_pybytes())
    return paths
