"""The time slicer on synthetic tenants (fixed demands): shares, idle slots, switches."""

from __future__ import annotations

import pytest

from uvmlab.vgpu.scheduler import (
    COPY,
    CPU,
    GPU,
    GpuTimeSlicer,
    SchedulerMode,
    TenantProgram,
    TenantSched,
)

MS = 1e6


def prog(n, demand, kind=GPU, arrival=0.0, gap=0.0):
    return TenantProgram(
        n, lambda k: kind, lambda k, now: demand, lambda k: f"op{k}", arrival_ns=arrival, host_gap_ns=gap
    )


def run(mode, progs, ts=2 * MS, share=None, cs=0.0):
    sc = [TenantSched(ts, share if share is not None else 1 / len(progs)) for _ in progs]
    return GpuTimeSlicer(mode, progs, sc, cs).run()


@pytest.mark.parametrize("mode", list(SchedulerMode)[:2])
def test_gpu_bound_tenants_split_the_gpu_evenly(mode):
    tl = run(mode, [prog(10, 5 * MS) for _ in range(4)])
    # 200 ms of work in all; every tenant finishes near the end, none before 3/4 of it
    assert tl.end_ns == pytest.approx(200 * MS, rel=1e-6)
    assert min(tl.finish_ns) > 0.9 * 200 * MS
    assert tl.gpu_busy_ns == pytest.approx(200 * MS)


def test_best_effort_gives_a_lone_tenant_the_whole_gpu_and_equal_share_does_not():
    busy = prog(10, 5 * MS)
    cpu_only = prog(1, 100 * MS, kind=CPU)
    be = run(SchedulerMode.BEST_EFFORT, [busy, cpu_only])
    eq = run(SchedulerMode.EQUAL_SHARE, [busy, cpu_only])
    assert be.finish_ns[0] == pytest.approx(50 * MS)
    assert eq.finish_ns[0] >= 2 * 50 * MS * 0.95  # at most half the GPU while the other runs


def test_fixed_share_caps_a_tenant_even_alone():
    tl = run(SchedulerMode.FIXED_SHARE, [prog(10, 5 * MS)], share=0.25)
    assert tl.finish_ns[0] >= 4 * 50 * MS * 0.9
    free = run(SchedulerMode.BEST_EFFORT, [prog(10, 5 * MS)])
    assert free.finish_ns[0] == pytest.approx(50 * MS)


def test_context_switch_cost_is_paid_per_switch():
    a = run(SchedulerMode.BEST_EFFORT, [prog(4, 5 * MS), prog(4, 5 * MS)], cs=0.0)
    b = run(SchedulerMode.BEST_EFFORT, [prog(4, 5 * MS), prog(4, 5 * MS)], cs=100e3)
    assert b.switches == a.switches > 0
    assert b.end_ns - a.end_ns == pytest.approx(b.switches * 100e3)


def test_long_kernels_are_sliced_and_short_ones_are_not():
    tl = run(SchedulerMode.BEST_EFFORT, [prog(1, 9 * MS), prog(1, 9 * MS)])
    assert all(r.slices == 5 for r in tl.records)  # 2+2+2+2+1 ms
    tl = run(SchedulerMode.BEST_EFFORT, [prog(3, 1 * MS), prog(3, 1 * MS)])
    assert all(r.slices == 1 for r in tl.records)


def test_copies_share_one_copy_engine():
    tl = run(SchedulerMode.BEST_EFFORT, [prog(1, 10 * MS, kind=COPY), prog(1, 10 * MS, kind=COPY)])
    a, b = sorted(tl.records, key=lambda r: r.start_ns)
    assert b.start_ns >= a.end_ns  # the second copy waits for the first
    tl = run(SchedulerMode.BEST_EFFORT, [prog(1, 10 * MS, kind=CPU), prog(1, 10 * MS, kind=CPU)])
    assert all(r.start_ns == 0 for r in tl.records)  # CPU phases run side by side


