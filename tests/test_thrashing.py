"""ThrashingDetector (uvmlab.driver.perf.thrashing) against uvm_perf_thrashing.c / uvm_perf_thrashing.c."""

from __future__ import annotations

import numpy as np
import pytest

from uvmlab.driver.perf.thrashing import ThrashingDetector
from uvmlab.driver.perf.thrashing_state import HINT_NONE, HINT_PIN, HINT_THROTTLE, NO_HINT, Hint

US = 1_000
MS = 1_000_000
T0 = 1_000_000_000  # a multiple of 64 ns, so per-page stamps are exact
CPU, GPU = 0, 1
BOTH = 0b11
B, P = 7, 3


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def __call__(self, name: str, fields: dict) -> None:
        self.events.append((name, fields))

    def names(self) -> list[str]:
        return [n for n, _ in self.events]

    def count(self, name: str) -> int:
        return self.names().count(name)


def make(**kw) -> tuple[ThrashingDetector, Recorder]:
    rec = Recorder()
    return ThrashingDetector(**kw, emit=rec), rec


def detect(
    det: ThrashingDetector,
    t: int = T0,
    last: int = GPU,
    block: int = B,
    page: int = P,
    other: int | None = None,
) -> int:
    """The minimum sequence (``thrashing_event_cb``): 5 alternating fault migrations 100 µs apart.

    Returns the time of the last one; the page ends resident on ``last``.
    """
    other = 1 - last if other is None else other
    for i, p in enumerate([last, other, last, other, last]):
        det.on_migration(block, [page], p, "fault", t + i * 100 * US)
    return t + 400 * US


def end_of(t: int) -> int:
    """The throttling end the driver stores for a period started at t (64 ns truncation)."""
    return (t + 500 * US) & ~63


# --------------------------------------------------------------------------- detection
# (``thrashing_event_cb``)


def test_minimum_detection_sequence():
    det, rec = make()
    det.on_migration(B, [P], GPU, "fault", T0)
    assert det.block_info(B)["has_pages"] is False
    # same processor again: still no per-page array
    det.on_migration(B, [P], GPU, "fault", T0 + 50 * US)
    assert det.page_info(B, P) is None
    # a different processor within one lapse of the block's previous event: allocate
    det.on_migration(B, [P], CPU, "fault", T0 + 100 * US)
    info = det.page_info(B, P)
    assert info is not None
    assert info["num_events"] == 0  # the first stamp of the page is not an event
    assert info["processors"] == 1 << CPU  # the allocating event recorded this processor only
    counts = []
    for i, p in enumerate([GPU, CPU, GPU]):
        det.on_migration(B, [P], p, "fault", T0 + (200 + 100 * i) * US)
        counts.append(det.page_info(B, P)["num_events"])
        # ThrashingDetected exactly when the count equals the threshold
        assert rec.count("ThrashingDetected") == (1 if counts[-1] == 3 else 0)
    assert counts == [1, 2, 3]
    name, fields = rec.events[0]
    assert name == "ThrashingDetected"
    assert fields["page"] == P and fields["size"] == 4096 and fields["processors"] == BOTH
    assert det.thrashing_mask(B)[P] and det.thrashing_mask(B).sum() == 1
    assert det.counters["thrashing_events"] == 1
    assert det.block_info(B)["last_thrashing_ts"] == T0 + 400 * US
    # more events keep counting (saturating at 7) but never re-detect
    for i in range(6):
        det.on_migration(B, [P], i % 2, "fault", T0 + (500 + 100 * i) * US)
    assert det.page_info(B, P)["num_events"] == 7
    assert rec.count("ThrashingDetected") == 1


def test_no_allocation_when_other_processor_is_slower_than_a_lapse():
    det, _ = make()
    det.on_migration(B, [P], GPU, "fault", T0)
    det.on_migration(B, [P], CPU, "fault", T0 + 501 * US)
    det.on_migration(B, [P], GPU, "fault", T0 + 1002 * US)
    assert det.page_info(B, P) is None
    assert det.block_info(B)["last_processor"] == GPU


