"""Running a scenario: tenants' memory on one GPU, their time on it, and what each one got.

Per tenant, one modelled process per repetition of its workload (``Engine``, its own VA space
and driver counters); the memory they share depends on the scenario's mode:

* ``partition``: each tenant's own PMM, its vGPU type's framebuffer (or its quota) -- nothing of
  one tenant can evict another's;
* ``quota``: one PMM for all (``driver.pmm_share.PmmShare``); a tenant whose allocations exceed
  its quota is refused at allocation, out of memory, and runs nothing (HAMi's behaviour:
  cuMemAllocManaged returns CUDA_ERROR_OUT_OF_MEMORY past the limit);
* ``shared``: one PMM for all, no quota: under oversubscription UVM evicts whichever tenant's
  chunk the lists (or a policy) pick.

Time: ``scheduler.GpuTimeSlicer``. vGPU tenants get an instance of their type through the
modelled mdev control plane (``host.VgpuHost``): created by UUID before the run, opened while it
runs, closed and removed after, so a scenario asking for more instances than the type allows
fails the way the host would (``EUSERS``).
"""

from __future__ import annotations

import contextlib
import re
import uuid as _uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uvmlab.driver.hal import get_gpu
from uvmlab.driver.params import Params
from uvmlab.driver.pmm import ROOT_CHUNK_SIZE
from uvmlab.driver.pmm_share import PmmShare
from uvmlab.engine.core import DEFAULT_CONCURRENCY, Engine
from uvmlab.policy.loader import build_hooks, load_policies
from uvmlab.timing.cost_model import load_profile, profile_for_gpu
from uvmlab.vgpu.host import VgpuHost
from uvmlab.vgpu.mdev import MdevError
from uvmlab.vgpu.scenario import Scenario, ScenarioError, TenantSpec
from uvmlab.vgpu.scheduler import COPY, CPU, GPU, GpuTimeSlicer, OpRecord, TenantProgram, TenantSched
from uvmlab.vgpu.types import VgpuType, find_type
from uvmlab.workload.ir import AllocKind, KernelOp, PrefetchOp, Workload

DEFAULT_TIMESLICE_NS = 2_000_000.0


@dataclass
class TenantOutcome:
    """Everything measured for one tenant in one run (alone or co-located)."""

    name: str
    records: list[OpRecord] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    fatal: str | None = None
    max_held_bytes: int = 0
    quota_bytes: int | None = None
    engines: list[Engine] = field(default_factory=list)
    uuid: str | None = None
    vgpu_type: str | None = None


class _TenantProc:
    """One tenant as the time slicer sees it: its workload repeated, one engine per repetition."""

    def __init__(
        self,
        spec: TenantSpec,
        w: Workload,
        make_engine: Callable[[int], Engine],
        out: TenantOutcome,
        refused: str | None,
    ) -> None:
        self.spec = spec
        self.w = w
        self.n = len(w.ops)
        self.make_engine = make_engine
        self.out = out
        self.eng: Engine | None = None
        self.last_batches = 0  # fault batches the last executed op serviced
        self.dead = refused is not None
        if refused:
            out.fatal = refused

    def kind(self, k: int) -> str:
        if self.dead:
            return CPU
        op = self.w.ops[k % self.n]
        return GPU if isinstance(op, KernelOp) else COPY if isinstance(op, PrefetchOp) else CPU

    def name(self, k: int) -> str:
        op = self.w.ops[k % self.n]
        rep = f"r{k // self.n}." if self.spec.repeat > 1 else ""
        return rep + str(getattr(op, "name", op.op))

    def execute(self, k: int, now: float) -> float:
        if self.dead:
            return 0.0
        rep, j = divmod(k, self.n)
        if j == 0:
            self.eng = self.make_engine(rep)
            self.out.engines.append(self.eng)
            self.eng.clock = now
            if not self.eng.start():
                return self._die()
        eng = self.eng
        eng.clock = now
        before = int(eng.drv.counters.get("fault_batches", 0))
        eng.step(j)
        self.last_batches = int(eng.drv.counters.get("fault_batches", 0)) - before
        held = int(np.count_nonzero(eng.drv.va.gpu_chunk[0] >= 0)) * ROOT_CHUNK_SIZE
        self.out.max_held_bytes = max(self.out.max_held_bytes, held)
        if eng.fatal is not None:
            d = eng.clock - now
            self._die()
            return d
        if j == self.n - 1:  # the process ends: its memory goes back to the GPU
            for a in range(len(self.w.allocs)):
                if eng.drv.va.alloc_live[a]:
                    eng._free(a)
            eng.clock += eng.drv.take_work()
            eng.finish()
        return eng.clock - now

    def _die(self) -> float:
        self.dead = True
        eng = self.eng
        if eng is not None:
            self.out.fatal = eng.fatal["reason"] if eng.fatal else "failed"
            for a in range(len(self.w.allocs)):
                if eng.drv.va.alloc_live[a]:
                    eng._free(a)
            eng.drv.take_work()
            eng.finish()
        return 0.0