def test_arrival_and_host_gaps():
    tl = run(SchedulerMode.BEST_EFFORT, [prog(2, 1 * MS, arrival=5 * MS, gap=3 * MS)])
    r0, r1 = tl.records
    assert r0.start_ns == 5 * MS and r1.ready_ns == pytest.approx(r0.end_ns + 3 * MS)
    assert tl.finish_ns[0] == pytest.approx(r1.end_ns + 3 * MS)


def test_latency_counts_waiting_for_the_gpu():
    tl = run(SchedulerMode.BEST_EFFORT, [prog(1, 10 * MS), prog(1, 1 * MS)])
    short = next(r for r in tl.records if r.tenant == 1)
    assert short.end_ns - short.ready_ns > 2 * MS  # it waited for the other's first slice
    assert short.demand_ns == 1 * MS


def test_fixed_share_keeps_a_finished_tenants_slots_idle():
    """Fixed share is a reservation: a busy tenant never gets more than its share, whether its
    neighbours are busy, idle or gone; so co-located it is never faster than alone."""
    alone = run(SchedulerMode.FIXED_SHARE, [prog(10, 5 * MS)], share=0.25)
    shared = run(SchedulerMode.FIXED_SHARE, [prog(10, 5 * MS)] + [prog(1, 1 * MS)] * 3, share=0.25)
    assert shared.finish_ns[0] >= alone.finish_ns[0] * 0.95  # slot phase moves it a little


def fprog(n, demand, hold, batches, overhead=0.0, gap=0.0):
    """A tenant whose kernels stall ``demand - hold`` on faults, in ``batches`` fault batches."""
    return TenantProgram(
        n,
        lambda k: GPU,
        lambda k, now: demand,
        lambda k: f"op{k}",
        host_gap_ns=gap,
        hold=lambda k: hold,
        batches=lambda k: batches,
        batch_overhead_ns=overhead,
    )


def frun(service, progs, ts=2 * MS):
    sc = [TenantSched(ts, 1 / len(progs)) for _ in progs]
    return GpuTimeSlicer(SchedulerMode.BEST_EFFORT, progs, sc, 0.0, fault_service=service).run()


@pytest.mark.parametrize("service", ["slice", "shared", "overlap"])
def test_a_lone_tenant_takes_the_same_time_whatever_the_fault_service(service):
    tl = frun(service, [fprog(5, 10 * MS, 2 * MS, 4, overhead=0.5 * MS)])
    assert tl.finish_ns[0] == pytest.approx(50 * MS)
    assert tl.gpu_busy_ns == pytest.approx(50 * MS if service == "slice" else 10 * MS)


def test_shared_fault_service_one_servicer_for_every_tenant():
    """Stall-bound tenants: in their own slices the stalls add up on the GPU; with one shared
    servicer they add up there instead, minus the batch cost of the rounds that joined another
    tenant's batch; with no servicer limit (overlap) they do not add up at all."""
    n, d, h, b, o = 4, 10 * MS, 1 * MS, 3, 0.5 * MS
    slice_ = frun("slice", [fprog(n, d, h, b, o) for _ in range(4)])
    shared = frun("shared", [fprog(n, d, h, b, o) for _ in range(4)])
    over = frun("overlap", [fprog(n, d, h, b, o) for _ in range(4)])
    assert slice_.end_ns == pytest.approx(4 * n * d)  # all of it on the GPU, in turn
    assert over.end_ns < shared.end_ns < slice_.end_ns
    stall = 4 * n * (d - h)
    assert shared.merged_requests > 0
    # the servicer does every stall but the merged rounds' batch cost, and nothing runs faster
    assert shared.service_busy_ns == pytest.approx(stall - shared.merged_requests * o)
    assert shared.end_ns >= shared.service_busy_ns
    for tl in (slice_, shared, over):
        assert len(tl.records) == 4 * n and all(r.end_ns >= r.start_ns for r in tl.records)