@pytest.mark.parametrize("gap_us", [501, 31_000])
def test_slow_ping_pong_never_detected(gap_us):
    """The probe's 31 ms CPU<->GPU ping-pong (and anything slower than 500 µs) is invisible."""
    det, rec = make()
    for i in range(200):
        t = T0 + i * gap_us * US
        p = GPU if i % 2 == 0 else CPU
        assert det.get_hint(B, P, p, t, closest=1 - p) is NO_HINT
        det.on_migration(B, [P], p, "fault", t + 10 * US)
    assert rec.events == []
    assert det.page_info(B, P) is None  # the per-page array was never even allocated
    assert det.counters == {"thrashing_events": 0, "throttles": 0, "pins": 0}


def test_sub_threshold_count_survives_slow_gaps():
    """thrashing_event_cb step 2.5: a gap over a lapse on a page below the threshold resets nothing."""
    det, rec = make()
    det.on_migration(B, [P], GPU, "fault", T0)
    det.on_migration(B, [P], CPU, "fault", T0 + 100 * US)  # allocate + first stamp
    det.on_migration(B, [P], GPU, "fault", T0 + 200 * US)  # 1
    det.on_migration(B, [P], CPU, "fault", T0 + 50 * MS)  # slow: no count, no reset
    assert det.page_info(B, P)["num_events"] == 1
    det.on_migration(B, [P], GPU, "fault", T0 + 50 * MS + 100 * US)  # 2
    det.on_migration(B, [P], CPU, "fault", T0 + 50 * MS + 200 * US)  # 3 -> detected
    assert rec.count("ThrashingDetected") == 1


def test_gap_after_detection_resets_page_and_drops_the_new_stamp():
    det, _ = make()
    t = detect(det)
    det.on_migration(B, [P], CPU, "fault", t + 600 * US)
    info = det.page_info(B, P)
    assert info["num_events"] == 0 and info["processors"] == 0 and info["last_ts"] is None
    assert not det.thrashing_mask(B).any()


def test_region_and_multi_page_events():
    det, rec = make()
    # a (first, last) tuple is an inclusive region
    for i, p in enumerate([GPU, CPU, GPU, CPU, GPU]):
        det.on_migration(B, (10, 25), p, "prefetch" if i % 2 else "fault", T0 + i * 100 * US)
    mask = det.thrashing_mask(B)
    assert mask[10:26].all() and mask.sum() == 16
    assert [f["page"] for n, f in rec.events] == list(range(10, 26))


def test_threshold_7_redetects_at_saturation():
    """The 3-bit counter saturates at 7, so ``== threshold`` stays true when threshold is 7."""
    det, rec = make(threshold=7)
    for i in range(11):  # GPU, CPU, GPU, ...
        det.on_migration(B, [P], GPU if i % 2 == 0 else CPU, "fault", T0 + i * 100 * US)
    # event 1 allocates and stamps, events 2..8 count 1..7, events 9 and 10 stay at 7
    assert rec.count("ThrashingDetected") == 3


# --------------------------------------------------------------------------- ignored / reset


def test_eviction_events_are_ignored():
    det, _ = make()
    t = detect(det)
    before = det.page_info(B, P), det.block_info(B)
    det.on_migration(B, [P], CPU, "eviction", t + 10 * US)
    det.on_migration(B, [P], CPU, "eviction", t + 5 * MS)
    assert (det.page_info(B, P), det.block_info(B)) == before
    # eviction on a fresh block creates nothing
    det.on_migration(99, [0], CPU, "eviction", t)
    assert det.block_info(99) is None


