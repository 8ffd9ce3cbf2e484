"""One result's files: atomic writes, the event stream as exact columns, and the Parquet form of
a result (the event stream is the table, the rest is JSON in the file's metadata).
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

from uvmlab.core.counters import EVENT_TYPES
from uvmlab.core.errors import TraceFileError
from uvmlab.core.output import write_atomic
from uvmlab.driver.tools import EVENT_COLUMNS

PARQUET_META_KEY = b"uvmlab.result"

__all__ = [
    "events_arrow",
    "events_from_columns",
    "events_to_columns",
    "read_result_parquet",
    "write_atomic",
    "write_result_parquet",
]


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
    n = {len(cols.get(c, [])) for c in EVENT_COLUMNS}
    if len(n) != 1:
        raise ValueError("event columns differ in length")
    data = {}
    for c in EVENT_COLUMNS:
        v = cols.get(c, [])
        data[c] = (
            np.asarray(v, dtype=np.int64)
            if EVENT_TYPES[c] == "int64"
            else pd.Series([str(x) for x in v], dtype=object).astype(str)
        )
    return pd.DataFrame(data, columns=list(EVENT_COLUMNS))


def _arrow_type(t: str) -> pa.DataType:
    return {
        "int64": pa.int64(),
        "string": pa.string(),
        "float64": pa.float64(),
        "float32": pa.float32(),
        "bool": pa.bool_(),
    }[t]


def _schema(types: dict[str, str], prefix: Sequence[tuple[str, str]] = ()) -> pa.Schema:
    return pa.schema([pa.field(k, _arrow_type(t)) for k, t in (*prefix, *types.items())])


def events_arrow(df: pd.DataFrame | None) -> pa.Table:
    """The event stream as an Arrow table with the fixed schema (empty when ``df`` is None)."""
    cols = events_to_columns(df) if df is not None else {c: [] for c in EVENT_COLUMNS}
    return pa.table(
        {c: pa.array(cols[c], type=_arrow_type(EVENT_TYPES[c])) for c in EVENT_COLUMNS},
        schema=_schema(EVENT_TYPES),
    )


# --- one result, one file ---------------------------------------------------------------------
def write_result_parquet(d: dict[str, Any], events: pd.DataFrame | None, path: Path) -> None:
    """A result's dict (``Result.to_dict``) as one Parquet file: ``events`` are the table."""
    d = dict(d)
    d.pop("events", None)  # they are the table
    d["has_events"] = events is not None
    table = events_arrow(events)
    table = table.replace_schema_metadata({PARQUET_META_KEY: json.dumps(d).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    write_atomic(path, sink.getvalue().to_pybytes())


def read_result_parquet(path: Path) -> dict[str, Any]:
    """The result dict stored by ``write_result_parquet`` (``Result.from_dict`` reads it)."""
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
    return d
