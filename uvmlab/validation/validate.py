"""The model against the real GPU: ``uvmlab validate`` and ``docs/validation.md`` (issue 5).

For every workload of the validation suite (``suite.py``) this runs the model with the GPU spec
and the *measured* cost profile of the GPU that made the capture, with the module parameters that
machine reported in sysfs, and compares the model's totals with the stored capture: time, bytes
host-to-device and device-to-host, GPU fault groups, CPU faults, and the relative error of each.
It needs no GPU: the captures are JSON files in the repository (``data/captures*``), so the
report is regenerated whenever the model changes. ``uvmlab validate --capture`` re-runs the
suite on the GPU first.

Two workload sets are compared (``suite.SETS``): the suite, to whose captures some constants of
the ``<gpu>-pcie5`` profiles were fitted, so that its errors are *in-sample*; and the hold-out
set (``suite.HOLDOUT``, captures in ``data/holdout-<gpu>``), the same kinds of workload with
other sizes, seeds and shapes that nothing was fitted to, so that its errors are out-of-sample.
Each GPU gets one :class:`Section` per set; the report states the issue's targets on each.

Why the comparison is fair, and where it cannot be:

* bytes and CPU faults on the GPU side come from the driver's lossless UVM Tools counters, so
  they are exact; time is the sum of the serialised operations' times (CUDA events for GPU
  operations, ``perf_counter_ns`` for host ones), which is what the model's clock adds up too;
* GPU fault groups come from CUPTI records; where CUPTI lost records (the driver's 8192-entry
  tools queue overflowed, ``checks.records_complete`` false) the real count is only a lower
  bound, so it is shown as such and left out of the error statistics rather than scored.

The report also breaks the time down by operation kind and names the single operation with the
largest time miss per workload: the tables say *where* the model is wrong, which is what whoever
tunes the model needs; the hand-written discussion (``data/validation_notes.md``) says why.
"""

from __future__ import annotations

from uvmlab.validation.stored import STORED_CAPTURES, STORED_HOLDOUT, STORED_SETS, gpu_key
from uvmlab.validation.validate_compare import (
    BYTES_TARGET,
    CALIBRATION_TARGET,
    CUPTI_ONLY,
    DEFAULT_OUTPUT,
    KIND_GROUPS,
    METRICS,
    TIME_MEDIAN_TARGET,
    TIME_TARGET,
    Comparison,
    Section,
    _same_workload,
    _session_times,
    _session_times_by_set,
    compare_gpu,
    fitted_constants,
    fmt_err,
    measured_profile,
    rel_error,
    sections_for,
)
from uvmlab.validation.validate_render import (
    _git_version,
    _rel,
    _sample_lines,
    _sample_paragraph,
    _section_md,
    _table,
    load_notes,
    render,
    write_report,
)
from uvmlab.validation.validate_verdicts import (
    Verdicts,
    _median_abs,
    _speed_label,
    _within,
    _worst,
    calibration_spread,
    fmt_value,
    verdicts,
)

# this module is the entry point; the work is in validate_compare / _verdicts / _render
__all__ = [
    "STORED_CAPTURES",
    "STORED_HOLDOUT",
    "STORED_SETS",
    "gpu_key",
    "BYTES_TARGET",
    "CALIBRATION_TARGET",
    "CUPTI_ONLY",
    "Comparison",
    "DEFAULT_OUTPUT",
    "KIND_GROUPS",
    "METRICS",
    "Section",
    "TIME_MEDIAN_TARGET",
    "TIME_TARGET",
    "Verdicts",
    "_git_version",
    "_median_abs",
    "_rel",
    "_same_workload",
    "_sample_lines",
    "_sample_paragraph",
    "_section_md",
    "_session_times",
    "_session_times_by_set",
    "_speed_label",
    "_table",
    "_within",
    "_worst",
    "calibration_spread",
    "compare_gpu",
    "fitted_constants",
    "fmt_err",
    "fmt_value",
    "load_notes",
    "measured_profile",
    "rel_error",
    "render",
    "sections_for",
    "verdicts",
    "write_report",
]
