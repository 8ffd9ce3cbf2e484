"""Run a workload on a real NVIDIA GPU with CUDA managed memory and measure what the driver did.

Each IR operation runs serialised (the next starts after the previous one completed) so that
every migration, fault and CUPTI record belongs to exactly one operation:

* allocations: ``cudaMallocManaged`` / ``cudaMalloc`` / ``cudaMallocHost``, whole 4 KiB pages;
* ``advise``: ``cudaMemAdvise`` (CUDA 13 form, with a ``cudaMemLocation``);
* ``prefetch``: ``cudaMemPrefetchAsync`` to the GPU or to the host;
* ``kernel``: one grid-stride CUDA kernel (NVRTC via CuPy) over the op's encoded touch segments
  (``plan.encode_kernel``); touch ``t`` is done by thread ``t mod threads``, so ``threads``
  touches are in flight at once, in the IR's order; each touch reads, writes or atomically adds
  one 4-byte word of its page;
* ``cpu``: numpy on the managed pointer, one vectorised gather / scatter per segment chunk, in
  the IR's order;
* ``sync``: ``cudaDeviceSynchronize``; ``free``: ``cudaFree``.

Times: GPU operations from CUDA events, host operations from ``perf_counter_ns``. Counters: the
driver's lossless UVM tools counters (``uvm_counters.py``) read before and after each operation,
and CUPTI unified-memory records (``cupti_capture.py``) attributed to operations by timestamp.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uvmlab.core.counters import TOTALS
from uvmlab.core.errors import UvmlabError, WorkloadError
from uvmlab.cuda.cupti_capture import UM_RECORD_DTYPE, get_capture, summarize
from uvmlab.cuda.plan import (
    WORDS_PER_PAGE,
    PlannedOp,
    alloc_nbytes,
    cpu_chunks,
    max_gpu_ordinal,
    plan_workload,
)
from uvmlab.cuda.runtime import check_fits, device_info, footprint, load_cuda
from uvmlab.cuda.uvm_counters import UvmCounters, counter_deltas
from uvmlab.workload.ir import Access, Advice, AllocKind, Workload

DEFAULT_THREADS = 65536
BLOCK = 256

KERNEL_SRC = r"""
typedef long long i64;
typedef unsigned long long u64;
// One thread per touch in flight; touch t -> segment s by the prefix sums `cum`, then
// page = start + k*stride (run) or pool[start + k] (index). Reads are volatile so that the
// load is issued even though its value is only folded into `acc`.
extern "C" __global__ void uvmlab_touch(
    const i64* __restrict__ cum, const u64* __restrict__ base, const i64* __restrict__ start,
    const i64* __restrict__ stride, const unsigned int* __restrict__ meta,
    const unsigned int* __restrict__ pool, int nseg, i64 total, unsigned int word,
    unsigned int* sink)
{
    const i64 nthreads = (i64)gridDim.x * blockDim.x;
    i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    int s = 0;
    unsigned int acc = 0;
    for (; t < total; t += nthreads) {
        if (t >= cum[s + 1]) {
            int lo = s + 1, hi = nseg - 1;
            while (lo < hi) {
                int mid = (lo + hi + 1) >> 1;
                if (cum[mid] <= t) lo = mid; else hi = mid - 1;
            }
            s = lo;
        }
        const i64 k = t - cum[s];
        const unsigned int m = meta[s];
        const i64 page = (m & 1u) ? (i64)pool[start[s] + k] : start[s] + k * stride[s];
        unsigned int* p = reinterpret_cast<unsigned int*>(base[s] + (u64)page * 4096ull) + word;
        const unsigned int a = m >> 1;
        if (a == 1u) acc += *(volatile unsigned int*)p;
        else if (a == 2u) *(volatile unsigned int*)p = (unsigned int)t;
        else atomicAdd(p, 1u);
    }
    if (acc == 0x9e3779b9u) atomicAdd(sink, 1u);
}
"""


@dataclass
class RealRunResult:
    """What one real-GPU run measured, in the result schema's names (docs/results.md)."""

    workload: str
    totals: dict[str, int]  # canonical keys that were measured (absent = not measured)
    extra: dict[str, int]  # other counters (unattributed bytes, fault records, ...)
    ops: list[dict[str, Any]]
    checks: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "uvmlab-real-capture",
            "version": 1,
            "workload": self.workload,
            "totals": self.totals,
            "extra": self.extra,
            "checks": self.checks,
            "meta": self.meta,
            "ops": self.ops,
        }

    def save(self, path: str) -> None:
        """Write the capture as JSON atomically (temp file + rename)."""
        write_json_atomic(path, self.to_dict())


