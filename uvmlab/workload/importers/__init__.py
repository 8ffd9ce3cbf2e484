"""Importers of real programs' traces: unified-memory activity in, the IR out.

``um_trace`` holds the one record layout every importer fills (the fields of CUPTI's
unified-memory counter record) and turns it into a ``Workload``; ``nsys`` reads Nsight Systems'
(and nvprof's) SQLite exports into that layout; ``capture`` reads the ``.npz`` written by
``uvmlab capture``. What a fault trace cannot tell, and how the import estimates it, is in
``docs/importing.md``.
"""

from uvmlab.workload.importers.um_trace import ImportReport, UmTrace, load_trace, to_workload

__all__ = ["ImportReport", "UmTrace", "load_trace", "to_workload"]
