"""The UVM bitmap-tree prefetcher (uvm_perf_prefetch.c), as pure array functions.

Model of ``kernel-open/nvidia-uvm/uvm_perf_prefetch.c`` (open-gpu-kernel-modules tag 580.142;
the algorithm is unchanged in 595.45.04 apart from the 64 KiB big page being fixed and the
preferred-location gate of driver 595). Everything works on one VA block of ``n <= 512`` pages given as
boolean numpy arrays indexed by the page's position in the block.

Layers, from the inside out:

* :func:`compute_prefetch_mask` — uvm_perf_prefetch.c steps 2 and 4–6: bitmap tree, big-page alignment offset,
  ``grow_fault_granularity``, the tree walk (``compute_prefetch_region``) and post-filtering. The
  masks become page bitmaps of uint64 words and the tree is ``prefetch_tree.tree_fill``, the
  same compiled code the compiled block service inlines; there is no Python loop over pages.
* :func:`first_touch_shortcut_applies` — uvm_perf_prefetch.c step 3.
* :func:`update_prefetch_info` / :func:`hint_allowed` — ``va_block->prefetch_info`` kept by the
  caller in two per-block arrays (uvm_perf_prefetch.c steps 1 and 7, the ``uvm_perf_prefetch_min_faults``
  gate).
* :func:`prefetch_hint` — all of the above, as ``uvm_perf_prefetch_get_hint_va_block`` does it.

The returned masks may contain pages that are already resident on the destination: the driver
leaves them in ``prefetch_pages_mask`` too (they raise the tree counts, and the copy in
``uvm_va_block_make_resident_copy`` skips them). Callers must skip copying them, not count them
as migrated bytes.

Not modelled here: the range-group filter of ``uvm_perf_prefetch_get_hint_va_block`` (drops the
prefetch pages of range-group ranges that contain no faulted page; range groups are a test-only
feature of the driver), and the ATS variant ``uvm_perf_prefetch_compute_ats`` (not modelled).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numba import njit

from uvmlab.core.sizes import PAGE_SIZE, PAGES_PER_BLOCK  # a VA block never crosses a 2 MiB boundary
from uvmlab.driver.perf.prefetch_tree import (
    CPU_RR,
    FAULT,
    LEAF,
    NWORDS,
    OUT,
    THR,
    new_words,
    tree_fill,
)

__all__ = [
    "PrefetchParams",
    "prefetch_params",
    "PROC_INVALID",
    "PREFETCH_THRESHOLD_DEFAULT",
    "PREFETCH_MIN_FAULTS_DEFAULT",
    "effective_prefetch_threshold",
    "effective_prefetch_min_faults",
    "compute_prefetch_mask",
    "first_touch_shortcut_applies",
    "new_prefetch_info",
    "update_prefetch_info",
    "hint_allowed",
    "prefetch_hint",
]

CPU_ID = 0  # uvmlab processor ids (workload/ir.py): cpu = 0, gpu0 = 1, ...
PROC_INVALID = -1  # UVM_ID_INVALID: what uvm_va_block_create puts in last_migration_proc_id
PREFETCH_THRESHOLD_DEFAULT = 51  # UVM_PREFETCH_THRESHOLD_DEFAULT
PREFETCH_MIN_FAULTS_DEFAULT = 1  # UVM_PREFETCH_MIN_FAULTS_DEFAULT


class PrefetchParams(NamedTuple):
    """The prefetcher's module parameters, read once per driver (``prefetch_params``) and used
    by the reference path, the compiled path and the policy tree alike."""

    enable: bool  # uvm_perf_prefetch_enable
    min_faults: int  # uvm_perf_prefetch_min_faults (as set: the gate clamps it)
    threshold: int  # uvm_perf_prefetch_threshold (as set: the tree clamps it)
    big_page_pages: int  # the GPU's big page, in 4 KiB pages (the tree's alignment)


def prefetch_params(params: Any, big_page_size: int) -> PrefetchParams:
    """``params``: the driver's ``Params``; ``big_page_size``: the GPU's, in bytes."""
    return PrefetchParams(
        bool(params.uvm_perf_prefetch_enable),
        int(params.uvm_perf_prefetch_min_faults),
        int(params.uvm_perf_prefetch_threshold),
        big_page_size // PAGE_SIZE,
    )


_MIN_FAULTS_MIN, _MIN_FAULTS_MAX = 1, 20  # UVM_PREFETCH_MIN_FAULTS_{MIN,MAX}
_U16 = 0xFFFF  # prefetch_info.fault_migrations_to_last_proc is an NvU16 and wraps

# Stands in for a NULL mask (no resident state, no thrashing, no CPU mapping). A real mask has
# n >= 1 entries, so length 0 is unambiguous, and one shared array costs nothing per call.
_NONE = np.zeros(0, dtype=np.bool_)


def effective_prefetch_threshold(param: int) -> int:
    """``uvm_perf_prefetch_threshold`` as ``uvm_perf_prefetch_init`` keeps it: >100 becomes 51."""
    return int(param) if 0 <= param <= 100 else PREFETCH_THRESHOLD_DEFAULT


def effective_prefetch_min_faults(param: int) -> int:
    """``uvm_perf_prefetch_min_faults`` as ``uvm_perf_prefetch_init`` keeps it: outside [1,20]
    becomes 1."""
    if _MIN_FAULTS_MIN <= param <= _MIN_FAULTS_MAX:
        return int(param)
    return PREFETCH_MIN_FAULTS_DEFAULT


@njit(cache=True)
def _fill(
    w: np.ndarray,
    block_first_page_va: int,
    big: int,
    threshold: int,
    m_first: int,
    m_outer: int,
    driver_offset_clamp: bool,
    shortcut: bool,
) -> None:
    """:func:`tree_fill` called from Python (it is inlined into the compiled block service)."""
    tree_fill(w, block_first_page_va, big, threshold, m_first, m_outer, driver_offset_clamp, shortcut)


def _to_words(m: np.ndarray) -> np.ndarray:
    """A block's page mask as NWORDS uint64 words (bit i & 63 of word i >> 6: page i)."""
    bits = np.zeros(NWORDS * 64, dtype=np.bool_)
    bits[: m.shape[0]] = m
    return np.packbits(bits, bitorder="little").view("<u8").astype(np.uint64)


