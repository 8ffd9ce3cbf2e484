"""Run a workload's file operations through GAIA's shared page cache (``simulate_gaia``).

Operations run one after another, as in ``uvmlab.engine``: a GPU kernel's touches of file pages
go through the cache in order (faults batched per slice of touches), a CPU phase's touches go
through the file mapping, ``maquire`` / ``mrelease`` run the protocol, a prefetch to the GPU
fetches, ``free`` unmaps. Device allocations (``cudaMalloc``) may sit beside the files: GPU
touches of them always hit. Time per operation is the kernel's or CPU phase's own compute time
plus what the cache's work costs (``uvmlab.timing`` constants for the GPU side,
``uvmlab.gaia.costs`` for storage and the page cache).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uvmlab.core.errors import UvmlabError
from uvmlab.driver.compiled.scan import expand, segment_columns
from uvmlab.driver.eviction import NoEvictableMemory
from uvmlab.driver.hal import GpuSpec, get_gpu
from uvmlab.driver.params import Params
from uvmlab.driver.uvm import UvmDriver
from uvmlab.engine.setup import resolve_gpu_memory, resolve_machine
from uvmlab.gaia.costs import DEFAULT_HOST_COSTS, HostCosts
from uvmlab.gaia.pagecache import GAIA_COUNTERS, GPU, GaiaCache
from uvmlab.policy.loader import build_hooks
from uvmlab.timing.cost_model import CostProfile
from uvmlab.workload.ir import (
    AcquireOp,
    AdviseOp,
    AllocKind,
    CpuOp,
    FreeOp,
    KernelOp,
    PrefetchOp,
    ReleaseOp,
    SyncOp,
    Workload,
)

_CHUNK = 1 << 18  # touches expanded at a time


@dataclass
class GaiaResult:
    """Totals (``time_ns`` and the counters of ``uvmlab.gaia.pagecache.GAIA_COUNTERS``), one row
    per operation, and the fatal error that ended the run early, if any."""

    workload: str
    totals: dict[str, int]
    ops: list[dict[str, Any]]
    fatal: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class GaiaRun:
    def __init__(
        self,
        workload: Workload,
        *,
        gpu: GpuSpec,
        params: Params,
        profile: CostProfile,
        host: HostCosts = DEFAULT_HOST_COSTS,
        gpu_memory_bytes: int | None = None,
        hooks: Any = None,
        check: bool = False,
    ) -> None:
        for a in workload.allocs:
            if a.kind not in (AllocKind.FILE, AllocKind.DEVICE):
                raise UvmlabError(
                    f"the GAIA model runs file allocations (and device buffers beside them); "
                    f"{a.name!r} is {a.kind.name.lower()}: run it with `uvmlab run`"
                )
        self.workload = workload
        self.check = check
        self.drv = UvmDriver(
            workload.allocs,
            gpu=gpu,
            params=params,
            profile=profile,
            gpu_memory_bytes=gpu_memory_bytes,
            hooks=hooks,
        )
        for a in workload.allocs:
            if a.kind == AllocKind.DEVICE:  # cudaMalloc takes its memory from PMA up front
                self.drv.pmm[0].reserve(-(-a.bytes // (2 << 20)) * (2 << 20))
        self.cache = GaiaCache(self.drv, host)
        self.clock = 0.0
        self.touches = 0
        self.kernel = None  # no kernel in flight between operations (policy.future reads it)
        self.rows: list[dict[str, Any]] = []
        self.fatal: str | None = None
        if hooks is not None:
            hooks.attach(self)

    def run(self) -> None:
        t0 = time.perf_counter()
        for k, op in enumerate(self.workload.ops):
            start = self.clock
            before = dict(self.cache.c)
            try:
                self._run_op(op)
            except NoEvictableMemory as e:
                self.fatal = f"op {k} ({op.op}): {e}"
            self.clock += self.drv.take_work()
            row = {
                "op_index": k,
                "op": op.op,
                "name": getattr(op, "name", op.op),
                "start_ns": int(start),
                "time_ns": int(self.clock - start),
            }
            row.update({c: self.cache.c[c] - before[c] for c in GAIA_COUNTERS})
            self.rows.append(row)
            if self.check:
                self.cache.check_invariants()
            if self.fatal is not None:
                break
        self.wall_s = time.perf_counter() - t0

    def _run_op(self, op: Any) -> None:
        va, cache = self.drv.va, self.cache
        self.drv.now_ns = int(self.clock)
        if isinstance(op, KernelOp):
            if op.gpu != GPU:
                raise UvmlabError(
                    f"kernel {op.name!r} runs on gpu{op.gpu - 1}; GAIA's page cache spans the CPU and gpu0"
                )
            self._touches(op, cache.gpu_access)
            self.clock += op.compute_ns
        elif isinstance(op, CpuOp):
            self._touches(op, cache.cpu_access)
            self.clock += op.compute_ns
        elif isinstance(op, AcquireOp | ReleaseOp):
            lo = int(va.alloc_base[op.alloc]) + op.start_page
            (cache.acquire if isinstance(op, AcquireOp) else cache.release)(op.processor, lo, op.num_pages)
        elif isinstance(op, PrefetchOp):
            if self.workload.allocs[op.alloc].kind == AllocKind.FILE and op.processor == GPU:
                cache.prefetch_to_gpu(int(va.alloc_base[op.alloc]) + op.start_page, op.num_pages)
        elif isinstance(op, AdviseOp):
            raise UvmlabError("memory advice on file or device allocations is not modelled by the GAIA model")
        elif isinstance(op, FreeOp):
            a = self.workload.allocs[op.alloc]
            if a.kind == AllocKind.FILE:
                cache.drop_file(int(va.alloc_base[op.alloc]), a.pages)
        elif not isinstance(op, SyncOp):
            raise UvmlabError(f"the GAIA model cannot run a {op.op!r} op")

    def _touches(self, op: KernelOp | CpuOp, access: Any) -> None:
        w, va, cache = self.workload, self.drv.va, self.cache
        cols = segment_columns(w.segments[op.seg_lo : op.seg_hi])
        page = np.empty(_CHUNK, dtype=np.int64)
        acc = np.empty(_CHUNK, dtype=np.uint8)
        seg_i = off = 0
        while True:
            seg_i, off, n = expand(*cols, w.pool, va.alloc_base, seg_i, off, page, acc)
            if n == 0:
                break
            p, a = page[:n], acc[:n]
            on_file = cache.is_file[p]
            if isinstance(op, CpuOp) and not on_file.all():
                raise UvmlabError(f"CPU phase {op.name!r} touches a device allocation")
            if on_file.any():
                access(p[on_file].copy(), a[on_file].copy())
            self.touches += n

    def result(self) -> GaiaResult:
        totals = {
            "time_ns": int(self.clock),
            **self.cache.c,
            "policy_ejections": int(self.drv.counters.get("policy_ejections", 0)),
        }
        return GaiaResult(
            self.workload.name,
            totals,
            self.rows,
            self.fatal,
            {
                "gpu": self.drv.gpu.name,
                "profile": self.drv.profile.name,
                "gpu_memory_bytes": self.drv.pmm[0].capacity_bytes,
            },
        )


def simulate_gaia(
    workload: Workload,
    *,
    gpu: str | GpuSpec = "h200",
    params: Params | Mapping[str, Any] | None = None,
    profile: str | CostProfile | None = None,
    host: HostCosts | None = None,
    gpu_memory: str | int | None = None,
    policies: Any = None,
    check_invariants: bool = False,
) -> GaiaResult:
    """Run ``workload`` (file allocations, ``maquire`` / ``mrelease``) on the GAIA model."""
    spec = gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)
    spec, prm, prof = resolve_machine(spec, params, profile)
    cap = resolve_gpu_memory(gpu_memory, workload, spec)
    hooks = None
    if policies:
        hooks = build_hooks(policies)
        if not hooks.slots:
            hooks = None
        elif hooks.needs_future:
            raise UvmlabError("policies that read the trace's future are not supported by the GAIA model")
    run = GaiaRun(
        workload,
        gpu=spec,
        params=prm,
        profile=prof,
        host=host or DEFAULT_HOST_COSTS,
        gpu_memory_bytes=cap,
        hooks=hooks,
        check=check_invariants,
    )
    with hooks.session() if hooks is not None else contextlib.nullcontext():
        run.run()
    res = run.result()
    if hooks is not None:
        res.totals["policy_ejections"] = hooks.ejections
        res.meta["policies"] = hooks.labels
        res.meta["policy_ejected"] = list(hooks.ejected)
    return res
