"""Read-only views: what a hook context may ask of the run, answered with copies.

A context carries values (block, sizes, bitmaps as read-only copies) and one ``RunView`` for the
answers it computes on demand (the eviction lists, residency counts, the owner of a chunk, the
trace's future). A ``RunView`` holds no attribute that leads to the driver, the PMM or the
guard: its entries are functions that return fresh read-only arrays or plain ints, and the
counters a policy could see are values. (In one process nothing is truly out of reach — a
function's closure can be introspected — which is why in-process policies are trusted code and
``--isolate`` exists; docs/security.md.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from uvmlab.policy.context import AllocInfo, tenant_of_name
from uvmlab.policy.future import FutureOracle, position, stalled
from uvmlab.workload.ir import AllocKind


def ro(a: np.ndarray) -> np.ndarray:
    """A read-only copy (a read-only *view* could be made writeable again by its holder)."""
    c = np.array(a, copy=True)
    c.flags.writeable = False
    return c


class RunView:
    """The on-demand answers of one run, as functions (no path to live state)."""

    __slots__ = (
        "allocs",
        "eviction_list",
        "resident_pages",
        "alloc_index",
        "next_use",
        "owner",
        "owner_of",
        "tenant_of",
    )

    def __init__(
        self,
        allocs: tuple[AllocInfo, ...],
        eviction_list: Callable[[int, str], np.ndarray],
        resident_pages: Callable[[int, int], int],
        alloc_index: Callable[[Any], Any],
        next_use: Callable[[Any], Any],
        owner: Callable[[int], np.ndarray],
        owner_of: Callable[[int, Any], Any],
        tenant_of: Callable[[Any], Any],
    ) -> None:
        for k, v in (
            ("allocs", allocs),
            ("eviction_list", eviction_list),
            ("resident_pages", resident_pages),
            ("alloc_index", alloc_index),
            ("next_use", next_use),
            ("owner", owner),
            ("owner_of", owner_of),
            ("tenant_of", tenant_of),
        ):
            object.__setattr__(self, k, v)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a run view is read-only")


def alloc_infos(drv: Any) -> tuple[AllocInfo, ...]:
    """Each allocation's facts; with several VA spaces over one PMM (driver/pmm_share.py) a
    tenant is a VA space, else the allocation name's prefix."""
    va = drv.va
    kinds = {int(k): k.name.lower() for k in AllocKind}
    return tuple(
        AllocInfo(
            i,
            a.name,
            tenant_of_name(a.name) if drv.share is None else drv.tenant,
            kinds[int(a.kind)],
            int(va.alloc_base[i]),
            int(a.pages),
        )
        for i, a in enumerate(va.allocs)
    )


def run_view(drv: Any, engine: Any, allocs: tuple[AllocInfo, ...], future: FutureOracle | None) -> RunView:
    """The view of one run: closures over the driver that only read and copy."""
    va = drv.va
    pmms = list(drv.pmm)
    block_alloc = ro(va.block_alloc)

    def eviction_list(gpu: int, name: str) -> np.ndarray:
        out = pmms[gpu - 1].list_chunks(name)
        out.flags.writeable = False
        return out

    def resident_pages(block: int, gpu: int) -> int:
        return int(va.gpu_resident_count(int(block), int(gpu)))

    def alloc_index(blocks: Any) -> Any:
        if blocks.__class__ is int or np.ndim(blocks) == 0:  # the guard's calls: a plain int
            return int(block_alloc[int(blocks)])
        return ro(block_alloc[np.asarray(blocks, dtype=np.int64)])

    def owner(gpu: int) -> np.ndarray:
        return ro(pmms[gpu - 1].owner)

    def owner_of(gpu: int, chunks: Any) -> Any:
        own = pmms[gpu - 1].owner
        if np.ndim(chunks) == 0:
            return int(own[int(chunks)])
        return ro(own[np.asarray(chunks, dtype=np.int64)])

    def next_use(blocks: Any) -> Any:
        if future is None or engine is None:
            raise RuntimeError("next_use is only for policies with needs_future = True, run by the engine")
        frontier = position(engine)
        b = np.asarray(blocks, dtype=np.int64)
        nu = future.next_use(b.ravel(), frontier)
        waiting, first = stalled(engine)
        if len(waiting):  # a stalled touch is still to come, at its own position in the trace
            at = np.searchsorted(waiting, b.ravel())
            hit = (at < len(waiting)) & (waiting[np.minimum(at, len(waiting) - 1)] == b.ravel())
            nu[hit] = np.minimum(nu[hit], first[at[hit]])
        if b.ndim == 0:
            return int(nu[0])
        nu.flags.writeable = False
        return nu

    def tenant_of(blocks: Any) -> Any:
        if drv.share is not None:  # owner ids of several VA spaces (driver/pmm_share.py)
            return drv.share.tenant_of(blocks)
        if np.ndim(blocks) == 0:
            return allocs[int(alloc_index(blocks))].tenant
        return [allocs[int(i)].tenant for i in alloc_index(blocks)]

    return RunView(allocs, eviction_list, resident_pages, alloc_index, next_use, owner, owner_of, tenant_of)
