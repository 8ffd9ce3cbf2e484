"""Canonical counter names (docs/results.md): the same keys for a model run and a real-GPU run.

A counter that does not apply is 0; one that was not measured is absent. Units are bytes and
nanoseconds.
"""

from __future__ import annotations

#: key -> one-line meaning, in display order
TOTALS: dict[str, str] = {
    "time_ns": "simulated (or measured) time of the whole workload",
    "gpu_faults": "replayable GPU faults as fetched from the fault buffer (raw entries)",
    "gpu_faults_duplicate": "raw faults coalesced or sorted away as duplicates",
    "fault_batches": "fault batches serviced",
    "replays": "fault replays issued",
    "gpu_fault_groups": "what CUPTI calls GPU page fault groups",
    "cpu_faults": "CPU page faults on managed memory",
    "bytes_htod": "bytes migrated host to device, all causes",
    "bytes_dtoh": "bytes migrated device to host, all causes",
    "bytes_htod_fault": "host to device because of faults",
    "bytes_htod_prefetch": "host to device by the driver's prefetcher",
    "bytes_htod_user": "host to device by explicit prefetch / UVM_MIGRATE",
    "bytes_htod_access_counter": "host to device triggered by access counters",
    "bytes_dtoh_fault": "device to host because of CPU faults (prefetched pages: bytes_dtoh_prefetch)",
    "bytes_dtoh_prefetch": "device to host by the driver's prefetcher on CPU faults",
    "bytes_dtoh_eviction": "device to host because of eviction",
    "bytes_dtoh_user": "device to host by explicit prefetch / UVM_MIGRATE",
    "evictions": "GPU root chunks evicted",
    "thrashing_events": "pages detected as thrashing",
    "throttles": "throttling starts (CUPTI THROTTLING records): a GPU entering a page's throttled set "
    "or a CPU throttle sleep",
    "pins": "thrashing hints PIN taken",
    "remote_maps": "mappings made to memory on another processor instead of migrating",
    "policy_ejections": "policies ejected by the guard",
}

#: the counters every model run reports (all of TOTALS)
TOTAL_KEYS: tuple[str, ...] = tuple(TOTALS)

#: extra model-only counters kept beside the canonical ones
EXTRA: dict[str, str] = {
    "pages_evicted": "4 KiB pages moved to the CPU by eviction",
    "fatal_faults": "faults that ended their context (invalid address / operation)",
    "gpu_faults_throttled": "GPU faults skipped because of a THROTTLE hint",
    "read_duplicates": "pages newly read-duplicated",
    "migrations": "migration events (one per contiguous run with one cause)",
    "bottom_halves": "runs of the replayable-fault bottom half",
    "touches": "page touches executed",
    "gpu_faults_notified": "coalesced fault-buffer entries notified to the tools, the driver's "
    "GpuPageFaultCount: one per entry left after fetch-time merging, a page's duplicates from other "
    "uTLBs and entries of pages already serviced included",
}

# --- table schemas (docs/results.md) ------------------------------------------------------------
# Column name -> type ("int64", "float64", "float32", "string"). Types are fixed, not inferred,
# so that every file has the same schema; new columns are only ever appended.

#: the event stream (uvmlab.driver.tools.EVENT_COLUMNS), one row per Tools-style event
EVENT_TYPES: dict[str, str] = {
    "time_ns": "int64",  # simulated time the event was recorded
    "event": "string",  # Tools event name: Migration, GpuFault, CpuFault, Eviction, ...
    "processor": "int64",  # 0 = CPU, 1.. = GPUs; the destination for Migration
    "address": "int64",  # first byte's VA (-1: none)
    "bytes": "int64",  # bytes moved; for GpuFault the number of raw faults in the batch
    "cause": "string",  # Migration cause (Coherence, Prefetch, Eviction, User, ...); r/w
    "src": "int64",  # Migration source processor (-1: none)
    "info": "string",  # free text (policy ejection reason, ...)
}

#: runs.parquet: one row per run
RUN_COLUMNS: dict[str, str] = {
    "run": "int64",
    "label": "string",
    "workload": "string",
    "source": "string",
    "gpu": "string",
    "profile": "string",
    "gpu_memory_bytes": "int64",
    "params": "string",  # JSON object of the module parameters changed from their defaults
    "policies": "string",
    "seed": "int64",
    "fatal": "string",  # why the context died, empty when it did not
    "wall_s": "float64",
    **{k: "int64" for k in TOTALS},
    **{k: "int64" for k in EXTRA},
}

#: counters copied into every per-operation row (TOTALS and the driver's GpuPageFaultCount; several
#: GPUs add bytes_dtod)
OP_COUNTERS: tuple[str, ...] = (
    "gpu_faults",
    "fault_batches",
    "gpu_fault_groups",
    "replays",
    "cpu_faults",
    "bytes_htod",
    "bytes_dtoh",
    "bytes_htod_prefetch",
    "bytes_dtoh_eviction",
    "evictions",
    "thrashing_events",
    "throttles",
    "pins",
    "remote_maps",
    "gpu_faults_notified",
)

#: ops.parquet: one row per IR operation per run
OP_COLUMNS: dict[str, str] = {
    "run": "int64",
    "op_index": "int64",
    "op": "string",
    "name": "string",
    "start_ns": "int64",
    "time_ns": "int64",
    # the per-op counters in the column order of the first tables version; gpu_fault_groups
    # and then gpu_faults_notified were added later, so they come last (columns are only ever
    # appended)
    **{k: "int64" for k in OP_COUNTERS if k not in ("gpu_fault_groups", "gpu_faults_notified")},
    "gpu_fault_groups": "int64",
    "gpu_faults_notified": "int64",
}

#: samples.parquet: residency over time, one row per run, sample and page range
SAMPLE_COLUMNS: dict[str, str] = {
    "run": "int64",
    "sample": "int64",
    "time_ns": "int64",
    "range": "int64",
    "first_page": "int64",
    "end_page": "int64",  # 4 KiB pages in the managed allocations
    "none": "float32",
    "cpu": "float32",
    "gpu": "float32",
    "both": "float32",  # fractions
}