@pytest.mark.parametrize(
    "cause,kw",
    [
        ("user", {}),
        ("non_replayable", {}),
        ("fault", {"transfer_copy": True}),
        ("fault", {"read_dup_enabled": True}),
    ],
)
def test_non_counted_migrations_reset(cause, kw):
    det, _ = make()
    t = detect(det)
    # a second page that is below the threshold (count 1)
    det.on_migration(B, [P + 1], CPU, "fault", t + 10 * US)
    det.on_migration(B, [P + 1], GPU, "fault", t + 20 * US)
    assert det.page_info(B, P + 1)["num_events"] == 1
    det.on_migration(B, (P, P + 1), CPU, cause, t + 30 * US, **kw)
    assert det.page_info(B, P)["num_events"] == 0
    assert not det.thrashing_mask(B).any()
    assert det.get_hint(B, P, GPU, t + 40 * US, closest=CPU) is NO_HINT
    # thrashing_reset_pages_in_region only walks thrashing_pages: the sub-threshold page keeps
    # its count, and the block's last event is not updated by the reset
    assert det.page_info(B, P + 1)["num_events"] == 1
    assert det.block_info(B)["last_ts"] == t + 20 * US


def test_staged_first_hop_ignored():
    det, _ = make()
    t = detect(det)
    before = det.page_info(B, P)
    det.on_migration(B, [P], CPU, "fault", t + 10 * US, staged_first_hop=True)
    assert det.page_info(B, P) == before


def test_unknown_cause_rejected():
    det, _ = make()
    with pytest.raises(ValueError):
        det.on_migration(B, [P], GPU, "coherence", T0)


def test_disabled_always_none():
    det, rec = make(enable=0)
    detect(det)
    for i in range(20):
        t = T0 + 500 * US + i * 50 * US
        assert det.get_hint(B, P, i % 2, t, closest=CPU) is NO_HINT
    assert det.block_info(B) is None and rec.events == []
    assert not det.thrashing_mask(B).any()


def test_fast_path_is_allocation_free():
    det, _ = make()
    assert det.get_hint(123, 5, GPU, T0) is NO_HINT
    assert det.block_info(123) is None  # nothing created by asking
    det.on_migration(123, [5], GPU, "fault", T0)  # block state, but no per-page array yet
    assert det.get_hint(123, 5, CPU, T0 + 10 * US) is NO_HINT
    assert det.block_info(123)["has_pages"] is False


# --------------------------------------------------------------------------- hints
# (uvm_perf_thrashing_get_hint)


def test_section_6_7_trace():
    """GPU fault -> NONE (dnt = GPU); CPU fault in the period -> THROTTLE until t0 + 500 µs."""
    det, rec = make()
    t = detect(det, last=CPU)  # page resident on the CPU
    t0 = t + 20 * US
    h = det.get_hint(B, P, GPU, t0, closest=CPU)
    assert h is NO_HINT
    info = det.page_info(B, P)
    assert info["dnt"] == GPU and info["throttle_end"] == end_of(t0)
    assert t0 + 500 * US - 64 < info["throttle_end"] <= t0 + 500 * US
    det.on_migration(B, [P], GPU, "fault", t0 + 30 * US)  # P migrates to the GPU, count grows
    assert det.page_info(B, P)["num_events"] == 4

    h = det.get_hint(B, P, CPU, t0 + 100 * US, closest=GPU)
    assert h.kind == HINT_THROTTLE and h.end_ns == end_of(t0)
    assert det.page_info(B, P)["throttling_count"] == 1
    # a retry inside the period is throttled again but does not count again
    h = det.get_hint(B, P, CPU, t0 + 300 * US, closest=GPU)
    assert h.kind == HINT_THROTTLE
    assert det.page_info(B, P)["throttling_count"] == 1
    assert det.counters["throttles"] == 2
    # CPU throttling events are recorded by the CPU fault path around its sleep, not here
    assert rec.count("ThrottlingStart") == 0

    # the CPU wakes after the end; > 500 µs since the GPU migration -> NONE
    h = det.get_hint(B, P, CPU, t0 + 600 * US, closest=GPU)
    assert h is NO_HINT
    info = det.page_info(B, P)
    assert info["throttled"] == 0 and info["throttle_end"] is None
    # the CPU migrates P back: the gap exceeds the lapse, so P's thrashing state is reset ...
    det.on_migration(B, [P], CPU, "fault", t0 + 610 * US)
    info = det.page_info(B, P)
    assert info["num_events"] == 0 and not det.thrashing_mask(B).any()
    # ... but, as in thrashing_reset_page, throttling_count and dnt survive the reset
    assert info["throttling_count"] == 1 and info["dnt"] == GPU


