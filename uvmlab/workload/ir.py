"""The workload IR (docs/trace-format.md): allocations and an ordered list of operations.

Touch streams are compact. Every kernel and CPU phase owns a slice of one shared array of
*segments* (``SEGMENT_DTYPE``); a segment is either a run ``start, start+stride, ...`` of
``count`` pages or a slice of one shared index pool (``uint32`` page numbers). A workload that
touches 10⁹ pages as runs costs a few hundred bytes; one that touches 10⁷ random pages costs
40 MB. Nothing here holds one Python object per touch.

Page numbers inside a segment are 4 KiB pages relative to the start of the segment's
allocation. The engine expands segments in chunks (``uvmlab.workload.expand``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from uvmlab.core.errors import WorkloadError
from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.workload.bounds import check_ranges

#: 2 added pageable and file-backed allocations (HMM, GAIA) and the maquire / mrelease ops;
#: version-1 workloads still load (they use none of these).
IR_VERSION = 2

SEG_RUN = 0  #: pages start + i*stride, i < count
SEG_INDEX = 1  #: pages pool[start : start+count]

SEGMENT_DTYPE = np.dtype(
    [
        ("alloc", "<i4"),  # allocation index
        ("kind", "u1"),  # SEG_RUN or SEG_INDEX
        ("access", "u1"),  # Access
        ("start", "<i8"),  # first page (run) or pool offset (index)
        ("count", "<i8"),  # number of touches
        ("stride", "<i8"),  # page stride (run); 0 for index segments
    ]
)


class Access(IntEnum):
    """Access types, ordered by intrusiveness like the driver's ``uvm_fault_access_type_t``."""

    PREFETCH = 0
    READ = 1
    WRITE = 2
    ATOMIC = 3  # the IR's atomic; the driver services it as ATOMIC_STRONG


ACCESS_NAMES = {
    "read": Access.READ,
    "r": Access.READ,
    "write": Access.WRITE,
    "w": Access.WRITE,
    "atomic": Access.ATOMIC,
    "a": Access.ATOMIC,
}


class AllocKind(IntEnum):
    MANAGED = 0  # cudaMallocManaged: migrates on demand
    DEVICE = 1  # cudaMalloc: GPU memory, never migrates, CPU cannot touch it
    PINNED = 2  # cudaMallocHost: CPU memory, the GPU maps it remotely
    PAGEABLE = 3  # malloc'd memory: the GPU touches it only through HMM (IR version 2)
    FILE = 4  # a file mmap'd into GAIA's shared CPU-GPU page cache (IR version 2)


#: allocation kinds and ops that need IR version 2
V2_KINDS = (AllocKind.PAGEABLE, AllocKind.FILE)


class Advice(IntEnum):
    """cudaMemAdvise values, mapped to the driver ioctls 42-47 (uvm_policy.c)."""

    SET_PREFERRED_LOCATION = 0
    UNSET_PREFERRED_LOCATION = 1
    SET_ACCESSED_BY = 2
    UNSET_ACCESSED_BY = 3
    SET_READ_MOSTLY = 4  # UVM_ENABLE_READ_DUPLICATION
    UNSET_READ_MOSTLY = 5  # UVM_DISABLE_READ_DUPLICATION


def processor_id(name: str | int) -> int:
    """Processor names used in the IR: ``cpu`` is 0, ``gpu0`` is 1, ``gpu1`` is 2, ..."""
    if isinstance(name, int) and not isinstance(name, bool):
        if name < 0:
            raise WorkloadError(f"processor id must be >= 0, got {name}")
        return name
    s = str(name).strip().lower()
    if s == "cpu":
        return 0
    if s == "gpu":
        return 1
    if s.startswith("gpu") and s[3:].isdigit():
        return int(s[3:]) + 1
    raise WorkloadError(f"unknown processor {name!r}: use 'cpu' or 'gpu0', 'gpu1', ...")


