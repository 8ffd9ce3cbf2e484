"""Zero-filled arrays that cost memory only where they are written.

The model keeps one byte per 4 KiB page of VA and per fact (design.md section 8); a workload of
16 TiB of sparse managed memory has 2^32 pages. ``np.zeros`` is lazily backed too, but numpy
asks the kernel for transparent huge pages on large arrays (``madvise(MADV_HUGEPAGE)``), so the
first write to a page of the array commits 2 MiB instead of 4 KiB: 512 times the memory for
scattered touches. And the kernel's overcommit heuristic may refuse one large reservation
outright. Large arrays here are private anonymous mappings with ``MAP_NORESERVE`` and no huge
page advice: 4 KiB of memory per 4 KiB of the array that is written, none for the rest.
"""

from __future__ import annotations

import mmap

import numpy as np

from uvmlab.core.errors import UvmlabError

LAZY_BYTES = 64 << 20  #: arrays at least this large are mapped lazily
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)  # Linux value; absent from some builds


def zeros(shape: int | tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """``np.zeros(shape, dtype)`` whose untouched parts take no memory."""
    dt = np.dtype(dtype)
    shp = (shape,) if isinstance(shape, int) else tuple(shape)
    n = int(np.prod(shp, dtype=np.int64)) * dt.itemsize
    if n < LAZY_BYTES or not hasattr(mmap, "MAP_PRIVATE"):
        return np.zeros(shp, dt)
    try:
        m = mmap.mmap(
            -1,
            n,
            flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE,
            prot=mmap.PROT_READ | mmap.PROT_WRITE,
        )
    except (OSError, OverflowError, ValueError) as e:
        raise UvmlabError(
            f"cannot reserve {n >> 20} MiB of address space for the model's state ({e})"
        ) from None
    return np.frombuffer(m, dtype=dt).reshape(shp)


def full(shape: int | tuple[int, ...], value: int, dtype: np.dtype | type) -> np.ndarray:
    """``np.full``: dense (every element is written), without the huge-page advice."""
    a = zeros(shape, dtype)
    if value:
        a.fill(value)
    return a


def clear(a: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``a[..., lo:hi] = 0`` that writes only where the array is not zero already (writing a
    zero to an untouched page would commit it). Returns the positions (``lo``-relative, along
    the last axis, sorted, unique) that were not zero."""
    view = a[..., lo:hi]
    if view.ndim == 1:
        idx = _nonzero(view)
        if len(idx):
            view[idx] = 0
        return idx
    found = []
    for row in view:
        idx = _nonzero(row)
        if len(idx):
            row[idx] = 0
            found.append(idx)
    return union(found, hi - lo)


def union(parts: list[np.ndarray], n: int) -> np.ndarray:
    """The sorted union of integer arrays with values in ``[0, n)`` (``np.union1d`` of them
    all). Where ``n`` is at most a few times their total length, a mask over ``[0, n)`` does it
    in linear time (``np.unique`` sorts); over a huge sparse range it sorts."""
    total = sum(len(p) for p in parts)
    if total == 0:
        return np.zeros(0, dtype=np.intp)
    if n > 8 * total + 4096:
        return np.unique(np.concatenate(parts)).astype(np.intp, copy=False)
    mask = np.zeros(n, dtype=np.bool_)
    for p in parts:
        mask[p] = True
    return np.flatnonzero(mask)


def _nonzero(row: np.ndarray) -> np.ndarray:
    """``np.flatnonzero`` of a 1-D array, eight bytes at a time over its aligned bulk: freeing a
    TiB of VA scans 2^28 page bytes per fact, most of them zero."""
    n = len(row)
    if row.dtype.itemsize != 1 or n < 4096 or not row.flags.c_contiguous:
        return np.flatnonzero(row)
    head = (-row.ctypes.data) % 8
    body = (n - head) // 8
    words = row[head : head + 8 * body].view(np.uint64)
    hot = np.flatnonzero(words)
    parts = [np.flatnonzero(row[:head])]
    if len(hot):
        sub = row[head : head + 8 * body].reshape(body, 8)[hot]
        r, c = np.nonzero(sub)
        parts.append(head + hot[r] * 8 + c)
    parts.append(head + 8 * body + np.flatnonzero(row[head + 8 * body :]))
    return np.concatenate(parts).astype(np.intp, copy=False)
