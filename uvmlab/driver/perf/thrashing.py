"""Thrashing detection and mitigation for one VA space (uvm_perf_thrashing.c).

This is a model of the driver's ``perf_thrashing`` module, written from the behavioural spec and
checked against the 580.142 source (function names below are the driver's). It has three parts:

* **Detection** (:meth:`ThrashingDetector.on_migration`, :meth:`ThrashingDetector.on_revocation`,
  driver ``thrashing_event_cb``): migration and revocation events bump a per-page counter when they
  come within one *lapse* of the page's previous event; a page whose counter reaches *threshold*
  is "thrashing".
* **Mitigation** (:meth:`ThrashingDetector.get_hint`, driver ``uvm_perf_thrashing_get_hint`` and
  ``get_hint_for_migration_thrashing``): fault handlers ask for a hint per page and get NONE,
  THROTTLE (skip / sleep until an end time) or PIN (serve from a fixed residency, map the others
  remotely).
* **Unpinning** (:meth:`ThrashingDetector.unpin_expired`, driver ``thrashing_unpin_pages``): pins
  expire after ``pin × lapse``; the caller unmaps the remote mappings.

Processors are small ints: 0 is the CPU, 1.. are GPUs. Pages are block-relative indices 0..511.
Times are integer nanoseconds of the model's clock.

Modelling choices:

* The driver uses timestamp 0 to mean "no timestamp". The model's clock may start at 0, so the
  model uses -1 (``NO_STAMP``) instead; behaviour differs only for times below 64 ns.
* Per-page stamps and throttling end times are truncated to 64 ns like the driver's 58-bit fields
  (``page_thrashing_set_time_stamp``), so a period started at t ends at ``(t + nap) & ~63``;
  block-level stamps are kept at full resolution.
* Time differences are evaluated as the driver's unsigned ``NvU64`` subtraction would: a stamp
  *later* than ``now`` counts as "more than a lapse ago".
* ``thrashing_pin_page`` can fail to allocate (demoting PIN to THROTTLE); the model never does.
* The driver has no Unpin tools event; "Unpin" is emitted for uvmlab's own traces.

Source details that the reference (uvm_perf_thrashing.c) does not spell out, all followed here:

* ``thrashing_reset_page`` clears stamps, counters, processors and the pin, but keeps
  ``throttling_count``, ``do_not_throttle_processor_id`` and (when nobody was throttled) the
  throttling end: a page that is reset and re-detected keeps counting towards pin_threshold.
* Resets for non-counted causes and munmap (``thrashing_reset_pages_in_region``) touch only
  pages in ``thrashing_pages``; counters of pages below the threshold survive.
* ``block_thrashing->pinned_pages.count`` is incremented on pin and never decremented, so once a
  block has pinned any page the epoch reset never fires for it again.
* The first pin of a page (or a pin that moves it) ends throttling of the other processors; an
  emptied throttled set zeroes the period end, so the next fault starts a new period in which the
  faulting processor becomes do-not-throttle.
* The unpin deadline is set on the first pin only; re-pinning elsewhere does not extend it.
* With threshold 7 the 3-bit counter saturates at 7, so ThrashingDetected fires again on every
  event within a lapse.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np

from uvmlab.core.sizes import PAGE_SIZE, PAGES_PER_BLOCK
from uvmlab.driver.perf.thrashing_state import (
    CAUSES,
    COUNTED_CAUSES,
    CPU,
    EVENTS_MAX,
    HINT_NONE,
    HINT_PIN,
    HINT_THROTTLE,
    INVALID,
    MAX_PROCESSORS,
    NO_HINT,
    NO_STAMP,
    PIN_UPDATE_CAUSES,
    READONLY_FALSE,
    STAMP_MASK,
    THROTTLING_COUNT_MAX,
    TIMER_GRANULARITY_NS,
    BlockState,
    Hint,
    PageSel,
    PageState,
    as_index,
    bits,
    pcie_can_access,
    pcie_fast_access,
    selected,
    small_selection,
    stale,
    where,
)


class ThrashingDetector:
    """Per-VA-space thrashing state (``va_space_thrashing_info_t`` plus its blocks).

    Parameters are the module parameters, validated like ``uvm_perf_thrashing_init``: a value outside its
    range is replaced by the default. ``can_access(p, q)``: processor ``p`` can
    map memory of processor ``q`` (``va_space->can_access``). ``fast_access(p, q)``: ``p`` is in
    the fast set of ``q`` used by ``thrashing_processors_have_fast_access_to`` (fast link *and*
    native atomics, or ``p`` is ``q``); also used as ``has_fast_link`` when picking the closest
    common location. ``has_memory(p)``: ``uvm_processor_has_memory``. ``num_processors``: the
    registered processor ids are ``0..num_processors-1``; they are the candidate common locations
    of get_hint_for_migration_thrashing case 4. ``emit(name, fields)`` receives the tools events
    ThrashingDetected,
    ThrottlingStart, ThrottlingEnd (GPU processors only, as in the driver; the CPU fault path
    records its own around the sleep) and the model-only event Unpin.
    """

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

    # ------------------------------------------------------------------ events (detection)

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

    # ------------------------------------------------------------------ hints (mitigation)

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
