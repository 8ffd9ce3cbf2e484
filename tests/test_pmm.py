"""PMM list rules and victim choice (uvm_pmm_gpu.c: its eviction lists and ``pick_root_chunk_to_evict``)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uvmlab.core.errors import UvmlabError
from uvmlab.driver.hal import GPUS, get_gpu
from uvmlab.driver.pmm import ROOT_CHUNK_SIZE, OutOfMemory, Pmm
from uvmlab.driver.pmm_lists import ALLOCATED, FREE, IN_EVICTION, RESERVED, TEMP_PINNED

MiB = 1 << 20


def filled(n: int) -> Pmm:
    """A PMM of ``n`` root chunks, each allocated by block i and unpinned, in order 0..n-1."""
    pmm = Pmm(n * ROOT_CHUNK_SIZE)
    for block in range(n):
        c = pmm.alloc_root_chunk(block)
        assert c >= 0
        pmm.unpin_allocated(c)
    return pmm


def test_capacity_in_root_chunks():
    pmm = Pmm(10 * ROOT_CHUNK_SIZE + 12345)  # a partial trailing chunk is unusable
    assert pmm.n_root_chunks == 10
    assert pmm.capacity_bytes == 10 * ROOT_CHUNK_SIZE
    assert pmm.used_bytes == 0 and pmm.free_bytes == pmm.capacity_bytes
    assert pmm.list_chunks("free").tolist() == list(range(10))
    pmm.check_invariants()
    with pytest.raises(UvmlabError):
        Pmm(MiB)
    with pytest.raises(UvmlabError):
        Pmm(1 << 60)


def test_full_gpu_then_one_more_evicts_head_of_used():
    n = 8
    pmm = filled(n)
    assert pmm.list_chunks("va_block_used").tolist() == list(range(n))
    assert pmm.used_bytes == pmm.capacity_bytes
    assert pmm.alloc_root_chunk(owner=100) == -1  # no free chunk: allocation without eviction fails
    victim = pmm.pick_root_chunk_to_evict()
    assert victim == 0  # least recently used = first allocated
    assert pmm.state[victim] == IN_EVICTION
    assert pmm.owner[victim] == 0  # the caller needs the block it must evict
    assert pmm.list_of(victim) is None
    pmm.mark_used(victim)  # no-op while in eviction
    assert pmm.list_of(victim) is None
    pmm.finish_eviction(victim, new_owner=100)
    assert pmm.state[victim] == TEMP_PINNED and pmm.owner[victim] == 100
    pmm.unpin_allocated(victim)
    assert pmm.list_chunks("used").tolist() == [1, 2, 3, 4, 5, 6, 7, 0]
    assert pmm.pick_root_chunk_to_evict() == 1
    pmm.check_invariants()


def test_unused_before_used():
    pmm = filled(6)
    pmm.mark_used(0)
    pmm.mark_unused(4)  # e.g. every page of block 4 migrated back to the CPU
    assert pmm.list_chunks("va_block_unused").tolist() == [4]
    assert pmm.pick_root_chunk_to_evict() == 4
    assert pmm.pick_root_chunk_to_evict() == 1  # then the used list's head
    pmm.check_invariants()


def test_discarded_after_unused_before_used():
    pmm = filled(6)
    pmm.mark_discarded(5)
    pmm.mark_unused(3)
    pmm.mark_discarded(2)
    assert pmm.list_chunks("va_block_discarded").tolist() == [5, 2]
    assert [pmm.pick_root_chunk_to_evict() for _ in range(6)] == [3, 5, 2, 0, 1, 4]
    assert pmm.pick_root_chunk_to_evict() == -1
    pmm.check_invariants()


def test_free_before_unused():
    pmm = filled(4)
    pmm.mark_unused(2)
    pmm.free_chunk(3)  # block freed
    assert pmm.owner[3] == -1 and pmm.state[3] == FREE
    victim = pmm.pick_root_chunk_to_evict()
    assert victim == 3 and pmm.owner[victim] == -1
    assert pmm.pick_root_chunk_to_evict() == 2
    pmm.check_invariants()


def test_free_list_is_fifo():
    pmm = filled(4)
    pmm.free_chunk(2)
    pmm.free_chunk(0)
    assert pmm.list_chunks("free").tolist() == [2, 0]
    assert pmm.alloc_root_chunk(9) == 2  # head of the free list
    assert pmm.alloc_root_chunk(9) == 0
    assert pmm.alloc_root_chunk(9) == -1


def test_mark_used_moves_to_tail_lru_follows_faults_and_migrations():
    pmm = filled(5)
    # Faults/migrations to GPU on blocks 2, 0, 3 in that order (block_mark_memory_used each time).
    for c in (2, 0, 3):
        pmm.mark_used(c)
    assert pmm.list_chunks("used").tolist() == [1, 4, 2, 0, 3]
    assert [pmm.pick_root_chunk_to_evict() for _ in range(5)] == [1, 4, 2, 0, 3]


def test_mark_used_brings_unused_and_discarded_back():
    pmm = filled(3)
    pmm.mark_unused(0)
    pmm.mark_discarded(1)
    pmm.mark_used(0)
    pmm.mark_used(1)
    assert pmm.list_chunks("used").tolist() == [2, 0, 1]
    assert pmm.count("unused") == 0 and pmm.count("discarded") == 0


def test_plain_hits_do_not_refresh():
    # A GPU access that hits an existing mapping does not fault, so the driver never calls
    # block_mark_memory_used for it: only faults/migrations order the list. Block 0 is "hit"
    # constantly by the workload but was faulted on first, so it is still the victim.
    pmm = filled(4)
    accesses = [("hit", 0), ("fault", 1), ("hit", 0), ("hit", 0), ("fault", 2), ("hit", 0)]
    for kind, block in accesses:
        if kind == "fault":  # block_mark_memory_used runs only on the fault/migration path
            pmm.mark_used(block)
    assert pmm.list_chunks("used").tolist() == [0, 3, 1, 2]
    assert pmm.pick_root_chunk_to_evict() == 0


def test_pinned_chunks_are_not_evictable_and_marks_are_noops():
    pmm = Pmm(3 * ROOT_CHUNK_SIZE)
    a = pmm.alloc_root_chunk(0)
    b = pmm.alloc_root_chunk(1)
    pmm.unpin_allocated(b)
    pmm.mark_used(a)  # TEMP_PINNED: no list to move on
    pmm.mark_unused(a)
    assert pmm.list_of(a) is None and pmm.state[a] == TEMP_PINNED
    assert not pmm.is_evictable(a) and pmm.is_evictable(b)
    pmm.unpin_allocated(a)  # unpin always lands on the used tail
    assert pmm.list_chunks("used").tolist() == [b, a]
    c = pmm.alloc_root_chunk(2)
    assert pmm.pick_root_chunk_to_evict() == b
    assert pmm.pick_root_chunk_to_evict() == a
    assert pmm.pick_root_chunk_to_evict() == -1  # only the pinned chunk c is left
    assert pmm.state[c] == TEMP_PINNED
    pmm.check_invariants()


def test_move_to_head_and_tail_for_policies():
    pmm = filled(5)
    pmm.move_to_head(3)
    pmm.move_to_tail(0)
    assert pmm.list_chunks("used").tolist() == [3, 1, 2, 4, 0]
    pmm.mark_unused(4)
    pmm.mark_unused(2)
    pmm.move_to_head(2)
    assert pmm.list_chunks("unused").tolist() == [2, 4]
    assert pmm.pick_root_chunk_to_evict() == 2
    assert pmm.free_chunks == 0
    victim = pmm.pick_root_chunk_to_evict()
    with pytest.raises(ValueError):
        pmm.move_to_head(victim)  # in eviction: on no list
    pmm.check_invariants()


def test_reserve_is_not_evictable_and_out_of_memory():
    pmm = Pmm(8 * ROOT_CHUNK_SIZE)
    assert pmm.reserve(3 * ROOT_CHUNK_SIZE + 1) == 4  # rounded up to whole root chunks
    assert pmm.reserved_bytes == 4 * ROOT_CHUNK_SIZE
    assert (pmm.state == RESERVED).sum() == 4
    for block in range(4):
        pmm.unpin_allocated(pmm.alloc_root_chunk(block))
    assert pmm.alloc_root_chunk(9) == -1
    with pytest.raises(OutOfMemory, match="4 more held by UVM and evictable"):
        pmm.reserve(ROOT_CHUNK_SIZE)
    assert isinstance(OutOfMemory("x"), UvmlabError)
    victims = [pmm.pick_root_chunk_to_evict() for _ in range(5)]
    assert victims[-1] == -1 and all(pmm.state[v] == IN_EVICTION for v in victims[:-1])
    assert pmm.used_bytes == pmm.capacity_bytes
    pmm.check_invariants()
    pmm.release(2 * ROOT_CHUNK_SIZE)
    assert pmm.free_chunks == 2 and pmm.reserved_chunks == 2
    with pytest.raises(UvmlabError):
        pmm.release(10 * ROOT_CHUNK_SIZE)
    pmm.check_invariants()


def test_illegal_transitions_raise():
    pmm = Pmm(2 * ROOT_CHUNK_SIZE)
    with pytest.raises(ValueError):
        pmm.unpin_allocated(0)  # FREE
    with pytest.raises(ValueError):
        pmm.free_chunk(0)  # double free
    with pytest.raises(ValueError):
        pmm.mark_used(0)
    with pytest.raises(ValueError):
        pmm.finish_eviction(0, 1)
    with pytest.raises(IndexError):
        pmm.mark_used(5)
    with pytest.raises(ValueError):
        pmm.alloc_root_chunk(-1)
    with pytest.raises(ValueError):
        pmm.list_chunks("lru")


def test_views_are_read_only():
    pmm = filled(2)
    with pytest.raises(ValueError):
        pmm.state[0] = FREE
    with pytest.raises(ValueError):
        pmm.owner[0] = 5


def test_gpu_sizes_from_probe():
    h200, h100 = get_gpu("h200"), get_gpu("H100")
    assert h200.memory_bytes == 143771 * MiB and h100.memory_bytes == 81559 * MiB
    assert h200.big_page_size == 64 * 1024 and not h200.ats and not h200.cpu_can_map_vidmem
    assert h200.fault_batch_size(256) == 256 and h200.fault_batch_size(0) == 1
    assert h200.fault_batch_size(10**6) == h200.fault_buffer_entries
    with pytest.raises(UvmlabError, match="h200"):
        get_gpu("h20")
    assert {"h200", "h100"} <= set(GPUS)
    assert [g for g in GPUS.values() if g.calibrated] == [h200, h100]  # the measured ones
    pmm = Pmm(h200.memory_bytes)
    assert pmm.n_root_chunks == 143771 // 2


# ---- random operation sequences --------------------------------------------------------------


class Reference:
    """A plain-Python statement of the same rules, to compare the array version against."""

    def __init__(self, n: int) -> None:
        self.lists = {"free": list(range(n)), "used": [], "unused": [], "discarded": [], "reserved": []}
        self.state = [FREE] * n
        self.owner = [-1] * n

    def where(self, c: int) -> str | None:
        for name, lst in self.lists.items():
            if c in lst:
                return name
        return None

    def move_tail(self, c: int, name: str) -> None:
        w = self.where(c)
        if w is not None:
            self.lists[w].remove(c)
        self.lists[name].append(c)


OPS = [
    "alloc",
    "unpin",
    "used",
    "unused",
    "discarded",
    "evict",
    "finish",
    "free",
    "head",
    "tail",
    "reserve",
    "release",
]


def apply(pmm: Pmm, ref: Reference, op: str, arg: int) -> None:
    n = pmm.n_root_chunks
    c = arg % n
    st_ = ref.state[c]
    if op == "alloc":
        got = pmm.alloc_root_chunk(arg)
        if ref.lists["free"]:
            want = ref.lists["free"].pop(0)
            ref.state[want], ref.owner[want] = TEMP_PINNED, arg
        else:
            want = -1
        assert got == want
    elif op == "unpin" and st_ == TEMP_PINNED:
        pmm.unpin_allocated(c)
        ref.state[c] = ALLOCATED
        ref.lists["used"].append(c)
    elif op in ("used", "unused", "discarded") and st_ in (ALLOCATED, TEMP_PINNED, IN_EVICTION):
        getattr(pmm, f"mark_{op}")(c)
        if st_ == ALLOCATED:
            ref.move_tail(c, op)
    elif op == "evict":
        got = pmm.pick_root_chunk_to_evict()
        want = -1
        for name in ("free", "unused", "discarded", "used"):
            if ref.lists[name]:
                want = ref.lists[name].pop(0)
                ref.state[want] = IN_EVICTION
                break
        assert got == want
        if got >= 0:
            assert pmm.owner[got] == ref.owner[got]
    elif op == "finish" and st_ == IN_EVICTION:
        pmm.finish_eviction(c, arg)
        ref.state[c], ref.owner[c] = TEMP_PINNED, arg
    elif op == "free" and st_ in (TEMP_PINNED, ALLOCATED, IN_EVICTION):
        pmm.free_chunk(c)
        ref.state[c], ref.owner[c] = FREE, -1
        ref.move_tail(c, "free")
    elif op in ("head", "tail") and ref.where(c) is not None:
        w = ref.where(c)
        (pmm.move_to_head if op == "head" else pmm.move_to_tail)(c)
        ref.lists[w].remove(c)
        if op == "head":
            ref.lists[w].insert(0, c)
        else:
            ref.lists[w].append(c)
    elif op == "reserve":
        k = arg % 3
        if k <= len(ref.lists["free"]):
            pmm.reserve(k * ROOT_CHUNK_SIZE)
            for _ in range(k):
                x = ref.lists["free"].pop(0)
                ref.state[x] = RESERVED
                ref.lists["reserved"].append(x)
        else:
            with pytest.raises(OutOfMemory):
                pmm.reserve(k * ROOT_CHUNK_SIZE)
    elif op == "release" and ref.lists["reserved"]:
        pmm.release(ROOT_CHUNK_SIZE)
        x = ref.lists["reserved"].pop()
        ref.state[x] = FREE
        ref.lists["free"].append(x)


def check_same(pmm: Pmm, ref: Reference) -> None:
    pmm.check_invariants()
    names = {
        "free": "free",
        "used": "va_block_used",
        "unused": "va_block_unused",
        "discarded": "va_block_discarded",
        "reserved": "reserved",
    }
    for short, full in names.items():
        assert pmm.list_chunks(full).tolist() == ref.lists[short], short
    assert pmm.state.tolist() == ref.state
    assert pmm.owner.tolist() == ref.owner
    assert pmm.used_bytes == (pmm.n_root_chunks - len(ref.lists["free"])) * ROOT_CHUNK_SIZE
    assert pmm.used_bytes <= pmm.capacity_bytes


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=12),
    ops=st.lists(st.tuples(st.sampled_from(OPS), st.integers(min_value=0, max_value=1000)), max_size=120),
)
def test_random_sequences_match_reference_and_keep_invariants(n, ops):
    pmm = Pmm(n * ROOT_CHUNK_SIZE)
    ref = Reference(n)
    for op, arg in ops:
        apply(pmm, ref, op, arg)
        check_same(pmm, ref)


def test_seeded_long_sequence():
    rng = np.random.default_rng(20240601)
    n = 64
    pmm, ref = Pmm(n * ROOT_CHUNK_SIZE), Reference(n)
    for i in range(5000):
        apply(pmm, ref, OPS[int(rng.integers(len(OPS)))], int(rng.integers(1000)))
        if i % 50 == 0:
            check_same(pmm, ref)
    check_same(pmm, ref)


def test_invariant_checker_catches_corruption():
    pmm = filled(4)
    pmm._next[1] = 3  # break a link behind the API's back
    with pytest.raises(AssertionError):
        pmm.check_invariants()
    pmm = filled(4)
    pmm._state[2] = FREE  # an allocated chunk with a free state, still on the used list
    with pytest.raises(AssertionError):
        pmm.check_invariants()
