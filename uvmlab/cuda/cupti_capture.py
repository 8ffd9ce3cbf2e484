"""CUPTI unified-memory records: collecting them (GPU) and turning them into totals (pure).

Collection (:class:`CuptiCapture`) enables ``CUPTI_ACTIVITY_KIND_UNIFIED_MEMORY_COUNTER`` for
HtoD / DtoH bytes (with address and migration cause), GPU page-fault groups, CPU page faults,
thrashing, throttling and remote maps, and keeps every record as one row of
:data:`UM_RECORD_DTYPE`. It must start after the CUDA context exists (CUPTI answers NOT_READY
before), and :meth:`CuptiCapture.flush` must run before the records are read (CUPTI hands
buffers over only when they fill or are flushed).

Why the probe's ``seq`` test saw only 0.40 GB of 2 GiB: see ``uvm_counters.py``. In short, the
driver's tools event queue that feeds CUPTI holds 8192 events and drops the overflow when
migrations outpace CUPTI's reader; records were *lost in the driver*, not mis-windowed (no record
fell outside the test windows, and a census prefetch showed all 2 GiB resident on the GPU). The
executor therefore takes byte and fault totals from the driver's lossless counters and reports
the shortfall of CUPTI's records per operation (``records_complete`` / ``*_missing``).

Parsing (:func:`attribute`, :func:`cupti_totals`, :func:`combine`) is pure numpy over the record
array, so it is unit-tested on a recorded sample (``data/cupti_sample.npz``) without a GPU.

Record semantics (CUPTI 13 ``CUpti_ActivityUnifiedMemoryCounter3``):

* BYTES_TRANSFER_HTOD / DTOH: ``value`` = bytes of one contiguous migration run, ``address`` its
  start, ``flags`` = migration cause (:data:`CAUSE`); ``start`` = when the copy began.
* GPU_PAGE_FAULT: ``value`` = number of fault groups for the page at ``address``; ``flags`` =
  access type.
* CPU_PAGE_FAULT_COUNT: one record per CPU fault (``value`` is the faulting PC, not a count).
* THRASHING: ``value`` = bytes detected as thrashing (one page per driver event).
* THROTTLING: one record per throttled interval. REMOTE_MAP: one per mapping, ``value`` = bytes.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np

from uvmlab.core.errors import GpuUnavailableError
from uvmlab.core.sizes import PAGE_SIZE

# the record layout and kinds are the importers' (one definition): a capture is a UmTrace's records
from uvmlab.workload.importers.um_trace import (
    CPU_FAULT,
    DTOH,
    GPU_FAULT,
    HTOD,
    REMOTE_MAP,
    THRASHING,
    THROTTLING,
    UM_RECORD_DTYPE,
)

KIND_NAMES = {
    HTOD: "BYTES_TRANSFER_HTOD",
    DTOH: "BYTES_TRANSFER_DTOH",
    CPU_FAULT: "CPU_PAGE_FAULT_COUNT",
    GPU_FAULT: "GPU_PAGE_FAULT",
    THRASHING: "THRASHING",
    THROTTLING: "THROTTLING",
    REMOTE_MAP: "REMOTE_MAP",
}
# CUpti_ActivityUnifiedMemoryMigrationCause
CAUSE = {"unknown": 0, "user": 1, "coherence": 2, "prefetch": 3, "eviction": 4, "access_counters": 5}
# CUpti_ActivityUnifiedMemoryRemoteMapCause
REMOTE_MAP_CAUSE = {
    "unknown": 0,
    "coherence": 1,
    "thrashing": 2,
    "policy": 3,
    "out_of_memory": 4,
    "eviction": 5,
}


#: canonical keys CUPTI records can fill (docs/results.md) and the extras kept beside them
CUPTI_KEYS = (
    "bytes_htod",
    "bytes_dtoh",
    "bytes_htod_fault",
    "bytes_htod_prefetch",
    "bytes_htod_user",
    "bytes_htod_access_counter",
    "bytes_dtoh_fault",
    "bytes_dtoh_eviction",
    "bytes_dtoh_user",
    "gpu_fault_groups",
    "cpu_faults",
    "thrashing_events",
    "throttles",
    "remote_maps",
)


# --- pure parsing --------------------------------------------------------------------------------


def attribute(records: np.ndarray, windows: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Operation index of each record, from its ``start`` timestamp and the ops' windows.

    ``windows`` is an (n, 2) array of [begin, end] timestamps (CUPTI clock) of the operations,
    in order and not overlapping (the executor serialises operations). A record belongs to the
    window that contains its start. Records between two windows belong to the earlier operation
    (the driver finishes its work, e.g. a migration push, after the op's own completion point);
    records before the first window go to the first operation. Records after the last window
    come from work after the run (freeing, reading results back) and get index -1, i.e. belong
    to no operation. The counts of all three are returned so that a capture can say how many
    records needed these rules.
    """
    if len(windows) == 0:
        return np.zeros(len(records), dtype=np.int64), {"before_first": 0, "between": 0, "after_last": 0}
    begins = windows[:, 0].astype(np.uint64)
    ends = windows[:, 1].astype(np.uint64)
    st = records["start"]
    idx = np.searchsorted(begins, st, side="right").astype(np.int64) - 1
    before = idx < 0
    idx[before] = 0
    inside = st <= ends[idx]
    after_last = (idx == len(windows) - 1) & ~inside
    between = ~inside & ~before & ~after_last
    idx[after_last] = -1
    return idx, {
        "before_first": int(before.sum()),
        "between": int(between.sum()),
        "after_last": int(after_last.sum()),
    }


