"""The read-only contexts a hook receives, and the run information a policy starts with.

gpu_ext's hooks get raw driver pointers and recover the VA block and owning process through
companion kprobes (eunomia-bpf/gpu_ext). Here every hook gets that context
explicitly: the VA block, its allocation and tenant, sizes, and the bitmaps or lists that matter
to the decision — as read-only numpy arrays that are copies, never views of driver state.

A context is valid only during the hook call. What a hook *records* on it (``move_head``,
``move_tail``, ``migrate``) is a request: the guard validates it after the hook returns and
drops everything the call recorded if the call fails.

Tenants: the model runs one address space, so a tenant is a group of allocations. An
allocation named ``"A/weights"`` belongs to tenant ``"A"``; one without a ``/`` is its own
tenant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uvmlab.policy.base import Region

INF = np.iinfo(np.int64).max  #: next_use of a block the trace never touches again


def tenant_of_name(alloc_name: str) -> str:
    return alloc_name.split("/", 1)[0]


def _ro(a: np.ndarray) -> np.ndarray:
    """A read-only copy (a read-only *view* could be made writeable again by its holder)."""
    c = np.array(a, copy=True)
    c.flags.writeable = False
    return c


@dataclass(frozen=True)
class AllocInfo:
    index: int
    name: str
    tenant: str
    kind: str  # managed / device / pinned
    first_page: int  # global page number of the allocation's first page (2 MiB aligned)
    pages: int

    @property
    def first_block(self) -> int:
        return self.first_page >> 9

    @property
    def end_page(self) -> int:
        return self.first_page + self.pages


@dataclass(frozen=True)
class RunInfo:
    """What a policy learns in ``start(info)``."""

    workload: str
    gpu: str
    n_root_chunks: int  #: 2 MiB root chunks of GPU memory the model gives UVM
    capacity_bytes: int
    allocs: tuple[AllocInfo, ...]
    tenants: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)  #: module parameters of the run
    future: bool = False  #: whether ``next_use`` is available (policies with needs_future)


_set = object.__setattr__  # contexts are read-only to hooks; only their constructors write


class _Requests:
    """Base of contexts: the requests a hook records, validated by the guard afterwards.

    A context is read-only: setting an attribute raises (the hook fails and is ejected)."""

    __slots__ = ("_req",)
    _req: list

    def __setattr__(self, name: str, value: Any) -> None:
        # constructors and the guard write past this (``_set``): every other write is a hook's
        raise AttributeError(f"a hook context is read-only (tried to set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a hook context is read-only (tried to delete {name!r})")

    def _update(self, **values: Any) -> None:
        """The guard's own updates between calls (the tree walk's level and node)."""
        for k, v in values.items():
            _set(self, k, v)

    def __init__(self, req: list, **fields: Any) -> None:
        """Set ``fields`` (a subclass's slots), past ``__setattr__``: read-only from here on.
        (The contexts made at every batch or allocation set theirs with ``_set`` lines
        instead: ~1.1 against ~1.8 µs a context, ~900 contexts a run of a policy on every
        hook.)"""
        _set(self, "_req", req)
        for k, v in fields.items():
            _set(self, k, v)

    def migrate(self, first_page: int, n_pages: int) -> None:
        """Ask for global pages ``[first_page, first_page + n_pages)`` to be migrated to the GPU
        (gpu_ext's ``bpf_gpu_migrate_range``). They must lie in one managed allocation; the
        driver runs the migration once the current (or, from a CPU fault, the next) GPU fault
        batch is serviced."""
        self._req.append(("migrate", first_page, n_pages))


class _ListRequests(_Requests):
    """A context of an eviction-list hook: it may move chunks, and it reads the GPU's two lists
    when asked (``used``, ``unused``: a policy that does not look costs nothing). Subclasses
    have the slots ``gpu`` and ``_view``."""

    __slots__ = ()
    gpu: int
    _view: Any

    @property
    def used(self) -> np.ndarray:
        """Chunks on va_block_used, head (evicted first) to tail."""
        return self._view.eviction_list(self.gpu, "used")

    @property
    def unused(self) -> np.ndarray:
        """Chunks on va_block_unused, head to tail (evicted before any used chunk)."""
        return self._view.eviction_list(self.gpu, "unused")

    @property
    def discarded(self) -> np.ndarray:
        """Chunks on va_block_discarded, head to tail (after unused, before used)."""
        return self._view.eviction_list(self.gpu, "discarded")

    def move_head(self, chunk: int) -> None:
        """Move ``chunk`` to the head of its eviction list: evicted first from that list."""
        self._req.append(("move", chunk, "head"))

    def move_tail(self, chunk: int) -> None:
        """Move ``chunk`` to the tail of its eviction list: evicted last from that list."""
        self._req.append(("move", chunk, "tail"))


class PrefetchContext(_Requests):
    """``prefetch_before_compute`` / ``prefetch_on_tree_iter``: one faulting page of one VA block
    operation going to processor ``dest``.

    Block-local page indices throughout. ``populated`` is the bitmap tree's leaves in block
    terms (resident on ``dest`` or faulted, grown to big pages where nothing thrashes);
    ``count(first, outer)`` counts them. The tree itself is shifted right by ``tree_offset``
    virtual leaves so that nodes of a big page or more are big-page aligned (uvm_perf_prefetch.c);
    ``node`` and ``size`` are a node's leaves in tree terms, ``subregion`` the same node in block
    pages, clamped to ``max_region`` as the driver clamps it.
    """

    __slots__ = (
        "block",
        "block_first_page",
        "n_pages",
        "dest",
        "page_index",
        "max_region",
        "faulted",
        "resident",
        "thrashing",
        "populated",
        "tree_offset",
        "leaf_count",
        "level_count",
        "alloc",
        "now_ns",
        "level",
        "node",
        "size",
        "counter",
        "subregion",
        "_cs",
    )
    block: int
    block_first_page: int
    n_pages: int
    dest: int
    page_index: int
    max_region: Region
    faulted: np.ndarray
    resident: np.ndarray
    thrashing: np.ndarray
    populated: np.ndarray
    tree_offset: int
    leaf_count: int
    level_count: int
    alloc: AllocInfo
    now_ns: int
    level: int
    node: Region
    size: int
    counter: int
    subregion: Region
    _cs: np.ndarray

    def __init__(
        self,
        req: list,
        *,
        block: int,
        block_first_page: int,
        n_pages: int,
        dest: int,
        faulted: np.ndarray,
        resident: np.ndarray,
        thrashing: np.ndarray,
        populated: np.ndarray,
        cs: np.ndarray,
        tree_offset: int,
        leaf_count: int,
        level_count: int,
        alloc: AllocInfo,
        now_ns: int,
    ) -> None:
        super().__init__(
            req,
            block=block,
            block_first_page=block_first_page,
            n_pages=n_pages,
            dest=dest,
            page_index=-1,
            max_region=Region(0, n_pages),
            faulted=faulted,
            resident=resident,
            thrashing=thrashing,
            populated=populated,
            _cs=cs,
            tree_offset=tree_offset,
            leaf_count=leaf_count,
            level_count=level_count,
            alloc=alloc,
            now_ns=now_ns,
            level=-1,
            node=Region(0, 0),
            size=0,
            counter=0,
            subregion=Region(0, 0),
        )

    def count(self, first: int, outer: int) -> int:
        """Populated pages in block pages ``[first, outer)``."""
        off = self.tree_offset
        first = min(max(first, 0), self.n_pages)
        outer = min(max(outer, first), self.n_pages)
        return int(self._cs[outer + off] - self._cs[first + off])

    @property
    def page(self) -> int:
        """The faulting page as a global page number."""
        return self.block_first_page + self.page_index


class ChunkContext(_ListRequests):
    """``chunk_activate`` (a root chunk was just allocated to ``block``, already at the tail of
    the used list) and ``chunk_used`` (the block gained pages on the GPU: a fault or migration
    touched it). Plain GPU hits on mapped pages are invisible, in the model as in the driver."""

    __slots__ = ("gpu", "chunk", "block", "alloc", "event", "now_ns", "_view")

    chunk: int
    block: int
    alloc: AllocInfo
    event: str
    now_ns: int

    def __init__(
        self,
        req: list,
        view: Any,
        *,
        gpu: int,
        chunk: int,
        block: int,
        alloc: AllocInfo,
        event: str,
        now_ns: int,
    ) -> None:
        _set(self, "_req", req)
        _set(self, "_view", view)
        _set(self, "gpu", gpu)
        _set(self, "chunk", chunk)
        _set(self, "block", block)
        _set(self, "alloc", alloc)
        _set(self, "event", event)
        _set(self, "now_ns", now_ns)

    @property
    def tenant(self) -> str:
        return self.alloc.tenant

    @property
    def resident_pages(self) -> int:
        """Pages of the block resident on this GPU."""
        return self._view.resident_pages(self.block, self.gpu)


class EvictionContext(_ListRequests):
    """``eviction_prepare``: no free root chunk is left and the driver is about to take the head
    of va_block_unused, else of va_block_used. ``used`` and ``unused`` are those lists, head
    first; ``owner`` gives each chunk's VA block."""

    __slots__ = ("gpu", "n_root_chunks", "now_ns", "position", "_view")

    n_root_chunks: int
    now_ns: int
    position: int

    def __init__(
        self,
        req: list,
        view: Any,
        *,
        gpu: int,
        n_root_chunks: int,
        now_ns: int,
        position: int,
    ) -> None:
        _set(self, "_req", req)
        _set(self, "_view", view)
        _set(self, "gpu", gpu)
        _set(self, "n_root_chunks", n_root_chunks)
        _set(self, "now_ns", now_ns)
        _set(self, "position", position)  #: touches of the workload executed so far

    def owner(self, chunks: np.ndarray | int) -> np.ndarray | int:
        """The VA block each chunk backs (-1: none)."""
        return self._view.owner_of(self.gpu, chunks)

    def alloc_of(self, blocks: np.ndarray | int) -> np.ndarray | int:
        """The allocation index of each block."""
        return self._view.alloc_index(blocks)

    def tenant_of(self, blocks: np.ndarray | int) -> list[str] | str:
        """The tenant of each block (of each chunk ``owner`` gives, with a shared PMM)."""
        return self._view.tenant_of(blocks)

    def next_use(self, blocks: np.ndarray | int) -> np.ndarray | int:
        """When each block is needed next, as a position in the workload's touch stream
        (``INF``: never again): the earliest touch of the block that is not done yet — a
        stalled one, or one at or after ``position``. Only for policies with ``needs_future``:
        this is the trace's future, which no real driver has."""
        return self._view.next_use(blocks)


class ReplayContext(_Requests):
    """``decide_replay``: a fault batch was just serviced (the event data of docs/policies.md)."""

    __slots__ = (
        "gpu",
        "batch",
        "faults",
        "unique",
        "duplicates",
        "throttled",
        "pending",
        "default_policy",
        "replays",
        "now_ns",
    )

    gpu: int
    batch: int
    faults: int
    unique: int
    duplicates: int
    throttled: bool
    pending: int
    default_policy: int
    replays: int
    now_ns: int

    POLICY_NAMES = ("block", "batch", "batch_flush", "once")

    def __init__(
        self,
        req: list,
        *,
        gpu: int,
        batch: int,
        faults: int,
        unique: int,
        duplicates: int,
        throttled: bool,
        pending: int,
        default_policy: int,
        replays: int,
        now_ns: int,
    ) -> None:
        _set(self, "_req", req)
        _set(self, "gpu", gpu)
        _set(self, "batch", batch)  #: index of the batch in this bottom half (0 = first)
        _set(self, "faults", faults)  #: raw entries fetched (num_cached_faults)
        _set(self, "unique", unique)  #: entries left after coalescing at fetch
        _set(self, "duplicates", duplicates)  #: num_duplicate_faults
        _set(self, "throttled", throttled)  #: some fault of the batch was throttled
        _set(self, "pending", pending)  #: entries still in the fault buffer
        _set(self, "default_policy", default_policy)  #: uvm_perf_fault_replay_policy
        _set(self, "replays", replays)  #: replays issued so far in this bottom half
        _set(self, "now_ns", now_ns)

    @property
    def default_policy_name(self) -> str:
        return self.POLICY_NAMES[self.default_policy]


class ThrashingContext(_Requests):
    """``thrashing_hint``: the detector's hints for the faulted pages of one block and requester.

    ``pages`` are block-local page indices, ``default`` the detector's hint kind for each
    (``HINT_NONE`` 0, ``HINT_THROTTLE`` 1, ``HINT_PIN`` 2), ``thrashing`` the block's pages the
    detector flags as thrashing."""

    __slots__ = ("block", "block_first_page", "requester", "pages", "default", "thrashing", "alloc", "now_ns")
    block: int
    block_first_page: int
    requester: int
    pages: np.ndarray
    default: np.ndarray
    thrashing: np.ndarray
    alloc: AllocInfo
    now_ns: int

    def __init__(
        self,
        req: list,
        *,
        block: int,
        block_first_page: int,
        requester: int,
        pages: np.ndarray,
        default: np.ndarray,
        thrashing: np.ndarray,
        alloc: AllocInfo,
        now_ns: int,
    ) -> None:
        super().__init__(
            req,
            block=block,
            block_first_page=block_first_page,
            requester=requester,
            pages=pages,
            default=default,
            thrashing=thrashing,
            alloc=alloc,
            now_ns=now_ns,
        )