def test_gpu_throttle_events():
    det, rec = make()
    t = detect(det, last=GPU)
    t0 = t + 20 * US
    assert det.get_hint(B, P, CPU, t0, closest=GPU) is NO_HINT  # dnt = CPU
    det.on_migration(B, [P], CPU, "fault", t0 + 20 * US)
    for k in range(5):  # the GPU re-faults after every replay
        h = det.get_hint(B, P, GPU, t0 + (40 + 10 * k) * US, closest=CPU)
        assert h.kind == HINT_THROTTLE and h.end_ns == end_of(t0)
    assert rec.count("ThrottlingStart") == 1
    # after the end, inside a lapse of the last event: a new period, dnt toggles to the GPU
    h = det.get_hint(B, P, GPU, end_of(t0) + 1 * US, closest=CPU)
    assert h is NO_HINT
    assert rec.names()[-2:] == ["ThrottlingStart", "ThrottlingEnd"]
    assert rec.events[-1][1]["processor"] == GPU
    assert det.page_info(B, P)["dnt"] == GPU


def test_not_thrashing_any_more_after_a_lapse():
    det, _ = make()
    t = detect(det)
    assert det.get_hint(B, P, CPU, t + 501 * US, closest=GPU) is NO_HINT
    info = det.page_info(B, P)
    assert info["num_events"] == 3 and info["dnt"] == -1  # step 5 returns before any update


def test_pin_after_pin_threshold_periods():
    """A fast ping-pong ends in PIN to the dnt processor (get_hint_for_migration_thrashing case 6)."""
    det, rec = make()
    t = detect(det, last=GPU)
    resident = GPU
    now = t + 20 * US
    next_fault = {CPU: now, GPU: now}
    hint = NO_HINT
    for _ in range(10_000):
        r = 1 - resident
        now = next_fault[r]
        before = det.page_info(B, P)
        hint = det.get_hint(B, P, r, now, closest=resident)
        after = det.page_info(B, P)
        if hint.kind == HINT_PIN:
            break
        if hint.kind == HINT_NONE:
            det.on_migration(B, [P], r, "fault", now + 40 * US)
            resident = r
            next_fault[1 - r] = now + 60 * US
        else:
            assert after["dnt"] != r  # case 5: only the non-dnt processor is throttled
            # the GPU re-faults right after the replay; the CPU sleeps until the end
            next_fault[r] = now + 5 * US if r == GPU else max(hint.end_ns, now) + 1 * US
    assert hint.kind == HINT_PIN
    assert before["throttling_count"] >= 10
    assert after["dnt"] == r and hint.residency == r  # pinned to the requester (case 6)
    assert hint.processors == BOTH
    assert after["pinned"] and after["pinned_residency"] == r and after["throttling_count"] == 0
    assert det.next_deadline() == now + 150 * MS
    assert det.counters["pins"] == 1
    # throttles count throttling *starts* (CUPTI's THROTTLING records): one per period
    # entered, however often the GPU re-faults inside it
    assert det.counters["throttles"] >= before["throttling_count"] >= 10
    assert rec.count("ThrashingDetected") >= 1


