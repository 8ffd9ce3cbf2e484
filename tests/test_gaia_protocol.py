"""GAIA's consistency protocol: a reader after maquire never sees a stale page.

An oracle outside the model keeps what release consistency promises: every write gets a
version; a CPU write is published at once (the host page cache is the file's home), a GPU write
when the GPU releases a range holding it; an acquire by processor P raises P's floor for every
page of its range to the newest published version; P's own writes raise its floor too. Each
read must return a version that was written to that page (or 0, the file's initial contents) and
is at least the reader's floor. The model only moves versions through the protocol's actions, so
a protocol bug (a missed invalidation, a lost write-back, an older copy overwriting a newer one)
shows up as a stale read.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from uvmlab.driver.hal import get_gpu
from uvmlab.driver.params import Params
from uvmlab.driver.uvm import UvmDriver
from uvmlab.gaia.costs import HostCosts
from uvmlab.gaia.engine import simulate_gaia
from uvmlab.gaia.pagecache import GPU, GaiaCache
from uvmlab.timing.cost_model import load_profile
from uvmlab.workload.builder import WorkloadBuilder
from uvmlab.workload.ir import Access, Alloc, AllocKind

CPU = 0
FILE_PAGES = 1536  # three VA blocks
# pages in three blocks, two sharing one 64 KiB GPU page: invalidation and eviction interact
HOT = [0, 1, 17, 512, 1030]


def _cache(gpu_chunks: int, cached: int = FILE_PAGES // 2) -> GaiaCache:
    alloc = Alloc("f", FILE_PAGES * 4096, AllocKind.FILE, cached, cached // 4)
    drv = UvmDriver(
        [alloc],
        gpu=get_gpu("h200"),
        params=Params(),
        profile=load_profile(),
        gpu_memory_bytes=gpu_chunks << 21,
    )
    return GaiaCache(drv, HostCosts())


class Oracle:
    def __init__(self, n: int) -> None:
        self.published = np.zeros(n, dtype=np.int64)
        self.floor = {CPU: np.zeros(n, dtype=np.int64), GPU: np.zeros(n, dtype=np.int64)}
        self.gpu_unreleased = np.zeros(n, dtype=np.int64)
        self.written: dict[int, set[int]] = {}

    def write(self, proc: int, page: int, version: int) -> None:
        self.written.setdefault(page, set()).add(version)
        self.floor[proc][page] = version
        if proc == CPU:
            self.published[page] = max(self.published[page], version)
        else:
            self.gpu_unreleased[page] = max(self.gpu_unreleased[page], version)

    def release(self, proc: int, lo: int, hi: int) -> None:
        if proc == GPU:
            s = slice(lo, hi)
            self.published[s] = np.maximum(self.published[s], self.gpu_unreleased[s])

    def acquire(self, proc: int, lo: int, hi: int) -> None:
        s = slice(lo, hi)
        self.floor[proc][s] = np.maximum(self.floor[proc][s], self.published[s])

    def check_read(self, proc: int, page: int, seen: int) -> None:
        assert seen == 0 or seen in self.written.get(page, set()), (
            f"page {page}: version {seen} was never written to it"
        )
        assert seen >= self.floor[proc][page], (
            f"{'GPU' if proc else 'CPU'} read a stale page {page}: version {seen}, but "
            f"version {self.floor[proc][page]} was published before its last acquire"
        )


op_strategy = st.one_of(
    st.tuples(st.sampled_from(["read", "write"]), st.sampled_from([CPU, GPU]), st.sampled_from(HOT)),
    st.tuples(
        st.sampled_from(["acquire", "release"]),
        st.sampled_from([CPU, GPU]),
        st.sampled_from([(0, FILE_PAGES), (0, 32), (16, 512), (500, 1100), (1024, 1536)]),
    ),
)


def _run(ops: list, gpu_chunks: int) -> None:
    cache = _cache(gpu_chunks)
    base = int(cache.drv.va.alloc_base[0])
    oracle = Oracle(FILE_PAGES)
    for kind, proc, arg in ops:
        if kind in ("read", "write"):
            g = np.array([base + arg], dtype=np.int64)
            acc = np.array([Access.WRITE if kind == "write" else Access.READ], dtype=np.uint8)
            (cache.gpu_access if proc == GPU else cache.cpu_access)(g, acc)
            seen = int((cache.gpu_ver if proc == GPU else cache.cpu_ver)[base + arg])
            if kind == "write":
                oracle.write(proc, arg, seen)
            else:
                oracle.check_read(proc, arg, seen)
        else:
            lo, hi = arg
            (cache.acquire if kind == "acquire" else cache.release)(proc, base + lo, hi - lo)
            getattr(oracle, kind)(proc, lo, hi)
        cache.check_invariants()


ALL = (0, FILE_PAGES)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op_strategy, min_size=1, max_size=40), st.sampled_from([1, 2, 8]))
# the protocol's four promises, pinned: GPU sees a CPU write after maquire; CPU sees a released
# GPU write after its acquire; both survive eviction; a shared 64 KiB GPU page keeps both sides'
# writes when the GPU invalidates it
@pytest.mark.slow  # subprocesses of the CLI or long model runs
@example([("read", GPU, 0), ("write", CPU, 0), ("acquire", GPU, ALL), ("read", GPU, 0)], 8)
@example([("write", GPU, 0), ("release", GPU, ALL), ("acquire", CPU, ALL), ("read", CPU, 0)], 8)
@example(
    [("write", GPU, 0), ("read", GPU, 512), ("release", GPU, ALL), ("acquire", CPU, ALL), ("read", CPU, 0)], 1
)
@example([("write", GPU, 1), ("write", CPU, 0), ("acquire", GPU, ALL), ("read", GPU, 1)], 8)
def test_reader_after_acquire_never_sees_a_stale_page(ops, gpu_chunks):
    _run(ops, gpu_chunks)


def test_the_oracle_catches_a_protocol_that_skips_invalidation(monkeypatch):
    """The property is not vacuous: without maquire's invalidation the GPU reads stale data."""
    ops = [("read", GPU, 0), ("write", CPU, 0), ("acquire", GPU, (0, FILE_PAGES)), ("read", GPU, 0)]
    _run(ops, 8)  # the real protocol passes
    monkeypatch.setattr(GaiaCache, "_drop_gpu", lambda self, pages: None)
    with pytest.raises(AssertionError, match="stale"):
        _run(ops, 8)


