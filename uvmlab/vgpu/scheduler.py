"""Time sharing of one GPU by several tenants: NVIDIA vGPU's three schedulers, modelled.

A tenant is a sequential program (its operations in order, one stream, like a single run).
Operations that need no GPU engine run on the tenant's own CPU at once; GPU kernels go to the
tenant's own queue and run only while the scheduler gives the tenant the GPU, one time slice at
a time. A kernel's GPU demand is what the model says it costs when it runs, *including the time
its warps wait for their faults to be serviced*: a tenant's faults stall its own slices, never
another tenant's (per-tenant queues, issue 18 item 3). Switching the GPU from one tenant to
another costs ``context_switch_ns`` of idle GPU. Prefetches and other copies that run outside
kernels go through the copy engines, which all tenants share: one copy at a time.

Schedulers (NVIDIA vGPU knowledge base, *vGPU Schedulers*; NVIDIA AI Enterprise docs,
*Scheduling Policies*):

* ``best-effort`` -- round robin over the tenants *with work*; a tenant with an empty queue is
  skipped, so one tenant alone gets the whole GPU (work conserving);
* ``equal-share`` -- round robin over the *running* tenants (arrived, not finished), each slot
  one time slice; a slot whose tenant has no work stays idle, so each gets at most 1/N;
* ``fixed-share`` -- like equal share, but the round has one slot per instance the vGPU type
  allows (``max_instances``), whether or not those instances exist: a tenant gets at most
  ``share`` of the GPU even when it is alone.

How a kernel's fault service shares the GPU (``fault_service``):

* ``slice`` -- the kernel holds its tenant's slices for its compute *and* its fault stalls: a
  tenant's faults are serviced only in its own slices, one batch stream per tenant;
* ``shared`` -- what nvidia-uvm does: a GPU has *one* replayable fault buffer, drained by one
  bottom half that fetches faults of every VA space into the same batch, sorts the batch by VA
  space and services each VA space's faults in turn, then replays once for the whole batch
  (uvm_gpu_replayable_faults.c: ``fetch_fault_buffer_entries``,
  ``cmp_sort_fault_entry_by_va_space_gpu_address_access_type``, ``service_fault_batch``,
  ``push_replay_on_gpu``). A kernel alternates compute (in its tenant's slices) and fault
  service (on that one servicer, off the GPU: the other tenants run meanwhile), one round per
  fault batch it had; the servicer serves one batch at a time, and requests that arrive while
  it is busy join the next batch, which pays the per-batch cost (``fault_batch_ns`` +
  ``replay_ns`` of the profile) once for all of them;
* ``overlap`` -- a bracketing bound (not the driver's behaviour): the stalls wait off the GPU
  with no servicer limit, as if every tenant had a bottom half of its own.

Memory effects are applied at a kernel's first slice (the model runs the kernel then, at that
simulated time): interleaving between tenants is exact at kernel boundaries and approximate
within a kernel that spans several slices (documented in docs/vgpu.md).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from uvmlab.core.errors import UvmlabError

FAULT_SERVICES = ("slice", "shared", "overlap")


class SchedulerMode(StrEnum):
    BEST_EFFORT = "best-effort"
    EQUAL_SHARE = "equal-share"
    FIXED_SHARE = "fixed-share"


def parse_mode(text: str) -> SchedulerMode:
    try:
        return SchedulerMode(text.strip().lower().replace("_", "-"))
    except ValueError:
        raise UvmlabError(
            f"unknown vGPU scheduler {text!r} (known: {', '.join(m.value for m in SchedulerMode)})"
        ) from None


#: kinds of operation as the scheduler sees them
GPU, CPU, COPY = "gpu", "cpu", "copy"


@dataclass
class OpRecord:
    """One operation of one tenant on the shared GPU's timeline (ns)."""

    tenant: int
    index: int
    name: str
    kind: str
    ready_ns: float  # when the tenant issued it
    start_ns: float  # first slice (GPU), or when it began (CPU / copy)
    end_ns: float
    demand_ns: float  # the model's time for it when it runs (GPU: slice time it needs)
    slices: int = 0


