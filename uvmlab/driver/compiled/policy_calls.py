"""Compiled policies, called from compiled code: a batch's prefetch and thrashing kernels, and
the eviction victim choice inside the compiled fault service (docs/policies.md, "Compiled
policies").

A policy may give a decision point as a ``numba.njit`` *kernel* of a fixed signature (below)
instead of, or beside, its Python hook. The guard (``uvmlab.policy``) bundles the live kernels
into a :class:`PolicyKernels`: each kernel sits in a numba typed list of first-class functions
of its signature, so the compiled functions here call it through a function pointer. They are
compiled once for those types (and cached on disk, like every compiled function of the model),
whatever kernels a run loads; passing the bundle costs about a microsecond, where passing the
kernels themselves would cost tens. An exception a kernel raises propagates out of the
compiled call like any other; ``status[CALLING]`` says which kernel was running and
``status[K]`` how far the service got, so the caller can eject the policy and resume. A kernel
that returns something its point does not allow is recorded in ``status[BAD]`` /
``status[BAD_VALUE]`` and its decision dropped, and the caller ejects it.

* ``prefetch`` (``PREFETCH_SIG``): ``(gpu, now_ns, blocks, n_pages, alloc, faulted, state, out,
  rows) -> 1 | 0``; ``faulted[i, p]``: page ``p`` of block ``blocks[i]`` faulted and still needs
  service; the kernel sets ``out[i, p]`` (pages to prefetch) and ``rows[i]`` (the row replaces
  block i's driver hint) and returns 1, or returns 0 (the driver's hints);
* ``thrashing`` (``THRASHING_SIG``): the same inputs, then ``kinds`` (int8, filled with KEEP, -1);
  it writes hint kinds (KEEP, HINT_NONE, HINT_THROTTLE, HINT_PIN) and returns 1, or returns 0;
* ``victim`` (``VICTIM_SIG``): ``(gpu, now_ns, chunk_state, owner, list_of, prev, nxt,
  list_count, state) -> chunk | -1``, the PMM's root-chunk arrays (``pmm_lists.PmmArrays``) when
  ``pick_root_chunk_to_evict`` is about to take a victim: a chunk on an eviction list is evicted
  next (as ``eviction_prepare`` returning it), -1 keeps the driver's choice.

``state`` is the policy's own int64 array (its parameters, its memory across calls).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numba import njit, types
from numba.extending import overload
from numba.typed import List

from uvmlab.core.sizes import BLOCK_SHIFT, PAGES_PER_BLOCK
from uvmlab.driver.perf.thrashing_state import HINT_PIN
from uvmlab.driver.pmm_lists import (
    LIST_DISCARDED,
    LIST_UNUSED,
    LIST_USED,
    chunk_insert_between,
    chunk_unlink,
    chunk_update_eviction_list,
)
from uvmlab.driver.va_space import PERM_READ

# which kernel: index into PolicyKernels.on, and the value of status[CALLING] / status[BAD]
PREFETCH, THRASHING, VICTIM = 0, 1, 2
BAD_KIND = 3  # status[BAD]: the thrashing kernel wrote a hint kind out of range (status[BAD_VALUE])
# status[...]: the kernel running now (-1: none); the block the service had reached; the kernel
# that returned garbage (-1: none) and the value; a victim chosen for an allocation the caller
# finishes (its eviction_prepare must not choose again)
CALLING, K, BAD, BAD_VALUE, CHOSEN = range(5)
KEEP = -1

_i64, _i8, _i32, _b = types.int64, types.int8, types.int32, types.boolean


def _arr(dt: Any, nd: int) -> Any:
    return types.Array(dt, nd, "C")


PREFETCH_SIG = _i64(
    _i64,
    _i64,
    _arr(_i64, 1),
    _arr(_i64, 1),
    _arr(_i64, 1),
    _arr(_b, 2),
    _arr(_i64, 1),
    _arr(_b, 2),
    _arr(_b, 1),
)
THRASHING_SIG = _i64(
    _i64, _i64, _arr(_i64, 1), _arr(_i64, 1), _arr(_i64, 1), _arr(_b, 2), _arr(_i64, 1), _arr(_i8, 2)
)
VICTIM_SIG = _i64(
    _i64,
    _i64,
    _arr(_i8, 1),
    _arr(_i32, 1),
    _arr(_i8, 1),
    _arr(_i32, 1),
    _arr(_i32, 1),
    _arr(_i64, 1),
    _arr(_i64, 1),
)
#: ``decide_replay`` as a kernel: ``(gpu, batch, faults, unique, duplicates, throttled,
#: pending, default_policy, replays, now_ns, state) -> 1 | 0 | -1`` (the hook's codes). The
#: guard calls it after each batch, where the replay decision is taken, outside the service.
REPLAY_SIG = _i64(*([_i64] * 10), _arr(_i64, 1))
REPLAY = 3
SIGNATURES = (PREFETCH_SIG, THRASHING_SIG, VICTIM_SIG, REPLAY_SIG)


@njit(cache=True)
def _no_prefetch(  # noqa: ARG001 (the kernel signature, policy_calls)
    gpu: int,
    now_ns: int,
    blocks: np.ndarray,
    n_pages: np.ndarray,
    alloc: np.ndarray,
    faulted: np.ndarray,
    state: np.ndarray,
    out: np.ndarray,
    rows: np.ndarray,
) -> int:
    return 0


@njit(cache=True)
def _no_thrashing(  # noqa: ARG001 (the kernel signature, policy_calls)
    gpu: int,
    now_ns: int,
    blocks: np.ndarray,
    n_pages: np.ndarray,
    alloc: np.ndarray,
    faulted: np.ndarray,
    state: np.ndarray,
    kinds: np.ndarray,
) -> int:
    return 0


@njit(cache=True)
def _no_victim(  # noqa: ARG001 (the kernel signature, policy_calls)
    gpu: int,
    now_ns: int,
    chunk_state: np.ndarray,
    owner: np.ndarray,
    list_of: np.ndarray,
    prev: np.ndarray,
    nxt: np.ndarray,
    list_count: np.ndarray,
    state: np.ndarray,
) -> int:
    return -1


@njit(cache=True)
def _no_replay(  # noqa: ARG001 (the kernel signature, policy_calls)
    gpu: int,
    batch: int,
    faults: int,
    unique: int,
    duplicates: int,
    throttled: int,
    pending: int,
    default_policy: int,
    replays: int,
    now_ns: int,
    state: np.ndarray,
) -> int:
    return 0


_NONE = (_no_prefetch, _no_thrashing, _no_victim, _no_replay)


class PolicyKernels(NamedTuple):
    """The live compiled kernels of a run, as the compiled code receives them."""

    prefetch: Any  # numba typed list of one FunctionType(PREFETCH_SIG)
    thrashing: Any  # ... THRASHING_SIG
    victim: Any  # ... VICTIM_SIG
    on: np.ndarray  # bool[3]: which kernels are live (the others are no-ops)
    state_prefetch: np.ndarray  # int64: each kernel's policy state
    state_thrashing: np.ndarray
    state_victim: np.ndarray
    status: np.ndarray  # int64[5]: CALLING, K, BAD, BAD_VALUE, CHOSEN


_LISTS: dict[tuple[int, int], tuple[Any, Any]] = {}  # (kernel id, which) -> its typed list, for every run


def _kernel_list(fn: Any, which: int) -> Any:
    """A typed list holding ``fn`` as a first-class function of its signature, made once per
    kernel and process (a typed list costs about 0.2 ms to make: a run would pay it every time)."""
    key = (id(fn), which)
    got = _LISTS.get(key)
    if got is None or got[0] is not fn:
        lst = List.empty_list(types.FunctionType(SIGNATURES[which]))
        lst.append(fn)
        got = _LISTS[key] = (fn, lst)  # fn kept alive: its id is not reused while cached
    return got[1]


def replay_kernel_list(fn: Any | None) -> Any:
    """The replay kernel ``fn`` (None: a no-op) as the compiled fault loop calls it
    (``call_replay``): a typed list of one first-class function of ``REPLAY_SIG``."""
    return _kernel_list(_NONE[REPLAY] if fn is None else fn, REPLAY)


def make_kernels(kernels: dict[int, tuple[Any, np.ndarray]]) -> PolicyKernels:
    """Bundle ``{PREFETCH | THRASHING | VICTIM: (njit kernel, state)}``; absent ones are no-ops.
    Each kernel compiles (or loads from numba's cache) for its signature here: a kernel that
    does not fit its signature raises numba's error."""
    lists, states = [], []
    on = np.zeros(3, np.bool_)
    for which in range(REPLAY):  # the replay kernel is called from Python
        fn, state = kernels.get(which, (_NONE[which], np.zeros(0, np.int64)))
        on[which] = which in kernels
        lists.append(_kernel_list(fn, which))
        states.append(np.ascontiguousarray(state, dtype=np.int64))
    status = np.array([-1, 0, -1, 0, 0], np.int64)
    return PolicyKernels(lists[0], lists[1], lists[2], on, states[0], states[1], states[2], status)


@njit(cache=True)
def batch_rows(
    page: np.ndarray,
    access: np.ndarray,
    keep: np.ndarray,
    perm: np.ndarray,
    blocks: np.ndarray,
    block_pages: np.ndarray,
    block_alloc: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A batch's rows: ``faulted[i, p]``, page ``p`` of ``blocks[i]`` is in the (sorted) batch,
    not a duplicate, and not already authorized (service_fault_batch_block_locked's stale
    check); each block's size and allocation."""
    nb = blocks.shape[0]
    out = np.zeros((nb, PAGES_PER_BLOCK), np.bool_)
    n_pages = np.empty(nb, np.int64)
    alloc = np.empty(nb, np.int64)
    for i in range(nb):
        n_pages[i] = block_pages[blocks[i]]
        alloc[i] = block_alloc[blocks[i]]
    i = 0
    for j in range(page.shape[0]):
        if not keep[j]:
            continue
        need = access[j] if access[j] > PERM_READ else PERM_READ
        if perm[page[j]] >= need:
            continue
        b = page[j] >> BLOCK_SHIFT
        while blocks[i] != b:
            i += 1
        out[i, page[j] & (PAGES_PER_BLOCK - 1)] = True
    return out, n_pages, alloc


@njit(cache=True)
def decide_batch(
    kern_prefetch: Any,
    kern_thrashing: Any,
    on: np.ndarray,
    state_prefetch: np.ndarray,
    state_thrashing: np.ndarray,
    st: np.ndarray,
    gpu: int,
    now: int,
    blocks: np.ndarray,
    page: np.ndarray,
    access: np.ndarray,
    keep: np.ndarray,
    perm: np.ndarray,
    block_pages: np.ndarray,
    block_alloc: np.ndarray,
    buf_out: np.ndarray,
    buf_rows: np.ndarray,
    buf_reference: np.ndarray,
    buf_kinds: np.ndarray,
) -> int:
    """Call the live prefetch and thrashing kernels (``PolicyKernels`` fields, passed one by
    one: numba types a named tuple holding typed lists in Python, at every call) on a batch's
    rows (``batch_rows``). Returns which kernels decided (bit PREFETCH, bit THRASHING); their
    decisions are in the first rows of the caller's buffers, which the kernels write (at least
    as many rows as blocks; returning fresh arrays to Python would cost more than the rest of
    the call):
    prefetch rows ``[blocks, 512]`` and the blocks they decide, the blocks a thrashing decision
    sends to the reference path and the hint kinds."""
    faulted, n_pages, alloc = batch_rows(page, access, keep, perm, blocks, block_pages, block_alloc)
    nb = blocks.shape[0]
    decided = 0
    if on[PREFETCH]:
        out, rows = buf_out[:nb], buf_rows[:nb]
        out[:] = False
        rows[:] = False
        st[CALLING] = PREFETCH
        r = kern_prefetch[0](gpu, now, blocks, n_pages, alloc, faulted, state_prefetch, out, rows)
        st[CALLING] = -1
        if r == 1:
            decided |= 1 << PREFETCH
        elif r != 0:
            st[BAD] = PREFETCH
            st[BAD_VALUE] = r
    if on[THRASHING]:
        kinds, reference = buf_kinds[:nb], buf_reference[:nb]
        kinds[:] = KEEP
        reference[:] = False
        st[CALLING] = THRASHING
        r = kern_thrashing[0](gpu, now, blocks, n_pages, alloc, faulted, state_thrashing, kinds)
        st[CALLING] = -1
        if r == 1:
            for i in range(nb):
                for p in range(PAGES_PER_BLOCK):
                    v = kinds[i, p]
                    if v < KEEP or v > HINT_PIN:
                        st[BAD] = BAD_KIND
                        st[BAD_VALUE] = v
                        return decided
                    if v != KEEP and faulted[i, p]:
                        reference[i] = True
            decided |= 1 << THRASHING
        elif r != 0:
            st[BAD] = THRASHING
            st[BAD_VALUE] = r
    return decided


@njit(cache=True)
def call_replay(
    kern_replay: Any,
    state_replay: np.ndarray,
    st: np.ndarray,
    gpu: int,
    batch: int,
    faults: int,
    unique: int,
    duplicates: int,
    throttled: int,
    pending: int,
    default_policy: int,
    replays: int,
    now: int,
) -> int:
    """The replay kernel's decision after a batch, in compiled code (the compiled fault loop):
    1 replay now, 0 the driver's policy, -1 defer; anything else is recorded in ``st[BAD]``
    (REPLAY) and ``st[BAD_VALUE]`` and taken as 0."""
    st[CALLING] = REPLAY
    r = kern_replay[0](
        gpu, batch, faults, unique, duplicates, throttled, pending, default_policy, replays, now, state_replay
    )
    st[CALLING] = -1
    if r < -1 or r > 1:
        st[BAD] = REPLAY
        st[BAD_VALUE] = r
        return 0
    return r


@njit(cache=True)
def choose_victim(
    kern_victim: Any,
    state_victim: np.ndarray,
    st: np.ndarray,
    gpu: int,
    now: int,
    state: np.ndarray,
    owner: np.ndarray,
    list_of: np.ndarray,
    prev: np.ndarray,
    nxt: np.ndarray,
    count: np.ndarray,
) -> int:
    """``eviction_prepare`` in compiled code: ask the victim kernel; a chunk on an eviction list
    goes to the head of va_block_unused (taken next, as the Python hook's victim is), -1 leaves
    the lists. Returns the chunk, or -1 (none, or garbage: status[BAD] in ``st``)."""
    st[CALLING] = VICTIM
    c = kern_victim[0](gpu, now, state, owner, list_of, prev, nxt, count, state_victim)
    st[CALLING] = -1
    n = state.shape[0]
    if c == -1:
        return -1
    lst = list_of[c] if 0 <= c < n else -1
    if lst != LIST_USED and lst != LIST_UNUSED and lst != LIST_DISCARDED:  # noqa: PLR1714 (numba)
        st[BAD] = VICTIM
        st[BAD_VALUE] = c
        return -1
    if lst != LIST_UNUSED:  # mark_unused: tail of va_block_unused (an ALLOCATED chunk)
        chunk_update_eviction_list(state, prev, nxt, list_of, count, n, c, LIST_UNUSED)
    cur = list_of[c]  # move_to_head of the list it is on now
    s = n + cur
    chunk_unlink(prev, nxt, list_of, count, c)
    chunk_insert_between(prev, nxt, list_of, count, s, nxt[s], c, cur)
    return c


def choose_if_live(victim: Any, state_victim: Any, st: Any, gpu: int, now: int, pmm: Any) -> bool:
    """In compiled code (``gpu_faults.service_block``, when a block needs a chunk and none is
    free): ask the victim kernel, once per allocation (``status[CHOSEN]``); False, and nothing
    compiled, when the service runs without one (``victim`` None)."""
    raise NotImplementedError("compiled code only")


@overload(choose_if_live)
def _choose_if_live(victim, state_victim, st, gpu, now, pmm):  # noqa: ANN001, ANN202 (numba: the same names, no annotations)
    if isinstance(victim, types.NoneType):
        return lambda victim, state_victim, st, gpu, now, pmm: False

    def impl(victim, state_victim, st, gpu, now, pmm):  # noqa: ANN001, ANN202
        if st[CHOSEN]:
            return False  # chosen already, for the allocation the caller is finishing
        choose_victim(
            victim,
            state_victim,
            st,
            gpu,
            now,
            pmm.state,
            pmm.owner,
            pmm.list_of,
            pmm.prev,
            pmm.nxt,
            pmm.list_count,
        )
        st[CHOSEN] = 1
        return True

    return impl


def note_block(st: Any, k: int, done: bool) -> None:
    """In compiled code: ``status[K]``, the block being serviced (a kernel that raises leaves
    it there for the caller); ``done``: the block is through, any victim chosen for it was
    taken by the compiled service (``status[CHOSEN]`` cleared: not NEED_CHUNK, where the
    caller's eviction takes it). Nothing without a victim kernel (``st`` None)."""
    raise NotImplementedError("compiled code only")


@overload(note_block)
def _note_block(st, k, done):  # noqa: ANN001, ANN202 (numba: the same names, no annotations)
    if isinstance(st, types.NoneType):
        return lambda st, k, done: None

    def impl(st, k, done):  # noqa: ANN001, ANN202
        st[K] = k
        if done:
            st[CHOSEN] = 0

    return impl