def _uuid_for(sc: Scenario, t: TenantSpec) -> str:
    # deterministic: the same scenario creates the same instances (same seed, same result)
    return str(_uuid.uuid5(_uuid.NAMESPACE_URL, f"uvmlab-vgpu/{sc.name}/{t.name}"))


def _footprint(w: Workload) -> int:
    """Bytes of GPU memory the workload can ever hold: managed and device allocations, in
    whole root chunks (a block of a managed allocation takes a root chunk)."""
    return sum(
        -(-a.bytes // ROOT_CHUNK_SIZE) * ROOT_CHUNK_SIZE
        for a in w.allocs
        if a.kind in (AllocKind.MANAGED, AllocKind.DEVICE)
    )


@dataclass
class ScenarioRun:
    """The raw outcome of one scenario run: the timeline and each tenant's outcome."""

    scenario: Scenario
    outcomes: list[TenantOutcome]
    timeline: Any
    evicted: dict[tuple[str, str], list[int]]
    capacity_bytes: int
    context_switch_ns: float
    tenant_sched: list[TenantSched]


def run_tenants(
    sc: Scenario,
    workloads: list[Workload],
    *,
    check: bool = False,
    events: bool = False,
    fast_path: bool = True,
    fault_overlap: bool = False,
    fault_service: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScenarioRun:
    """Run the scenario's tenants together (``workloads[i]`` is tenant i's, built)."""
    gpu = get_gpu(sc.gpu)
    params = Params.from_overrides({})
    profile = load_profile(profile_for_gpu(gpu.name))
    capacity = sc.memory_bytes or gpu.n_root_chunks * gpu.root_chunk_size
    types: list[VgpuType | None] = [
        find_type(sc.gpu, t.vgpu_type) if t.vgpu_type else None for t in sc.tenants
    ]
    # A vGPU's framebuffer is its type's, capped at 1 / max_instances of what UVM can use on
    # the modelled GPU: the tables' sizes are nominal (an "80 GB" H100 reports 81 559 MiB and
    # RM keeps part of it), yet max_instances of a type always fit one GPU.
    quotas = [
        t.quota_bytes
        if t.quota_bytes is not None
        else (
            min(ty.framebuffer_bytes, capacity // ty.max_instances // ROOT_CHUNK_SIZE * ROOT_CHUNK_SIZE)
            if ty is not None
            else None
        )
        for t, ty in zip(sc.tenants, types, strict=True)
    ]
    for t in sc.tenants:  # a bad policy spec fails before anything runs
        spec = "+".join(p for p in (sc.policy, t.policy) if p)
        if spec:
            load_policies(spec)
    host = None
    if any(types):
        host = VgpuHost(sc.gpu)
    outcomes = [TenantOutcome(t.name, quota_bytes=q) for t, q in zip(sc.tenants, quotas, strict=True)]
    procs: list[TenantProgram] = []
    sched: list[TenantSched] = []
    stack = contextlib.ExitStack()  # the policy guards' watchdogs, armed while the run lasts
    try:
        # the administrator creates every instance first (a type's limit fails here: EUSERS)
        for i, t in enumerate(sc.tenants):
            if host is not None and types[i] is not None:
                try:
                    outcomes[i].uuid = host.create(types[i].name, _uuid_for(sc, t))
                    host.mdev.open(outcomes[i].uuid)
                except MdevError as e:
                    raise ScenarioError(
                        f"{sc.source}: tenant {t.name!r}: vGPU {types[i].name}: {e}"
                    ) from None
                outcomes[i].vgpu_type = types[i].name
        share = None
        if sc.mode == "partition":
            total = sum(q for q in quotas if q is not None)
            if total > capacity:
                raise ScenarioError(
                    f"{sc.source}: partitions add up to {total} B, more than the {capacity} B of GPU memory"
                )
        else:
            share = PmmShare(capacity, tuple(t.name for t in sc.tenants))

        for i, t in enumerate(sc.tenants):
            w = workloads[i]
            refused = None
            if sc.mode == "quota" and quotas[i] is not None and _footprint(w) > quotas[i]:
                refused = f"out of memory: allocations of {_footprint(w)} B exceed the quota of {quotas[i]} B"
            hooks_spec = "+".join(p for p in (sc.policy, t.policy) if p)
            procs.append(
                _program(
                    t,
                    w,
                    outcomes[i],
                    refused,
                    gpu,
                    params,
                    profile,
                    share,
                    quotas[i] if sc.mode == "partition" else None,
                    capacity,
                    hooks_spec,
                    check,
                    events,
                    fast_path,
                    stack,
                )
            )
            ts = sc.timeslice_ns or (types[i].default_timeslice_ns if types[i] else DEFAULT_TIMESLICE_NS)
            frac = t.share or (types[i].fixed_share if types[i] else 1.0 / len(sc.tenants))
            sched.append(TenantSched(timeslice_ns=ts, share=frac))
        cs = sc.context_switch_ns if sc.context_switch_ns is not None else gpu.context_switch_ns
        service = "overlap" if fault_overlap or sc.fault_overlap else fault_service or sc.fault_service
        slicer = GpuTimeSlicer(sc.scheduler, procs, sched, cs, progress=progress, fault_service=service)
        tl = slicer.run()
    finally:
        stack.close()
        if host is not None:
            for o in outcomes:
                if o.uuid:
                    if host.mdev.devices.get(o.uuid) and host.mdev.devices[o.uuid].opened:
                        host.mdev.close(o.uuid)
                    host.remove(o.uuid)
    for i, o in enumerate(outcomes):
        o.records = [r for r in tl.records if r.tenant == i]
        tot: dict[str, int] = {}
        for eng in o.engines:
            for k, v in eng.drv.counters.items():
                tot[k] = tot.get(k, 0) + int(v)
        o.counters = tot
    if share is not None:
        evicted = {k: list(v) for k, v in share.evicted.items()}
    else:  # own PMMs: every eviction is the tenant's own
        evicted = {
            (o.name, o.name): [o.counters.get("evictions", 0), o.counters.get("bytes_dtoh_eviction", 0)]
            for o in outcomes
            if o.counters.get("evictions", 0)
        }
    return ScenarioRun(sc, outcomes, tl, evicted, capacity, cs, sched)


def _program(
    t: TenantSpec,
    w: Workload,
    out: TenantOutcome,
    refused: str | None,
    gpu,
    params,
    profile,
    share: PmmShare | None,
    own_bytes: int | None,
    capacity: int,
    hooks_spec: str,
    check: bool,
    events: bool,
    fast_path: bool,
    stack: contextlib.ExitStack,
) -> TenantProgram:
    def make_engine(rep: int) -> Engine:
        hooks = None
        if hooks_spec:
            hooks = build_hooks(hooks_spec)
            if not hooks.slots:
                hooks = None
            else:
                stack.enter_context(hooks.session())
        return Engine(
            w,
            gpu=gpu,
            params=params,
            profile=profile,
            gpu_memory_bytes=own_bytes or capacity,
            concurrency=DEFAULT_CONCURRENCY,
            events=events,
            check=check,
            hooks=hooks,
            fast_path=fast_path,
            share=share,
            tenant=t.name,
        )

    proc = _TenantProc(t, w, make_engine, out, refused)
    return TenantProgram(
        n_ops=len(w.ops) * t.repeat,
        kind=proc.kind,
        execute=proc.execute,
        name=proc.name,
        arrival_ns=t.arrival_ns,
        host_gap_ns=t.host_gap_ns,
        hold=lambda k: float(getattr(w.ops[k % len(w.ops)], "compute_ns", 0)),
        batches=lambda k: proc.last_batches,
        batch_overhead_ns=float(profile.fault_batch_ns + profile.replay_ns),
    )


def unit_latencies(records: list[OpRecord], pattern: str | None) -> np.ndarray:
    """Per unit (ops whose names share the pattern's group), last end minus first issue."""
    if not pattern:
        return np.zeros(0)
    rx = re.compile(pattern)
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for r in records:
        m = rx.search(r.name)
        if m is None:
            continue
        key = m.group(1) + ("@" + r.name.split(".", 1)[0] if r.name.startswith("r") and "." in r.name else "")
        first[key] = min(first.get(key, r.ready_ns), r.ready_ns)
        last[key] = max(last.get(key, r.end_ns), r.end_ns)
    return np.array([last[k] - first[k] for k in first], dtype=float)