def cupti_totals(records: np.ndarray) -> dict[str, int]:
    """Canonical totals (and a few extras) computed from CUPTI records alone."""
    k, v, f = records["kind"], records["value"], records["flags"]
    out: dict[str, int] = {}

    def s(mask: np.ndarray) -> int:
        return int(v[mask].sum(dtype=np.uint64))

    htod, dtoh = k == HTOD, k == DTOH
    out["bytes_htod"] = s(htod)
    out["bytes_dtoh"] = s(dtoh)
    out["bytes_htod_fault"] = s(htod & (f == CAUSE["coherence"]))
    out["bytes_htod_prefetch"] = s(htod & (f == CAUSE["prefetch"]))
    out["bytes_htod_user"] = s(htod & (f == CAUSE["user"]))
    out["bytes_htod_access_counter"] = s(htod & (f == CAUSE["access_counters"]))
    # docs/results.md: bytes_dtoh_fault counts CPU-fault migrations *including* the pages the
    # prefetcher added to them; CUPTI tags those added pages with cause PREFETCH.
    out["bytes_dtoh_fault"] = s(dtoh & ((f == CAUSE["coherence"]) | (f == CAUSE["prefetch"])))
    out["bytes_dtoh_prefetch"] = s(dtoh & (f == CAUSE["prefetch"]))
    out["bytes_dtoh_eviction"] = s(dtoh & (f == CAUSE["eviction"]))
    out["bytes_dtoh_user"] = s(dtoh & (f == CAUSE["user"]))
    out["bytes_htod_other"] = out["bytes_htod"] - sum(
        out[f"bytes_htod_{c}"] for c in ("fault", "prefetch", "user", "access_counter")
    )
    out["bytes_dtoh_other"] = (
        out["bytes_dtoh"] - out["bytes_dtoh_fault"] - out["bytes_dtoh_eviction"] - out["bytes_dtoh_user"]
    )
    gf = k == GPU_FAULT
    out["gpu_fault_groups"] = s(gf)
    out["gpu_fault_records"] = int(gf.sum())
    out["cpu_faults"] = int((k == CPU_FAULT).sum())
    th = k == THRASHING
    out["thrashing_events"] = s(th) // PAGE_SIZE
    out["thrashing_records"] = int(th.sum())
    out["throttles"] = int((k == THROTTLING).sum())
    rm = k == REMOTE_MAP
    out["remote_maps"] = int(rm.sum())
    out["remote_map_bytes"] = s(rm)
    out["remote_maps_thrashing"] = int((rm & (f == REMOTE_MAP_CAUSE["thrashing"])).sum())
    out["migration_records"] = int((htod | dtoh).sum())
    return out