def _from_words(words: np.ndarray, n: int) -> np.ndarray:
    bits = np.unpackbits(words.astype("<u8").view(np.uint8), bitorder="little")
    return bits[:n].astype(np.bool_)


# --------------------------------------------------------------------------------------------
# Python API
# --------------------------------------------------------------------------------------------


def _as_mask(a: np.ndarray | None, n: int, name: str) -> np.ndarray:
    if a is None:
        return _NONE
    a = np.asarray(a, dtype=np.bool_)
    if a.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {a.shape}")
    return a


def _check_args(
    faulted: np.ndarray,
    block_first_page_va: int,
    big_page_pages: int,
    threshold: int,
    max_region: tuple[int, int] | None,
) -> tuple[np.ndarray, int, int]:
    faulted = np.asarray(faulted, dtype=np.bool_)
    if faulted.ndim != 1 or not 1 <= faulted.shape[0] <= PAGES_PER_BLOCK:
        raise ValueError(f"faulted: expected 1..{PAGES_PER_BLOCK} pages, got {faulted.shape}")
    n = faulted.shape[0]
    if block_first_page_va < 0 or block_first_page_va % PAGES_PER_BLOCK + n > PAGES_PER_BLOCK:
        raise ValueError(f"block at VA page {block_first_page_va} with {n} pages crosses a 2 MiB boundary")
    if not 1 <= big_page_pages <= PAGES_PER_BLOCK or big_page_pages & (big_page_pages - 1):
        raise ValueError(f"big_page_pages must be a power of two in [1, 512], got {big_page_pages}")
    if not 0 <= threshold <= 100:
        raise ValueError(f"threshold must be in [0, 100], got {threshold}")
    if max_region is None:
        return faulted, 0, n
    m_first, m_outer = int(max_region[0]), int(max_region[1])
    if not 0 <= m_first < m_outer <= n:
        raise ValueError(f"max_region {max_region} is not a non-empty sub-range of [0, {n})")
    return faulted, m_first, m_outer


