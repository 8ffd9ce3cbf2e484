"""Real-GPU captures as :class:`uvmlab.results.result.Result` objects (docs/results.md, docs/validation.md).

The executor saves a run as a *capture* (``"format": "uvmlab-real-capture"``, see
``data/README.md``): canonical ``totals`` (only what was measured), ``extra`` counters, run
``checks``, ``meta`` (GPU, driver, every ``nvidia_uvm`` parameter, date) and per-op rows. The
model returns a ``Result``. This module converts between the two so that a real run and a model
run are compared through one type, with the same canonical keys:

* ``Result.totals`` = the capture's canonical totals plus its ``extra`` counters (the model's
  totals also carry model-only extras beside the canonical ones). A counter the GPU did not
  measure (``gpu_faults``, ``fault_batches``, ...) stays *absent*, never 0;
* ``Result.ops`` = the capture's rows with ``index`` renamed ``op_index`` (the model's name);
* ``Result.params`` = the module parameters read from sysfs that differ from the driver's
  defaults (what ``Result.params`` holds for a model run); the full sysfs set stays in
  ``meta["uvm_params"]``;
* ``source="gpu"``, ``gpu`` = the device name, ``wall_s`` = the run's wall time.

The conversion is lossless: :func:`capture_from_result` gives back the capture it came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from uvmlab.core.counters import TOTALS
from uvmlab.core.errors import ParamError, TraceFileError
from uvmlab.driver.params import Params
from uvmlab.results.result import Result

CAPTURE_FORMAT = "uvmlab-real-capture"
CAPTURE_VERSION = 1
#: keys this module adds to ``Result.meta``; removed again by :func:`capture_from_result`
_META_CHECKS = "checks"
_META_FORMAT = "capture_format"


def sysfs_params_changed(uvm_params: dict[str, str]) -> dict[str, Any]:
    """The parameters of a real machine that differ from driver 580's defaults.

    Names this model does not know (another driver version) are skipped rather than fatal: a
    capture from a newer driver should still load. A value the model cannot parse is reported
    in the result's meta by the caller, not raised, for the same reason.
    """
    return Params.from_sysfs(uvm_params, strict=False).changed()


def result_from_capture(d: dict[str, Any], *, where: str = "capture") -> Result:
    """A capture dict (``RealRunResult.to_dict()`` or a saved capture file) as a Result."""
    if not isinstance(d, dict) or d.get("format") != CAPTURE_FORMAT:
        raise TraceFileError(f"{where}: not a uvmlab real-GPU capture")
    if d.get("version") != CAPTURE_VERSION:
        raise TraceFileError(
            f"{where}: capture format version {d.get('version')} (this uvmlab reads {CAPTURE_VERSION})"
        )
    try:
        meta = dict(d.get("meta") or {})
        totals = {k: int(v) for k, v in d["totals"].items()}
        extra = {k: int(v) for k, v in (d.get("extra") or {}).items()}
        ops = []
        for row in d["ops"]:
            r = dict(row)
            r["op_index"] = r.pop("index")
            ops.append(r)
        checks = d.get("checks") or {}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise TraceFileError(f"{where}: malformed capture ({e})") from None
    clash = set(totals) & set(extra)
    if clash:
        raise TraceFileError(
            f"{where}: malformed capture (counters both in totals and extra: {', '.join(sorted(clash))})"
        )
    try:
        params = sysfs_params_changed(meta.get("uvm_params") or {})
    except ParamError as e:
        params = {}
        meta["uvm_params_error"] = str(e)
    meta[_META_CHECKS] = checks
    meta[_META_FORMAT] = CAPTURE_VERSION
    return Result(
        workload=str(d.get("workload", "")),
        totals={**totals, **extra},
        ops=ops,
        source="gpu",
        gpu=str(meta.get("gpu", "")),
        params=params,
        gpu_memory_bytes=int(meta.get("memory_total", 0) or 0),
        wall_s=extra.get("wall_ns", 0) / 1e9,
        meta=meta,
    )


def capture_from_result(r: Result) -> dict[str, Any]:
    """The capture dict a real-GPU Result came from (inverse of :func:`result_from_capture`)."""
    if r.source != "gpu":
        raise TraceFileError(f"{r.workload}: a {r.source} result is not a real-GPU capture")
    meta = dict(r.meta)
    checks = meta.pop(_META_CHECKS, {})
    meta.pop(_META_FORMAT, None)
    meta.pop("uvm_params_error", None)
    totals = {k: v for k, v in r.totals.items() if k in TOTALS}
    extra = {k: v for k, v in r.totals.items() if k not in TOTALS}
    ops = []
    for row in r.ops:
        o = dict(row)
        o["index"] = o.pop("op_index")
        ops.append(o)
    return {
        "format": CAPTURE_FORMAT,
        "version": CAPTURE_VERSION,
        "workload": r.workload,
        "totals": totals,
        "extra": extra,
        "checks": checks,
        "meta": meta,
        "ops": ops,
    }


def result_from_real(run: Any) -> Result:
    """An ``executor.RealRunResult`` as a Result."""
    return result_from_capture(run.to_dict(), where=run.workload)


def load_real(path: str | Path) -> Result:
    """A real run from a capture file or from a saved Result (``uvmlab gpu-run --out``)."""
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except OSError as e:
        raise TraceFileError(f"{p}: cannot read ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TraceFileError(f"{p}: not valid JSON ({e})") from None
    if isinstance(d, dict) and d.get("format") == "uvmlab-result":
        r = Result.from_dict(d, where=str(p))
        if r.source != "gpu":
            raise TraceFileError(f"{p}: a {r.source} result, not a real-GPU run")
        return r
    return result_from_capture(d, where=str(p))


def load_captures(directory: str | Path) -> dict[str, Result]:
    """Every real run in a directory (``*.json``), keyed by suite name (file stem)."""
    d = Path(directory)
    if not d.is_dir():
        raise TraceFileError(f"{d}: no such capture directory")
    out = {}
    for f in sorted(d.glob("*.json")):
        r = load_real(f)
        out[str(r.meta.get("suite_name") or f.stem)] = r
    if not out:
        raise TraceFileError(f"{d}: no captures (*.json) in this directory")
    return out


__all__ = [
    "CAPTURE_FORMAT",
    "capture_from_result",
    "load_captures",
    "load_real",
    "result_from_capture",
    "result_from_real",
    "sysfs_params_changed",
]