def combine(
    cupti: dict[str, int] | None, counters: dict[str, int] | None
) -> tuple[dict[str, int], dict[str, Any]]:
    """Canonical totals of one operation (or a whole run) from both sources, and the checks.

    Byte totals and CPU faults come from the driver's counters when present (they cannot drop);
    cause breakdowns, fault groups, thrashing, throttling and remote maps come from CUPTI. Any
    bytes the counters saw and CUPTI's records did not cover are put in ``bytes_htod_unattributed``
    / ``bytes_dtoh_unattributed``, so that the cause columns plus that one add up to the total
    exactly, and ``checks`` says how much was missing.
    """
    totals: dict[str, int] = {}
    checks: dict[str, Any] = {}
    if cupti is not None:
        totals.update(cupti)
    if counters is not None:
        for key in ("bytes_htod", "bytes_dtoh", "cpu_faults"):
            totals[key] = int(counters[key])
        totals["gpu_faults_notified"] = int(counters["gpu_faults_notified"])
    for d in ("htod", "dtoh"):
        key = f"bytes_{d}"
        if key not in totals:
            continue
        causes = (
            ("fault", "prefetch", "user", "access_counter") if d == "htod" else ("fault", "eviction", "user")
        )
        have = sum(totals.get(f"{key}_{c}", 0) for c in causes) + totals.get(f"{key}_other", 0)
        totals[f"{key}_unattributed"] = totals[key] - have
        if cupti is not None and counters is not None:
            checks[f"{key}_records"] = int(cupti[key])
            checks[f"{key}_counter"] = int(counters[key])
            checks[f"{key}_missing"] = int(counters[key]) - int(cupti[key])
    if cupti is not None and counters is not None:
        checks["cpu_fault_records"] = int(cupti["cpu_faults"])
        checks["cpu_faults_missing"] = int(counters["cpu_faults"]) - int(cupti["cpu_faults"])
        checks["records_complete"] = (
            checks["bytes_htod_missing"] == 0
            and checks["bytes_dtoh_missing"] == 0
            and checks["cpu_faults_missing"] == 0
        )
    return totals, checks


def summarize(
    records: np.ndarray, windows: np.ndarray, counter_deltas: list[dict[str, int]] | None
) -> dict[str, Any]:
    """Per-operation and whole-run totals and checks from records, windows and counter deltas.

    Returns ``{"ops": [{"totals", "checks"}...], "totals", "checks"}``; run totals are the sums
    of the per-operation values, so per-op rows always add up to the run.
    """
    n = len(windows)
    idx, rule = attribute(records, windows)
    ops = []
    run_cupti: dict[str, int] = {}
    run_counters: dict[str, int] = {}
    for i in range(n):
        c = cupti_totals(records[idx == i])
        d = counter_deltas[i] if counter_deltas is not None else None
        t, ch = combine(c, d)
        ops.append({"totals": t, "checks": ch})
        for key, val in c.items():
            run_cupti[key] = run_cupti.get(key, 0) + val
        if d is not None:
            for key, val in d.items():
                run_counters[key] = run_counters.get(key, 0) + val
    totals, checks = combine(
        run_cupti if n else cupti_totals(records[:0]), run_counters if counter_deltas is not None else None
    )
    checks["attribution"] = rule
    checks["records"] = int(len(records))
    return {"ops": ops, "totals": totals, "checks": checks}


# --- collection (GPU) ----------------------------------------------------------------------------


