"""``uvmlab capture -- python prog.py``: a real Python program's unified-memory activity.

The program runs in this process (``runpy``), after CUDA's primary context exists, with CUPTI
recording its unified-memory records (``CuptiCapture``), its kernels
(``CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL``, which does not serialise kernels) and its managed
allocations (``CUPTI_ACTIVITY_KIND_MEMORY2``), and with the driver's lossless UVM counters
(``uvm_counters.py``) read before and after, so the capture says how many migration bytes
CUPTI's records missed (its event queue drops records under heavy migration; see
``cupti_capture.py``). The result is a ``uvmlab-program-capture`` file that
``uvmlab trace import`` turns into a workload.

``managed``: make the program's GPU arrays managed memory without changing it. For CuPy, a
memory pool over ``cupy.cuda.malloc_managed``; for PyTorch, a ``CUDAPluggableAllocator`` over
``cuMemAllocManaged`` (``managed_alloc.c``, compiled with the system C compiler on first use)
that keeps released blocks for reuse by size, as PyTorch's own caching allocator does.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from uvmlab.core.errors import GpuUnavailableError, UvmlabError
from uvmlab.cuda.cupti_capture import CuptiCapture
from uvmlab.cuda.runtime import device_info
from uvmlab.cuda.uvm_counters import UvmCounters, counter_deltas
from uvmlab.workload.importers.capture import write_capture
from uvmlab.workload.importers.um_trace import ALLOC_DTYPE, KERNEL_DTYPE, UmTrace

log = logging.getLogger(__name__)
MANAGED_LIBS = ("cupy", "torch")


class ProgramCapture(CuptiCapture):
    """CuptiCapture plus kernel and managed-allocation records."""

    def __init__(self) -> None:
        self.kernel_rows: list[tuple[int, int, str, int]] = []
        self.mem_rows: list[tuple[int, int, int, int]] = []
        self.errors: list[str] = []  # a record CUPTI's thread could not read: kept, not raised
        super().__init__()
        c = self.cupti
        self._k_kind = c.ActivityKind.CONCURRENT_KERNEL
        self._m_kind = c.ActivityKind.MEMORY2
        self._managed = int(c.ActivityMemoryKind.MANAGED)
        self._alloc_op = int(c.ActivityMemoryOperationType.ALLOCATION)
        c.activity_enable(self._k_kind)
        c.activity_enable(self._m_kind)

    def _buffer_completed(self, activities: list) -> None:
        super()._buffer_completed(activities)
        for a in activities:
            try:
                if a.kind == self._k_kind:
                    self.kernel_rows.append((int(a.start), int(a.end), str(a.name), int(a.device_id)))
                elif a.kind == self._m_kind and int(a.memory_kind) == self._managed:
                    op = 0 if int(a.memory_operation_type) == self._alloc_op else 1
                    self.mem_rows.append((int(a.timestamp), int(a.address), int(a.bytes), op))
            except Exception as e:  # on CUPTI's thread: an exception here would be lost
                if len(self.errors) < 10:
                    self.errors.append(f"{type(e).__name__}: {e}")

    def close(self) -> None:
        if self.enabled:
            self.flush()
            self.cupti.activity_disable(self._k_kind)
            self.cupti.activity_disable(self._m_kind)
        super().close()


def _allocs(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    out: list[tuple[int, int, int, int, int]] = []
    live: dict[int, int] = {}
    for ts, addr, nbytes, op in sorted(rows):
        if op == 0:
            live[addr] = len(out)
            out.append((addr, nbytes, 0, ts, 0))
        elif addr in live:
            i = live.pop(addr)
            out[i] = (*out[i][:4], max(ts, 1))
    return np.array(out, dtype=ALLOC_DTYPE) if out else np.zeros(0, dtype=ALLOC_DTYPE)


def _kernels(rows: list[tuple[int, int, str, int]]) -> tuple[np.ndarray, list[str]]:
    names = sorted({r[2] for r in rows})
    index = {n: i for i, n in enumerate(names)}
    k = np.zeros(len(rows), dtype=KERNEL_DTYPE)
    for i, (s, e, n, d) in enumerate(rows):
        k[i] = (s, e, index[n], d)
    return np.sort(k, order=["start"]), names


def build_torch_allocator(cache_dir: str | None = None) -> str:
    """Compile ``managed_alloc.c`` into a shared library (once) and return its path."""
    src = Path(__file__).with_name("managed_alloc.c")
    d = Path(cache_dir or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "uvmlab"
    so = d / f"managed_alloc_{int(src.stat().st_mtime)}.so"
    if so.exists():
        return str(so)
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise GpuUnavailableError("a managed allocator for PyTorch needs a C compiler (gcc)")
    d.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mktemp(suffix=".so", dir=d)
    r = subprocess.run(
        [cc, "-shared", "-fPIC", "-O2", "-o", tmp, str(src), "-ldl", "-lpthread"],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise GpuUnavailableError(
            f"compiling the managed allocator failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
        )
    os.replace(tmp, so)
    return str(so)


def use_managed_memory(libs: tuple[str, ...] = MANAGED_LIBS) -> list[str]:
    """Route the named libraries' GPU allocations to managed memory; returns those done.

    A library that is not installed is skipped; PyTorch must not have allocated GPU memory yet.
    """
    done = []
    for lib in libs:
        if lib not in MANAGED_LIBS:
            raise UvmlabError(f"unknown library {lib!r} for --managed: use {', '.join(MANAGED_LIBS)} or none")
        t0 = time.monotonic()
        try:
            mod = __import__(lib)
        except ImportError:
            continue
        if lib == "cupy":
            mod.cuda.set_allocator(mod.cuda.MemoryPool(mod.cuda.malloc_managed).malloc)
        else:
            so = build_torch_allocator()
            alloc = mod.cuda.memory.CUDAPluggableAllocator(so, "uvmlab_managed_malloc", "uvmlab_managed_free")
            mod.cuda.memory.change_current_allocator(alloc)
        log.info("%s allocates managed memory (set up in %.1f s)", lib, time.monotonic() - t0)
        done.append(lib)
    return done


def _init_cuda() -> None:
    """Create the primary context (CUPTI's unified-memory counters need one)."""
    try:
        from cuda.bindings import runtime as rt
    except Exception as e:
        raise GpuUnavailableError(f"capture needs cuda-bindings ({type(e).__name__}: {e})") from None
    (err,) = rt.cudaFree(0)[:1]
    if int(err) != 0:
        raise GpuUnavailableError(f"no usable NVIDIA GPU (cudaFree(0) returned {err})")


def _synchronize() -> None:
    from cuda.bindings import runtime as rt

    rt.cudaDeviceSynchronize()


def _argv(command: list[str]) -> tuple[str, list[str], bool]:
    """(script or module, its arguments, is a module) from ``python [-m] prog args...``."""
    cmd = list(command)
    if cmd and Path(cmd[0]).name.startswith("python"):
        cmd = cmd[1:]
    if not cmd:
        raise UvmlabError("capture needs a program: uvmlab capture -- python prog.py [args]")
    if cmd[0] == "-m":
        if len(cmd) < 2:
            raise UvmlabError("capture: -m needs a module name")
        return cmd[1], cmd[2:], True
    if cmd[0].startswith("-"):
        raise UvmlabError(f"capture runs a Python script or -m module, not interpreter option {cmd[0]!r}")
    if not Path(cmd[0]).is_file():
        raise UvmlabError(f"capture: no such program {cmd[0]!r}")
    return cmd[0], cmd[1:], False


def capture_program(
    command: list[str], out: str, *, managed: tuple[str, ...] = MANAGED_LIBS
) -> dict[str, Any]:
    """Run ``command`` (``python prog.py args``) under capture and write ``out``.

    Returns a summary (records, kernels, allocations, counters, the program's exit status).
    """
    target, args, is_module = _argv(command)
    _init_cuda()
    info = device_info(0)
    try:
        ctr = UvmCounters()
    except Exception as e:  # keep capturing with CUPTI alone, and say so
        ctr = None
        info["counters_error"] = str(e)
    done = use_managed_memory(managed) if managed else []
    cap = ProgramCapture()
    before = ctr.snapshot() if ctr is not None else None
    t0 = time.perf_counter_ns()
    exit_code: int | str = 0
    old_argv = sys.argv
    sys.argv = [target, *args]
    log.info("running %s under CUPTI capture", " ".join([target, *args]))
    try:
        if is_module:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target, run_name="__main__")
    except SystemExit as e:
        exit_code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception as e:  # the program's own failure: keep what was captured, then report it
        exit_code = f"{type(e).__name__}: {e}"
    finally:
        sys.argv = old_argv
        _synchronize()
        wall = time.perf_counter_ns() - t0
        cap.flush()
        after = ctr.snapshot() if ctr is not None else None
        cap.close()
    records = cap.records().copy()
    kernels, names = _kernels(cap.kernel_rows)
    allocs = _allocs(cap.mem_rows)
    meta: dict[str, Any] = {
        **info,
        "program": [target, *args],
        "module": is_module,
        "managed": done,
        "wall_ns": int(wall),
        "exit": exit_code,
        "cupti_dropped": cap.dropped(),
        "record_errors": cap.errors,
    }
    if before is not None and after is not None:
        meta["counters"] = counter_deltas(before, after)
        got = {
            "bytes_htod": int(records["value"][records["kind"] == 1].sum()),
            "bytes_dtoh": int(records["value"][records["kind"] == 2].sum()),
        }
        meta["records_missing"] = {k: meta["counters"][k] - v for k, v in got.items()}
    trace = UmTrace(records, kernels, names, allocs, source=out, meta=meta)
    write_capture(out, trace)
    summary = {
        "out": out,
        "records": len(records),
        "kernels": len(kernels),
        "allocations": len(allocs),
        "wall_s": wall / 1e9,
        "exit": exit_code,
        "managed": done,
        **({"counters": meta["counters"]} if "counters" in meta else {}),
    }
    log.debug("capture summary %s", json.dumps(summary))
    return summary


def host_view(ptr: int, nbytes: int, dtype: Any = np.float32) -> np.ndarray:
    """A NumPy view of managed memory at ``ptr`` (the CPU touches it in place, faulting)."""
    buf = (ctypes.c_char * nbytes).from_address(ptr)
    return np.frombuffer(buf, dtype=dtype)