def pin_via_case6(det: ThrashingDetector, a: int, b: int, t: int = T0) -> tuple[int, int]:
    """With pin_threshold=1: ``a`` wins a period, ``b`` is throttled once, then ``b`` starts the
    next period as dnt and is pinned to itself (get_hint_for_migration_thrashing case 6). Nobody is throttled
    at the pin, so
    the new period keeps running. Returns (pin time, period end)."""
    t = detect(det, t=t, last=b, other=a)  # page resident on b
    assert det.get_hint(B, P, a, t + 20 * US, closest=b) is NO_HINT  # dnt = a
    det.on_migration(B, [P], a, "fault", t + 30 * US)
    h = det.get_hint(B, P, b, t + 40 * US, closest=a)
    assert h.kind == HINT_THROTTLE and det.page_info(B, P)["throttling_count"] == 1
    tp = h.end_ns + 1 * US  # b re-faults just after the end, within a lapse of a's migration
    h = det.get_hint(B, P, b, tp, closest=a)
    assert h.kind == HINT_PIN and h.residency == b
    info = det.page_info(B, P)
    assert info["dnt"] == b and info["throttled"] == 0
    return tp, info["throttle_end"]


def test_pin_side_effects_and_unpin():
    det, rec = make(pin_threshold=1)
    tp, end = pin_via_case6(det, CPU, GPU)
    assert end == end_of(tp)
    assert det.pinned_mask(B)[P] and det.pinned_mask(B).sum() == 1
    assert det.next_deadline() == tp + 150 * MS
    info = det.page_info(B, P)
    assert info["pinned_residency"] == GPU and info["throttling_count"] == 0
    assert det.counters["pins"] == 1

    # a fault migration into the pin residency is the pin being applied: ignored
    before = det.page_info(B, P)
    det.on_migration(B, [P], GPU, "fault", tp + 10 * US)
    assert det.page_info(B, P) == before

    # the CPU cannot map vidmem over PCIe: throttled while the GPU is dnt (get_hint_for_migration_thrashing
    # case 4) ...
    h = det.get_hint(B, P, CPU, tp + 50 * US, closest=GPU)
    assert h.kind == HINT_THROTTLE and h.end_ns == end
    assert det.page_info(B, P)["throttling_count"] == 0  # pinned pages do not count
    # ... until a new period makes it dnt: then it is re-pinned to the CPU (all can access it)
    h = det.get_hint(B, P, CPU, end + 1 * US, closest=GPU)
    assert h == (HINT_PIN, CPU, 0, BOTH)
    assert det.page_info(B, P)["pinned_residency"] == CPU
    # the GPU can map sysmem: PIN to the pinned residency (just map it)
    h = det.get_hint(B, P, GPU, end + 100 * US, closest=CPU)
    assert h.kind == HINT_PIN and h.residency == CPU
    # re-pinning does not move the deadline
    assert det.next_deadline() == tp + 150 * MS

    # the timer: nothing before the deadline (beyond the 20 µs slack), then a full reset
    assert det.unpin_expired(tp + 150 * MS - 30 * US) == []
    assert det.unpin_expired(tp + 150 * MS - 10 * US) == [(B, P, CPU)]
    assert det.next_deadline() is None
    info = det.page_info(B, P)
    assert not info["pinned"] and info["pinned_residency"] == -1
    assert info["num_events"] == 0 and info["processors"] == 0 and info["last_ts"] is None
    assert not det.thrashing_mask(B).any() and not det.pinned_mask(B).any()
    assert rec.events[-1] == (
        "Unpin",
        {
            "block": B,
            "page": P,
            "residency": CPU,
            "address": (B << 21) + P * 4096,
            "bytes": 4096,
            "time_ns": tp + 150 * MS - 10 * US,
        },
    )
    assert det.unpin_expired(tp + 10 * 150 * MS) == []


