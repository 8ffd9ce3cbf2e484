"""Thrashing mitigation (uvm_perf_thrashing.c ``uvm_perf_thrashing_get_hint`` and
``get_hint_for_migration_thrashing``): a fault handler asks for a hint per page and gets NONE,
THROTTLE (skip / sleep until an end time) or PIN (serve from a fixed residency, map the others
remotely); ``thrashing_pin_page`` queues the pin's expiry.
"""

from __future__ import annotations

import heapq

import numpy as np

from uvmlab.driver.perf.thrashing_space import ThrashingSpace
from uvmlab.driver.perf.thrashing_state import (
    CPU,
    HINT_NONE,
    HINT_PIN,
    HINT_THROTTLE,
    INVALID,
    NO_HINT,
    NO_STAMP,
    STAMP_MASK,
    THROTTLING_COUNT_MAX,
    BlockState,
    Hint,
    PageState,
    bits,
    stale,
    where,
)


class ThrashingHints(ThrashingSpace):
    """Mitigation: the per-page hint a fault handler asks for (``uvm_perf_thrashing_get_hint``)."""

    def tracks_pages(self, block: int) -> bool:
        """Whether ``get_hint`` can answer anything but NONE for pages of ``block`` (step 1 of
        ``uvm_perf_thrashing_get_hint``: no per-page state means NONE, with no side effects)."""
        return self.enable and block < len(self.block_has_pages) and bool(self.block_has_pages[block])

    def get_hint(
        self,
        block: int,
        page: int,
        requester: int,
        now_ns: int,
        *,
        preferred: int = INVALID,
        closest: int = INVALID,
        resident_mask: int | None = None,
    ) -> Hint:
        """``uvm_perf_thrashing_get_hint`` for one page and requesting processor.

        ``preferred``: the policy's preferred location (-1 none). ``closest``: the closest
        processor holding the page (-1 if resident nowhere). ``resident_mask``: processors holding
        the page (defaults to just ``closest``); only used to decide whether a re-pin moves the
        page. Has side effects (throttle periods, pin queue, events). O(1) and allocation-free
        for a block without per-page tracking.
        """
        if not self.enable:
            return NO_HINT
        bs = self._blocks.get(block)
        if bs is None or bs.pages is None:
            return NO_HINT

        # Epoch reset: no thrashing for a whole epoch -> forget the block (at most max_resets
        # times; never once a page of the block has been pinned, see BlockState.pinned_count).
        if (
            bs.last_thrashing_ts != NO_STAMP
            and stale(now_ns, bs.last_thrashing_ts, self.epoch_ns)
            and bs.pinned_count == 0
            and bs.reset_count < self.max_resets
        ):
            self._epoch_reset(block, bs, now_ns)
            return NO_HINT

        pg = bs.pages
        if pg.num_events[page] < self.threshold:
            return NO_HINT
        bit = 1 << requester

        if int(pg.throttled[page]) & bit:
            if now_ns < int(pg.throttle_end[page]) and requester != int(pg.dnt[page]):
                return self._throttle(block, bs, pg, page, requester, now_ns)
            self._throttle_end_processor(block, pg, page, requester, now_ns)

        pinned = bool(pg.pinned[page])
        # No event for more than a lapse: not thrashing any more (the state stays).
        if stale(now_ns, int(pg.last_ts[page]), self.lapse_ns) and not pinned:
            return NO_HINT

        pg.processors[page] |= np.uint16(bit)
        self._throttle_update(pg, page, requester, now_ns)

        if pinned and pg.has_revocation[page] and requester != int(pg.dnt[page]):
            # Revocation thrashing (e.g. system-wide atomics): nothing to migrate, only throttle.
            return self._throttle(block, bs, pg, page, requester, now_ns)

        kind, residency = self._migration_hint(pg, page, requester, preferred, closest)
        if kind == HINT_THROTTLE:
            return self._throttle(block, bs, pg, page, requester, now_ns)
        if kind == HINT_PIN:
            if resident_mask is None:
                resident_mask = (1 << closest) if closest >= 0 else 0
            self._pin_page(block, bs, pg, page, residency, resident_mask, now_ns)
            self.counters["pins"] += 1
            return Hint(HINT_PIN, residency, 0, int(pg.processors[page]))
        return NO_HINT

    def _throttle_update(self, pg: PageState, page: int, requester: int, now: int) -> None:
        """``thrashing_throttle_update``: start a new throttling period or claim the free role."""
        if now > int(pg.throttle_end[page]):
            pg.throttle_end[page] = (now + self.nap_ns) & STAMP_MASK
            # Avoid letting the same processor win two consecutive periods.
            pg.dnt[page] = INVALID if int(pg.dnt[page]) == requester else requester
        elif pg.dnt[page] == INVALID:
            pg.dnt[page] = requester

    def _all_can_access(self, procs: int, to: int) -> bool:
        """``thrashing_processors_can_access``."""
        if to < 0:
            return False
        return all(self._can_access(p, to) for p in bits(procs))

    def _all_fast_access(self, procs: int, to: int) -> bool:
        """``thrashing_processors_have_fast_access_to``."""
        if to < 0:
            return False
        # The CPU is always in the CPU's fast set; a GPU and its SMC siblings in a GPU's.
        return all(p == to or self._fast_access(p, to) for p in bits(procs))

    def _closest_common_location(self, procs: int, requester: int) -> int:
        """``thrashing_processors_common_locations`` + ``uvm_processor_mask_find_closest_id``."""
        common = [q for q in range(self.num_processors) if all(self._can_access(p, q) for p in bits(procs))]
        if not common:
            return requester
        if requester in common:
            return requester
        # No SMC partitions are modelled. Fast-link peers first, then processors the requester
        # can access; within each, GPUs before the CPU.
        for ok in (self._fast_access, self._can_access):
            reach = [q for q in common if ok(requester, q)]
            if reach:
                gpus = [q for q in reach if q != CPU]
                return gpus[0] if gpus else CPU
        return common[0]

    def _migration_hint(self, pg: PageState, page: int, r: int, pref: int, closest: int) -> tuple[int, int]:
        """``get_hint_for_migration_thrashing`` (uvm_perf_thrashing.c); returns (kind, residency)."""
        procs = int(pg.processors[page])
        dnt = int(pg.dnt[page])
        pinned = bool(pg.pinned[page])
        pinned_res = int(pg.pinned_residency[page])
        kind, res = HINT_NONE, INVALID

        if self._all_can_access(procs, pref):
            # 1. Everybody can map the preferred location (it was set after thrashing began).
            kind, res = HINT_PIN, pref
        elif not (pref >= 0 and procs >> pref & 1) and self._all_fast_access(procs, closest):
            # 2. Fast path: everybody has fast access to where the page already is.
            if closest == CPU and self._all_can_access(procs, r):
                if r != CPU:  # coherent systems prefer the CPU mapping vidmem
                    kind, res = HINT_PIN, r
            else:
                kind, res = HINT_PIN, closest
        elif r == pref:
            # 3. The preferred location itself is faulting.
            if pinned:
                if pref in (pinned_res, dnt):
                    kind, res = HINT_PIN, pref
                else:
                    kind = HINT_THROTTLE
            elif pref != dnt:
                kind = HINT_THROTTLE
            elif pg.throttling_count[page] >= self.pin_threshold:
                kind, res = HINT_PIN, pref
        elif pinned:
            # 4. Already pinned: the period's winner may re-pin; others map or wait.
            if r == dnt:
                kind, res = HINT_PIN, r
                if not self._all_can_access(procs, r):
                    res = self._closest_common_location(procs, r)
            elif self._can_access(r, pinned_res):
                kind, res = HINT_PIN, pinned_res
            else:
                kind = HINT_THROTTLE
        elif r != dnt:
            kind = HINT_THROTTLE  # 5.
        elif pg.throttling_count[page] >= self.pin_threshold:
            kind, res = HINT_PIN, r  # 6. enough throttle periods: stop migrating
        # 7. otherwise NONE

        if kind == HINT_PIN and self._has_memory is not None and not self._has_memory(res):
            res = CPU
        return kind, res

    def _throttle(
        self, block: int, bs: BlockState, pg: PageState, page: int, requester: int, now: int
    ) -> Hint:
        """``thrashing_throttle_processor`` plus the THROTTLE hint."""
        bit = 1 << requester
        starts = requester == CPU  # a CPU requester sleeps once per throttle hint
        if not int(pg.throttled[page]) & bit:
            starts = True
            pg.throttled[page] |= np.uint16(bit)
            if requester != CPU and self._emit is not None:
                self._emit("ThrottlingStart", {**where(block, page), "processor": requester, "time_ns": now})
            if not pg.pinned[page] and pg.throttling_count[page] < THROTTLING_COUNT_MAX:
                pg.throttling_count[page] += 1
            bs.throttling_count += 1
        # what CUPTI's THROTTLING records count (uvm_tools.c ThrottlingStart): a GPU entering the
        # page's throttled set, or one CPU throttle sleep; a GPU fault re-throttled while the
        # page is still throttled for it is not a new start
        self.counters["throttles"] += starts
        return Hint(HINT_THROTTLE, INVALID, int(pg.throttle_end[page]), 0)

    def _pin_page(
        self,
        block: int,
        bs: BlockState,
        pg: PageState,
        page: int,
        residency: int,
        resident_mask: int,
        now: int,
    ) -> None:
        """``thrashing_pin_page``."""
        was_pinned = bool(pg.pinned[page])
        # Flush pending ThrottlingEnd events when pinning for the first time or moving the page.
        if not was_pinned or not (resident_mask >> residency) & 1:
            self._throttling_reset_page(block, pg, page, now)
        if not was_pinned:
            if self.pin_ns > 0:
                # The deadline is set only here: re-pinning to another residency keeps it.
                self._seq += 1
                self._pin_seq[(block, page)] = self._seq
                heapq.heappush(self._pin_heap, (now + self.pin_ns, self._seq, block, page))
            pg.throttling_count[page] = 0
            pg.pinned[page] = True
            bs.pinned_count += 1
            bs.num_pinned += 1
            bs.pinned_mask[page] = True
        pg.pinned_residency[page] = residency
