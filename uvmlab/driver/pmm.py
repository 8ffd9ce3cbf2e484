"""The GPU physical memory manager of one GPU (uvm_pmm_gpu.c), at 2 MiB root-chunk granularity.

What is modeled (uvm_pmm_gpu.c):

* Memory is a pool of 2 MiB root chunks, indexed by physical address / 2 MiB as in the driver's
  root-chunk array. A full 2 MiB VA block is backed by exactly one root chunk, so the eviction
  unit is one chunk (uvm_pmm_gpu.c).
* Chunk states: FREE, TEMP_PINNED (allocated for a VA-block operation that has not finished),
  ALLOCATED (owned by a VA block and evictable), IN_EVICTION (chosen as a victim, off every
  list), and RESERVED (taken by a non-UVM PMA client such as ``cudaMalloc``; never evictable
  by UVM). In the driver "in eviction" is a flag on a root chunk rather than a state, and
  RESERVED corresponds to memory that PMA gave to another client.
* Lists, each ordered head..tail: ``free`` (allocation takes the head, a freed chunk goes to the
  tail, as chunk_update_lists_locked does), and the eviction lists ``va_block_used`` (least
  recently used first), ``va_block_unused`` and ``va_block_discarded``. Every ALLOCATED chunk is
  on exactly one eviction list; TEMP_PINNED and IN_EVICTION chunks are on none, so they cannot be
  chosen (uvm_pmm_gpu.c, pick_root_chunk_to_evict).
* The "LRU" is least recently *faulted-on or migrated-to*: only unpin_allocated and
  block_mark_memory_used move a chunk to the tail of ``va_block_used``. A GPU access that hits an
  existing mapping produces no fault and therefore no call here (the driver's TODO about moving
  chunks on mapping, pick_root_chunk_to_evict in uvm_pmm_gpu.c).

Model note, PMA batching (alloc_root_chunk): the driver takes non-pinned root chunks from PMA in batches of
``1 << uvm_perf_pma_batch_nonpinned_order`` (64 chunks, 128 MiB), keeps the surplus on PMM's free
list and returns one free root chunk to PMA per free. That changes only the steps in which UVM's
footprint grows; eviction starts when neither PMM nor PMA has a free root chunk left. So the
model treats the GPU's capacity as one pool of root chunks with one free list.

State lives in numpy arrays (docs/model.md): ``state`` and ``owner`` per chunk, and the lists of
``pmm_lists`` (chunk states, list ids and the compiled list primitives, shared with the compiled
fault path), so every move is O(1) and there is no Python object per chunk.
"""

from __future__ import annotations

import numpy as np

from uvmlab.core.errors import UvmlabError
from uvmlab.driver.pmm_lists import (
    ALLOCATED,
    EVICTION_ORDER,
    FREE,
    IN_EVICTION,
    LIST_ALIASES,
    LIST_DISCARDED,
    LIST_FREE,
    LIST_LABEL,
    LIST_NAMES,
    LIST_RESERVED,
    LIST_UNUSED,
    LIST_USED,
    N_LISTS,
    NO_LIST,
    RESERVED,
    TEMP_PINNED,
    ChunkState,
    PmmArrays,
    chunk_insert_between,
    chunk_list_walk,
    chunk_peek_victim,
    chunk_pop_head,
    chunk_push_tail,
    chunk_unlink,
    chunk_update_eviction_list,
    walk_lists,
)

ROOT_CHUNK_SIZE = 2 << 20  # UVM_CHUNK_SIZE_MAX (uvm_pmm_gpu.h)

# A GPU (or vGPU slice) of more than 64 TiB is a typo; it would also need GiBs of arrays.
MAX_CAPACITY_BYTES = 64 << 40


class OutOfMemory(UvmlabError):
    """GPU memory cannot be provided: not enough free root chunks for a reservation."""


