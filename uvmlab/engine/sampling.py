"""Samples of a run over simulated time: residency per page range and cumulative counters.

The engine takes no samples unless a caller asks: ``with record_samples() as rec:`` around
``simulate`` (or ``uvmlab.api.simulate_sampled``) makes the engine built inside it attach a
:class:`Sampler`. The sampler is called between fault batches (from ``Engine.service_timers``,
which runs before every bottom half and every CPU fault) and after every operation.

It is meant to stay cheap on any size of workload:

* residency is read on at most ``MAX_PAGES_READ`` pages spread evenly over the managed
  allocations (a stride sample), grouped into at most ``bins`` page ranges, with one
  ``np.bincount`` per sample;
* the number of samples kept is bounded: when it reaches ``2 * max_samples`` every other sample
  is dropped and the minimum interval between samples doubles, so samples stay spread evenly
  over the run's simulated time whatever its length.

Sampling reads driver state and never changes it; the same run gives the same samples (they
depend on simulated time only), so a sampled result is as reproducible as the run.
"""

from __future__ import annotations

import base64
import contextvars
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

#: cumulative counters recorded with every sample (canonical names, docs/results.md)
SAMPLED_COUNTERS: tuple[str, ...] = (
    "gpu_faults",
    "fault_batches",
    "replays",
    "cpu_faults",
    "bytes_htod_fault",
    "bytes_htod_prefetch",
    "bytes_htod_user",
    "bytes_htod_access_counter",
    "bytes_dtoh_fault",
    "bytes_dtoh_prefetch",
    "bytes_dtoh_eviction",
    "bytes_dtoh_user",
    "evictions",
    "thrashing_events",
    "throttles",
    "pins",
    "remote_maps",
)

#: residency states of a page, the last axis of ``Samples.residency``
STATES: tuple[str, ...] = ("none", "cpu", "gpu", "both")

MAX_PAGES_READ = 1 << 13  # pages read per residency sample, whatever the workload's size
DEFAULT_BINS = 128
DEFAULT_MAX_SAMPLES = 400