class TenantProgram:
    """What the scheduler needs of a tenant: its next operation, and running it in the model.

    ``kind(k)`` says what op ``k`` needs (GPU, CPU or COPY); ``execute(k, now_ns)`` runs it in the
    model at simulated time ``now_ns`` and returns its demand (ns). ``host_gap_ns`` is the host
    time between two operations (the application's own work, measured on a real run).
    """

    def __init__(
        self,
        n_ops: int,
        kind: Callable[[int], str],
        execute: Callable[[int, float], float],
        name: Callable[[int], str],
        arrival_ns: float = 0.0,
        host_gap_ns: float = 0.0,
        hold: Callable[[int], float] | None = None,
        batches: Callable[[int], int] | None = None,
        batch_overhead_ns: float = 0.0,
    ) -> None:
        self.n_ops = n_ops
        self.kind = kind
        self.execute = execute
        self.name = name
        # the part of a kernel's demand that needs the GPU itself (its compute time); the rest
        # is waiting for fault service (``shared`` and ``overlap`` fault service use it)
        self.hold = hold or (lambda k: float("inf"))
        # fault batches the last ``execute(k)`` serviced, and what one batch costs beyond its
        # faults (shared fault service: merged batches pay it once)
        self.batches = batches or (lambda k: 1)
        self.batch_overhead_ns = batch_overhead_ns
        self.arrival_ns = arrival_ns
        self.host_gap_ns = host_gap_ns


@dataclass
class TenantSched:
    """Per-tenant scheduling settings: time slice and, for fixed share, the slots it owns."""

    timeslice_ns: float = 2_000_000.0
    share: float = 1.0  # fixed share: fraction of the round (1 / max_instances of its type)


@dataclass
class _State:
    next_op: int = 0
    queued: int = -1  # op index waiting for or running on the GPU, -1 none
    ready_ns: float = 0.0
    remaining: float = 0.0
    stall: float = 0.0
    pieces: int = 0  # shared fault service: compute / service rounds left after this one
    piece_gpu: float = 0.0
    piece_srv: float = 0.0
    waiting: bool = False  # shared fault service: its faults are with the servicer
    finishing: bool = False  # ... and that was the kernel's last round
    started: bool = False
    record: OpRecord | None = None
    done: bool = False


@dataclass
class Timeline:
    records: list[OpRecord] = field(default_factory=list)
    switches: int = 0
    gpu_busy_ns: float = 0.0
    end_ns: float = 0.0
    finish_ns: list[float] = field(default_factory=list)
    service_busy_ns: float = 0.0  # shared fault service: the servicer's busy time
    merged_requests: int = 0  # ... and the rounds that joined another tenant's batch


