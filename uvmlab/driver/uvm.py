"""The modeled driver instance: one VA space, its GPUs' physical memory, the perf modules.

``UvmDriver`` plays the part of ``uvm_global`` + one ``uvm_va_space``: it owns the state and the
counters, and the entry points the engine calls (``service_fault_batch``, ``cpu_fault``,
``migrate``, ``advise``) live in the modules that mirror the driver's files:

* ``replayable_faults`` — fetch, coalesce, sort, per-block service, replay (uvm_gpu_replayable_faults.c)
* ``va_block`` — residency selection, make-resident, mappings (uvm_va_block.c)
* ``cpu_fault`` — the CPU fault path (uvm_va_space.c / uvm_va_block.c)
* ``migrate`` — UVM_MIGRATE (uvm_migrate.c); ``advice`` — uvm_policy.c
* ``pmm`` and ``eviction`` — uvm_pmm_gpu.c
* ``perf/`` — prefetch, thrashing, access counters (uvm_perf_*.c)

The simulated clock belongs to the engine; the driver reads ``now_ns`` for timestamps and adds
what its work costs to ``work_ns``, which the engine charges to whoever waited for it.
"""

from __future__ import annotations

from typing import Any

from uvmlab.core.errors import UvmlabError
from uvmlab.driver.hal import GpuSpec
from uvmlab.driver.hooks import DriverHooks
from uvmlab.driver.params import Params
from uvmlab.driver.peer import Topology, peer_counter_names
from uvmlab.driver.perf import events as pe
from uvmlab.driver.perf.events import PerfEvents
from uvmlab.driver.perf.prefetch import prefetch_params
from uvmlab.driver.perf.thrashing import ThrashingDetector
from uvmlab.driver.pmm import Pmm
from uvmlab.driver.pmm_share import PmmShare
from uvmlab.driver.tools import EventLog, zero_counters
from uvmlab.driver.va_space import VaSpace
from uvmlab.timing.cost_model import CostProfile
from uvmlab.workload.ir import Alloc


class UvmDriver:
    def __init__(
        self,
        allocs: list[Alloc],
        *,
        gpu: GpuSpec,
        params: Params,
        profile: CostProfile,
        gpu_memory_bytes: int | None = None,
        events: bool = False,
        hooks: DriverHooks | None = None,
        share: PmmShare | None = None,
        tenant: str = "",
        n_gpus: int = 1,
    ) -> None:
        self.params = params
        self.gpu = gpu  # every GPU of the VA space is this part
        self.profile = profile
        self.topology = Topology(n_gpus, gpu)
        self.va = VaSpace(allocs, n_gpus=n_gpus, topology=self.topology)
        self.tenant = tenant
        # With ``share`` this VA space allocates from a GPU memory other VA spaces use too
        # (pmm_share.py): its chunks' owner ids are owner_base + block.
        self.share = share
        if share is None:
            capacity = gpu.memory_bytes if gpu_memory_bytes is None else gpu_memory_bytes
            self.pmm = [Pmm(capacity) for _ in range(n_gpus)]  # one per GPU; index = processor id - 1
            self.owner_base = 0
        else:
            if n_gpus != 1:
                raise UvmlabError("a GPU memory shared between VA spaces (vGPU) holds one GPU")
            self.pmm = [share.pmm]
            self.owner_base = share.join(self)
        self.counters = zero_counters()
        if n_gpus > 1:  # peer copies exist only with several GPUs: one GPU's totals stay as they were
            self.counters.update(dict.fromkeys(peer_counter_names(n_gpus), 0))
        self.log = EventLog(events)
        self.now_ns = 0
        self.work_ns = 0.0
        self.hooks = hooks
        # UVM_MIGRATE calls so far (migrate.py): they map pages of any block, so a running
        # kernel's next replay re-checks every stalled thread (engine/gpu.py)
        self.migrate_calls = 0
        # the prefetcher's parameters, read once for the reference path, compiled path and policies
        self.prefetch_params = prefetch_params(params, gpu.big_page_size)
        p = params
        self.thrashing = ThrashingDetector(
            enable=p.uvm_perf_thrashing_enable,
            threshold=p.uvm_perf_thrashing_threshold,
            pin_threshold=p.uvm_perf_thrashing_pin_threshold,
            lapse_usec=p.uvm_perf_thrashing_lapse_usec,
            nap=p.uvm_perf_thrashing_nap,
            epoch=p.uvm_perf_thrashing_epoch,
            pin=p.uvm_perf_thrashing_pin,
            max_resets=p.uvm_perf_thrashing_max_resets,
            can_access=self.va.can_access,
            fast_access=self.topology.fast_access,
            num_processors=self.va.n_procs,
            emit=self._thrashing_event,
        )
        self.thrashing.counters = self.counters  # its detections and hints count in our totals
        self.thrashing.reserve_blocks(self.va.n_blocks)
        self.perf_events = PerfEvents()
        th = self.thrashing
        self.perf_events.register(
            pe.MIGRATION,
            lambda **k: th.on_migration(
                k["block"],
                k["pages"],
                k["dst"],
                k["cause"],
                k["now_ns"],
                transfer_copy=k["transfer_copy"],
                read_dup_enabled=k["read_dup_enabled"],
            ),
        )
        self.perf_events.register(
            pe.REVOCATION, lambda **k: th.on_revocation(k["block"], k["pages"], k["processor"], k["now_ns"])
        )
        self.perf_events.register(pe.BLOCK_DESTROY, lambda **k: th.destroy_block(k["block"]))
        # set by ``driver.instance.create_driver``, which builds them on this state
        self.access_counters: Any = None
        self.fast: Any = None  # the compiled fault path (None: every fault takes the reference path)

    def _thrashing_event(self, name: str, fields: dict) -> None:
        self.log.add(
            self.now_ns,
            name,
            fields.get("processor", -1),
            fields.get("address", -1),
            fields.get("bytes", 0),
            "",
            -1,
            "",
        )

    def charge(self, ns: float) -> None:
        """Add simulated work done by the driver on behalf of the current requester."""
        self.work_ns += ns

    def take_work(self) -> float:
        ns, self.work_ns = self.work_ns, 0.0
        return ns
