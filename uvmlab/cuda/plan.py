"""Pure translation of a workload into what the real-GPU executor does (no GPU needed).

A GPU kernel op becomes an :class:`EncodedKernel`: one small table per touch segment (prefix sum
of touch counts, allocation, start, stride, kind and access) plus the slice of the index pool it
uses. The CUDA kernel in ``executor.py`` maps global touch number ``t`` to its segment with the
prefix sums and touches exactly one 4-byte word of that page, so a thread per touch in flight
reproduces the IR's touch stream in order. :func:`expand_encoded` is the same mapping in numpy; the
tests check it against the IR, which is how the kernel's indexing is verified without a GPU.

A CPU op becomes chunks of word indices per allocation (:func:`cpu_chunks`), in the IR's order,
that numpy applies to the managed pointer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from uvmlab.core.errors import WorkloadError
from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.workload.ir import (
    SEG_INDEX,
    SEG_RUN,
    Access,
    Advice,
    AdviseOp,
    AllocKind,
    CpuOp,
    FreeOp,
    KernelOp,
    PrefetchOp,
    SyncOp,
    Workload,
    processor_name,
)

WORDS_PER_PAGE = PAGE_SIZE // 4  # the kernel and numpy touch uint32 words

#: meta bits of an encoded segment: bit 0 = index segment, bits 1-2 = access
META_INDEX = 1
ACCESS_SHIFT = 1


@dataclass
class EncodedKernel:
    """A kernel op's touch stream as the device tables the CUDA kernel reads."""

    cum: np.ndarray  # int64[n+1]: first touch number of each segment, cum[n] = total
    alloc: np.ndarray  # int32[n]: allocation index (the executor turns it into a base address)
    start: np.ndarray  # int64[n]: first page (run) or offset into ``pool`` (index)
    stride: np.ndarray  # int64[n]: page stride (run), 0 for index segments
    meta: np.ndarray  # uint32[n]: META_INDEX | access << ACCESS_SHIFT
    pool: np.ndarray  # uint32: the pool slice this kernel's index segments use

    @property
    def total(self) -> int:
        return int(self.cum[-1]) if len(self.cum) else 0

    @property
    def nseg(self) -> int:
        return len(self.alloc)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.cum, self.alloc, self.start, self.stride, self.meta, self.pool))


def encode_kernel(w: Workload, op: KernelOp) -> EncodedKernel:
    """Encode a kernel op's segments for the device (vectorised, no per-touch objects).

    Atomics on pinned host memory are issued as writes: PCIe gives no native host atomics on the
    test machines (``HostNativeAtomicSupported`` = 0), and the IR's intent there, a remote
    store to system memory, is the same either way.
    """
    segs = w.segments[op.seg_lo : op.seg_hi]
    n = len(segs)
    cum = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(segs["count"], out=cum[1:])
    kinds = np.array([a.kind for a in w.allocs], dtype=np.int64)
    access = segs["access"].astype(np.uint32)
    pinned = kinds[segs["alloc"]] == AllocKind.PINNED
    access = np.where(pinned & (access == Access.ATOMIC), np.uint32(Access.WRITE), access)
    is_index = segs["kind"] == SEG_INDEX
    meta = (is_index.astype(np.uint32) * META_INDEX) | (access << ACCESS_SHIFT)
    start = segs["start"].astype(np.int64).copy()
    stride = np.where(is_index, 0, segs["stride"]).astype(np.int64)
    if is_index.any():
        # Ship only the pool slice this op uses, and rebase the offsets into it.
        lo = int(start[is_index].min())
        hi = int((start[is_index] + segs["count"][is_index]).max())
        pool = np.ascontiguousarray(w.pool[lo:hi], dtype=np.uint32)
        start[is_index] -= lo
    else:
        pool = np.zeros(1, dtype=np.uint32)  # the kernel wants a valid pointer
    return EncodedKernel(cum, segs["alloc"].astype(np.int32), start, stride, meta.astype(np.uint32), pool)


