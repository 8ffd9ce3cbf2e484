"""The state of thrashing detection (uvm_perf_thrashing.c): hint kinds, the per-page and per-block
records (``page_thrashing_info_t``, ``block_thrashing_info_t``), and page selections.

``thrashing.ThrashingDetector`` keeps these per VA space; the fault paths read the hint kinds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from uvmlab.core.sizes import PAGE_SIZE, PAGES_PER_BLOCK

#: processor masks are uint16: the CPU plus up to 15 GPUs
MAX_PROCESSORS = 16
CPU = 0
INVALID = -1
NO_STAMP = -1

# Hint kinds (UVM_PERF_THRASHING_HINT_TYPE_*): the one set every layer uses.
HINT_NONE = 0
HINT_THROTTLE = 1
HINT_PIN = 2

# Per-page stamps have 64 ns resolution (PAGE_THRASHING_LAST_TIME_STAMP_BITS = 58).
STAMP_MASK = ~63
# num_thrashing_events is a 3-bit field, throttling_count an 8-bit one; both saturate
# (UVM_PERF_SATURATING_INC).
EVENTS_MAX = 7
THROTTLING_COUNT_MAX = 255
# thrashing_unpin_pages: a deadline within this much of "now" counts as expired.
TIMER_GRANULARITY_NS = 20_000

# Migration causes (uvm_make_resident_cause_t) as uvmlab spells them.
CAUSES = frozenset({"fault", "access_counter", "prefetch", "eviction", "user", "non_replayable"})
# thrashing_event_cb counts only these; every other cause resets the pages (except eviction,
# which is ignored because the eviction path cannot take the VA space lock).
COUNTED_CAUSES = frozenset({"fault", "access_counter", "prefetch"})
# is_migration_pinned_pages_update: a fault / access-counter migration of pages that are all
# pinned is the pin being applied, not thrashing.
PIN_UPDATE_CAUSES = frozenset({"fault", "access_counter"})


class Hint(NamedTuple):
    """``uvm_perf_thrashing_hint_t``.

    kind: 0 NONE, 1 THROTTLE, 2 PIN. residency: the pin residency (PIN only, else -1).
    end_ns: the throttling end time (THROTTLE only, else 0). processors: the page's thrashing
    processors mask (PIN only, else 0): the processors the caller should map to the residency.
    """

    kind: int
    residency: int
    end_ns: int
    processors: int


NO_HINT = Hint(HINT_NONE, INVALID, 0, 0)  # the hint of a page that is not thrashing


def pcie_can_access(p: int, q: int) -> bool:
    """The test platform (PCIe, no ATS): GPUs map sysmem, the CPU cannot map vidmem, no peers."""
    return p == q or q == CPU


def pcie_fast_access(p: int, q: int) -> bool:
    """No NVLink/C2C and no native atomics on PCIe: only "being ``q`` itself" is fast."""
    return p == q


class PageState:
    """``page_thrashing_info_t`` for the 512 pages of one block, as parallel numpy arrays."""

    __slots__ = (
        "last_ts",
        "num_events",
        "has_migration",
        "has_revocation",
        "pinned",
        "pinned_residency",
        "processors",
        "throttled",
        "throttle_end",
        "throttling_count",
        "dnt",
    )

    def __init__(self) -> None:
        n = PAGES_PER_BLOCK
        self.last_ts = np.full(n, NO_STAMP, dtype=np.int64)
        self.num_events = np.zeros(n, dtype=np.uint8)
        self.has_migration = np.zeros(n, dtype=np.bool_)
        self.has_revocation = np.zeros(n, dtype=np.bool_)
        self.pinned = np.zeros(n, dtype=np.bool_)
        self.pinned_residency = np.full(n, INVALID, dtype=np.int16)
        self.processors = np.zeros(n, dtype=np.uint16)
        self.throttled = np.zeros(n, dtype=np.uint16)
        self.throttle_end = np.full(n, NO_STAMP, dtype=np.int64)
        self.throttling_count = np.zeros(n, dtype=np.uint8)
        self.dnt = np.full(n, INVALID, dtype=np.int16)


class BlockState:
    """``block_thrashing_info_t``: created on a block's first counted event.

    Its ``last_time_stamp`` and ``last_processor`` live in the detector's per-block arrays
    (``block_last_ts``, ``block_last_proc``), so that the compiled fault path can read and update
    them for blocks that have no per-page state without creating this object.
    """

    __slots__ = (
        "pages",
        "last_thrashing_ts",
        "reset_count",
        "thrashing_pages",
        "num_thrashing_pages",
        "pinned_mask",
        "num_pinned",
        "pinned_count",
        "throttling_count",
    )

    def __init__(self) -> None:
        self.pages: PageState | None = None
        self.last_thrashing_ts = NO_STAMP
        self.reset_count = 0
        self.thrashing_pages = np.zeros(PAGES_PER_BLOCK, dtype=np.bool_)
        self.num_thrashing_pages = 0
        self.pinned_mask = np.zeros(PAGES_PER_BLOCK, dtype=np.bool_)
        self.num_pinned = 0  # pages pinned now (model bookkeeping, == pinned_mask.sum())
        # Incremented by thrashing_pin_page and never decremented (thrashing_unpin_page does not
        # touch it), so it means "has ever pinned a page". It gates the epoch reset.
        self.pinned_count = 0
        self.throttling_count = 0  # stats only


def where(block: int, page: int) -> dict:
    """Common event fields. Blocks are global 2 MiB VA block numbers, so the page's address is
    ``uvm_va_block_cpu_page_address``."""
    return {
        "block": block,
        "page": page,
        "address": block * PAGES_PER_BLOCK * PAGE_SIZE + page * PAGE_SIZE,
        "bytes": PAGE_SIZE,
    }


def stale(now: int, stamp: int, limit: int) -> bool:
    """``now - stamp > limit`` in the driver's unsigned arithmetic (a future stamp wraps)."""
    return now < stamp or now - stamp > limit


