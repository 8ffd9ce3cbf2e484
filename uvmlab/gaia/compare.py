"""GAIA vs ``read`` + ``cudaMemcpy`` vs managed memory filled by the CPU, on the same file
workloads (``uvmlab gaia compare``; the table in docs/gaia-hmm.md).

Reported per strategy: simulated time, bytes over the link each way, host page-cache hits and
misses (lookups by CPU touches, ``read`` / ``write`` calls and GPU fetches), GPU page-cache hits
and misses (GAIA only: the baselines have no page cache on the GPU), and bytes read from
storage. GPU-side costs come from the timing profile; storage and page-cache costs from
``uvmlab.gaia.costs`` (assumed values, flagged in the output).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from uvmlab.core.errors import UvmlabError
from uvmlab.core.units import parse_size
from uvmlab.driver.hal import GpuSpec
from uvmlab.driver.params import Params
from uvmlab.engine.core import Engine
from uvmlab.engine.setup import resolve_machine
from uvmlab.gaia.classic import HostPageCache, run_memcpy, runs_of, touched_pages
from uvmlab.gaia.costs import DEFAULT_HOST_COSTS, HostCosts
from uvmlab.gaia.engine import simulate_gaia
from uvmlab.gaia.scenarios import SCENARIOS, SPECS, build
from uvmlab.timing.cost_model import CostProfile
from uvmlab.workload.builder import WorkloadBuilder
from uvmlab.workload.ir import (
    SEG_RUN,
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

STRATEGIES = ("gaia", "memcpy", "managed")
STRATEGY_LABELS = {
    "gaia": "GAIA shared page cache",
    "memcpy": "read + cudaMemcpy",
    "managed": "managed, CPU-filled",
}
COLUMNS = (
    "time_ns",
    "bytes_htod",
    "bytes_dtoh",
    "host_hits",
    "host_misses",
    "gpu_hits",
    "gpu_misses",
    "storage_read_bytes",
)


@dataclass(frozen=True)
class Row:
    scenario: str
    strategy: str
    totals: dict[str, int]


def lower_managed(w: Workload, host: HostCosts) -> tuple[Workload, float, list[HostPageCache]]:
    """The workload as a program using managed memory: before each kernel the CPU ``read``s its
    file pages into a managed buffer of the file's size (CPU writes to managed pages), after it
    ``write``s back the pages the kernel wrote (CPU reads). CPU phases touch the file through
    ``mmap`` as under GAIA. Returns the managed workload, the host-side time it does not model
    (page cache, storage, system calls, the CPU phases' own compute time) and the page caches."""
    b = WorkloadBuilder(f"{w.name}-managed", seed=w.seed, params=dict(w.params))
    files = [i for i, a in enumerate(w.allocs) if a.kind == AllocKind.FILE]
    amap = {
        i: b.alloc(a.name, a.bytes, "managed" if a.kind == AllocKind.FILE else a.kind)
        for i, a in enumerate(w.allocs)
    }
    caches = {
        i: HostPageCache(w.allocs[i].pages, w.allocs[i].cached_pages, w.allocs[i].dirty_pages, host)
        for i in files
    }
    host_ns = 0.0
    for op in w.ops:
        if isinstance(op, CpuOp):
            if set(w.segments["alloc"][op.seg_lo : op.seg_hi].tolist()) - set(files):
                raise UvmlabError(f"CPU phase {op.name!r}: the comparison lowers CPU phases over files only")
            for i in files:
                pages, written = touched_pages(w, op, i)
                host_ns += caches[i].mmap_access(pages, written)
            host_ns += op.compute_ns
        elif isinstance(op, KernelOp):
            for i in files:
                pages, _ = touched_pages(w, op, i)
                if len(pages):
                    host_ns += caches[i].read(pages)
                    st, ct = runs_of(pages)
                    b.cpu(f"read:{op.name}", [b.runs(amap[i], st, ct, access="write")], compute_ns=0)
            b.kernel(op.name, _retarget(w, op, amap, b), gpu=op.gpu, compute_ns=op.compute_ns)
            for i in files:
                _, written = touched_pages(w, op, i)
                if len(written):
                    host_ns += caches[i].write(written)
                    st, ct = runs_of(written)
                    b.cpu(f"write:{op.name}", [b.runs(amap[i], st, ct, access="read")], compute_ns=0)
        elif isinstance(op, AdviseOp | PrefetchOp):
            if w.allocs[op.alloc].kind != AllocKind.FILE:
                (b.advise if isinstance(op, AdviseOp) else b.prefetch)(amap[op.alloc], *_advice_args(op))
        elif isinstance(op, FreeOp):
            b.free(amap[op.alloc])
        elif isinstance(op, SyncOp):
            b.sync()
        elif not isinstance(op, AcquireOp | ReleaseOp):
            raise UvmlabError(f"the comparison cannot lower a {op.op!r} op")
    return b.build(), host_ns, list(caches.values())


def _advice_args(op: AdviseOp | PrefetchOp) -> tuple:
    if isinstance(op, AdviseOp):
        return (op.advice, op.processor, op.start_page, op.num_pages)
    return (op.processor, op.start_page, op.num_pages)


def _retarget(w: Workload, op: KernelOp, amap: dict[int, int], b: WorkloadBuilder) -> list:
    out = []
    for s in w.segments[op.seg_lo : op.seg_hi]:
        a = amap[int(s["alloc"])]
        if s["kind"] == SEG_RUN:
            out.append(b.run(a, int(s["start"]), int(s["count"]), int(s["stride"]), access=int(s["access"])))
        else:
            lo = int(s["start"])
            out.append(b.index(a, w.pool[lo : lo + int(s["count"])], access=int(s["access"])))
    return out


def run_managed(
    w: Workload, *, gpu: GpuSpec, params: Params, profile: CostProfile, host: HostCosts
) -> dict[str, int]:
    lowered, host_ns, caches = lower_managed(w, host)
    eng = Engine(
        lowered,
        gpu=gpu,
        params=params,
        profile=profile,
        gpu_memory_bytes=gpu.n_root_chunks * gpu.root_chunk_size,
    )
    eng.run()
    if eng.fatal is not None:
        raise UvmlabError(f"{w.name} (managed): the modelled context died: {eng.fatal['reason']}")
    c = eng.drv.counters
    return {
        "time_ns": int(c["time_ns"] + host_ns),
        "bytes_htod": c["bytes_htod"],
        "bytes_dtoh": c["bytes_dtoh"],
        "host_hits": sum(x.hits for x in caches),
        "host_misses": sum(x.misses for x in caches),
        "gpu_faults": c["gpu_faults"],
        "cpu_faults": c["cpu_faults"],
        "storage_read_bytes": sum(x.storage_read_bytes for x in caches),
    }


def compare_workload(
    w: Workload,
    *,
    gpu: str | GpuSpec = "h200",
    profile: str | CostProfile | None = None,
    host: HostCosts = DEFAULT_HOST_COSTS,
) -> list[Row]:
    """The three strategies on one file workload."""
    spec, prm, prof = resolve_machine(gpu, None, profile)
    g = simulate_gaia(w, gpu=spec, params=prm, profile=prof, host=host)
    if g.fatal:
        raise UvmlabError(f"{w.name} (GAIA): {g.fatal}")
    name = w.name.removeprefix("gaia-")
    return [
        Row(name, "gaia", g.totals),
        Row(name, "memcpy", run_memcpy(w, prof, host)),
        Row(name, "managed", run_managed(w, gpu=spec, params=prm, profile=prof, host=host)),
    ]


def compare(
    scenarios: Iterable[str] = tuple(SCENARIOS),
    *,
    gpu: str = "h200",
    profile: str | None = None,
    host: HostCosts = DEFAULT_HOST_COSTS,
    scale: float = 1.0,
    progress: Callable[[str], None] | None = None,
) -> list[Row]:
    """The comparison on the named scenarios (``scale`` multiplies their file sizes)."""
    rows: list[Row] = []
    for name in scenarios:
        if progress is not None:
            progress(name)
        kw: dict[str, Any] = {}
        if scale != 1.0:
            kw["size"] = max(1 << 21, int(parse_size(SPECS[name]["size"]) * scale) >> 21 << 21)
        rows += compare_workload(build(name, **kw), gpu=gpu, profile=profile, host=host)
    return rows


def _mib(b: int) -> str:
    return f"{b / (1 << 20):,.0f}"


def markdown_table(rows: list[Row]) -> str:
    """One line per scenario and strategy; time also as a ratio to ``read`` + ``cudaMemcpy``."""
    base = {r.scenario: r.totals["time_ns"] for r in rows if r.strategy == "memcpy"}
    out = [
        "| scenario | strategy | time (ms) | vs memcpy | to GPU (MiB) | to host (MiB) | "
        "host cache hits / misses | GPU cache hits / misses | storage read (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        t = r.totals
        gpu = f"{t['gpu_hits']:,} / {t['gpu_misses']:,}" if r.strategy == "gaia" else "no GPU cache"
        ratio = t["time_ns"] / base[r.scenario] if base.get(r.scenario) else float("nan")
        out.append(
            f"| {r.scenario} | {STRATEGY_LABELS[r.strategy]} | {t['time_ns'] / 1e6:,.2f} | "
            f"{ratio:.2f} | {_mib(t['bytes_htod'])} | {_mib(t['bytes_dtoh'])} | "
            f"{t['host_hits']:,} / {t['host_misses']:,} | {gpu} | "
            f"{_mib(t['storage_read_bytes'])} |"
        )
    return "\n".join(out) + "\n"


def to_json(rows: list[Row]) -> str:
    return (
        json.dumps([{"scenario": r.scenario, "strategy": r.strategy, **r.totals} for r in rows], indent=1)
        + "\n"
    )