class GpuTimeSlicer:
    """Runs tenant programs on one GPU under a scheduler mode; returns the timeline."""

    def __init__(
        self,
        mode: SchedulerMode,
        tenants: list[TenantProgram],
        sched: list[TenantSched],
        context_switch_ns: float,
        progress: Callable[[int, int], None] | None = None,
        fault_overlap: bool = False,
        fault_service: str = "slice",
    ) -> None:
        if len(tenants) != len(sched):
            raise ValueError("one TenantSched per tenant")
        self.mode = mode
        self.tenants = tenants
        self.sched = sched
        self.cs = float(context_switch_ns)
        self.progress = progress
        if fault_service not in FAULT_SERVICES:
            raise ValueError(f"fault_service must be one of {FAULT_SERVICES}")
        self.fault_service = "overlap" if fault_overlap else fault_service
        self.fault_overlap = self.fault_service == "overlap"
        # the shared servicer: the batch being served or queued, its members
        self._batch_start = self._batch_end = 0.0
        self._batch_members: list[int] = []
        self.service_busy_ns = 0.0
        self.merged_requests = 0

    # ---- the loop ---------------------------------------------------------------------------------
    def run(self) -> Timeline:
        n = len(self.tenants)
        st = [_State(ready_ns=t.arrival_ns) for t in self.tenants]
        tl = Timeline(finish_ns=[0.0] * n)
        events: list[tuple[float, int]] = [(t.arrival_ns, i) for i, t in enumerate(self.tenants)]
        heapq.heapify(events)
        ce_free = 0.0
        now = 0.0
        last = -1  # tenant whose context is on the GPU
        rr = -1  # round-robin position (tenant index, or slot for fixed share)
        total_ops = sum(t.n_ops for t in self.tenants)
        done_ops = 0
        slots = self._slots()
        while True:
            # 1. every tenant whose next op is due by `now` issues it
            while events and events[0][0] <= now:
                t_ready, i = heapq.heappop(events)
                s, prog = st[i], self.tenants[i]
                if s.next_op >= prog.n_ops:
                    s.done = True
                    tl.finish_ns[i] = t_ready
                    continue
                k = s.next_op
                kind = prog.kind(k)
                if kind == GPU:
                    s.queued, s.ready_ns, s.started, s.remaining = k, t_ready, False, 0.0
                    continue
                start = max(t_ready, ce_free) if kind == COPY else t_ready
                d = float(prog.execute(k, start))
                if kind == COPY:
                    ce_free = start + d
                tl.records.append(OpRecord(i, k, prog.name(k), kind, t_ready, start, start + d, d))
                s.next_op += 1
                done_ops += 1
                heapq.heappush(events, (start + d + prog.host_gap_ns, i))
            if all(s.done for s in st) and not events:
                break
            # 1b. shared fault service: kernels whose faults were serviced go on (or end)
            for j, sj in enumerate(st):
                if sj.waiting and sj.ready_ns <= now:
                    sj.waiting = False
                    if sj.finishing:
                        sj.finishing = False
                        self._finish_kernel(tl, st, j, sj.ready_ns, 0.0, events)
                        done_ops += 1
            if all(s.done for s in st) and not events and not any(s.waiting for s in st):
                break
            # 2. the GPU: pick the tenant for the next slot
            i, pos, slot_len = self._pick(st, slots, rr, now)
            if i < 0:
                if slot_len > 0:  # equal / fixed share: an idle slot, the GPU waits it out
                    rr = pos
                    now += slot_len
                    continue
                wake = [sj.ready_ns for sj in st if sj.waiting]
                if not events and not wake:
                    break
                # best effort: nothing to run until an op is due or a fault batch is serviced
                now = max(now, min(wake + ([events[0][0]] if events else [])))
                continue
            rr = pos
            s, prog = st[i], self.tenants[i]
            if last != i:
                if last >= 0:
                    now += self.cs
                    tl.switches += 1
                last = i
            if not s.started:
                d = float(prog.execute(s.queued, now))
                hold = d if self.fault_service == "slice" else min(d, float(prog.hold(s.queued)))
                s.started, s.remaining, s.stall = True, hold, d - hold
                s.record = OpRecord(i, s.queued, prog.name(s.queued), GPU, s.ready_ns, now, now, d)
                if self.fault_service == "shared" and s.stall > 0:
                    n_pieces = max(1, int(prog.batches(s.queued)))
                    s.piece_gpu, s.piece_srv = hold / n_pieces, s.stall / n_pieces
                    s.pieces, s.remaining = n_pieces - 1, hold / n_pieces
            run = min(s.remaining, slot_len)
            now += run
            tl.gpu_busy_ns += run
            s.remaining -= run
            s.record.slices += 1
            if s.remaining <= 1e-9 and self.fault_service == "shared" and s.stall > 0:
                # this round's faults go to the one servicer; the GPU goes to the others
                self._request_service(st, i, now, s.piece_srv, prog.batch_overhead_ns)
                s.waiting, s.finishing = True, s.pieces == 0
                s.pieces -= 1
                s.remaining = s.piece_gpu
                continue
            if s.remaining <= 1e-9:
                # with overlapped fault service the kernel's stalls come after its GPU time, off
                # the GPU: the tenant waits, the others may run
                self._finish_kernel(tl, st, i, now, s.stall, events)
                done_ops += 1
                if self.progress is not None:
                    self.progress(done_ops, total_ops)
        tl.end_ns = now if not tl.finish_ns else max(max(tl.finish_ns), now)
        tl.service_busy_ns, tl.merged_requests = self.service_busy_ns, self.merged_requests
        return tl

    def _finish_kernel(
        self, tl: Timeline, st: list[_State], i: int, end: float, stall: float, events: list
    ) -> None:
        s = st[i]
        assert s.record is not None
        s.record.end_ns = end + stall
        tl.records.append(s.record)
        s.record, s.queued = None, -1
        s.next_op += 1
        heapq.heappush(events, (end + stall + self.tenants[i].host_gap_ns, i))

    def _request_service(self, st: list[_State], i: int, now: float, cost: float, overhead: float) -> None:
        """Hand tenant ``i``'s faults of one round to the GPU's one fault servicer."""
        if now < self._batch_start and i not in self._batch_members:
            # the next batch has not been fetched yet: these faults join it, and the batch's
            # own cost (fetch, replay) is paid once
            extra = max(0.0, cost - overhead)
            self._batch_end += extra
            self._batch_members.append(i)
            self.merged_requests += 1
            for j in self._batch_members:
                st[j].ready_ns = self._batch_end
        else:
            start = max(now, self._batch_end)
            self._batch_start, self._batch_end = start, start + cost
            self._batch_members = [i]
            extra = cost
        self.service_busy_ns += extra
        st[i].ready_ns = self._batch_end

    # ---- slot choice ------------------------------------------------------------------------------
    def _slots(self) -> list[int]:
        """The round: tenant per slot (-1: a slot of an instance that does not exist)."""
        n = len(self.tenants)
        if self.mode != SchedulerMode.FIXED_SHARE:
            return list(range(n))
        out: list[int] = []
        for i, sc in enumerate(self.sched):
            out += [i] * max(1, round(sc.share * self._round_slots()))
        out += [-1] * max(0, self._round_slots() - len(out))
        return out

    def _round_slots(self) -> int:
        return max(1, round(1.0 / min(sc.share for sc in self.sched)))

    def _has_work(self, s: _State, now: float) -> bool:
        return s.queued >= 0 and s.ready_ns <= now and not s.waiting

    def _pick(self, st: list[_State], slots: list[int], rr: int, now: float) -> tuple[int, int, float]:
        """(tenant, its round position, slice length); tenant -1 with a length > 0 is an idle
        slot, -1 with length 0 means nothing can run before the next event."""
        n = len(slots)
        if self.mode == SchedulerMode.BEST_EFFORT:
            for step in range(1, n + 1):
                i = (rr + step) % n
                if self._has_work(st[i], now):
                    return i, i, self.sched[i].timeslice_ns
            return -1, rr, 0.0
        live = [not s.done and self.tenants[i].arrival_ns <= now for i, s in enumerate(st)]
        if not any(live):
            return -1, rr, 0.0
        for step in range(1, n + 1):
            pos = (rr + step) % n
            i = slots[pos]
            if i >= 0 and not live[i]:
                if self.mode == SchedulerMode.EQUAL_SHARE:
                    continue  # equal share divides the GPU among the tenants running now
                i = -1  # fixed share: the slot stays reserved for its instance, idle
            ts = self.sched[i if i >= 0 else 0].timeslice_ns
            if i >= 0 and self._has_work(st[i], now):
                return i, pos, ts
            return -1, pos, ts  # its owner has nothing queued (or no instance): idle
        return -1, rr, 0.0