def test_first_pin_flushes_the_throttling_period():
    """thrashing_pin_page ends throttling of others; an empty set zeroes the period end, so the
    processor that was throttled starts the next period as dnt and re-pins at once."""
    det, rec = make(pin_threshold=1)
    t = detect(det, last=CPU)
    assert det.get_hint(B, P, GPU, t + 20 * US, closest=CPU) is NO_HINT  # dnt = GPU
    det.on_migration(B, [P], GPU, "fault", t + 30 * US)
    assert det.get_hint(B, P, CPU, t + 60 * US, closest=GPU).kind == HINT_THROTTLE
    h = det.get_hint(B, P, GPU, t + 100 * US, closest=GPU)  # dnt, count 1 -> PIN to the GPU
    assert h.kind == HINT_PIN and h.residency == GPU
    info = det.page_info(B, P)
    assert info["throttled"] == 0 and info["throttle_end"] is None
    h = det.get_hint(B, P, CPU, t + 150 * US, closest=GPU)
    assert h.kind == HINT_PIN and h.residency == CPU


def test_pin_forever_when_pin_is_zero():
    det, _ = make(pin_threshold=1, pin=0)
    pin_via_case6(det, CPU, GPU)
    assert det.next_deadline() is None and det.pinned_mask(B)[P]


def test_page_reset_cancels_pin():
    det, _ = make(pin_threshold=1)
    tp, _ = pin_via_case6(det, CPU, GPU)
    det.on_migration(B, [P], CPU, "user", tp + 200 * US)  # UVM_MIGRATE unpins
    assert not det.pinned_mask(B).any()
    assert det.next_deadline() is None and det.unpin_expired(tp + 10**12) == []


def test_revocation_thrashing_on_pinned_page_throttles():
    for revoke in (False, True):
        det, _ = make(pin_threshold=1)
        tp, _ = pin_via_case6(det, GPU, CPU)  # pinned on the CPU, dnt = CPU
        if revoke:
            # the first revocation is more than a lapse after the last migration: it only
            # stamps the page (a pinned page is not reset); the second one counts
            det.on_revocation(B, [P], GPU, tp + 10 * US)
            assert not det.page_info(B, P)["has_revocation"]
            det.on_revocation(B, [P], GPU, tp + 20 * US)
            assert det.page_info(B, P)["has_revocation"]
        h = det.get_hint(B, P, GPU, tp + 30 * US, closest=CPU)
        # without revocations the GPU just maps the CPU copy (case 4); with them the non-dnt
        # processor is throttled before the decision tree is consulted
        assert h.kind == (HINT_THROTTLE if revoke else HINT_PIN)


# --------------------------------------------------------------------------- preferred location


def test_case1_pin_to_preferred_when_all_can_access_it():
    det, _ = make()
    t = detect(det, last=GPU)
    # pref = CPU, procs {CPU, GPU}: everybody can map sysmem -> PIN to the CPU, for either
    h = det.get_hint(B, P, GPU, t + 20 * US, preferred=CPU, closest=GPU)
    assert h.kind == HINT_PIN and h.residency == CPU and h.processors == BOTH
    h = det.get_hint(B, P, CPU, t + 40 * US, preferred=CPU, closest=GPU)
    assert h.kind == HINT_PIN and h.residency == CPU
    assert det.counters["pins"] == 2


def _pref_gpu_period(det: ThrashingDetector) -> Hint:
    """pref = GPU, page on the GPU: the CPU wins a period, then the GPU (pref, not dnt) faults.

    The CPU cannot map vidmem (no case 1) and pref is thrashing (no case 2).
    """
    t = detect(det, last=GPU)
    assert det.get_hint(B, P, CPU, t + 20 * US, preferred=GPU, closest=GPU) is NO_HINT
    assert det.page_info(B, P)["dnt"] == CPU
    det.on_migration(B, [P], CPU, "fault", t + 30 * US)
    return det.get_hint(B, P, GPU, t + 40 * US, preferred=GPU, closest=CPU)


def test_case3_requester_is_preferred_location():
    det, _ = make()
    h = _pref_gpu_period(det)
    assert h.kind == HINT_THROTTLE  # pref != dnt
    # next period: the GPU becomes dnt, throttling_count 1 < 10 -> NONE
    assert det.get_hint(B, P, GPU, h.end_ns + 1 * US, preferred=GPU, closest=CPU) is NO_HINT
    assert det.page_info(B, P)["dnt"] == GPU