class Pmm:
    """Root-chunk allocator and eviction lists of one GPU.

    Public read-only views: ``state`` (int8, :class:`ChunkState` values) and ``owner`` (int32,
    the owning VA block id, -1 when none) per chunk. Mutate only through the methods, which keep
    the lists consistent; :meth:`check_invariants` verifies that they are.
    """

    def __init__(self, capacity_bytes: int) -> None:
        if isinstance(capacity_bytes, bool) or not isinstance(capacity_bytes, int | np.integer):
            raise UvmlabError(f"GPU memory capacity must be an integer byte count, got {capacity_bytes!r}")
        capacity_bytes = int(capacity_bytes)
        if capacity_bytes < ROOT_CHUNK_SIZE:
            raise UvmlabError(f"GPU memory capacity {capacity_bytes} B is smaller than one 2 MiB root chunk")
        if capacity_bytes > MAX_CAPACITY_BYTES:
            raise UvmlabError(f"GPU memory capacity {capacity_bytes} B is larger than 64 TiB")
        n = capacity_bytes // ROOT_CHUNK_SIZE
        self.capacity_bytes = n * ROOT_CHUNK_SIZE  # a partial trailing chunk is unusable
        self.n_root_chunks = n
        self._state = np.full(n, FREE, dtype=np.int8)
        self._owner = np.full(n, -1, dtype=np.int32)
        self._list = np.full(n, NO_LIST, dtype=np.int8)
        # Nodes 0..n-1 are chunks; node n + L is the sentinel of list L (circular lists).
        self._prev = np.empty(n + N_LISTS, dtype=np.int32)
        self._next = np.empty(n + N_LISTS, dtype=np.int32)
        self._count = np.zeros(N_LISTS, dtype=np.int64)  # chunks per list
        for lst in range(N_LISTS):
            s = n + lst
            self._prev[s] = self._next[s] = s
        # Initially every chunk is free, in physical order.
        idx = np.arange(n, dtype=np.int32)
        s = n + LIST_FREE
        self._next[:n] = idx + 1
        self._prev[:n] = idx - 1
        self._next[n - 1] = s
        self._prev[0] = s
        self._next[s] = 0
        self._prev[s] = n - 1
        self._list[:] = LIST_FREE
        self._count[LIST_FREE] = n

    # ---- read-only views ------------------------------------------------------------------
    @property
    def state(self) -> np.ndarray:
        v = self._state.view()
        v.flags.writeable = False
        return v

    @property
    def owner(self) -> np.ndarray:
        v = self._owner.view()
        v.flags.writeable = False
        return v

    @property
    def free_chunks(self) -> int:
        return int(self._count[LIST_FREE])

    @property
    def reserved_chunks(self) -> int:
        return int(self._count[LIST_RESERVED])

    @property
    def used_bytes(self) -> int:
        """Bytes not free: UVM's chunks (pinned, allocated, in eviction) plus reservations."""
        return (self.n_root_chunks - int(self._count[LIST_FREE])) * ROOT_CHUNK_SIZE

    @property
    def uvm_bytes(self) -> int:
        """Bytes held by UVM (TEMP_PINNED, ALLOCATED or IN_EVICTION)."""
        held = self.n_root_chunks - int(self._count[LIST_FREE] + self._count[LIST_RESERVED])
        return held * ROOT_CHUNK_SIZE

    @property
    def free_bytes(self) -> int:
        return int(self._count[LIST_FREE]) * ROOT_CHUNK_SIZE

    @property
    def reserved_bytes(self) -> int:
        return int(self._count[LIST_RESERVED]) * ROOT_CHUNK_SIZE

    def count(self, name: str) -> int:
        """Number of chunks on the named list."""
        return int(self._count[_list_id(name)])

    def list_of(self, chunk: int) -> str | None:
        """The name of the list the chunk is on, or None (pinned, in eviction)."""
        lst = int(self._list[self._check_index(chunk)])
        return None if lst == NO_LIST else LIST_LABEL[lst]

    def list_chunks(self, name: str) -> np.ndarray:
        """The chunks on a list, head..tail (for eviction order: head is evicted first)."""
        lst = _list_id(name)
        return chunk_list_walk(self._next, self.n_root_chunks, lst, int(self._count[lst]))

    def is_evictable(self, chunk: int) -> bool:
        """Whether pick_root_chunk_to_evict could choose it (free, or on an eviction list)."""
        return int(self._list[self._check_index(chunk)]) in EVICTION_ORDER

    # ---- reservations by other PMA clients (cudaMalloc) -----------------------------------
    def reserve(self, nbytes: int) -> int:
        """Take memory for a non-UVM allocation; it is never evicted. Returns chunks taken.

        The size is rounded up to whole root chunks. Only free chunks are used: with
        ``uvm_global_oversubscription`` the real PMA would evict UVM chunks to make room
        (uvm_pmm_gpu_pma_evict_pages, uvm_pmm_gpu.c); the caller does that eviction through
        :meth:`pick_root_chunk_to_evict` first, since it must move the evicted data.
        """
        if nbytes < 0:
            raise UvmlabError(f"cannot reserve a negative size ({nbytes} B)")
        need = -(-int(nbytes) // ROOT_CHUNK_SIZE)
        free = int(self._count[LIST_FREE])
        if need > free:
            evictable = int(sum(self._count[lst] for lst in (LIST_USED, LIST_UNUSED, LIST_DISCARDED)))
            raise OutOfMemory(
                f"cannot reserve {need} root chunks ({need * ROOT_CHUNK_SIZE} B) of GPU memory: "
                f"{free} free, {evictable} more held by UVM and evictable, "
                f"{self._count[LIST_RESERVED]} already reserved, of {self.n_root_chunks}"
            )
        for _ in range(need):
            c = self._pop_head(LIST_FREE)
            self._state[c] = RESERVED
            self._push_tail(c, LIST_RESERVED)
        return need

    def release(self, nbytes: int) -> int:
        """Give back reserved memory (cudaFree), most recent reservation first."""
        n = -(-int(nbytes) // ROOT_CHUNK_SIZE)
        if n > self._count[LIST_RESERVED]:
            raise UvmlabError(
                f"cannot release {n} root chunks: only {self._count[LIST_RESERVED]} are reserved"
            )
        for _ in range(n):
            c = int(self._prev[self.n_root_chunks + LIST_RESERVED])
            self._unlink(c)
            self._state[c] = FREE
            self._push_tail(c, LIST_FREE)
        return n

    # ---- UVM allocation and the chunk life cycle ------------------------------------------
    def alloc_root_chunk(self, owner: int) -> int:
        """Take a free chunk without eviction (TEMP_PINNED, owned by ``owner``); -1 if none.

        The -1 is the driver's NV_ERR_NO_MEMORY from the no-eviction attempt; the caller then
        allocates with eviction (block_alloc_gpu_chunk, uvm_va_block.c).
        """
        if owner < 0:
            raise ValueError(f"owner must be a VA block id >= 0, got {owner}")
        c = self._pop_head(LIST_FREE)
        if c < 0:
            return -1
        self._state[c] = TEMP_PINNED
        self._owner[c] = owner
        return c

    def unpin_allocated(self, chunk: int) -> None:
        """TEMP_PINNED -> ALLOCATED at the end of the VA-block operation; tail of the used list.

        uvm_pmm_gpu_unpin_allocated -> chunk_update_lists_locked moves the root chunk to the
        tail of va_block_used whatever mark_* calls happened while it was pinned.
        """
        c = self._check_index(chunk)
        if self._state[c] != TEMP_PINNED:
            raise ValueError(f"unpin_allocated: chunk {c} is {self._state_name(c)}, not TEMP_PINNED")
        self._state[c] = ALLOCATED
        self._push_tail(c, LIST_USED)

    def mark_used(self, chunk: int) -> None:
        """block_mark_memory_used: move to the tail of va_block_used (most recently used).

        A no-op for a pinned or in-eviction chunk (root_chunk_update_eviction_list).
        """
        self._update_eviction_list(chunk, LIST_USED, "mark_used")

    def mark_unused(self, chunk: int) -> None:
        """The block's last page left this GPU: move to the tail of va_block_unused."""
        self._update_eviction_list(chunk, LIST_UNUSED, "mark_unused")

    def mark_discarded(self, chunk: int) -> None:
        """Every page of the block was discarded: move to the tail of va_block_discarded."""
        self._update_eviction_list(chunk, LIST_DISCARDED, "mark_discarded")

    def pick_root_chunk_to_evict(self) -> int:
        """Choose a victim as pick_root_chunk_to_evict does; -1 if nothing is evictable.

        Order: a free chunk, then the head of va_block_unused, of va_block_discarded, of
        va_block_used. The victim leaves its list and becomes IN_EVICTION; its ``owner`` is kept
        so that the caller knows which VA block to evict (-1 for a free chunk). The caller
        finishes with :meth:`finish_eviction` (or :meth:`free_chunk`).
        """
        c = int(chunk_peek_victim(self._next, self.n_root_chunks))
        if c >= 0:
            self._unlink(c)
            self._state[c] = IN_EVICTION
        return c

    def finish_eviction(self, chunk: int, new_owner: int) -> None:
        """The evicted root chunk goes to the allocating caller, TEMP_PINNED (evict_root_chunk step 3)."""
        c = self._check_index(chunk)
        if self._state[c] != IN_EVICTION:
            raise ValueError(f"finish_eviction: chunk {c} is {self._state_name(c)}, not IN_EVICTION")
        if new_owner < 0:
            raise ValueError(f"new_owner must be a VA block id >= 0, got {new_owner}")
        self._state[c] = TEMP_PINNED
        self._owner[c] = new_owner

    def free_chunk(self, chunk: int) -> None:
        """Give a UVM chunk back: FREE, owner -1, tail of the free list."""
        c = self._check_index(chunk)
        st = int(self._state[c])
        if st in (FREE, RESERVED):
            raise ValueError(f"free_chunk: chunk {c} is {self._state_name(c)}")
        if self._list[c] != NO_LIST:
            self._unlink(c)
        self._state[c] = FREE
        self._owner[c] = -1
        self._push_tail(c, LIST_FREE)

    # ---- reordering for eviction policies ---------------------------------------------------
    def move_to_head(self, chunk: int) -> None:
        """Move a chunk to the head of the list it is on (evicted first from that list)."""
        c = self._check_index(chunk)
        lst = self._require_on_list(c, "move_to_head")
        self._unlink(c)
        self._push_head(c, lst)

    def move_to_tail(self, chunk: int) -> None:
        """Move a chunk to the tail of the list it is on (evicted last from that list)."""
        c = self._check_index(chunk)
        lst = self._require_on_list(c, "move_to_tail")
        self._unlink(c)
        self._push_tail(c, lst)

    # ---- invariants --------------------------------------------------------------------------
    def check_invariants(self) -> None:
        """Raise AssertionError if the lists and states are inconsistent.

        Checked: links are mutual on every list, each list holds exactly its counted chunks, each
        chunk's recorded list matches the list it is found on, states match lists (FREE on free,
        ALLOCATED on exactly one eviction list, RESERVED on reserved, TEMP_PINNED and IN_EVICTION
        on none), owners are set exactly where a chunk is held, counts add up, and
        used <= capacity.
        """
        n = self.n_root_chunks
        seen, lst, code, where, k = walk_lists(self._next, self._prev, n, N_LISTS, self._count)
        label = LIST_LABEL[lst] if 0 <= lst < N_LISTS else "?"
        _require(code != 1, f"list {label}: bad link to node {where}")
        _require(code != 2, f"chunk {where}: prev link broken")
        _require(code != 3, f"chunk {where} found on two lists (or a cycle)")
        _require(code != 4, f"list {label} does not end")
        _require(code != 5, f"list {label}: tail link broken")
        _require(code != 6, f"list {label} has {k} chunks, count says {self._count[lst]}")
        _require(bool(np.array_equal(seen, self._list)), "recorded list ids differ from links")

        st = self._state
        expect = {
            FREE: (LIST_FREE,),
            RESERVED: (LIST_RESERVED,),
            ALLOCATED: (LIST_USED, LIST_UNUSED, LIST_DISCARDED),
            TEMP_PINNED: (NO_LIST,),
            IN_EVICTION: (NO_LIST,),
        }
        _require(bool(np.isin(st, list(expect)).all()), "unknown chunk state")
        for state, lists in expect.items():
            bad = (st == state) & ~np.isin(self._list, lists)
            _require(
                not bad.any(),
                f"{ChunkState(state).name} chunks on the wrong list: {np.flatnonzero(bad)[:5].tolist()}",
            )
        no_owner = (st == FREE) | (st == RESERVED)
        _require(bool((self._owner[no_owner] == -1).all()), "free/reserved chunk has an owner")
        held = (st == TEMP_PINNED) | (st == ALLOCATED)
        _require(bool((self._owner[held] >= 0).all()), "held chunk has no owner")
        _require(
            int(self._count.sum()) + int(((st == TEMP_PINNED) | (st == IN_EVICTION)).sum()) == n,
            "chunk counts do not add up",
        )
        _require(0 <= self.used_bytes <= self.capacity_bytes, "used bytes exceed capacity")

    # ---- internals ---------------------------------------------------------------------------
    def _check_index(self, chunk: int) -> int:
        c = int(chunk)
        if not 0 <= c < self.n_root_chunks:
            raise IndexError(f"chunk {c} out of range 0..{self.n_root_chunks - 1}")
        return c

    def _state_name(self, c: int) -> str:
        return ChunkState(int(self._state[c])).name

    def _require_on_list(self, c: int, what: str) -> int:
        lst = int(self._list[c])
        if lst == NO_LIST:
            raise ValueError(f"{what}: chunk {c} ({self._state_name(c)}) is on no list")
        return lst

    def _update_eviction_list(self, chunk: int, lst: int, what: str) -> None:
        # root_chunk_update_eviction_list (uvm_pmm_gpu.c): only ALLOCATED or TEMP_PINNED user
        # chunks may be marked; pinned or in-eviction chunks are on no list and stay put.
        c = self._check_index(chunk)
        if not chunk_update_eviction_list(
            self._state, self._prev, self._next, self._list, self._count, self.n_root_chunks, c, lst
        ):
            raise ValueError(f"{what}: chunk {c} is {self._state_name(c)}, not a UVM chunk")

    # The list primitives are compiled functions shared with the compiled fault path
    # (uvmlab.driver.compiled.fast_service), so both move chunks by the same code.
    def _unlink(self, c: int) -> None:
        chunk_unlink(self._prev, self._next, self._list, self._count, c)

    def _push_tail(self, c: int, lst: int) -> None:
        chunk_push_tail(self._prev, self._next, self._list, self._count, self.n_root_chunks, c, lst)

    def _push_head(self, c: int, lst: int) -> None:
        s = self.n_root_chunks + lst
        h = int(self._next[s])
        # inserting after the sentinel is inserting before the old head
        chunk_insert_between(self._prev, self._next, self._list, self._count, s, h, c, lst)

    def _pop_head(self, lst: int) -> int:
        return int(chunk_pop_head(self._prev, self._next, self._list, self._count, self.n_root_chunks, lst))

    def arrays(self) -> PmmArrays:
        """The lists' arrays, for compiled code that moves chunks with the ``chunk_*``
        primitives below; node ``n_root_chunks + L`` is list L's sentinel."""
        return PmmArrays(self._state, self._owner, self._list, self._prev, self._next, self._count)


def _list_id(name: str) -> int:
    lst = LIST_NAMES.get(name, LIST_ALIASES.get(name))
    if lst is None:
        raise ValueError(f"unknown PMM list {name!r}; lists: {', '.join(LIST_NAMES)}")
    return lst


def _require(ok: bool, message: str) -> None:
    # Not `assert`: invariant checks must also run under python -O.
    if not ok:
        raise AssertionError(message)
