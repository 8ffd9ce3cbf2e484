"""The ``.npz`` file ``uvmlab capture`` writes (format ``uvmlab-program-capture``, version 1).

Arrays: ``records`` (UM_RECORD_DTYPE: CUPTI unified-memory records), ``kernels`` (KERNEL_DTYPE),
``allocs`` (ALLOC_DTYPE: CUPTI memory records of managed allocations), ``kernel_names`` (str)
and ``meta`` (one JSON string: format, version, program, GPU, driver, date, the driver's
lossless UVM counters over the run, CUPTI's dropped-record count). Read without pickle, every
array checked against its dtype, so a corrupt or hostile file gives one clear error.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from typing import Any

import numpy as np

from uvmlab.core.errors import TraceFileError
from uvmlab.workload.importers.um_trace import ALLOC_DTYPE, KERNEL_DTYPE, UM_RECORD_DTYPE, UmTrace

FORMAT = "uvmlab-program-capture"
VERSION = 1
_ARRAYS = {"records": UM_RECORD_DTYPE, "kernels": KERNEL_DTYPE, "allocs": ALLOC_DTYPE}


def write_capture(path: str, trace: UmTrace) -> None:
    """Write ``trace`` atomically (temp file + rename), mode 0644."""
    meta = {"format": FORMAT, "version": VERSION, **trace.meta}
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        records=trace.records,
        kernels=trace.kernels,
        allocs=trace.allocs,
        kernel_names=np.array(trace.kernel_names or [""], dtype=str),
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(buf.getvalue())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def read_capture(path: str) -> UmTrace:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in (*_ARRAYS, "kernel_names", "meta") if k not in z.files]
            if missing:
                raise TraceFileError(f"{path}: not a uvmlab capture (missing {', '.join(missing)})")
            arrays = {k: z[k] for k in _ARRAYS}
            names = [str(x) for x in z["kernel_names"]]
            meta: dict[str, Any] = json.loads(str(z["meta"]))
    except TraceFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise TraceFileError(f"{path}: unreadable capture ({' '.join(str(e).split())})") from None
    if meta.get("format") != FORMAT:
        raise TraceFileError(f"{path}: not a uvmlab capture (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise TraceFileError(f"{path}: capture version {meta.get('version')} (this uvmlab reads {VERSION})")
    for k, dt in _ARRAYS.items():
        if arrays[k].dtype != dt or arrays[k].ndim != 1:
            raise TraceFileError(f"{path}: array {k!r} has the wrong layout")
    k = arrays["kernels"]
    if len(k) and (int(k["name"].min()) < 0 or int(k["name"].max()) >= len(names)):
        raise TraceFileError(f"{path}: a kernel names an entry outside kernel_names")
    return UmTrace(arrays["records"], k, names, arrays["allocs"], source=path, meta=meta)