def write_json_atomic(path: str, obj: Any) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".json")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a result file is for everyone to read
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def split_totals(t: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """(canonical, extra) parts of a totals dict, canonical ones in schema order."""
    canon = {k: int(t[k]) for k in TOTALS if k in t}
    extra = {k: int(v) for k, v in t.items() if k not in TOTALS}
    return canon, extra


class _Gpu:
    """The CUDA side of one run: allocations, the touch kernel, advise / prefetch calls."""

    _module_cache: dict[int, Any] = {}

    def __init__(self, device: int) -> None:
        self.cp, self.rt = load_cuda()
        self.device = device
        self.cp.cuda.Device(device).use()
        self.stream = self.cp.cuda.Stream.null
        key = device
        if key not in self._module_cache:
            self._module_cache[key] = self.cp.RawModule(code=KERNEL_SRC).get_function("uvmlab_touch")
        self.kernel = self._module_cache[key]
        self.sink = self.cp.zeros(1, dtype=self.cp.uint32)

    def check(self, res: tuple, what: str) -> Any:
        err = res[0]
        if err != self.rt.cudaError_t.cudaSuccess:
            raise UvmlabError(f"{what} failed: {getattr(err, 'name', err)}")
        return res[1] if len(res) > 1 else None

    def location(self, loc: tuple[str, int]) -> Any:
        rt = self.rt
        m = rt.cudaMemLocation()
        if loc[0] == "host":
            m.type = rt.cudaMemLocationType.cudaMemLocationTypeHost
            m.id = 0
        else:
            m.type = rt.cudaMemLocationType.cudaMemLocationTypeDevice
            m.id = loc[1]
        return m

    def alloc(self, kind: AllocKind, nbytes: int) -> int:
        rt = self.rt
        if kind == AllocKind.MANAGED:
            # flag 1 = cudaMemAttachGlobal: any stream, any processor may touch it
            return int(self.check(rt.cudaMallocManaged(nbytes, 1), "cudaMallocManaged"))
        if kind == AllocKind.DEVICE:
            return int(self.check(rt.cudaMalloc(nbytes), "cudaMalloc"))
        return int(self.check(rt.cudaMallocHost(nbytes), "cudaMallocHost"))

    def free(self, kind: AllocKind, ptr: int) -> None:
        if kind == AllocKind.PINNED:
            self.check(self.rt.cudaFreeHost(ptr), "cudaFreeHost")
        else:
            self.check(self.rt.cudaFree(ptr), "cudaFree")

    def advise(self, ptr: int, nbytes: int, advice: Advice, loc: tuple[str, int]) -> None:
        A = self.rt.cudaMemoryAdvise
        table = {
            Advice.SET_PREFERRED_LOCATION: A.cudaMemAdviseSetPreferredLocation,
            Advice.UNSET_PREFERRED_LOCATION: A.cudaMemAdviseUnsetPreferredLocation,
            Advice.SET_ACCESSED_BY: A.cudaMemAdviseSetAccessedBy,
            Advice.UNSET_ACCESSED_BY: A.cudaMemAdviseUnsetAccessedBy,
            Advice.SET_READ_MOSTLY: A.cudaMemAdviseSetReadMostly,
            Advice.UNSET_READ_MOSTLY: A.cudaMemAdviseUnsetReadMostly,
        }
        self.check(
            self.rt.cudaMemAdvise(ptr, nbytes, table[advice], self.location(loc)),
            f"cudaMemAdvise({advice.name})",
        )

    def prefetch(self, ptr: int, nbytes: int, loc: tuple[str, int]) -> None:
        self.check(
            self.rt.cudaMemPrefetchAsync(ptr, nbytes, self.location(loc), 0, self.stream.ptr),
            "cudaMemPrefetchAsync",
        )

    def upload(self, p: PlannedOp, ptrs: list[int]) -> list:
        """Copy a kernel op's segment tables to (plain, non-managed) device memory."""
        enc = p.kernel
        assert enc is not None
        base = np.array([ptrs[a] for a in enc.alloc], dtype=np.uint64)
        d = [self.cp.asarray(x) for x in (enc.cum, base, enc.start, enc.stride, enc.meta, enc.pool)]
        self.stream.synchronize()  # the uploads stay out of the op's window
        return d

    def launch(self, p: PlannedOp, tables: list, threads: int, word: int) -> None:
        enc = p.kernel
        assert enc is not None
        n = max(1, min(threads, enc.total))
        block = min(BLOCK, n)  # fewer than a block's worth: exactly that many threads
        grid = -(-n // block)
        self.kernel(
            (grid,), (block,), (*tables, np.int32(enc.nseg), np.int64(enc.total), np.uint32(word), self.sink)
        )

    def synchronize(self) -> None:
        self.check(self.rt.cudaDeviceSynchronize(), "cudaDeviceSynchronize")


def _host_view(ptr: int, nbytes: int) -> np.ndarray:
    return np.ctypeslib.as_array((ctypes.c_uint32 * (nbytes // 4)).from_address(ptr))


def _cpu_op(w: Workload, p: PlannedOp, views: dict[int, np.ndarray], word: int) -> int:
    """Apply a CPU op's touches with numpy, in IR order; returns a checksum (keeps reads alive)."""
    acc = 0
    op = w.ops[p.index]
    for ch in cpu_chunks(w, op, word=word):
        arr = views[ch.alloc]
        if ch.access == Access.READ:
            acc += int(arr[ch.words].sum(dtype=np.uint64))
        elif ch.access == Access.WRITE:
            arr[ch.words] = np.uint32(p.index)
        else:
            arr[ch.words] += np.uint32(1)
    return acc


def execute(
    w: Workload,
    *,
    threads: int = DEFAULT_THREADS,
    device: int = 0,
    word: int = 0,
    capture: bool = True,
    counters: bool = True,
    raw_path: str | None = None,
    managed_fraction: float = 0.5,
    on_finish: Callable[[dict[int, np.ndarray]], None] | None = None,
) -> RealRunResult:
    """Run ``w`` on the GPU and return what was measured.

    ``threads``: GPU threads in flight (each does one touch at a time). ``capture``: collect
    CUPTI records; ``counters``: read the driver's UVM tools counters. ``raw_path``: also save
    the raw records, windows and counter deltas as ``.npz`` (the parser's test data).
    ``on_finish``: called with the host views (allocation index -> uint32 array) of the live
    managed and pinned allocations after the last op, before they are freed (tests use it to
    check what the kernel wrote).
    Raises ``GpuUnavailableError`` without a GPU and ``GpuMemoryRefusedError`` for a workload
    whose managed memory exceeds ``managed_fraction`` of the GPU's free memory.
    """
    plan = plan_workload(w, word=word)  # pure checks first: a bad workload fails without a GPU
    if threads < 1:
        raise WorkloadError(f"threads must be >= 1, got {threads}")
    gpu = _Gpu(device)
    ndev = int(gpu.cp.cuda.runtime.getDeviceCount())
    if max_gpu_ordinal(plan) >= ndev:
        raise WorkloadError(
            f"workload {w.name!r} names gpu{max_gpu_ordinal(plan)} but this machine has {ndev} GPU(s)"
        )
    free, _total = gpu.cp.cuda.runtime.memGetInfo()
    managed, dev_bytes = footprint(w.allocs)
    check_fits(w.name, managed, dev_bytes, int(free), managed_fraction=managed_fraction)
    meta = device_info(device)
    meta.update(
        {
            "threads": threads,
            "block": BLOCK,
            "word": word,
            "workload_params": w.params,
            "workload_seed": w.seed,
            "managed_bytes": managed,
        }
    )

    ctr = None
    if counters:
        try:
            ctr = UvmCounters()
        except Exception as e:  # keep measuring with CUPTI alone, and say so
            meta["counters_error"] = str(e)
    cap = None
    mark = 0
    if capture:
        try:
            cap = get_capture()
            cap.flush()
            mark = len(cap.records())
        except Exception as e:
            meta["cupti_error"] = str(e)
    ts = cap.timestamp if cap is not None else time.perf_counter_ns

    ptrs: list[int] = [0] * len(w.allocs)
    live = [False] * len(w.allocs)
    views: dict[int, np.ndarray] = {}
    rows: list[dict[str, Any]] = []
    windows: list[tuple[int, int]] = []
    deltas: list[dict[str, int]] = []
    try:
        for i, a in enumerate(w.allocs):
            ptrs[i] = gpu.alloc(a.kind, alloc_nbytes(w, i))
            live[i] = True
            if a.kind != AllocKind.DEVICE:
                views[i] = _host_view(ptrs[i], alloc_nbytes(w, i))
        gpu.synchronize()
        t_run = time.perf_counter_ns()
        for p in plan:
            tables = gpu.upload(p, ptrs) if p.kind == "kernel" else None
            c0 = ctr.snapshot() if ctr is not None else None
            w0 = ts()
            h0 = time.perf_counter_ns()
            ev0 = ev1 = None
            if p.kind == "kernel":
                ev0, ev1 = gpu.cp.cuda.Event(), gpu.cp.cuda.Event()
                ev0.record()
                gpu.launch(p, tables, p.info.get("threads") or threads, word)
                ev1.record()
                ev1.synchronize()
            elif p.kind == "prefetch":
                ev0, ev1 = gpu.cp.cuda.Event(), gpu.cp.cuda.Event()
                ev0.record()
                gpu.prefetch(ptrs[p.alloc] + p.offset, p.nbytes, p.location)
                ev1.record()
                ev1.synchronize()
            elif p.kind == "advise":
                gpu.advise(ptrs[p.alloc] + p.offset, p.nbytes, p.advice, p.location)
            elif p.kind == "cpu":
                _cpu_op(w, p, views, word)
            elif p.kind == "sync":
                gpu.synchronize()
            elif p.kind == "free":
                views.pop(p.alloc, None)
                gpu.free(w.allocs[p.alloc].kind, ptrs[p.alloc])
                live[p.alloc] = False
            h1 = time.perf_counter_ns()
            w1 = ts()
            c1 = ctr.snapshot() if ctr is not None else None
            row: dict[str, Any] = {"index": p.index, "op": p.kind, "name": p.name, "time_ns": h1 - h0}
            if ev0 is not None and ev1 is not None:
                row["time_ns"] = int(gpu.cp.cuda.get_elapsed_time(ev0, ev1) * 1e6)
            if p.touches:
                row["touches"] = p.touches
            if p.nbytes:
                row["bytes"] = p.nbytes
            rows.append(row)
            windows.append((w0, w1))
            if c0 is not None and c1 is not None:
                deltas.append(counter_deltas(c0, c1))
        wall_ns = time.perf_counter_ns() - t_run
        if on_finish is not None:
            gpu.synchronize()
            on_finish(views)
    finally:
        views.clear()
        for i, a in enumerate(w.allocs):
            if live[i]:
                with contextlib.suppress(UvmlabError):  # already failing; free what we can
                    gpu.free(a.kind, ptrs[i])
        if ctr is not None:
            ctr.close()

    return _assemble(
        w, rows, windows, deltas if ctr is not None else None, cap, mark, meta, wall_ns, raw_path
    )


def _assemble(
    w: Workload,
    rows: list[dict],
    windows: list[tuple[int, int]],
    deltas: list[dict[str, int]] | None,
    cap: Any,
    mark: int,
    meta: dict,
    wall_ns: int,
    raw_path: str | None,
) -> RealRunResult:
    win = np.array(windows, dtype=np.uint64).reshape(-1, 2)
    if cap is not None:
        cap.flush()
        records = cap.records()[mark:]
        meta["cupti_activity_dropped"] = cap.dropped()
    else:
        records = np.zeros(0, dtype=UM_RECORD_DTYPE)
    s = summarize(records, win, deltas)
    if cap is None:  # records say nothing: keep only what the counters measured
        keep = ("bytes_htod", "bytes_dtoh", "cpu_faults", "gpu_faults_notified")
        s["totals"] = {k: v for k, v in s["totals"].items() if k in keep}
        for o in s["ops"]:
            o["totals"] = {k: v for k, v in o["totals"].items() if k in keep}
    for row, o in zip(rows, s["ops"], strict=True):
        canon, extra = split_totals(o["totals"])
        row.update(canon)
        row.update({k: v for k, v in extra.items() if v})
        if o["checks"]:
            row["checks"] = o["checks"]
    totals = dict(s["totals"])
    totals["time_ns"] = int(sum(r["time_ns"] for r in rows))
    totals["policy_ejections"] = 0  # the real driver runs no uvmlab policies
    totals["wall_ns"] = int(wall_ns)
    canon, extra = split_totals(totals)
    if raw_path is not None:
        save_raw(raw_path, records, win, deltas, rows)
    return RealRunResult(w.name, canon, extra, rows, s["checks"], meta)


def save_raw(
    path: str, records: np.ndarray, windows: np.ndarray, deltas: list[dict[str, int]] | None, rows: list[dict]
) -> None:
    """Raw capture for the parser's tests: records, op windows, counter deltas, op names."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    ops = [{"op": r["op"], "name": r["name"], "bytes": r.get("bytes", 0)} for r in rows]
    extra = {"deltas": deltas, "ops": ops}
    np.savez_compressed(
        path, records=records, windows=windows, info=np.frombuffer(json.dumps(extra).encode(), dtype=np.uint8)
    )


__all__ = [
    "DEFAULT_THREADS",
    "KERNEL_SRC",
    "RealRunResult",
    "WORDS_PER_PAGE",
    "execute",
    "split_totals",
    "write_json_atomic",
]
