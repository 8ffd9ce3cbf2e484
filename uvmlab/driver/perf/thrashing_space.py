"""The per-VA-space state of thrashing detection (uvm_perf_thrashing.c): module parameters, the
per-block arrays, page resets, epoch resets and unpinning (``thrashing_reset_page``,
``thrashing_unpin_pages``), and the read-only queries.

Detection (``thrashing_detect``) and mitigation (``thrashing_hint``) build on this class;
``thrashing.ThrashingDetector`` puts them together and lists the modelling choices.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np

from uvmlab.core.sizes import PAGES_PER_BLOCK
from uvmlab.driver.perf.thrashing_state import (
    CPU,
    EVENTS_MAX,
    INVALID,
    MAX_PROCESSORS,
    NO_STAMP,
    READONLY_FALSE,
    THROTTLING_COUNT_MAX,
    TIMER_GRANULARITY_NS,
    BlockState,
    PageSel,
    PageState,
    as_index,
    bits,
    pcie_can_access,
    pcie_fast_access,
    selected,
    where,
)


class ThrashingSpace:
    """Per-VA-space thrashing state (``va_space_thrashing_info_t`` plus its blocks), its resets,
    unpinning and queries; :class:`uvmlab.driver.perf.thrashing.ThrashingDetector` documents the
    parameters."""

    def __init__(
        self,
        enable: int = 1,
        threshold: int = 3,
        pin_threshold: int = 10,
        lapse_usec: int = 500,
        nap: int = 1,
        epoch: int = 2000,
        pin: int = 300,
        max_resets: int = 4,
        *,
        can_access: Callable[[int, int], bool] = pcie_can_access,
        emit: Callable[[str, dict], None] | None = None,
        fast_access: Callable[[int, int], bool] = pcie_fast_access,
        has_memory: Callable[[int], bool] | None = None,
        num_processors: int = MAX_PROCESSORS,
    ) -> None:
        def checked(v: int, default: int, lo: int, hi: int | None) -> int:
            # INIT_THRASHING_PARAMETER_MIN_MAX: out of range -> default (with a kernel log line)
            v = int(v)
            return v if v >= lo and (hi is None or v <= hi) else default

        self.enable = bool(checked(enable, 1, 0, 1))
        self.threshold = checked(threshold, 3, 1, EVENTS_MAX)
        self.pin_threshold = checked(pin_threshold, 10, 1, THROTTLING_COUNT_MAX)
        lapse_usec = checked(lapse_usec, 500, 1, None)
        self.lapse_ns = lapse_usec * 1000
        # va_space_thrashing_info_init_params: nap, epoch and pin are multiples of the lapse
        self.nap_ns = self.lapse_ns * checked(nap, 1, 1, 100)
        self.epoch_ns = self.lapse_ns * checked(epoch, 2000, 1, None)
        self.pin_ns = self.lapse_ns * checked(pin, 300, 0, None)
        self.max_resets = checked(max_resets, 4, 0, None)
        if not 1 <= num_processors <= MAX_PROCESSORS:
            raise ValueError(f"num_processors must be in 1..{MAX_PROCESSORS}")
        self.num_processors = num_processors

        self._can_access = can_access
        self._fast_access = fast_access
        self._has_memory = has_memory
        self._emit = emit
        self._blocks: dict[int, BlockState] = {}
        # Per block: the last counted event's time and processor, and whether the block has
        # per-page state (``block_thrashing->pages``). Grown on demand; see reserve_blocks.
        self.block_last_ts = np.full(0, NO_STAMP, dtype=np.int64)
        self.block_last_proc = np.full(0, INVALID, dtype=np.int8)
        self.block_has_pages = np.zeros(0, dtype=np.bool_)
        # Per-VA-space pinned-page list, as a heap of (deadline, seq, block, page). Entries
        # cancelled by a page reset are left in place and skipped: _pin_seq holds the live seq.
        self._pin_heap: list[tuple[int, int, int, int]] = []
        self._pin_seq: dict[tuple[int, int], int] = {}
        self._seq = 0
        self.counters: dict[str, int] = {"thrashing_events": 0, "throttles": 0, "pins": 0}

    def reserve_blocks(self, n_blocks: int) -> None:
        """Size the per-block arrays for blocks ``0..n_blocks-1`` (they grow on demand too)."""
        old = len(self.block_last_ts)
        if n_blocks <= old:
            return
        for name, fill in (
            ("block_last_ts", NO_STAMP),
            ("block_last_proc", INVALID),
            ("block_has_pages", False),
        ):
            a = getattr(self, name)
            b = np.full(n_blocks, fill, dtype=a.dtype)
            b[:old] = a
            setattr(self, name, b)

    def blocks_with_state(self, lo: int, hi: int) -> np.ndarray:
        """The blocks in ``lo..hi-1`` that hold thrashing state (what ``destroy_block`` resets)."""
        hi_a = min(hi, len(self.block_last_ts))
        found = [np.array([b for b in self._blocks if lo <= b < hi], dtype=np.int64)]
        if lo < hi_a:
            sl = slice(lo, hi_a)
            busy = (
                (self.block_last_ts[sl] != NO_STAMP)
                | (self.block_last_proc[sl] != INVALID)
                | self.block_has_pages[sl]
            )
            found.append(lo + np.flatnonzero(busy))
        return np.unique(np.concatenate(found))

    # ------------------------------------------------------------------ throttling ends

    def _throttle_end_processor(
        self, block: int, pg: PageState, page: int, processor: int, now: int | None
    ) -> None:
        """``thrashing_throttle_end_processor``."""
        pg.throttled[page] &= np.uint16(~(1 << processor) & 0xFFFF)
        if pg.throttled[page] == 0:
            pg.throttle_end[page] = NO_STAMP
        if processor != CPU and self._emit is not None:
            self._emit("ThrottlingEnd", {**where(block, page), "processor": processor, "time_ns": now})

    def _throttling_reset_page(self, block: int, pg: PageState, page: int, now: int | None) -> None:
        """``thrashing_throttling_reset_page``: end throttling for every throttled processor."""
        for p in bits(int(pg.throttled[page])):
            self._throttle_end_processor(block, pg, page, p, now)

    # ------------------------------------------------------------------ resets and unpinning

    def _reset_page(self, block: int, bs: BlockState, page: int, now: int | None) -> None:
        """``thrashing_reset_page``.

        Like the driver it keeps ``throttling_count``, the do-not-throttle processor and (when no
        processor was throttled) the throttling end time: they survive into the next episode.
        """
        pg = bs.pages
        assert pg is not None
        self._throttling_reset_page(block, pg, page, now)
        if pg.pinned[page]:
            # thrashing_unpin_page: drop the queue entry (skipped lazily) and the pin state
            self._pin_seq.pop((block, page), None)
            pg.pinned[page] = False
            pg.pinned_residency[page] = INVALID
            bs.pinned_mask[page] = False
            bs.num_pinned -= 1
        pg.last_ts[page] = NO_STAMP
        pg.has_migration[page] = False
        pg.has_revocation[page] = False
        pg.num_events[page] = 0
        pg.processors[page] = 0
        if bs.thrashing_pages[page]:
            bs.thrashing_pages[page] = False
            bs.num_thrashing_pages -= 1

    def _reset_region(self, block: int, index: slice | np.ndarray, now: int | None) -> None:
        """``thrashing_reset_pages_in_region``: reset the *thrashing* pages of the region."""
        bs = self._blocks.get(block)
        if bs is None or bs.pages is None or bs.num_thrashing_pages == 0:
            return
        sel = selected(index)
        for page in sel[bs.thrashing_pages[sel]]:
            self._reset_page(block, bs, int(page), now)

    def _epoch_reset(self, block: int, bs: BlockState, now: int) -> None:
        bs.reset_count += 1
        pg = bs.pages
        assert pg is not None
        for page in np.flatnonzero(bs.thrashing_pages):
            self._throttling_reset_page(block, pg, int(page), now)
        bs.pages = None  # frees every per-page field, throttling_count and dnt included
        self.block_has_pages[block] = False
        bs.num_thrashing_pages = 0
        self.block_last_proc[block] = INVALID
        self.block_last_ts[block] = NO_STAMP
        bs.last_thrashing_ts = NO_STAMP
        bs.thrashing_pages[:] = False

    def reset_pages(self, block: int, pages: PageSel, now_ns: int | None = None) -> None:
        """Page reset on munmap (``thrashing_block_munmap_cb``): only thrashing pages change."""
        if self.enable:
            self._reset_region(block, as_index(pages), now_ns)

    def destroy_block(self, block: int, now_ns: int | None = None) -> None:
        """Block destroy/shrink (``uvm_perf_thrashing_info_destroy``): reset, then forget."""
        if block in self._blocks:
            self._reset_region(block, slice(0, PAGES_PER_BLOCK), now_ns)
            del self._blocks[block]
        if block < len(self.block_last_ts):
            self.block_last_ts[block] = NO_STAMP
            self.block_last_proc[block] = INVALID
            self.block_has_pages[block] = False

    def has_pins(self) -> bool:
        """Whether any unpin is pending (delayed work that must run at its time)."""
        return self.next_deadline() is not None

    def next_deadline(self) -> int | None:
        """Earliest live unpin deadline, or None. The driver's delayed work fires at jiffy
        granularity at or after it; callers may add that latency."""
        heap = self._pin_heap
        while heap and self._pin_seq.get((heap[0][2], heap[0][3])) != heap[0][1]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def unpin_expired(self, now_ns: int) -> list[tuple[int, int, int]]:
        """``thrashing_unpin_pages``: unpin pages whose deadline is at most ``now + 20 µs``.

        Returns ``(block, page, pinned residency)`` per page, in deadline order. Each page is
        reset (``thrashing_reset_page``); the caller must unmap it from every mapped processor
        that is not in accessed_by and holds no copy
        (``uvm_perf_thrashing_unmap_remote_pinned_pages_all``), so the next access faults.
        """
        out: list[tuple[int, int, int]] = []
        heap = self._pin_heap
        while heap and heap[0][0] <= now_ns + TIMER_GRANULARITY_NS:
            _, seq, block, page = heapq.heappop(heap)
            if self._pin_seq.get((block, page)) != seq:
                continue  # already unpinned by a page reset
            bs = self._blocks[block]
            assert bs.pages is not None
            residency = int(bs.pages.pinned_residency[page])
            self._reset_page(block, bs, page, now_ns)
            out.append((block, page, residency))
            if self._emit is not None:
                self._emit("Unpin", {**where(block, page), "residency": residency, "time_ns": now_ns})
        return out

    # ------------------------------------------------------------------ queries

    def thrashing_mask(self, block: int) -> np.ndarray:
        """``uvm_perf_thrashing_get_thrashing_pages`` as a bool[512] (read-only when empty)."""
        bs = self._blocks.get(block)
        if not self.enable or bs is None or bs.num_thrashing_pages == 0:
            return READONLY_FALSE
        return bs.thrashing_pages.copy()

    def pinned_mask(self, block: int) -> np.ndarray:
        """Pinned pages of the block as a bool[512] (read-only when empty)."""
        bs = self._blocks.get(block)
        if bs is None or not bs.num_pinned:
            return READONLY_FALSE
        return bs.pinned_mask.copy()

    def page_info(self, block: int, page: int) -> dict | None:
        """The per-page state, for tests and debugging; None without per-page tracking."""
        bs = self._blocks.get(block)
        if bs is None or bs.pages is None:
            return None
        pg = bs.pages
        stamp = int(pg.last_ts[page])
        end = int(pg.throttle_end[page])
        return {
            "last_ts": None if stamp == NO_STAMP else stamp,
            "num_events": int(pg.num_events[page]),
            "has_migration": bool(pg.has_migration[page]),
            "has_revocation": bool(pg.has_revocation[page]),
            "pinned": bool(pg.pinned[page]),
            "pinned_residency": int(pg.pinned_residency[page]),
            "processors": int(pg.processors[page]),
            "throttled": int(pg.throttled[page]),
            "throttle_end": None if end == NO_STAMP else end,
            "throttling_count": int(pg.throttling_count[page]),
            "dnt": int(pg.dnt[page]),
        }

    def block_info(self, block: int) -> dict | None:
        """The per-block state, for tests and debugging; None if the block has no state."""
        bs = self._blocks.get(block)
        last_ts = int(self.block_last_ts[block]) if block < len(self.block_last_ts) else NO_STAMP
        if bs is None:
            if last_ts == NO_STAMP:
                return None
            bs = BlockState()  # state kept only in the per-block arrays (compiled fault path)
        return {
            "has_pages": bs.pages is not None,
            "last_ts": None if last_ts == NO_STAMP else last_ts,
            "last_processor": int(self.block_last_proc[block]),
            "last_thrashing_ts": None if bs.last_thrashing_ts == NO_STAMP else bs.last_thrashing_ts,
            "reset_count": bs.reset_count,
            "num_thrashing_pages": bs.num_thrashing_pages,
            "pinned_count": bs.pinned_count,
            "throttling_count": bs.throttling_count,
        }