def bits(mask: int) -> list[int]:
    out = []
    i = 0
    while mask:
        if mask & 1:
            out.append(i)
        mask >>= 1
        i += 1
    return out


ALL_PAGES = np.arange(PAGES_PER_BLOCK)
ALL_PAGES.flags.writeable = False
READONLY_FALSE = np.zeros(PAGES_PER_BLOCK, dtype=np.bool_)
READONLY_FALSE.flags.writeable = False

PageSel = np.ndarray | Sequence[int] | tuple[int, int] | range | slice | int


def as_index(pages: PageSel) -> slice | np.ndarray:
    """Page selection -> numpy index: a slice for regions, else sorted unique page numbers.

    Accepted: an int, a ``range``/``slice``, a 2-tuple ``(first, last)`` (an *inclusive* region),
    or any other sequence / array of page numbers.
    """
    if isinstance(pages, slice):
        return pages
    if isinstance(pages, range) and pages.step == 1:
        return slice(pages.start, pages.stop)
    if isinstance(pages, tuple) and len(pages) == 2:
        first, last = int(pages[0]), int(pages[1])
        if not 0 <= first <= last < PAGES_PER_BLOCK:
            raise ValueError(f"bad page region {pages!r}")
        return slice(first, last + 1)
    if isinstance(pages, int | np.integer):
        return np.array([int(pages)], dtype=np.intp)
    # Sorted and unique: the driver walks a region once, in page order.
    idx = np.unique(np.asarray(pages, dtype=np.intp).ravel())
    if idx.size and (idx[0] < 0 or idx[-1] >= PAGES_PER_BLOCK):
        raise ValueError("page index outside 0..511")
    return idx


# Selections up to this many pages take the scalar path (NumPy's per-call overhead dominates).
SCALAR_PAGES_MAX = 8


def small_selection(pages: PageSel) -> list[int] | None:
    """Sorted unique page numbers if the selection has at most SCALAR_PAGES_MAX pages."""
    if isinstance(pages, int | np.integer):
        out = [int(pages)]
    elif isinstance(pages, np.ndarray):
        if pages.size > SCALAR_PAGES_MAX:
            return None
        out = sorted(set(pages.ravel().tolist()))
    elif isinstance(pages, tuple) and len(pages) == 2:
        first, last = int(pages[0]), int(pages[1])
        if last - first >= SCALAR_PAGES_MAX:
            return None
        if not 0 <= first <= last < PAGES_PER_BLOCK:
            raise ValueError(f"bad page region {pages!r}")
        return list(range(first, last + 1))
    elif isinstance(pages, slice | range):
        return None
    elif len(pages) <= SCALAR_PAGES_MAX:
        out = sorted({int(p) for p in pages})
    else:
        return None
    if out and (out[0] < 0 or out[-1] >= PAGES_PER_BLOCK):
        raise ValueError("page index outside 0..511")
    return out


def selected(index: slice | np.ndarray) -> np.ndarray:
    """The page numbers an index selects, ascending (the driver walks regions in order)."""
    if isinstance(index, slice):
        return ALL_PAGES[index]
    return index
