"""Real programs replayed in the model: a capture (or SQLite export) in, real vs model out.

``compare_program`` imports a trace (``uvmlab.workload.importers``), replays the workload in the
model on the GPU the trace was taken on, and compares what both moved and how long the kernels
took. Bytes come from the driver's lossless counters when the capture has them (CUPTI's records
otherwise); kernel time is the sum of the trace's kernel durations against the model's kernel
ops. ``docs/make_import_table.py`` writes the table in ``docs/importing.md`` from the stored
captures in ``examples/captures/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from uvmlab import api
from uvmlab.core.errors import UvmlabError
from uvmlab.workload.importers import load_trace, to_workload

#: compared quantities: (label, key in the real totals, key or function of the model result)
_GPU_NAMES = {"H200": "h200", "H100": "h100"}


def gpu_of(meta: dict[str, Any], default: str = "h200") -> str:
    """The model's GPU name for a capture's ``gpu`` field (``NVIDIA H200`` -> ``h200``)."""
    name = str(meta.get("gpu", "")).upper()
    return next((v for k, v in _GPU_NAMES.items() if k in name), default)


def _err(model: float, real: float) -> float | None:
    return None if real == 0 else (model - real) / real


def compare_program(
    path: str | Path, *, gpu: str | None = None, touches: str = "migrations", progress: Any = None
) -> dict[str, Any]:
    """Import ``path``, replay it, and return real vs model figures with relative errors."""
    trace = load_trace(path)
    w, rep = to_workload(trace, Path(path).stem, touches=touches)
    g = gpu or gpu_of(trace.meta)
    res = api.simulate(w, gpu=g, progress=progress)
    real = trace.real_totals()
    counters = trace.meta.get("counters") or {}
    real_bytes = {k: int(counters.get(k, real[k])) for k in ("bytes_htod", "bytes_dtoh")}
    model_kernel = sum(int(o["time_ns"]) for o in res.ops if o["op"] == "kernel")
    rows = {
        "bytes_htod": (real_bytes["bytes_htod"], int(res.totals.get("bytes_htod", 0))),
        "bytes_dtoh": (real_bytes["bytes_dtoh"], int(res.totals.get("bytes_dtoh", 0))),
        "kernel_time_ns": (real["kernel_time_ns"], model_kernel),
        "cpu_faults": (
            int(counters.get("cpu_faults", real["cpu_faults"])),
            int(res.totals.get("cpu_faults", 0)),
        ),
    }
    if not rows["bytes_htod"][0] and not rows["bytes_dtoh"][0]:
        raise UvmlabError(f"{path}: the real run moved no bytes; nothing to compare")
    return {
        "program": Path(path).stem,
        "gpu": g,
        "captured_on": trace.meta.get("gpu", ""),
        "driver": trace.meta.get("driver_version", ""),
        "date": trace.meta.get("date", ""),
        "bytes_source": "driver counters" if counters else "CUPTI records",
        "records_missing": trace.meta.get("records_missing", {}),
        "import": rep.as_dict(),
        "ops": len(w.ops),
        "touches": w.touch_count(),
        "rows": {k: {"real": r, "model": m, "error": _err(m, r)} for k, (r, m) in rows.items()},
        "model_time_ns": int(res.totals.get("time_ns", 0)),
        "uvmlab_profile": res.profile,
    }
