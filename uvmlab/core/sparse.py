"""Zero-filled arrays that cost memory only where they are written.

The model keeps one byte per 4 KiB page of VA and per fact (design.md section 8); a workload of
16 TiB of sparse managed memory has 2^32 pages. ``np.zeros`` is lazily backed too, but numpy
asks the kernel for transparent huge pages on large arrays (``madvise(MADV_HUGEPAGE)``), so the
first write to a page of the array commits 2 MiB instead of 4 KiB: 512 times the memory for
scattered touches. And the kernel's overcommit heuristic may refuse one large reservation
outright. Large arrays here are private anonymous mappings with ``MAP_NORESERVE`` and no huge
page advice: 4 KiB of memory per 4 KiB of the array that is written, none for the rest.

"Large" starts at 128 KiB, glibc's default ``M_MMAP_THRESHOLD``. Below it ``np.zeros`` is cheap
heap memory. Above it, glibc raises its threshold (up to 32 MiB) each time a mapped block is
freed, so the per-page arrays of a second engine in a process come from the heap, where
``calloc`` zero-fills what it reuses over the whole length, however few pages the workload
touches: on ``sparse:size=1GiB`` (16,384 of 262,144 pages touched) a quarter of the run's
page faults (same-run A/B, 2-core VM).
"""

from __future__ import annotations

import mmap
import threading

import numpy as np
from numba import njit

from uvmlab.core.errors import UvmlabError

LAZY_BYTES = 128 << 10  #: arrays at least this large are mapped lazily
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


# Zeroed arrays kept for the next run of the process (``take`` / ``give``). A run's per-page
# arrays are mapped lazily, so its first write to each 4 KiB of them is a page fault (~1 µs on
# a VM): ``sparse:size=1GiB`` writes and reads 32 blocks' bytes of six per-page rows, ~160
# faults, a quarter of its kernels' time. An array a run gave back has those pages mapped;
# the next run of its shape gets it cleared instead (only the 4 KiB pages that hold a nonzero
# are written, so clearing commits nothing new).
POOL_MAX_BYTES = 4 << 20  #: larger arrays (over 16 GiB of VA) are not kept: clearing reads every byte
POOL_KEEP = 12  #: arrays kept in all (the latest given)
_POOL: list[np.ndarray] = []  # oldest first
_POOL_LOCK = threading.Lock()  # engines may run in threads of one process
_WORDS_PER_PAGE = 4096 // 8


def take(shape: int | tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """``zeros(shape, dtype)``: an array of that shape and type given back by an earlier run
    (``give``), cleared, else a new one."""
    dt = np.dtype(dtype)
    shp = (shape,) if isinstance(shape, int) else tuple(shape)
    a = None
    with _POOL_LOCK:
        for i in range(len(_POOL) - 1, -1, -1):
            if _POOL[i].shape == shp and _POOL[i].dtype == dt:
                a = _POOL.pop(i)
                break
    if a is None:
        return zeros(shp, dt)
    _clear_pages(a.reshape(-1).view(np.uint64))
    return a


def give(arrays: list[np.ndarray]) -> None:
    """Arrays made by ``zeros`` that nothing will read or write again (no view of them is
    left): kept for ``take``. Only lazily mapped ones (at least ``LAZY_BYTES``, at most
    ``POOL_MAX_BYTES``) are kept; the pool holds the ``POOL_KEEP`` latest."""
    keep = [a for a in arrays if LAZY_BYTES <= a.nbytes <= POOL_MAX_BYTES and _whole_words(a)]
    with _POOL_LOCK:
        _POOL.extend(keep)
        del _POOL[: max(0, len(_POOL) - POOL_KEEP)]


def _whole_words(a: np.ndarray) -> bool:
    """Whether ``a`` is C-contiguous, writable and a whole number of aligned uint64 words."""
    return a.flags.c_contiguous and a.flags.writeable and a.nbytes % 8 == 0 and a.ctypes.data % 8 == 0


@njit(cache=True)
def _clear_pages(w: np.ndarray) -> None:  # pragma: no cover (compiled)
    """Zero every 4 KiB page of ``w`` (uint64 words) that holds a nonzero: the words of a
    page OR-ed together (vectorised), the page written only where that is not zero."""
    n = w.shape[0]
    for s in range(0, n, _WORDS_PER_PAGE):
        e = min(s + _WORDS_PER_PAGE, n)
        acc = np.uint64(0)
        for i in range(s, e):
            acc |= w[i]
        if acc:
            w[s:e] = 0


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


def clear_rows(a: np.ndarray, lo: int, hi: int, row: int) -> np.ndarray:
    """``a[..., lo:hi] = 0`` by rows of ``row`` elements along the last axis (``lo`` a multiple
    of ``row``, the last row may be short). Returns, per row of ``[lo, hi)``, whether it held
    a nonzero in any of the leading axes. Only those rows are written: with ``row`` bytes a
    divisor of the memory page size, a row lies in one page, so clearing a row that holds a
    nonzero commits nothing new — and costs one pass over the bytes, without the positions."""
    if lo % row:
        raise ValueError(f"clear_rows: lo={lo} is not a multiple of the row ({row})")
    n = hi - lo
    full = n // row
    hot = np.zeros(-(-n // row), dtype=np.bool_)
    view = a[..., lo:hi]
    lines = view.reshape(-1, n) if view.ndim > 1 else view[None, :]
    word = row * a.itemsize % 8 == 0 and a.flags.c_contiguous
    for line in lines:
        body = line[: full * row]
        if word:  # eight bytes at a time: the range is mostly untouched or mostly written
            h = body.view(np.uint64).reshape(full, row * a.itemsize // 8).any(axis=1)
        else:
            h = body.reshape(full, row).any(axis=1)
        if h.any():
            body.reshape(full, row)[h] = 0
            hot[:full] |= h
        tail = line[full * row :]
        if tail.any():
            tail[:] = 0
            hot[full] = True
    return hot


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
    if 4 * len(hot) > body:
        # mostly written (a freed buffer the workload used): one pass over the bytes is ~10x
        # cheaper than gathering the words' bytes
        return np.flatnonzero(row)
    parts = [np.flatnonzero(row[:head])]
    if len(hot):
        sub = row[head : head + 8 * body].reshape(body, 8)[hot]
        r, c = np.nonzero(sub)
        parts.append(head + hot[r] * 8 + c)
    parts.append(head + 8 * body + np.flatnonzero(row[head + 8 * body :]))
    return np.concatenate(parts).astype(np.intp, copy=False)