@dataclass
class Samples:
    """What a sampled run recorded.

    ``residency[s, b, k]`` is the fraction (0..255 = 0..1) of page range ``b``'s pages in state
    ``STATES[k]`` at ``time_ns[s]``: not populated, resident on the CPU only, on GPU 0 only, or
    on both (read-duplicated). Page ranges cover the managed allocations in VA order,
    ``bin_pages`` 4 KiB pages each (the last one may be shorter); ``allocs`` gives each managed
    allocation's name and its first page and page count in that concatenated range.
    """

    time_ns: np.ndarray  # int64 [S]
    counters: dict[str, np.ndarray]  # key -> int64 [S], cumulative
    residency: np.ndarray  # uint8 [S, B, 4]
    bin_pages: int
    total_pages: int
    allocs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        return len(self.time_ns)

    @property
    def n_bins(self) -> int:
        return self.residency.shape[1] if self.residency.ndim == 3 else 0

    def fractions(self) -> np.ndarray:
        """``residency`` as float fractions in [0, 1]."""
        return self.residency.astype(np.float32) / 255.0

    def to_dict(self) -> dict[str, Any]:
        # residency as base64 of its raw bytes: a JSON list of 150 000 small ints is 4x larger
        return {
            "time_ns": [int(t) for t in self.time_ns],
            "counters": {k: [int(x) for x in v] for k, v in self.counters.items()},
            "residency_shape": list(self.residency.shape),
            "residency_b64": base64.b64encode(
                np.ascontiguousarray(self.residency, dtype=np.uint8).tobytes()
            ).decode(),
            "bin_pages": int(self.bin_pages),
            "total_pages": int(self.total_pages),
            "allocs": [dict(a) for a in self.allocs],
            "states": list(STATES),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Samples:
        shape = tuple(int(x) for x in d["residency_shape"])
        if len(shape) != 3 or shape[2] != len(STATES) or any(x < 0 for x in shape):
            raise ValueError(f"residency shape {shape}")
        raw = base64.b64decode(d["residency_b64"], validate=True)
        if len(raw) != shape[0] * shape[1] * shape[2]:
            raise ValueError("residency data does not match its shape")
        t = np.asarray(d["time_ns"], dtype=np.int64)
        if len(t) != shape[0]:
            raise ValueError("residency samples and times differ in number")
        counters = {str(k): np.asarray(v, dtype=np.int64) for k, v in d["counters"].items()}
        if any(len(v) != len(t) for v in counters.values()):
            raise ValueError("a counter series and the times differ in length")
        return cls(
            time_ns=t,
            counters=counters,
            residency=np.frombuffer(raw, dtype=np.uint8).reshape(shape).copy(),
            bin_pages=int(d["bin_pages"]),
            total_pages=int(d["total_pages"]),
            allocs=[dict(a) for a in d.get("allocs", [])],
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Samples):
            return NotImplemented
        return self.to_dict() == other.to_dict()


@njit(cache=True)
def _histogram(residency: np.ndarray, pages: np.ndarray, bin_of: np.ndarray, hist: np.ndarray) -> None:
    """Per bin, how many of ``pages`` are resident nowhere, on the CPU, on GPU 0, on both
    (``np.bincount`` of ``bin_of * 4 + state`` in one pass: ~10 us a sample, not ~40)."""
    hist[:] = 0
    for i in range(pages.shape[0]):
        r = residency[pages[i]]
        hist[bin_of[i], (r & 1) | ((r >> 1) & 1) << 1] += 1  # 0 none, 1 CPU, 2 GPU 0, 3 both


class Sampler:
    """Takes :class:`Samples` of one engine's driver; see the module docstring."""

    def __init__(
        self, engine: Any, *, bins: int = DEFAULT_BINS, max_samples: int = DEFAULT_MAX_SAMPLES
    ) -> None:
        self.drv = engine.drv
        va = self.drv.va
        managed = [i for i in range(len(va.alloc_base)) if va.is_managed(i)]
        total = int(sum(int(va.alloc_pages[i]) for i in managed))
        self.total_pages = total
        self.bins = max(1, min(bins, total)) if total else 0
        self.bin_pages = -(-total // self.bins) if self.bins else 0
        stride = max(1, -(-total // MAX_PAGES_READ))
        # global page numbers to read and the page range each belongs to
        idx, off, allocs = [], 0, []
        for i in managed:
            n = int(va.alloc_pages[i])
            local = np.arange(0, n, stride, dtype=np.int64)
            idx.append(int(va.alloc_base[i]) + local)
            allocs.append({"name": engine.workload.allocs[i].name, "first_page": off, "pages": n})
            off += n
        self.allocs = allocs
        offsets = (
            np.concatenate(
                [
                    np.arange(0, int(va.alloc_pages[i]), stride, dtype=np.int64) + a["first_page"]
                    for i, a in zip(managed, allocs, strict=True)
                ]
            )
            if managed
            else np.empty(0, np.int64)
        )
        self.pages = np.concatenate(idx) if idx else np.empty(0, np.int64)
        self.bin_of = (offsets // self.bin_pages).astype(np.int64) if self.bins else offsets
        self.per_bin = np.bincount(self.bin_of, minlength=self.bins).astype(np.float64)
        self.max_samples = max(2, max_samples)
        self.interval = 0.0
        self.times: list[int] = []
        self.rows: list[np.ndarray] = []
        self.counts: list[tuple[int, ...]] = []
        self.sample(0.0, force=True)

    def sample(self, clock: float, force: bool = False) -> None:
        """Record a sample at simulated time ``clock`` unless one was taken too recently."""
        t = int(clock)
        if self.times:
            last = self.times[-1]
            if t <= last:
                if force:  # same instant: an op that took no time (a free, advice) may have
                    self._replace_last()  # changed residency; keep the newest state
                return
            if not force and t - last < self.interval:
                return
        self._append(t)
        if len(self.times) >= 2 * self.max_samples:
            self._decimate()

    def next_due(self) -> int:
        """The least integer simulated time at which :meth:`sample` (not forced) takes one:
        after the last, at least ``interval`` later."""
        return self.times[-1] + max(1, math.ceil(self.interval))

    def _snapshot(self) -> tuple[np.ndarray, tuple[int, ...]]:
        c = self.drv.counters
        counts = tuple(int(c.get(k, 0)) for k in SAMPLED_COUNTERS)
        if not self.bins:
            return np.zeros((0, 4), np.uint8), counts
        hist = np.empty((self.bins, 4), np.int64)
        _histogram(self.drv.va.residency, self.pages, self.bin_of, hist)
        frac = np.rint(hist * 255.0 / np.maximum(self.per_bin, 1)[:, None]).astype(np.uint8)
        return frac, counts

    def _append(self, t: int) -> None:
        frac, counts = self._snapshot()
        self.times.append(t)
        self.rows.append(frac)
        self.counts.append(counts)

    def _replace_last(self) -> None:
        frac, counts = self._snapshot()
        self.rows[-1] = frac
        self.counts[-1] = counts

    def _decimate(self) -> None:
        # keep the first and every other sample: bounded memory, still evenly spread in time
        keep = list(range(0, len(self.times), 2))
        if keep[-1] != len(self.times) - 1:
            keep.append(len(self.times) - 1)
        self.times = [self.times[i] for i in keep]
        self.rows = [self.rows[i] for i in keep]
        self.counts = [self.counts[i] for i in keep]
        span = self.times[-1] - self.times[0]
        self.interval = max(self.interval * 2, span / self.max_samples)

    def samples(self) -> Samples:
        counts = np.asarray(self.counts, dtype=np.int64).reshape(len(self.times), len(SAMPLED_COUNTERS))
        res = np.stack(self.rows) if self.rows else np.zeros((0, self.bins, 4), np.uint8)
        return Samples(
            time_ns=np.asarray(self.times, dtype=np.int64),
            counters={k: counts[:, j].copy() for j, k in enumerate(SAMPLED_COUNTERS)},
            residency=res.astype(np.uint8),
            bin_pages=self.bin_pages,
            total_pages=self.total_pages,
            allocs=list(self.allocs),
        )


class Recording:
    """What ``record_samples`` yields: the options, and the sampler of the last engine built."""

    def __init__(self, bins: int, max_samples: int) -> None:
        self.bins = bins
        self.max_samples = max_samples
        self.sampler: Sampler | None = None

    @property
    def samples(self) -> Samples | None:
        return self.sampler.samples() if self.sampler is not None else None

    def attach(self, result: Any) -> Any:
        """Put the samples on ``result`` (returned for chaining)."""
        result.samples = self.samples
        return result


_ACTIVE: contextvars.ContextVar[Recording | None] = contextvars.ContextVar("uvmlab_sampling", default=None)


@contextmanager
def record_samples(
    enabled: bool = True, *, bins: int = DEFAULT_BINS, max_samples: int = DEFAULT_MAX_SAMPLES
) -> Iterator[Recording]:
    """Within this block, each engine built samples its run; ``enabled=False`` records nothing."""
    rec = Recording(bins, max_samples)
    token = _ACTIVE.set(rec if enabled else None)
    try:
        yield rec
    finally:
        _ACTIVE.reset(token)


def attach_sampler(engine: Any) -> Sampler | None:
    """Called by ``Engine.__init__``: a Sampler when a ``record_samples`` block is active."""
    rec = _ACTIVE.get()
    if rec is None:
        return None
    rec.sampler = Sampler(engine, bins=rec.bins, max_samples=rec.max_samples)
    return rec.sampler
