"""Ranges of every value the engine uses, and the bound on a workload's total work.

``validate_workload`` (ir.py) proves a workload is well formed; this proves it is one the model
can run in bounded time and memory. A file the reader accepts can still ask for 2^62 touches of
one page, a kernel that computes for 2^63 ns, or a processor the machine does not have; each of
those is a ``WorkloadError`` here, before anything runs.

``check_ranges`` is machine-independent and part of validation. ``check_fits`` checks a
workload against the machine it is about to run on: its GPU count and memory, and the work
bound (``--max-touches``).
"""

from __future__ import annotations

import unicodedata

import numpy as np

from uvmlab.core.errors import WorkloadError
from uvmlab.core.sizes import PAGES_PER_BLOCK, VA_BLOCK_SIZE

#: UVM_ID_MAX_PROCESSORS (uvm_processors.h): the CPU and up to 32 GPUs
MAX_PROCESSORS = 33
#: the modelled VA space: 47 bits, the x86-64 user address space (4-level page tables)
MAX_VA_BYTES = 1 << 47
#: pinned host memory the modelled host can lock (its per-page state is written in full)
MAX_PINNED_BYTES = 1 << 40
#: one kernel's or CPU phase's compute time: 2^50 ns is 13 days
MAX_COMPUTE_NS = 1 << 50
#: a workload's total compute time, so that the clock stays exact in a float64
MAX_TOTAL_NS = 1 << 53
MAX_OPS = 1 << 20
MAX_ALLOCS = 1 << 16
MAX_NAME = 1024  #: characters in a workload, allocation or operation name
#: default bound on a workload's work (touches, plus pages that advice and prefetch cover):
#: about 10 minutes of model time on the fault-heavy path; --max-touches raises it
DEFAULT_MAX_TOUCHES = 1 << 36


def check_name(name: object, what: str) -> None:
    """Names end up in tables, plots, HTML and Parquet: printable Unicode, no surrogates."""
    if not isinstance(name, str):
        raise WorkloadError(f"{what} is not a string")
    if len(name) > MAX_NAME:
        raise WorkloadError(f"{what} is {len(name)} characters long (at most {MAX_NAME})")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise WorkloadError(f"{what} {name[:40]!r} is not valid Unicode (a lone surrogate)") from None
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise WorkloadError(f"{what} {name[:40]!r} holds the control character U+{ord(bad):04X}")


def check_ranges(w: object) -> None:
    """Machine-independent ranges of a workload's values (``w`` is a Workload)."""
    allocs, ops = w.allocs, w.ops  # type: ignore[attr-defined]
    check_name(w.name, "the workload's name")  # type: ignore[attr-defined]
    if len(allocs) > MAX_ALLOCS:
        raise WorkloadError(f"{len(allocs)} allocations (at most {MAX_ALLOCS})")
    if len(ops) > MAX_OPS:
        raise WorkloadError(f"{len(ops)} operations (at most {MAX_OPS})")
    va = 0
    for a in allocs:
        check_name(a.name, "allocation name")
        va += -(-a.bytes // VA_BLOCK_SIZE) * VA_BLOCK_SIZE
    if va + VA_BLOCK_SIZE > MAX_VA_BYTES:
        raise WorkloadError(
            f"the allocations need {va >> 40} TiB of VA, more than the modelled "
            f"{MAX_VA_BYTES >> 40} TiB address space (47-bit user VA)"
        )
    pinned = sum(a.bytes for a in allocs if int(a.kind) == 2)
    if pinned > MAX_PINNED_BYTES:
        raise WorkloadError(
            f"{pinned >> 30} GiB of pinned host memory (the model's host locks "
            f"at most {MAX_PINNED_BYTES >> 30} GiB)"
        )
    total_ns = 0
    for k, op in enumerate(ops):
        kind = op.op
        if kind in ("kernel", "cpu"):
            check_name(op.name, f"op {k}'s name")
            if not 0 <= op.compute_ns <= MAX_COMPUTE_NS:
                raise WorkloadError(
                    f"op {k} ({op.name[:40]}): compute time {op.compute_ns} ns "
                    f"is outside 0 .. 2^50 ns (13 days)"
                )
            total_ns += op.compute_ns
            if kind == "kernel" and not 1 <= op.gpu < MAX_PROCESSORS:
                raise WorkloadError(
                    f"op {k} ({op.name[:40]}): GPU {op.gpu} is not a GPU "
                    f"processor id (1 .. {MAX_PROCESSORS - 1})"
                )
        elif kind in ("advise", "prefetch") and not 0 <= op.processor < MAX_PROCESSORS:
            raise WorkloadError(
                f"op {k} ({kind}): processor {op.processor} is outside 0 .. {MAX_PROCESSORS - 1}"
            )
    if total_ns > MAX_TOTAL_NS:
        raise WorkloadError(f"the operations compute for {total_ns} ns in all (at most 2^53)")


def work(w: object) -> int:
    """The work a workload asks of the engine: its touches, plus the pages that advice and
    prefetch operations cover and those of pinned and device allocations (set up page by
    page), plus a block's worth per operation."""
    segs = w.segments  # type: ignore[attr-defined]
    total = int(np.asarray(segs["count"], dtype=np.float64).sum()) if len(segs) else 0
    for op in w.ops:  # type: ignore[attr-defined]
        total += PAGES_PER_BLOCK
        if op.op in ("advise", "prefetch"):
            total += max(0, int(op.num_pages))
    total += sum(a.pages for a in w.allocs if int(a.kind) != 0)  # type: ignore[attr-defined]
    return total


def check_fits(w: object, *, n_gpus: int, gpu_bytes: int, max_touches: int = DEFAULT_MAX_TOUCHES) -> None:
    """Can this machine run ``w`` in bounded time? Its processors exist, its device
    allocations fit the GPU's memory, its work is within ``max_touches``."""
    for k, op in enumerate(w.ops):  # type: ignore[attr-defined]
        if op.op == "kernel" and op.gpu > n_gpus:
            raise WorkloadError(
                f"op {k} ({op.name[:40]}) runs on gpu{op.gpu - 1}, but the model has {n_gpus} GPU(s)"
            )
        if op.op in ("advise", "prefetch") and op.processor > n_gpus:
            raise WorkloadError(
                f"op {k} ({op.op}) names processor {op.processor} "
                f"(gpu{op.processor - 1}), but the model has {n_gpus} GPU(s)"
            )
    device = sum(-(-a.bytes // VA_BLOCK_SIZE) * VA_BLOCK_SIZE for a in w.allocs if int(a.kind) == 1)  # type: ignore[attr-defined]
    if device > gpu_bytes:
        raise WorkloadError(
            f"device allocations need {device / 2**30:.1f} GiB, more than the "
            f"{gpu_bytes / 2**30:.1f} GiB of GPU memory the model has "
            "(cudaMalloc would fail)"
        )
    units = work(w)
    if units > max_touches:
        raise WorkloadError(
            f"the workload asks for {units:.3g} touches of work, over the bound "
            f"of {max_touches:.3g}; raise it with --max-touches if you mean it"
        )
