"""The compiled fault path's state, named: what each compiled function receives and returns.

The driver's arrays are passed to numba as named tuples of arrays (numba compiles a field
access to the same load as a positional one), so no compiled function reads its state by
position. Sizes come from ``uvmlab.core.sizes``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from uvmlab.core.sizes import PAGES_PER_BLOCK
from uvmlab.driver.perf.prefetch_tree import new_words
from uvmlab.driver.va_space import READ_DUP_DISABLED, READ_DUP_ENABLED
from uvmlab.workload.ir import AllocKind

# Outcome of a compiled call.
DONE, SLOW, NEED_CHUNK, PAUSE, CHUNK_USED = 0, 1, 2, 3, 4
# How a block may take the compiled path (see blocks.block_mode).
PLAIN, ADVISED = 1, 2

# Counter deltas returned by the compiled code: ``ctr[i]`` adds to the driver counter COUNTERS[i].
COUNTERS = (
    "bytes_htod",
    "bytes_htod_fault",
    "bytes_htod_prefetch",
    "bytes_dtoh",
    "bytes_dtoh_fault",
    "bytes_dtoh_prefetch",
    "migrations",
    "cpu_faults",
    "bytes_dtoh_eviction",
    "evictions",
    "pages_evicted",
    "read_duplicates",
    "remote_maps",
    "bytes_htod_user",
    "bytes_dtoh_user",
)
(
    HTOD,
    HTOD_FAULT,
    HTOD_PREFETCH,
    DTOH,
    DTOH_FAULT,
    DTOH_PREFETCH,
    MIGRATIONS,
    CPU_FAULTS,
    DTOH_EVICTION,
    EVICTIONS,
    PAGES_EVICTED,
    READ_DUPLICATES,
    REMOTE_MAPS,
    HTOD_USER,
    DTOH_USER,
) = range(len(COUNTERS))

NO_STAMP = -1  # a block's thrashing stamp before any migration
MANAGED = int(AllocKind.MANAGED)
READ_DUP_ON = READ_DUP_ENABLED
READ_DUP_OFF = READ_DUP_DISABLED


class VaArrays(NamedTuple):
    """The VA space's per-page and per-block arrays (``va_space.VaSpace``)."""

    residency: np.ndarray  # per page: bit p set when processor p holds a copy
    perm: np.ndarray  # [processor, page]: the mapping's permission
    preferred: np.ndarray  # per page: preferred location + 1 (0: none)
    accessed_by: np.ndarray  # per page: bit p set for an AccessedBy processor
    read_dup: np.ndarray  # per page: read duplication policy
    block_alloc: np.ndarray  # per block: its allocation (-1: none)
    block_pages: np.ndarray  # per block: pages in it
    alloc_live: np.ndarray  # per allocation: not freed
    alloc_kind: np.ndarray  # per allocation: AllocKind
    gpu_chunk: np.ndarray  # [gpu, block]: its root chunk (-1: none)
    prefetch_last_proc: np.ndarray  # per block: prefetch_info's last destination
    prefetch_fault_migrations: np.ndarray  # per block: prefetch_info's fault migrations to it
    block_advised: np.ndarray  # per block: advice ever touched it


class ThrashingState(NamedTuple):
    """What the compiled path reads and stamps of thrashing detection (``perf.thrashing``)."""

    enable: bool
    lapse_ns: int
    block_last_ts: np.ndarray  # per block: time of its last migration (NO_STAMP: none)
    block_last_proc: np.ndarray  # per block: that migration's destination
    block_has_pages: np.ndarray  # per block: it has per-page thrashing state


class Costs(NamedTuple):
    """The cost model's constants the compiled path charges (``timing.cost_model``)."""

    chunk_zero_ns: float
    copy_latency_ns: float
    htod_gbps: float
    dtoh_gbps: float
    fault_block_ns: float
    cpu_fault_ns: float
    cpu_fault_resident_ns: float
    cpu_populate_ns_per_byte: float
    cpu_map_page_ns: float
    evict_chunk_ns: float
    migrate_block_ns: float
    prefetch_htod_gbps: float
    prefetch_dtoh_gbps: float


class Scratch(NamedTuple):
    """Per-block working arrays, allocated once per driver: a block service allocates nothing
    (an allocation in compiled code costs about as much as servicing a plain fault)."""

    fpages: np.ndarray  # the block's faulted pages (block-local, ascending)
    pages: np.ndarray  # the pages to make resident: faulted plus prefetched, ascending
    extra: np.ndarray  # per entry of ``pages``: prefetched, not faulted
    need_copy: np.ndarray  # per entry of ``pages``: a copy is needed
    words: np.ndarray  # the prefetcher's page bitmaps (perf.prefetch_tree.new_words)


def new_scratch() -> Scratch:
    """Working arrays for one block of at most PAGES_PER_BLOCK pages."""
    n = PAGES_PER_BLOCK
    return Scratch(
        np.empty(n, np.int64),
        np.empty(n, np.int64),
        np.zeros(n, np.bool_),
        np.zeros(n, np.bool_),
        new_words(),
    )