def compute_prefetch_mask(
    faulted: np.ndarray,
    resident: np.ndarray | None,
    thrashing: np.ndarray | None,
    *,
    block_first_page_va: int,
    big_page_pages: int = 16,
    threshold: int = PREFETCH_THRESHOLD_DEFAULT,
    dest_is_cpu: bool = False,
    cpu_resident_readable: np.ndarray | None = None,
    max_region: tuple[int, int] | None = None,
    driver_offset_clamp: bool = True,
    first_touch: bool = False,
) -> np.ndarray:
    """Pages to prefetch for one block operation with a single destination D (uvm_perf_prefetch.c steps 2,
    4–6).

    Args:
        faulted: pages migrating to D because of faults (D's ``new_residency`` mask).
        resident: D's resident mask, or ``None`` when D is a GPU with no state in the block.
        thrashing: pages flagged as thrashing (``uvm_perf_thrashing_get_thrashing_pages``), or
            ``None``. They are not walked from, block the growth of their part, and are removed
            from the result.
        block_first_page_va: VA of the block's first page, in pages (VA >> 12). Only its
            alignment matters: it places big-page boundaries. The block must not cross a 2 MiB
            boundary, as no real VA block does.
        big_page_pages: big page size in pages: the GPU VA space's big page (16 or 32) when D is
            a GPU, 16 (64 KiB) when D is the CPU.
        threshold: effective ``uvm_perf_prefetch_threshold`` in [0, 100]; a node wins when
            ``count * 100 > size * threshold``. 100 means nothing is ever prefetched; 0 means
            the whole region is, as soon as one non-thrashing page faulted.
        dest_is_cpu: D is the CPU; then ``cpu_resident_readable`` (pages resident on the CPU and
            mapped readable by it) is removed from the result. The driver skips this filter for
            HMM blocks: pass ``None`` there.
        max_region: ``max_prefetch_region`` as ``(first, outer)`` block page indices; the whole
            block (managed memory) when ``None``. Faulted pages must lie inside it.
        driver_offset_clamp: ``True`` (default) reproduces ``compute_prefetch_region`` exactly,
            including its clamp of a region that starts among the virtual leaves to page
            ``offset`` instead of page 0. It only matters for blocks whose first page is not
            big-page aligned; ``False`` gives the clamp the spec describes.
        first_touch: uvm_perf_prefetch.c step 3 applies (see :func:`first_touch_shortcut_applies`): the whole
            region, no tree.

    Returns:
        A new boolean mask of ``n`` pages. Faulted, thrashing and (CPU destination)
        CPU-resident-readable pages are never in it; pages already resident on D may be, and
        the caller must not copy them again.
    """
    faulted, m_first, m_outer = _check_args(
        faulted, block_first_page_va, big_page_pages, threshold, max_region
    )
    n = faulted.shape[0]
    if faulted[:m_first].any() or faulted[m_outer:].any():
        # The driver only ever passes faulted pages inside max_prefetch_region; outside it the
        # leaf index would fall off the tree.
        raise ValueError("faulted pages outside max_region")
    res = _as_mask(resident, n, "resident")
    thr = _as_mask(thrashing, n, "thrashing")
    cpu_rr = _as_mask(cpu_resident_readable, n, "cpu_resident_readable")
    w = new_words()
    w[FAULT] = _to_words(faulted)
    w[LEAF] = _to_words(faulted | res) if res.shape[0] else w[FAULT]
    if thr.shape[0]:
        w[THR] = _to_words(thr)
    if dest_is_cpu and cpu_rr.shape[0]:
        w[CPU_RR] = _to_words(cpu_rr)
    _fill(
        w,
        int(block_first_page_va),
        int(big_page_pages),
        int(threshold),
        m_first,
        m_outer,
        bool(driver_offset_clamp),
        bool(first_touch),
    )
    return _from_words(w[OUT], n)


def first_touch_shortcut_applies(
    resident_anywhere_count: int, dest: int, preferred_location: int | None
) -> bool:
    """uvm_perf_prefetch.c step 3: the block is resident nowhere and D is the policy's preferred location.

    ``resident_anywhere_count`` is anything that is 0 exactly when ``va_block->resident`` is
    empty (a processor count or a page count). ``preferred_location`` ``None`` or negative means
    unset, and then the shortcut never applies.
    """
    if preferred_location is None or preferred_location < 0:
        return False
    return resident_anywhere_count == 0 and dest == preferred_location