def test_case3_pin_to_preferred_after_pin_threshold():
    det, _ = make(pin_threshold=1)
    h = _pref_gpu_period(det)
    assert h.kind == HINT_THROTTLE
    h = det.get_hint(B, P, GPU, h.end_ns + 1 * US, preferred=GPU, closest=CPU)
    assert h.kind == HINT_PIN and h.residency == GPU


def test_case3_pinned_elsewhere():
    det, _ = make(pin_threshold=1)
    tp, end = pin_via_case6(det, GPU, CPU)  # pinned on the CPU (no preferred location yet)
    # the GPU becomes the preferred location and faults: pinned elsewhere, not dnt -> THROTTLE
    h = det.get_hint(B, P, GPU, tp + 20 * US, preferred=GPU, closest=CPU)
    assert h.kind == HINT_THROTTLE
    # next period (dnt toggles CPU -> GPU, the requester): PIN to pref
    h = det.get_hint(B, P, GPU, end + 1 * US, preferred=GPU, closest=CPU)
    assert h.kind == HINT_PIN and h.residency == GPU


def test_case4_common_location_for_multi_gpu():
    """Two GPUs without peer access: a page pinned on one GPU and re-pinned by the other (as
    dnt) goes to their common location, sysmem."""
    det, _ = make(pin_threshold=1, num_processors=3)
    g1, g2 = 1, 2
    tp, end = pin_via_case6(det, g1, g2)
    h = det.get_hint(B, P, g1, tp + 20 * US, closest=g2)  # g1 cannot map g2
    assert h.kind == HINT_THROTTLE
    h = det.get_hint(B, P, g1, end + 1 * US, closest=g2)
    assert h.kind == HINT_PIN and h.residency == CPU and h.processors == 0b110


# --------------------------------------------------------------------------- epoch reset


def _thrash_and_quiet(det: ThrashingDetector, t: int) -> int:
    last = detect(det, t=t)
    det.get_hint(B, P, CPU, last + 10 * US, closest=GPU)
    return last


def test_epoch_reset_and_max_resets():
    det, rec = make()
    t = T0
    for n in range(1, 5):
        last = _thrash_and_quiet(det, t)
        assert det.block_info(B)["last_thrashing_ts"] == last
        # exactly one epoch later is not "more than" an epoch
        assert det.get_hint(B, P, GPU, last + 1000 * MS, closest=CPU) is NO_HINT
        assert det.block_info(B)["has_pages"] is True
        assert det.get_hint(B, 400, GPU, last + 1000 * MS + 1, closest=CPU) is NO_HINT
        info = det.block_info(B)
        assert info["has_pages"] is False and info["reset_count"] == n
        assert info["last_ts"] is None and info["last_thrashing_ts"] is None
        assert not det.thrashing_mask(B).any()
        t = last + 2000 * MS
    # the fifth time the block keeps its per-page tracking forever
    last = _thrash_and_quiet(det, t)
    assert det.get_hint(B, P, GPU, last + 5000 * MS, closest=CPU) is NO_HINT
    info = det.block_info(B)
    assert info["has_pages"] is True and info["reset_count"] == 4
    assert det.page_info(B, P)["num_events"] == 3
    assert rec.count("ThrashingDetected") == 5


def test_epoch_reset_never_after_a_pin():
    """pinned_pages.count is never decremented in the driver: one pin blocks epoch resets."""
    det, _ = make(pin_threshold=1)
    tp, _ = pin_via_case6(det, CPU, GPU)
    assert det.unpin_expired(tp + 200 * MS) == [(B, P, GPU)]
    det.get_hint(B, P, GPU, tp + 5000 * MS, closest=CPU)
    assert det.block_info(B)["has_pages"] is True
    assert det.block_info(B)["reset_count"] == 0


