"""Thrashing detection and mitigation for one VA space (uvm_perf_thrashing.c).

This is a model of the driver's ``perf_thrashing`` module, written from the behavioural spec and
checked against the 580.142 source (function names below are the driver's). It has three parts,
each in a module of its own on top of the per-VA-space state (``thrashing_space``; the per-page and
per-block records and hint kinds are in ``thrashing_state``):

* **Detection** (``thrashing_detect``: :meth:`ThrashingDetector.on_migration`,
  :meth:`ThrashingDetector.on_revocation`, driver ``thrashing_event_cb``): migration and
  revocation events bump a per-page counter when they come within one *lapse* of the page's
  previous event; a page whose counter reaches *threshold* is "thrashing".
* **Mitigation** (``thrashing_hint``: :meth:`ThrashingDetector.get_hint`, driver
  ``uvm_perf_thrashing_get_hint`` and ``get_hint_for_migration_thrashing``): fault handlers ask
  for a hint per page and get NONE, THROTTLE (skip / sleep until an end time) or PIN (serve from a
  fixed residency, map the others remotely).
* **Unpinning** (``thrashing_space``: :meth:`ThrashingDetector.unpin_expired`, driver
  ``thrashing_unpin_pages``): pins expire after ``pin × lapse``; the caller unmaps the remote
  mappings.

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

from uvmlab.driver.perf.thrashing_detect import ThrashingDetection
from uvmlab.driver.perf.thrashing_hint import ThrashingHints

__all__ = ["ThrashingDetector"]


class ThrashingDetector(ThrashingDetection, ThrashingHints):
    """Per-VA-space thrashing state (``va_space_thrashing_info_t`` plus its blocks).

    Parameters are the module parameters, validated like ``uvm_perf_thrashing_init``: a value outside its
    range is replaced by the default. ``can_access(p, q)``: processor ``p`` can
    map memory of processor ``q`` (``va_space->can_access``). ``fast_access(p, q)``: ``p`` is in
    the fast set of ``q`` used by ``thrashing_processors_have_fast_access_to`` (fast link *and*
    native atomics, or ``p`` is ``q``); also used as ``has_fast_link`` when picking the closest
    common location. ``has_memory(p)``: ``uvm_processor_has_memory``. ``num_processors``: the
    registered processor ids are ``0..num_processors-1``; they are the candidate common locations
    of get_hint_for_migration_thrashing case 4. ``emit(name, fields)`` receives the tools events
    ThrashingDetected, ThrottlingStart, ThrottlingEnd (GPU processors only, as in the driver; the
    CPU fault path records its own around the sleep) and the model-only event Unpin.
    """