def new_prefetch_info(n_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """Fresh ``prefetch_info`` arrays for ``n_blocks`` blocks: ``(last_proc, fault_migrations)``.

    ``last_proc`` starts at :data:`PROC_INVALID` as ``uvm_va_block_create`` sets it, and
    ``fault_migrations`` is ``uint16`` like the driver's NvU16 counter.
    """
    return (
        np.full(n_blocks, PROC_INVALID, dtype=np.int32),
        np.zeros(n_blocks, dtype=np.uint16),
    )


def update_prefetch_info(
    last_proc: np.ndarray, fault_migrations: np.ndarray, block: int, dest: int, n_faulted: int
) -> int:
    """uvm_perf_prefetch.c steps 1 and 7 for one block; returns ``fault_migrations_to_last_proc`` afterwards.

    A new destination resets the counter; then the faulted pages are added. The counter is an
    NvU16 in the driver and wraps at 65536 (irrelevant with the default ``min_faults`` = 1 except
    for an exact wrap to 0). Call it exactly once per prefetch computation, and not when prefetch
    is disabled: the driver only runs ``uvm_perf_prefetch_prenotify_fault_migrations`` when it
    is enabled.
    """
    if last_proc[block] != dest:
        last_proc[block] = dest
        fault_migrations[block] = 0
    count = (int(fault_migrations[block]) + int(n_faulted)) & _U16
    fault_migrations[block] = count
    return count


def hint_allowed(count: int, min_faults: int) -> bool:
    """The ``uvm_perf_prefetch_min_faults`` gate of ``uvm_perf_prefetch_get_hint_va_block``.

    ``count`` is the value returned by :func:`update_prefetch_info`, i.e. already incremented
    by this operation's faults, so ``min_faults`` = 1 lets every fault through.
    """
    return count >= min_faults


def prefetch_hint(
    faulted: np.ndarray,
    resident: np.ndarray | None,
    thrashing: np.ndarray | None,
    *,
    block: int,
    dest: int,
    last_proc: np.ndarray,
    fault_migrations: np.ndarray,
    block_first_page_va: int,
    resident_anywhere_count: int,
    preferred_location: int | None = None,
    enable: bool = True,
    min_faults: int = PREFETCH_MIN_FAULTS_DEFAULT,
    big_page_pages: int = 16,
    threshold: int = PREFETCH_THRESHOLD_DEFAULT,
    cpu_resident_readable: np.ndarray | None = None,
    max_region: tuple[int, int] | None = None,
    driver_offset_clamp: bool = True,
) -> np.ndarray:
    """``uvm_perf_prefetch_get_hint_va_block`` for one block operation going to D = ``dest``.

    Call it only when every page of the operation goes to the same destination
    (``uvm_va_block_get_prefetch_hint``); with several destinations nothing is prefetched and
    ``prefetch_info`` is not touched. Updates ``last_proc[block]`` / ``fault_migrations[block]``
    (see :func:`update_prefetch_info`) unless ``enable`` is false.

    Returns the mask of pages to prefetch to D: all false when prefetch is disabled, when the
    counter is below ``min_faults``, or when no page is left. The hint's residency is always D.
    Pages already resident on D may be in the mask (see the module docstring); callers skip
    copying them. ``dest`` uses uvmlab processor ids (0 = CPU); the other arguments are those
    of :func:`compute_prefetch_mask` and :func:`first_touch_shortcut_applies`.
    """
    faulted, m_first, m_outer = _check_args(
        faulted, block_first_page_va, big_page_pages, threshold, max_region
    )
    n = faulted.shape[0]
    if not enable:
        return np.zeros(n, dtype=np.bool_)
    # Steps 1 and 7 together: the tree does not read the counter, so incrementing first is
    # the same as the driver's increment at the end of prenotify.
    count = update_prefetch_info(last_proc, fault_migrations, block, dest, int(np.count_nonzero(faulted)))
    mask = compute_prefetch_mask(
        faulted,
        resident,
        thrashing,
        block_first_page_va=block_first_page_va,
        big_page_pages=big_page_pages,
        threshold=threshold,
        dest_is_cpu=dest == CPU_ID,
        cpu_resident_readable=cpu_resident_readable,
        max_region=max_region,
        driver_offset_clamp=driver_offset_clamp,
        first_touch=first_touch_shortcut_applies(resident_anywhere_count, dest, preferred_location),
    )
    if not hint_allowed(count, min_faults) or not mask.any():
        return np.zeros(n, dtype=np.bool_)
    return mask