def test_lazy_consistency_lets_a_gpu_without_acquire_read_its_old_copy():
    cache = _cache(8)
    base = int(cache.drv.va.alloc_base[0])
    p = np.array([base], dtype=np.int64)
    rd, wr = np.array([Access.READ], np.uint8), np.array([Access.WRITE], np.uint8)
    cache.gpu_access(p, rd)
    old = int(cache.gpu_ver[base])
    cache.cpu_access(p, wr)
    cache.gpu_access(p, rd)
    assert int(cache.gpu_ver[base]) == old  # stale until the GPU acquires: nothing moved
    cache.acquire(GPU, base, 1)
    assert cache.c["gpu_invalidations"] == 1 and cache.c["acquire_tagged"] == 1
    cache.gpu_access(p, rd)
    assert int(cache.gpu_ver[base]) == int(cache.cpu_ver[base]) > old


def test_release_publishes_and_cpu_pulls_once():
    b = WorkloadBuilder("pc")
    f = b.file("f", "4MiB", cached=1.0)
    b.maquire(f)
    b.kernel("produce", [b.run(f, count=64, access="write")])
    b.mrelease(f)
    b.cpu("consume", [b.run(f, count=64), b.run(f, count=64)])
    r = simulate_gaia(b.build(), check_invariants=True)
    t = r.totals
    assert t["published"] == 64 and t["cpu_pulls"] == 64  # second pass hits the host copy
    assert t["bytes_dtoh"] == 64 * 4096
    # the kernel faulted 4 GPU pages of 64 KiB, fetched from the host page cache: no storage
    assert t["gpu_faults"] == 4 and t["storage_read_bytes"] == 0
