"""A real program's unified-memory activity: the record layout every importer fills.

Every importer fills one :class:`UmTrace`: the program's unified-memory records in the layout of
CUPTI's ``CUpti_ActivityUnifiedMemoryCounter3`` (kind, flags, src, dst, value, start, end,
address; the CUPTI Activity API reference), its kernels (start, end, name, device) and, when the
source has them, its allocations (address, bytes, kind, allocation and release time).
``um_import.to_workload`` turns it into the IR; :class:`ImportReport` says what that kept and
estimated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uvmlab.workload.ir import (
    Access,
)

#: CUpti_ActivityUnifiedMemoryCounterKind
HTOD, DTOH, CPU_FAULT, GPU_FAULT, THRASHING, THROTTLING, REMOTE_MAP = 1, 2, 3, 4, 5, 6, 7
#: CUpti_ActivityUnifiedMemoryMigrationCause
CAUSE_UNKNOWN, CAUSE_USER, CAUSE_COHERENCE, CAUSE_PREFETCH, CAUSE_EVICTION = 0, 1, 2, 3, 4
CAUSE_ACCESS_COUNTERS = 5
#: CUpti_ActivityUnifiedMemoryAccessType -> the IR's access (prefetch and unknown read as read)
FAULT_ACCESS = np.array([Access.READ, Access.READ, Access.WRITE, Access.ATOMIC, Access.READ], dtype=np.uint8)

UM_RECORD_DTYPE = np.dtype(
    [
        ("kind", "u1"),
        ("flags", "<u4"),
        ("src", "<u4"),
        ("dst", "<u4"),
        ("value", "<u8"),
        ("start", "<u8"),
        ("end", "<u8"),
        ("address", "<u8"),
    ]
)
KERNEL_DTYPE = np.dtype([("start", "<u8"), ("end", "<u8"), ("name", "<i4"), ("device", "<i4")])
#: ``end`` = release time, 0 when the allocation was never released inside the trace
ALLOC_DTYPE = np.dtype(
    [("address", "<u8"), ("bytes", "<u8"), ("kind", "u1"), ("start", "<u8"), ("end", "<u8")]
)
TOUCH_MODES = ("migrations", "faults")


@dataclass
class UmTrace:
    """Unified-memory records, kernels and allocations of one real run (any importer's output)."""

    records: np.ndarray  # UM_RECORD_DTYPE
    kernels: np.ndarray  # KERNEL_DTYPE
    kernel_names: list[str]
    allocs: np.ndarray  # ALLOC_DTYPE, may be empty
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def real_totals(self) -> dict[str, int]:
        """What the trace itself says happened (for comparing the replay with the real run)."""
        r = self.records
        k, v = r["kind"], r["value"]
        out = {
            "bytes_htod": int(v[k == HTOD].sum(dtype=np.uint64)),
            "bytes_dtoh": int(v[k == DTOH].sum(dtype=np.uint64)),
            "gpu_fault_groups": int(v[k == GPU_FAULT].sum(dtype=np.uint64)),
            "cpu_faults": int((k == CPU_FAULT).sum()),
            "kernels": len(self.kernels),
            "kernel_time_ns": int((self.kernels["end"] - self.kernels["start"]).sum()),
        }
        times = np.concatenate([r["start"], self.kernels["start"], self.kernels["end"]])
        out["span_ns"] = int(times.max() - times.min()) if len(times) else 0
        return out


@dataclass
class ImportReport:
    """What the import kept, what it estimated and what it could not place."""

    gpu_fault_records: int = 0
    cpu_fault_records: int = 0
    migration_records: int = 0
    touches_from_faults: int = 0
    touches_estimated: int = 0  # pages counted as touched because they migrated (see module doc)
    cpu_touches_estimated: int = 0  # CPU writes added for pages first seen moving to the GPU
    gpu_touches_estimated: int = 0  # GPU writes added for pages first seen moving to the CPU
    block_fill_touches: int = 0  # pages of fresh blocks counted as touched by their first fault
    records_outside_allocations: int = 0
    allocations_inferred: bool = False
    kernels: int = 0
    kernels_with_touches: int = 0
    cpu_ops: int = 0
    prefetch_ops: int = 0
    frees: int = 0
    touch_mode: str = "migrations"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def lines(self) -> list[str]:
        lost = (
            "touches of resident pages make no record and are not in the workload; "
            "kernel compute time is estimated (docs/importing.md)"
        )
        out = [
            f"{self.kernels} kernels ({self.kernels_with_touches} with page touches), "
            f"{self.cpu_ops} CPU phases, {self.prefetch_ops} prefetches, {self.frees} frees",
            f"touches: {self.touches_from_faults:,} from fault records, "
            f"{self.touches_estimated:,} estimated from migrations ({self.touch_mode}), "
            f"{self.cpu_touches_estimated:,} CPU and {self.gpu_touches_estimated:,} GPU writes "
            "added for pages first seen moving away (populated without a record), "
            f"{self.block_fill_touches:,} pages of fresh blocks filled by their first fault",
        ]
        if self.allocations_inferred:
            out.append("no allocation records: allocations inferred from the touched 2 MiB blocks")
        if self.records_outside_allocations:
            out.append(
                f"{self.records_outside_allocations:,} records fell outside every known "
                "allocation and were dropped"
            )
        out.append(lost)
        return out
