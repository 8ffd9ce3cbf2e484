"""Result files people load elsewhere: the suffix picks the format, an unknown one is refused.

``.json`` holds everything (``Result.save``); ``.parquet`` the event stream as the table and the
rest as metadata; ``.csv`` the per-operation table with a last row ``op = total`` holding the
run's totals, and the events as ``<name>.events.csv`` beside it when the run recorded them.
Every file is written atomically with the mode a plain ``open`` gives (0644 under the usual
umask), never the private 0600 of the temporary file it is made in.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from uvmlab.core.errors import UvmlabError
from uvmlab.results.io import write_atomic

if TYPE_CHECKING:
    from uvmlab.results.result import Result

RESULT_SUFFIXES = (".json", ".parquet", ".csv")


def check_suffix(path: str | Path, allowed: tuple[str, ...] = RESULT_SUFFIXES, what: str = "result") -> str:
    """The suffix of ``path`` when ``allowed`` has it; otherwise one clear error."""
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        shown = f"'{suffix}'" if suffix else "no suffix"
        raise UvmlabError(f"{path}: {shown} is not a {what} format this writes; use {', '.join(allowed)}")
    return suffix


def ops_frame(result: Result) -> pd.DataFrame:
    """Per-operation rows and a last ``total`` row (the run's totals under the same columns)."""
    df = pd.DataFrame(result.ops)
    total = {c: result.totals.get(c, "") for c in df.columns}
    total.update({"op": "total", "name": result.workload})
    if "op_index" in df.columns:
        total["op_index"] = ""
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True)


def write_csv(result: Result, path: str | Path) -> list[Path]:
    """Write the per-operation CSV (and the events CSV beside it); returns the files written."""
    p = Path(path)
    buf = io.StringIO()
    ops_frame(result).to_csv(buf, index=False)
    write_atomic(p, buf.getvalue().encode())
    written = [p]
    if result.events is not None and len(result.events):
        ev = p.with_name(p.stem + ".events.csv")
        buf = io.StringIO()
        result.events.to_csv(buf, index=False)
        write_atomic(ev, buf.getvalue().encode())
        written.append(ev)
    return written


def save_result(result: Result, path: str | Path) -> list[Path]:
    """Write ``result`` in the format its suffix names (``RESULT_SUFFIXES``)."""
    suffix = check_suffix(path)
    if suffix == ".csv":
        return write_csv(result, path)
    result.save(path)
    return [Path(path)]