def expand_encoded(
    enc: EncodedKernel, lo: int = 0, hi: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(alloc, page, access) of touches ``lo..hi`` as the CUDA kernel computes them.

    The same arithmetic as the device code (search the prefix sums, then start + k*stride or
    pool[start + k]), in numpy, for tests and for small reference expansions.
    """
    hi = enc.total if hi is None else min(hi, enc.total)
    t = np.arange(lo, hi, dtype=np.int64)
    s = np.searchsorted(enc.cum, t, side="right") - 1
    k = t - enc.cum[s]
    is_index = (enc.meta[s] & META_INDEX) != 0
    page = enc.start[s] + k * enc.stride[s]
    if is_index.any():
        page[is_index] = enc.pool[enc.start[s][is_index] + k[is_index]]
    return enc.alloc[s], page, (enc.meta[s] >> ACCESS_SHIFT).astype(np.uint8)


def expand_ir(w: Workload, seg_lo: int, seg_hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(alloc, page, access) of every touch of segments ``seg_lo..seg_hi``, straight from the IR."""
    allocs, pages, accesses = [], [], []
    for s in w.segments[seg_lo:seg_hi]:
        n = int(s["count"])
        if s["kind"] == SEG_RUN:
            p = int(s["start"]) + np.arange(n, dtype=np.int64) * int(s["stride"])
        else:
            p = w.pool[int(s["start"]) : int(s["start"]) + n].astype(np.int64)
        pages.append(p)
        allocs.append(np.full(n, int(s["alloc"]), dtype=np.int32))
        accesses.append(np.full(n, int(s["access"]), dtype=np.uint8))
    if not pages:
        return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.uint8)
    return np.concatenate(allocs), np.concatenate(pages), np.concatenate(accesses)


@dataclass(frozen=True)
class CpuChunk:
    """Touches of one CPU segment piece: word indices into one allocation, one access type."""

    alloc: int
    access: Access
    words: np.ndarray  # int64 indices of uint32 words, in touch order


def cpu_chunks(w: Workload, op: CpuOp, *, word: int = 0, chunk: int = 1 << 20) -> Iterator[CpuChunk]:
    """The CPU op's touches as word-index chunks of at most ``chunk`` touches, in IR order."""
    for s in w.segments[op.seg_lo : op.seg_hi]:
        n, a, acc = int(s["count"]), int(s["alloc"]), Access(int(s["access"]))
        for lo in range(0, n, chunk):
            m = min(chunk, n - lo)
            if s["kind"] == SEG_RUN:
                pages = int(s["start"]) + (lo + np.arange(m, dtype=np.int64)) * int(s["stride"])
            else:
                off = int(s["start"]) + lo
                pages = w.pool[off : off + m].astype(np.int64)
            yield CpuChunk(a, acc, pages * WORDS_PER_PAGE + word)


# --- op planning --------------------------------------------------------------------------------


@dataclass
class PlannedOp:
    """One IR op as the executor will run it; ``kind`` is the IR op name."""

    index: int
    kind: str
    name: str
    alloc: int = -1
    offset: int = 0  # bytes into the allocation (advise / prefetch)
    nbytes: int = 0
    location: tuple[str, int] | None = None  # ("host", 0) or ("device", ordinal)
    advice: Advice | None = None
    kernel: EncodedKernel | None = None
    touches: int = 0
    note: str = ""
    info: dict = field(default_factory=dict)


def location_of(processor: int) -> tuple[str, int]:
    """IR processor id (0 = cpu, 1 = gpu0, ...) -> CUDA memory location."""
    return ("host", 0) if processor == 0 else ("device", processor - 1)