def test_epoch_reset_ends_gpu_throttling():
    det, rec = make()
    t = detect(det, last=GPU)
    det.get_hint(B, P, CPU, t + 20 * US, closest=GPU)  # dnt = CPU
    det.on_migration(B, [P], CPU, "fault", t + 30 * US)
    assert det.get_hint(B, P, GPU, t + 40 * US, closest=CPU).kind == HINT_THROTTLE
    assert det.get_hint(B, 0, GPU, t + 30 * US + 1001 * MS) is NO_HINT
    assert rec.names()[-1] == "ThrottlingEnd"


# --------------------------------------------------------------------------- misc


def test_destroy_and_munmap():
    det, _ = make(pin_threshold=1)
    tp, _ = pin_via_case6(det, CPU, GPU)
    det.reset_pages(B, (0, 511))
    assert not det.pinned_mask(B).any() and det.next_deadline() is None
    detect(det, t=tp + 10 * MS)
    assert det.thrashing_mask(B)[P]
    det.destroy_block(B)
    assert det.block_info(B) is None and not det.thrashing_mask(B).any()


def test_invalid_parameters_fall_back_to_defaults():
    det = ThrashingDetector(threshold=9, pin_threshold=0, lapse_usec=0, nap=101, emit=None)
    assert det.threshold == 3 and det.pin_threshold == 10
    assert det.lapse_ns == 500 * US and det.nap_ns == 500 * US
    assert det.epoch_ns == 1000 * MS and det.pin_ns == 150 * MS


def test_masks_are_independent_copies():
    det, _ = make()
    detect(det)
    m = det.thrashing_mask(B)
    m[:] = False
    assert det.thrashing_mask(B)[P]
    empty = det.thrashing_mask(12345)
    assert isinstance(empty, np.ndarray) and empty.shape == (512,) and not empty.any()
    with pytest.raises(ValueError):
        empty[0] = True


def _random_run(seed: int) -> list:
    """A random mix of events, hints and timer runs on a few pages; returns everything seen."""
    import random

    rng = random.Random(seed)
    det, rec = make(pin_threshold=1, num_processors=3)
    t = T0
    log: list = []
    causes = ["fault", "fault", "fault", "prefetch", "access_counter", "user", "eviction"]
    for _ in range(600):
        gap_us = rng.choice([10, 20, 40, 80, 150, 300, 520]) if rng.random() < 0.98 else 1_200_000
        t += gap_us * US + rng.randrange(64)
        op = rng.random()
        blk = rng.choice([1, 1, 1, 2])
        pages = sorted(rng.sample(range(3), rng.randint(1, 3)))
        proc = rng.choice([0, 1, 0, 1, 2])
        if op < 0.45:
            det.on_migration(blk, pages, proc, rng.choice(causes), t)
        elif op < 0.55:
            det.on_revocation(blk, pages, proc, t)
        elif op < 0.95:
            h = det.get_hint(
                blk,
                pages[0],
                proc,
                t,
                preferred=rng.choice([-1, -1, -1, 0, 1]),
                closest=rng.choice([0, 1, 1 - proc if proc < 2 else 0]),
            )
            log.append(tuple(h))
        else:
            log.append(det.unpin_expired(t + rng.choice([0, 200 * MS])))
        log.append([det.page_info(b, p) for b in (1, 2) for p in range(6)])
    log.append(rec.events)
    log.append(det.counters)
    return log


@pytest.mark.parametrize("seed", range(6))
def test_scalar_and_vector_paths_agree(seed, monkeypatch):
    import uvmlab.driver.perf.thrashing_state as thr_state

    scalar = _random_run(seed)
    monkeypatch.setattr(thr_state, "SCALAR_PAGES_MAX", 0)
    vector = _random_run(seed)
    assert scalar == vector
    # the runs are not trivial
    counters = scalar[-1]
    assert counters["thrashing_events"] and counters["throttles"] and counters["pins"]
