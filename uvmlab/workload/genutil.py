"""Helpers shared by the workload generators (``synthetic``, ``rodinia``): sizes, checks, the
builder with a generator's defaults."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable

from uvmlab.core.errors import WorkloadError
from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.core.units import parse_size
from uvmlab.workload.builder import WorkloadBuilder

MAX_KERNELS = 1_000_000  # a generator loop beyond this is a typo in a parameter, not a workload


def _pages(size: str | int, what: str = "size") -> int:
    return -(-parse_size(size, what=what) // PAGE_SIZE)


def _indexable(pages: int) -> int:
    # Index touches are uint32 page numbers (ir.py), so irregular patterns stop at 16 TiB.
    if pages > 1 << 32:
        raise WorkloadError(f"irregular workloads are limited to 16 TiB, got {_bytes(pages)} bytes")
    return pages


def _positive(**values: int) -> None:
    for k, v in values.items():
        if v < 1:
            raise WorkloadError(f"{k} must be at least 1, got {v}")


def _cap(kernels: int) -> None:
    if kernels > MAX_KERNELS:
        raise WorkloadError(f"parameters ask for {kernels} kernels; the limit is {MAX_KERNELS}")


def _builder(name: str, seed: int, ns_per_touch: float = 2.0, **params: object) -> WorkloadBuilder:
    if seed < 0:
        raise WorkloadError(f"seed must be >= 0, got {seed}")
    return WorkloadBuilder(name, seed=seed, params=params, default_ns_per_touch=ns_per_touch)


def _bytes(pages: int) -> int:
    return pages * PAGE_SIZE


def did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=3, cutoff=0.5)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def parse_int(text: str, what: str) -> int:
    t = text.strip().replace("_", "")
    try:
        return int(t)
    except ValueError:
        pass
    try:  # "1e9" is how people write a billion
        f = float(t)
        if math.isfinite(f) and f.is_integer():
            return int(f)
    except ValueError:
        pass
    raise WorkloadError(f"{what}: cannot read {text!r} as an integer")