class CuptiCapture:
    """Collects unified-memory records for the lifetime of the object (one per process)."""

    BUFFER_BYTES = 8 << 20

    def __init__(self) -> None:
        try:
            from cupti import cupti  # optional: present only on a CUDA machine (cupti-python)
        except Exception as e:
            raise GpuUnavailableError(f"CUPTI capture needs cupti-python ({e})") from None
        self.cupti = cupti
        self._chunks: list[np.ndarray] = []
        self._lock = threading.Lock()
        K = cupti.ActivityUnifiedMemoryCounterKind
        C = cupti.ActivityUnifiedMemoryMigrationCause
        # The pure parser hard-codes CUPTI's enum values; refuse to run if this CUPTI differs.
        expect = {
            K.BYTES_TRANSFER_HTOD: HTOD,
            K.BYTES_TRANSFER_DTOH: DTOH,
            K.CPU_PAGE_FAULT_COUNT: CPU_FAULT,
            K.GPU_PAGE_FAULT: GPU_FAULT,
            K.THRASHING: THRASHING,
            K.THROTTLING: THROTTLING,
            K.REMOTE_MAP: REMOTE_MAP,
            C.USER: CAUSE["user"],
            C.COHERENCE: CAUSE["coherence"],
            C.PREFETCH: CAUSE["prefetch"],
            C.EVICTION: CAUSE["eviction"],
            C.ACCESS_COUNTERS: CAUSE["access_counters"],
        }
        bad = [m.name for m, v in expect.items() if int(m) != v]
        if bad:
            raise GpuUnavailableError(f"this CUPTI numbers {', '.join(bad)} differently")
        kinds = [
            K.BYTES_TRANSFER_HTOD,
            K.BYTES_TRANSFER_DTOH,
            K.CPU_PAGE_FAULT_COUNT,
            K.GPU_PAGE_FAULT,
            K.THRASHING,
            K.THROTTLING,
            K.REMOTE_MAP,
        ]
        cfg = cupti.ActivityUnifiedMemoryCounterConfig(len(kinds))
        for i, k in enumerate(kinds):
            cfg[i].scope = int(cupti.ActivityUnifiedMemoryCounterScope.PROCESS_SINGLE_DEVICE)
            cfg[i].device_id = 0
            cfg[i].enable = 1
            cfg[i].kind = k
        cupti.activity_configure_unified_memory_counter(cfg.ptr, len(kinds))
        cupti.activity_register_callbacks(self._buffer_requested, self._buffer_completed)
        cupti.activity_enable(cupti.ActivityKind.UNIFIED_MEMORY_COUNTER)
        self._um_kind = cupti.ActivityKind.UNIFIED_MEMORY_COUNTER
        self.enabled = True

    def _buffer_requested(self) -> tuple[int, int]:
        return self.BUFFER_BYTES, 0

    def _buffer_completed(self, activities: list) -> None:
        # Converting a record costs ~15 µs in Python, and this runs on CUPTI's thread; copy
        # the fields straight into one numpy chunk per buffer.
        um = [a for a in activities if a.kind == self._um_kind]
        if not um:
            return
        arr = np.zeros(len(um), dtype=UM_RECORD_DTYPE)
        arr["kind"] = [a.counter_kind for a in um]
        arr["flags"] = [a.flags_ for a in um]
        arr["src"] = [a.src_id for a in um]
        arr["dst"] = [a.dst_id for a in um]
        arr["value"] = [a.value for a in um]
        arr["start"] = [a.start for a in um]
        arr["end"] = [a.end for a in um]
        arr["address"] = [a.address for a in um]
        with self._lock:
            self._chunks.append(arr)

    def timestamp(self) -> int:
        return int(self.cupti.get_timestamp())

    def flush(self) -> None:
        self.cupti.activity_flush_all(1)

    def dropped(self) -> int:
        """Records CUPTI itself dropped for lack of buffer space (not the driver's queue loss)."""
        v = ctypes.c_size_t(0)
        try:
            self.cupti.activity_get_num_dropped_records(0, 0, ctypes.addressof(v))
        except Exception:
            return -1
        return int(v.value)

    def records(self) -> np.ndarray:
        """Every record delivered so far (call :meth:`flush` first)."""
        with self._lock:
            if not self._chunks:
                return np.zeros(0, dtype=UM_RECORD_DTYPE)
            if len(self._chunks) > 1:
                self._chunks = [np.concatenate(self._chunks)]
            return self._chunks[0]

    def close(self) -> None:
        if self.enabled:
            self.flush()
            self.cupti.activity_disable(self._um_kind)
            self.enabled = False


_CAPTURE: CuptiCapture | None = None


def get_capture() -> CuptiCapture:
    """The process's one capture: CUPTI takes one set of buffer callbacks per process, so every
    run in a process shares it and slices the records by count (``records()[mark:]``)."""
    global _CAPTURE
    if _CAPTURE is None:
        _CAPTURE = CuptiCapture()
    return _CAPTURE
