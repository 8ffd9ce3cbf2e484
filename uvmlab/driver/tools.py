"""Counters and the optional event stream, named like the driver's Tools events (uvm_tools.c).

Counters are plain Python ints keyed by the canonical names of docs/results.md (plus a few
model-only extras). The event stream is off by default; when on, each event is one tuple
appended to a list, turned into a pandas DataFrame at the end (``EventLog.to_pandas``).
"""

from __future__ import annotations

import pandas as pd

from uvmlab.core.counters import EXTRA, TOTAL_KEYS

# Tools event types (uvm_types.h UvmEventType), the ones the model emits.
CPU_FAULT = "CpuFault"
MIGRATION = "Migration"
GPU_FAULT = "GpuFault"  # one per fetched fault batch here, with the raw count (not per entry)
GPU_FAULT_REPLAY = "GpuFaultReplay"
FATAL_FAULT = "FatalFault"
READ_DUPLICATE = "ReadDuplicate"
READ_DUPLICATE_INVALIDATE = "ReadDuplicateInvalidate"
THRASHING_DETECTED = "ThrashingDetected"
THROTTLING_START = "ThrottlingStart"
THROTTLING_END = "ThrottlingEnd"
MAP_REMOTE = "MapRemote"
EVICTION = "Eviction"  # never emitted by driver 580 (uvm_tools.c); the model records it for timelines
POLICY_EJECTED = "PolicyEjected"

# Migration causes as Tools reports them (UvmEventMigrationCause)
CAUSE_COHERENCE = "Coherence"  # replayable / non-replayable / CPU fault
CAUSE_PREFETCH = "Prefetch"
CAUSE_EVICTION = "Eviction"
CAUSE_ACCESS_COUNTERS = "AccessCounters"
CAUSE_USER = "User"

EVENT_COLUMNS = ("time_ns", "event", "processor", "address", "bytes", "cause", "src", "info")


def zero_counters() -> dict[str, int]:
    return dict.fromkeys((*TOTAL_KEYS, *EXTRA), 0)


class EventLog:
    """An append-only list of Tools-style events; ``enabled=False`` makes ``add`` a no-op."""

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self.rows: list[tuple] = []

    def add(
        self,
        time_ns: int,
        event: str,
        processor: int = -1,
        address: int = -1,
        nbytes: int = 0,
        cause: str = "",
        src: int = -1,
        info: str = "",
    ) -> None:
        if self.enabled:
            self.rows.append((int(time_ns), event, processor, address, nbytes, cause, src, info))

    def to_pandas(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=list(EVENT_COLUMNS))
