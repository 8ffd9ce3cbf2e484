"""Canonical counter names (design.md §4): the same keys for a model run and a real-GPU run.

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
    "throttles": "thrashing hints THROTTLE taken",
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
}
