"""Thrashing detection (uvm_perf_thrashing.c ``thrashing_event_cb``): migration and revocation
events bump a per-page counter when they come within one lapse of the page's previous event; a
page whose counter reaches the threshold is "thrashing".
"""

from __future__ import annotations

import numpy as np

from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.driver.perf.thrashing_space import ThrashingSpace
from uvmlab.driver.perf.thrashing_state import (
    CAUSES,
    COUNTED_CAUSES,
    EVENTS_MAX,
    NO_STAMP,
    PIN_UPDATE_CAUSES,
    STAMP_MASK,
    BlockState,
    PageSel,
    PageState,
    as_index,
    selected,
    small_selection,
    stale,
    where,
)


class ThrashingDetection(ThrashingSpace):
    """Detection: migration and revocation events bump per-page counters (``thrashing_event_cb``)."""

    def on_migration(
        self,
        block: int,
        pages: PageSel,
        dst: int,
        cause: str,
        now_ns: int,
        *,
        transfer_copy: bool = False,
        read_dup_enabled: bool = False,
        staged_first_hop: bool = False,
    ) -> None:
        """A MIGRATION perf event for ``pages`` of ``block`` into ``dst`` (``thrashing_event_cb``).

        ``now_ns`` should be the time the copy is *pushed*: the driver stamps the event with
        ``NV_GETTIME()`` in the callback, not at copy completion. ``transfer_copy``: the transfer
        mode is COPY (read duplication). ``read_dup_enabled``: the range's read-duplication policy
        is ENABLED. ``staged_first_hop``: ``dst`` is not the final destination of a staged copy.
        """
        if cause not in CAUSES:
            raise ValueError(f"unknown migration cause {cause!r}")
        # Eviction runs without the VA space lock; staged first hops are not the real move.
        if cause == "eviction" or staged_first_hop or not self.enable:
            return
        bs = self._blocks.get(block)
        if cause not in COUNTED_CAUSES or transfer_copy or read_dup_enabled:
            # User commands and advice take precedence over the heuristics. Note the driver
            # (thrashing_reset_pages_in_region) only resets pages already in thrashing_pages;
            # sub-threshold counters survive, and the block's last event is not updated.
            if bs is not None and bs.num_thrashing_pages:
                self._reset_region(block, as_index(pages), now_ns)
            return
        if (
            cause in PIN_UPDATE_CAUSES
            and bs is not None
            and bs.pages is not None
            and bs.num_pinned
            and bool(bs.pinned_mask[as_index(pages)].all())
        ):
            return  # is_migration_pinned_pages_update: the page is moving to its pin residency
        self._record_event(block, bs, pages, dst, now_ns, revocation=False)

    def on_revocation(self, block: int, pages: PageSel, processor: int, now_ns: int) -> None:
        """A REVOCATION perf event: ``processor`` lost permissions on ``pages``.

        The driver notifies these only for permission *downgrades* (``block_revoke_cpu_write``,
        ``block_revoke_prot_gpu_perf_notify``), not for plain unmaps.
        """
        if not self.enable:
            return
        self._record_event(block, self._blocks.get(block), pages, processor, now_ns, revocation=True)

    def _record_event(
        self, block: int, bs: BlockState | None, pages: PageSel, processor: int, now: int, *, revocation: bool
    ) -> None:
        if not 0 <= processor < self.num_processors:
            raise ValueError(f"processor {processor} outside 0..{self.num_processors - 1}")
        if bs is None:
            bs = self._blocks[block] = BlockState()  # thrashing_info_get_create
        if block >= len(self.block_last_ts):
            self.reserve_blocks(max(block + 1, 2 * len(self.block_last_ts)))
        pg = bs.pages
        if pg is None:
            # Allocate per-page tracking only once two different processors touched the block
            # within one lapse; otherwise only remember this event.
            last_ts = int(self.block_last_ts[block])
            if (
                last_ts == NO_STAMP
                or self.block_last_proc[block] == processor
                or stale(now, last_ts, self.lapse_ns)
            ):
                self.block_last_ts[block] = now
                self.block_last_proc[block] = processor
                return
            pg = bs.pages = PageState()
            self.block_has_pages[block] = True

        small = small_selection(pages)
        if small is not None:
            self._record_pages(block, bs, pg, small, processor, now, revocation)
        else:
            self._record_region(block, bs, pg, as_index(pages), processor, now, revocation)
        self.block_last_ts[block] = now
        self.block_last_proc[block] = processor

    def _record_pages(
        self,
        block: int,
        bs: BlockState,
        pg: PageState,
        pages: list[int],
        processor: int,
        now: int,
        revocation: bool,
    ) -> None:
        """The per-page loop of ``thrashing_event_cb``, one page at a time (few pages)."""
        bit = 1 << processor
        stamp = now & STAMP_MASK
        lapse = self.lapse_ns
        threshold = self.threshold
        flag = pg.has_revocation if revocation else pg.has_migration
        for page in pages:
            prev = pg.last_ts.item(page)
            pg.processors[page] = pg.processors.item(page) | bit
            pg.last_ts[page] = stamp
            if prev == NO_STAMP:
                continue
            if prev <= now and now - prev <= lapse:
                count = pg.num_events.item(page)
                if count < EVENTS_MAX:
                    count += 1
                    pg.num_events[page] = count
                if count == threshold:
                    self._thrashing_detected(block, bs, pg, page, now)
                if count >= threshold:
                    bs.last_thrashing_ts = now
                flag[page] = True
            elif pg.num_events.item(page) >= threshold and not pg.pinned.item(page):
                # Detected earlier but quiet for more than a lapse: not thrashing any more. The
                # reset also drops the stamp just written, so the next event starts afresh.
                self._reset_page(block, bs, page, now)

    def _record_region(
        self,
        block: int,
        bs: BlockState,
        pg: PageState,
        index: slice | np.ndarray,
        processor: int,
        now: int,
        revocation: bool,
    ) -> None:
        """The same loop as :meth:`_record_pages`, vectorised for large regions."""
        prev = pg.last_ts[index]  # fancy indexing copies; a slice view must be copied
        if isinstance(index, slice):
            prev = prev.copy()
        pg.processors[index] |= np.uint16(1 << processor)
        pg.last_ts[index] = now & STAMP_MASK
        # Within a lapse of the previous stamp -> a thrashing event. Viewing the gap as uint64
        # gives the driver's unsigned arithmetic: a future stamp wraps to a huge gap (see
        # stale). NumPy op count matters more than anything else here.
        gap = (np.int64(now) - prev).view(np.uint64)
        within = gap <= np.uint64(self.lapse_ns)
        if now <= self.lapse_ns:  # only then can a missing stamp (-1) look recent
            within &= prev != NO_STAMP
        detected = None
        if within.any():
            ev = pg.num_events[index] + (within & (pg.num_events[index] < EVENTS_MAX))
            pg.num_events[index] = ev
            flag = pg.has_revocation if revocation else pg.has_migration
            flag[index] |= within
            at_least = within & (ev >= self.threshold)
            if at_least.any():
                bs.last_thrashing_ts = now
                detected = within & (ev == self.threshold)
                if not detected.any():
                    detected = None
        # A gap longer than a lapse resets a page that had been detected (and is not pinned). The
        # reset also drops the stamp just written, so the next event on it starts from scratch.
        # Only pages in thrashing_pages can be at/above the threshold, hence the cheap pre-check.
        reset = None
        if bs.num_thrashing_pages:
            reset = (
                ~within & (prev != NO_STAMP) & (pg.num_events[index] >= self.threshold) & ~pg.pinned[index]
            )
            if not reset.any():
                reset = None
        if detected is not None or reset is not None:
            sel = selected(index)
            if detected is None:
                detected = np.zeros(sel.shape, dtype=np.bool_)
            todo = detected if reset is None else detected | reset
            # Same order as the driver's page walk, so tools events interleave identically.
            for i in np.flatnonzero(todo):
                page = int(sel[i])
                if detected[i]:
                    self._thrashing_detected(block, bs, pg, page, now)
                else:
                    self._reset_page(block, bs, page, now)

    def _thrashing_detected(self, block: int, bs: BlockState, pg: PageState, page: int, now: int) -> None:
        self.counters["thrashing_events"] += 1
        if self._emit is not None:
            self._emit(
                "ThrashingDetected",
                {
                    **where(block, page),
                    "size": PAGE_SIZE,
                    "processors": int(pg.processors[page]),
                    "time_ns": now,
                },
            )
        if not bs.thrashing_pages[page]:
            bs.thrashing_pages[page] = True
            bs.num_thrashing_pages += 1