def plan_workload(w: Workload, *, word: int = 0) -> list[PlannedOp]:
    """Check that the real GPU can run ``w`` and translate every op; raise ``WorkloadError`` if not.

    What cannot run on a real GPU: pageable (HMM) and file (GAIA) allocations, the CPU touching a
    device (cudaMalloc) allocation, advice or prefetch on memory that is not managed, and (so far)
    a workload on several GPUs. ``word`` is the uint32 word of each page that touches use
    (0..1023).
    """
    w.validate()
    if w.gpus > 1:  # every kernel would run on one device: the peer traffic would be wrong
        raise WorkloadError(
            f"workload {w.name!r} runs on {w.gpus} GPUs; the real-GPU backend runs one GPU so far"
        )
    for a in w.allocs:
        if a.kind in (AllocKind.PAGEABLE, AllocKind.FILE):
            # malloc'd memory needs PageableMemoryAccess=1 (HMM), which the lab's GPUs do not
            # report (`uvmlab hmm support`); a GAIA file mapping needs GAIA's kernel
            raise WorkloadError(
                f"allocation {a.name!r} is {a.kind.name.lower()} memory: the real-GPU backend runs "
                "managed, device and pinned allocations (see docs/gaia-hmm.md)"
            )
    if not 0 <= word < WORDS_PER_PAGE:
        raise WorkloadError(f"touch word must be in 0..{WORDS_PER_PAGE - 1}, got {word}")
    plan: list[PlannedOp] = []
    for i, op in enumerate(w.ops):
        if isinstance(op, KernelOp):
            enc = encode_kernel(w, op)
            plan.append(
                PlannedOp(
                    i,
                    "kernel",
                    op.name,
                    kernel=enc,
                    touches=enc.total,
                    location=location_of(op.gpu),
                    info={"compute_ns": op.compute_ns, "threads": op.threads},
                )
            )
        elif isinstance(op, CpuOp):
            segs = w.segments[op.seg_lo : op.seg_hi]
            for a in np.unique(segs["alloc"]):
                if w.allocs[a].kind == AllocKind.DEVICE:
                    raise WorkloadError(
                        f"op {i} ({op.name}): the CPU cannot touch device allocation {w.allocs[a].name!r}"
                    )
            plan.append(
                PlannedOp(
                    i, "cpu", op.name, touches=int(segs["count"].sum()), info={"compute_ns": op.compute_ns}
                )
            )
        elif isinstance(op, AdviseOp | PrefetchOp):
            a = w.allocs[op.alloc]
            if a.kind != AllocKind.MANAGED:
                raise WorkloadError(
                    f"op {i} ({op.op}): {a.name!r} is not managed memory; advice "
                    "and prefetch apply to managed allocations only"
                )
            off = op.start_page * PAGE_SIZE
            nbytes = op.num_pages * PAGE_SIZE
            if isinstance(op, AdviseOp):
                plan.append(
                    PlannedOp(
                        i,
                        "advise",
                        op.advice.name.lower(),
                        alloc=op.alloc,
                        offset=off,
                        nbytes=nbytes,
                        advice=op.advice,
                        location=location_of(op.processor),
                    )
                )
            else:
                dest = processor_name(op.processor)
                plan.append(
                    PlannedOp(
                        i,
                        "prefetch",
                        f"prefetch->{dest}",
                        alloc=op.alloc,
                        offset=off,
                        nbytes=nbytes,
                        location=location_of(op.processor),
                    )
                )
        elif isinstance(op, SyncOp):
            plan.append(PlannedOp(i, "sync", "sync"))
        elif isinstance(op, FreeOp):
            plan.append(PlannedOp(i, "free", f"free {w.allocs[op.alloc].name}", alloc=op.alloc))
        else:  # validate() already refuses unknown ops; keep the planner total anyway
            raise WorkloadError(f"op {i}: unknown operation {type(op).__name__}")
    return plan


def alloc_nbytes(w: Workload, i: int) -> int:
    """Bytes the executor allocates for allocation ``i``: whole 4 KiB pages, so that every page
    index the IR can name exists."""
    return w.allocs[i].pages * PAGE_SIZE


def max_gpu_ordinal(plan: list[PlannedOp]) -> int:
    """Highest CUDA device ordinal the plan names (-1 when none)."""
    return max((p.location[1] for p in plan if p.location and p.location[0] == "device"), default=-1)