def processor_name(pid: int) -> str:
    return "cpu" if pid == 0 else f"gpu{pid - 1}"


@dataclass(frozen=True)
class Alloc:
    """One allocation. For ``FILE`` allocations, ``cached_pages`` is how many of the file's
    first pages start in the host page cache and ``dirty_pages`` how many of those start dirty
    (written, not yet on disk); both are 0 for every other kind."""

    name: str
    bytes: int
    kind: AllocKind = AllocKind.MANAGED
    cached_pages: int = 0
    dirty_pages: int = 0

    @property
    def pages(self) -> int:
        return -(-self.bytes // PAGE_SIZE)


# --- operations -------------------------------------------------------------------------------
# Each op is a small frozen dataclass; touch-carrying ops hold a [seg_lo, seg_hi) slice of the
# workload's segment array.


@dataclass(frozen=True)
class AdviseOp:
    alloc: int
    advice: Advice
    processor: int  # ignored for the unset/read-mostly advices
    start_page: int
    num_pages: int
    op: str = field(default="advise", init=False)


@dataclass(frozen=True)
class PrefetchOp:
    alloc: int
    processor: int
    start_page: int
    num_pages: int
    op: str = field(default="prefetch", init=False)


@dataclass(frozen=True)
class KernelOp:
    name: str
    gpu: int  # processor id (1 = gpu0)
    seg_lo: int
    seg_hi: int
    compute_ns: int  # time the kernel takes when nothing faults
    #: launch shape: GPU threads in flight, thread t doing touches t, t + threads, ... (a
    #: grid-stride kernel); 0 = the run's default (the engine's concurrency, the executor's grid)
    threads: int = 0
    op: str = field(default="kernel", init=False)


@dataclass(frozen=True)
class CpuOp:
    name: str
    seg_lo: int
    seg_hi: int
    compute_ns: int
    op: str = field(default="cpu", init=False)


@dataclass(frozen=True)
class AcquireOp:
    """GAIA's ``maquire(start, len, flags)``: make ``processor``'s view of the file range
    current (the other side's published writes become visible to it)."""

    alloc: int
    processor: int
    start_page: int
    num_pages: int
    op: str = field(default="maquire", init=False)


@dataclass(frozen=True)
class ReleaseOp:
    """GAIA's ``mrelease``: publish ``processor``'s writes to the file range."""

    alloc: int
    processor: int
    start_page: int
    num_pages: int
    op: str = field(default="mrelease", init=False)


@dataclass(frozen=True)
class SyncOp:
    op: str = field(default="sync", init=False)


@dataclass(frozen=True)
class FreeOp:
    alloc: int
    op: str = field(default="free", init=False)


Op = AdviseOp | PrefetchOp | KernelOp | CpuOp | SyncOp | FreeOp | AcquireOp | ReleaseOp
OP_TYPES: dict[str, type] = {
    "advise": AdviseOp,
    "prefetch": PrefetchOp,
    "kernel": KernelOp,
    "cpu": CpuOp,
    "sync": SyncOp,
    "free": FreeOp,
    "maquire": AcquireOp,
    "mrelease": ReleaseOp,
}


@dataclass
class Workload:
    """A named, seeded, self-describing list of operations over allocations."""

    name: str
    allocs: list[Alloc]
    ops: list[Op]
    segments: np.ndarray  # SEGMENT_DTYPE
    pool: np.ndarray  # uint32 page numbers used by SEG_INDEX segments
    seed: int = 0
    params: dict[str, object] = field(default_factory=dict)
    version: int = IR_VERSION

    # -- derived facts ------------------------------------------------------------------------
    def touch_count(self, op: KernelOp | CpuOp | None = None) -> int:
        segs = self.segments if op is None else self.segments[op.seg_lo : op.seg_hi]
        return int(segs["count"].sum())

    @property
    def gpus(self) -> int:
        """How many GPUs the workload runs on: the highest GPU any kernel, prefetch or advice
        names (``gpu1`` -> 2), at least one. The IR names the processor of each such op."""
        procs = [op.gpu for op in self.ops if isinstance(op, KernelOp)]
        procs += [op.processor for op in self.ops if isinstance(op, AdviseOp | PrefetchOp)]
        return max([1, *procs])

    @property
    def managed_bytes(self) -> int:
        return sum(a.bytes for a in self.allocs if a.kind == AllocKind.MANAGED)

    def alloc_index(self, name: str) -> int:
        for i, a in enumerate(self.allocs):
            if a.name == name:
                return i
        raise WorkloadError(f"workload {self.name!r} has no allocation named {name!r}")

    def validate(self) -> None:
        """Check every invariant of the IR; raise ``WorkloadError`` naming the first violation."""
        validate_workload(self)

    def __eq__(self, other: object) -> bool:  # arrays make the dataclass default unusable
        if not isinstance(other, Workload):
            return NotImplemented
        return (
            (self.name, self.allocs, self.ops, self.seed, self.params, self.version)
            == (other.name, other.allocs, other.ops, other.seed, other.params, other.version)
            and self.segments.dtype == other.segments.dtype
            and np.array_equal(self.segments, other.segments)
            and np.array_equal(self.pool, other.pool)
        )


def validate_workload(w: Workload) -> None:
    n_alloc = len(w.allocs)
    if not w.allocs:
        raise WorkloadError(f"workload {w.name!r} has no allocations")
    check_ranges(w)  # every value the engine uses has a checked range (bounds.py)
    names = set()
    for a in w.allocs:
        if a.bytes <= 0:
            raise WorkloadError(f"allocation {a.name!r}: size must be positive, got {a.bytes}")
        if a.name in names:
            raise WorkloadError(f"allocation name {a.name!r} is used twice")
        names.add(a.name)
        if a.kind in V2_KINDS and w.version < 2:
            raise WorkloadError(
                f"allocation {a.name!r}: kind {a.kind.name.lower()} needs IR "
                f"version 2, the workload says {w.version}"
            )
        if a.kind != AllocKind.FILE and (a.cached_pages or a.dirty_pages):
            raise WorkloadError(
                f"allocation {a.name!r}: only file allocations have page-cache "
                "state (cached_pages, dirty_pages)"
            )
        if not 0 <= a.dirty_pages <= a.cached_pages <= a.pages:
            raise WorkloadError(
                f"allocation {a.name!r}: need 0 <= dirty_pages ({a.dirty_pages}) <= cached_pages "
                f"({a.cached_pages}) <= pages ({a.pages})"
            )
    segs, pool = w.segments, w.pool
    if segs.dtype != SEGMENT_DTYPE:
        raise WorkloadError("touch segments have the wrong dtype")
    if pool.dtype != np.uint32 or pool.ndim != 1:
        raise WorkloadError("index pool must be a 1-D uint32 array")
    if len(segs):
        if np.any((segs["alloc"] < 0) | (segs["alloc"] >= n_alloc)):
            raise WorkloadError("a touch segment names an allocation that does not exist")
        if np.any(segs["kind"] > SEG_INDEX):
            raise WorkloadError("a touch segment has an unknown kind")
        if np.any((segs["access"] < Access.READ) | (segs["access"] > Access.ATOMIC)):
            raise WorkloadError("a touch segment has an unknown access type")
        if np.any(segs["count"] <= 0):
            raise WorkloadError("a touch segment has a non-positive count")
        alloc_pages = np.array([a.pages for a in w.allocs], dtype=np.int64)[segs["alloc"]]
        run = segs["kind"] == SEG_RUN
        first = segs["start"][run]
        steps = segs["count"][run] - 1
        stride = segs["stride"][run]
        lim = alloc_pages[run]
        # A run stays inside [0, lim) only if steps * |stride| < lim: check that without the
        # multiplication first, so a hostile count or stride cannot overflow int64.
        span_ok = (stride == 0) | (steps <= (lim - 1) // np.maximum(np.abs(stride), 1))
        last = first + np.where(span_ok, steps * stride, 0)
        bad = ~span_ok | (first < 0) | (first >= lim) | (last < 0) | (last >= lim)
        if np.any(bad):
            i = int(np.flatnonzero(run)[np.argmax(bad)])
            a = w.allocs[segs["alloc"][i]]
            raise WorkloadError(
                f"touch outside its allocation: segment {i} runs {int(segs['count'][i])} pages from "
                f"page {int(segs['start'][i])} with stride {int(segs['stride'][i])} in {a.name!r}, "
                f"which has {a.pages} pages"
            )
        idx = np.flatnonzero(~run)
        for i in idx.tolist():  # one check per index segment, vectorised inside
            lo, n = int(segs["start"][i]), int(segs["count"][i])
            if lo < 0 or lo + n > len(pool):
                raise WorkloadError(f"index segment {i} points outside the index pool")
            a = w.allocs[segs["alloc"][i]]
            if n and int(pool[lo : lo + n].max()) >= a.pages:
                raise WorkloadError(
                    f"touch outside its allocation: segment {i} touches page "
                    f"{int(pool[lo : lo + n].max())} of {a.name!r}, which has {a.pages} pages"
                )
    live = [True] * n_alloc
    n_seg = len(segs)
    for k, op in enumerate(w.ops):
        if isinstance(op, KernelOp | CpuOp):
            if not (0 <= op.seg_lo <= op.seg_hi <= n_seg):
                raise WorkloadError(f"op {k} ({op.name}) has a bad segment slice")
            if op.compute_ns < 0:
                raise WorkloadError(f"op {k} ({op.name}) has negative compute time")
            if isinstance(op, KernelOp) and op.gpu < 1:
                raise WorkloadError(f"op {k} ({op.name}): a kernel must run on a GPU")
            if isinstance(op, KernelOp) and op.threads < 0:
                raise WorkloadError(f"op {k} ({op.name}): threads must be >= 0 (0 = the run's default)")
            for a in np.unique(segs["alloc"][op.seg_lo : op.seg_hi]):
                if not live[a]:
                    raise WorkloadError(f"op {k} ({op.name}) touches {w.allocs[a].name!r} after it was freed")
        elif isinstance(op, AdviseOp | PrefetchOp | AcquireOp | ReleaseOp):
            if not 0 <= op.alloc < n_alloc:
                raise WorkloadError(f"op {k} ({op.op}) names an allocation that does not exist")
            pages = w.allocs[op.alloc].pages
            if op.start_page < 0 or op.num_pages <= 0 or op.start_page + op.num_pages > pages:
                raise WorkloadError(
                    f"op {k} ({op.op}) covers pages {op.start_page}..{op.start_page + op.num_pages}"
                    f" outside {w.allocs[op.alloc].name!r} ({pages} pages)"
                )
            if not live[op.alloc]:
                raise WorkloadError(f"op {k} ({op.op}) uses {w.allocs[op.alloc].name!r} after free")
            if isinstance(op, AcquireOp | ReleaseOp):
                if w.version < 2:
                    raise WorkloadError(f"op {k} ({op.op}) needs IR version 2, the workload says {w.version}")
                if w.allocs[op.alloc].kind != AllocKind.FILE:
                    raise WorkloadError(
                        f"op {k} ({op.op}) names {w.allocs[op.alloc].name!r}, which is not a file allocation"
                    )
                if op.processor > 1:
                    raise WorkloadError(f"op {k} ({op.op}): GAIA's page cache spans the CPU and gpu0 only")
        elif isinstance(op, FreeOp):
            if not 0 <= op.alloc < n_alloc or not live[op.alloc]:
                raise WorkloadError(f"op {k} frees an allocation that is not live")
            live[op.alloc] = False
        elif not isinstance(op, SyncOp):
            raise WorkloadError(f"op {k} has unknown type {type(op).__name__}")
