"""Building workloads: ``WorkloadBuilder`` turns allocations and touch runs into the IR's
compact segments (``uvmlab.workload.ir``), so generators and importers never touch the encoding."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from uvmlab.core.errors import WorkloadError
from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.core.units import parse_size
from uvmlab.workload.ir import (
    ACCESS_NAMES,
    SEG_INDEX,
    SEG_RUN,
    SEGMENT_DTYPE,
    V2_KINDS,
    Access,
    AcquireOp,
    Advice,
    AdviseOp,
    Alloc,
    AllocKind,
    CpuOp,
    FreeOp,
    KernelOp,
    Op,
    PrefetchOp,
    ReleaseOp,
    SyncOp,
    Workload,
    processor_id,
)


def _access(a: str | int | Access) -> Access:
    if isinstance(a, str):
        try:
            return ACCESS_NAMES[a.lower()]
        except KeyError:
            raise WorkloadError(f"unknown access type {a!r}: use read, write or atomic") from None
    return Access(int(a))


@dataclass(frozen=True)
class Touches:
    """A touch segment under construction: returned by ``WorkloadBuilder.run`` / ``.index``."""

    alloc: int
    kind: int
    access: Access
    start: int
    count: int
    stride: int
    pages: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class RunBatch:
    """Many runs of one allocation and access, as arrays: returned by ``WorkloadBuilder.runs``.

    Each run becomes its own segment, as ``run`` would make it, without a Python object per run.
    """

    alloc: int
    access: Access
    starts: np.ndarray  # int64, first page of each run
    counts: np.ndarray  # int64, pages in each run (>= 1)
    stride: int

    @property
    def count(self) -> int:
        return int(self.counts.sum())


class WorkloadBuilder:
    """Builds a ``Workload``; generators use it so they never touch the encoding directly.

    >>> b = WorkloadBuilder("demo", seed=1)
    >>> buf = b.alloc("buf", "8MiB")
    >>> b.cpu("init", [b.run(buf, access="write")])
    >>> b.kernel("read", [b.run(buf)])
    >>> w = b.build()
    """

    def __init__(
        self, name: str, *, seed: int = 0, params: dict | None = None, default_ns_per_touch: float = 2.0
    ) -> None:
        self.name = name
        self.seed = seed
        self.params = dict(params or {})
        self.allocs: list[Alloc] = []
        self.ops: list[Op] = []
        self._segments: list[tuple] = []  # pending single segments, not yet in _parts
        self._parts: list[np.ndarray] = []  # SEGMENT_DTYPE arrays, in order
        self._n_segments = 0
        self._pools: list[np.ndarray] = []
        self._pool_len = 0
        self.default_ns_per_touch = default_ns_per_touch

    # allocations and non-touch ops
    def alloc(self, name: str, size: str | int, kind: str | AllocKind = "managed") -> int:
        if isinstance(kind, str):
            try:
                kind = AllocKind[kind.upper()]
            except KeyError:
                raise WorkloadError(
                    f"unknown allocation kind {kind!r}: use managed, device, pinned, pageable or file"
                ) from None
        self.allocs.append(Alloc(name, parse_size(size, what=f"allocation {name!r}"), kind))
        return len(self.allocs) - 1

    def file(self, name: str, size: str | int, *, cached: float = 1.0, dirty: float = 0.0) -> int:
        """A file mmap'd into GAIA's shared page cache; ``cached`` / ``dirty`` are the fractions
        of its pages (from the start) that begin in the host page cache / begin dirty there."""
        if not 0.0 <= dirty <= cached <= 1.0:
            raise WorkloadError(f"file {name!r}: need 0 <= dirty ({dirty}) <= cached ({cached}) <= 1")
        nbytes = parse_size(size, what=f"file {name!r}")
        pages = -(-nbytes // PAGE_SIZE)
        self.allocs.append(
            Alloc(name, nbytes, AllocKind.FILE, int(round(cached * pages)), int(round(dirty * pages)))
        )
        return len(self.allocs) - 1

    def maquire(
        self, alloc: int, processor: str | int = "gpu0", start: int = 0, num_pages: int | None = None
    ) -> None:
        s, n = self._range(alloc, start, num_pages)
        self.ops.append(AcquireOp(alloc, processor_id(processor), s, n))

    def mrelease(
        self, alloc: int, processor: str | int = "gpu0", start: int = 0, num_pages: int | None = None
    ) -> None:
        s, n = self._range(alloc, start, num_pages)
        self.ops.append(ReleaseOp(alloc, processor_id(processor), s, n))

    def pages(self, alloc: int) -> int:
        return self.allocs[alloc].pages

    def _range(self, alloc: int, start: int, num: int | None) -> tuple[int, int]:
        total = self.allocs[alloc].pages
        return start, (total - start if num is None else num)

    def advise(
        self,
        alloc: int,
        advice: str | Advice,
        processor: str | int = "gpu0",
        start: int = 0,
        num_pages: int | None = None,
    ) -> None:
        if isinstance(advice, str):
            try:
                advice = Advice[advice.upper()]
            except KeyError:
                raise WorkloadError(
                    f"unknown advice {advice!r}; one of {', '.join(a.name.lower() for a in Advice)}"
                ) from None
        s, n = self._range(alloc, start, num_pages)
        self.ops.append(AdviseOp(alloc, advice, processor_id(processor), s, n))

    def prefetch(
        self, alloc: int, processor: str | int = "gpu0", start: int = 0, num_pages: int | None = None
    ) -> None:
        s, n = self._range(alloc, start, num_pages)
        self.ops.append(PrefetchOp(alloc, processor_id(processor), s, n))

    def sync(self) -> None:
        self.ops.append(SyncOp())

    def free(self, alloc: int) -> None:
        self.ops.append(FreeOp(alloc))

    # touch segments
    def run(
        self,
        alloc: int,
        start: int = 0,
        count: int | None = None,
        stride: int = 1,
        access: str | Access = "read",
    ) -> Touches:
        """Pages ``start, start+stride, ...``; by default every page of the allocation."""
        if count is None:
            count = (self.allocs[alloc].pages - start + stride - 1) // stride
        return Touches(alloc, SEG_RUN, _access(access), int(start), int(count), int(stride))

    def runs(
        self,
        alloc: int,
        starts: np.ndarray,
        counts: np.ndarray | int,
        stride: int = 1,
        access: str | Access = "read",
    ) -> RunBatch:
        """One run per entry of ``starts`` (``counts`` pages each, a scalar or an array), in order:
        for patterns of thousands of runs, such as one per 2 MiB block of a huge allocation."""
        st = np.asarray(starts, dtype=np.int64).ravel()
        ct = np.broadcast_to(np.asarray(counts, dtype=np.int64), st.shape)
        keep = ct > 0
        return RunBatch(alloc, _access(access), st[keep].copy(), ct[keep].copy(), int(stride))

    def index(self, alloc: int, pages: np.ndarray, access: str | Access = "read") -> Touches:
        """Pages in the order given (any integer array of page numbers)."""
        arr = np.asarray(pages)
        if arr.ndim != 1 or arr.size == 0:
            raise WorkloadError("index touches need a non-empty 1-D array of page numbers")
        if arr.min() < 0 or arr.max() >= self.allocs[alloc].pages:
            raise WorkloadError(
                f"touch outside its allocation: page {int(arr.max())} of "
                f"{self.allocs[alloc].name!r}, which has {self.allocs[alloc].pages} pages"
            )
        return Touches(
            alloc, SEG_INDEX, _access(access), 0, int(arr.size), 0, arr.astype(np.uint32, copy=False)
        )

    def _flush(self) -> None:
        if self._segments:
            self._parts.append(np.array(self._segments, dtype=SEGMENT_DTYPE))
            self._segments = []

    def _add_touches(self, touches: Iterable[Touches | RunBatch]) -> tuple[int, int, int]:
        lo = self._n_segments
        n = 0
        for t in touches:
            if isinstance(t, RunBatch):
                if len(t.starts):
                    self._flush()
                    part = np.zeros(len(t.starts), dtype=SEGMENT_DTYPE)
                    part["alloc"], part["kind"], part["access"] = t.alloc, SEG_RUN, int(t.access)
                    part["start"], part["count"], part["stride"] = t.starts, t.counts, t.stride
                    self._parts.append(part)
                    self._n_segments += len(part)
                    n += t.count
                continue
            if t.count <= 0:
                continue
            if t.kind == SEG_INDEX:
                start = self._pool_len
                assert t.pages is not None  # an index segment carries its pages
                self._pools.append(t.pages)
                self._pool_len += t.count
            else:
                start = t.start
            self._segments.append((t.alloc, t.kind, int(t.access), start, t.count, t.stride))
            self._n_segments += 1
            n += t.count
        return lo, self._n_segments, n

    def kernel(
        self,
        name: str,
        touches: Sequence[Touches | RunBatch],
        *,
        gpu: str | int = "gpu0",
        compute_ns: int | None = None,
        threads: int = 0,
    ) -> None:
        """A GPU kernel over ``touches``; ``threads``: its launch shape (threads in flight; 0 =
        the run's default), as the real kernel it stands for is launched."""
        lo, hi, n = self._add_touches(touches)
        ns = int(n * self.default_ns_per_touch) if compute_ns is None else int(compute_ns)
        self.ops.append(KernelOp(name, processor_id(gpu), lo, hi, ns, int(threads)))

    def cpu(self, name: str, touches: Sequence[Touches | RunBatch], *, compute_ns: int | None = None) -> None:
        lo, hi, n = self._add_touches(touches)
        ns = int(n * 50) if compute_ns is None else int(compute_ns)
        self.ops.append(CpuOp(name, lo, hi, ns))

    def build(self) -> Workload:
        self._flush()
        segs = np.concatenate(self._parts) if self._parts else np.zeros(0, dtype=SEGMENT_DTYPE)
        pool = np.concatenate(self._pools) if self._pools else np.zeros(0, dtype=np.uint32)
        w = Workload(
            self.name,
            list(self.allocs),
            list(self.ops),
            segs,
            pool.astype(np.uint32),
            self.seed,
            dict(self.params),
            needed_version(self.allocs, self.ops),
        )
        w.validate()
        return w


def needed_version(allocs: Sequence[Alloc], ops: Sequence[Op]) -> int:
    """The lowest IR version that can express these allocations and ops: a workload that uses
    nothing new stays at version 1, so its file reads in older uvmlab releases too."""
    if any(a.kind in V2_KINDS for a in allocs) or any(isinstance(op, AcquireOp | ReleaseOp) for op in ops):
        return 2
    return 1
