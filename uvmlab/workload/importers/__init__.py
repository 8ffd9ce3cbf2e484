"""Importers of real programs' traces: unified-memory activity in, the IR out.

``um_trace`` holds the one record layout every importer fills (the fields of CUPTI's
unified-memory counter record); ``um_import`` turns it into a ``Workload`` (``um_pages``: its
array arithmetic); ``nsys`` reads Nsight Systems'
(and nvprof's) SQLite exports into that layout; ``capture`` reads the ``.npz`` written by
``uvmlab capture``. What a fault trace cannot tell, and how the import estimates it, is in
``docs/importing.md``.
"""

from __future__ import annotations

import os

from uvmlab.core.errors import TraceFileError
from uvmlab.workload.importers.capture import read_capture
from uvmlab.workload.importers.nsys import read_sqlite
from uvmlab.workload.importers.um_import import to_workload
from uvmlab.workload.importers.um_trace import ImportReport, UmTrace


def load_trace(path: str | os.PathLike[str]) -> UmTrace:
    """Read an Nsight Systems / nvprof SQLite export or a ``uvmlab capture`` file."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise TraceFileError(f"{p}: no such file")
    with open(p, "rb") as f:
        head = f.read(16)
    if head.startswith(b"SQLite format 3"):
        return read_sqlite(p)
    if head.startswith(b"PK"):
        return read_capture(p)
    if p.endswith((".nsys-rep", ".qdrep")):
        raise TraceFileError(
            f"{p}: an Nsight Systems report; export it first with "
            "'nsys export --type sqlite' and import the .sqlite file"
        )
    raise TraceFileError(
        f"{p}: neither an SQLite export (nsys export --type sqlite) nor a uvmlab capture (.npz)"
    )


__all__ = ["ImportReport", "UmTrace", "load_trace", "to_workload"]
