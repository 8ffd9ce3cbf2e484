"""GAIA's page cache shared by the CPU and the GPU, and its lazy release-consistency protocol.

What GAIA does (ASPLOS'19 paper; ``acsl-technion/gaia_linux``: ``include/linux/mm.h``'s
``vm_ucm_operations_struct``, the ``maquire`` system call in ``mm/``, UVM's ``uvm_vm_*`` ops):
a file ``mmap``ed by the CPU is mapped into the GPU's UVM address space too, and both sides cache
its pages in one page cache. The radix tree node of a file offset keeps, besides the host page,
the GPU's copy (``pagecache_get_gpu_page``) and which copy holds the latest version
(``set_page_version_as_on``). Consistency is lazy:

* a CPU write lands in the host page cache and tags the page ``PAGECACHE_TAG_CPU_DIRTY``; a GPU
  copy of it goes stale and stays readable until the GPU acquires;
* ``maquire`` for the GPU first ``fsync``s the range, then, for every CPU-dirty page, deletes the
  GPU copy from the page cache and unmaps it (``invalidate_cached_page``), and clears the tag; the
  GPU's next touch faults and fetches the current host page (``retrive_cached_page``, 16 pages at
  a time for one 64 KiB GPU page: ``retrive_16cached_pages``);
* a GPU write dirties its copy (``is_gpu_page_dirty``); ``mrelease`` publishes it: the page cache
  records that the latest version is on the GPU, and a later CPU lookup pulls it back
  (``get_page_from_gpu``). A CPU ``maquire`` pulls every published page of the range at once.

Model state, one entry per 4 KiB page of the driver's address space (numpy arrays, docs/model.md):
``cpu_ver`` / ``gpu_ver`` (the version each copy holds, -1 when there is no copy), ``disk_ver``,
``cpu_dirty`` (the CPU-dirty tag), ``disk_dirty`` (not yet written back to storage), ``gpu_dirty``
(unreleased GPU writes) and ``gpu_latest`` (the page cache's "latest is on the GPU" tag). A version
is a global write sequence number, the model's stand-in for a page's contents: data moves only
through the protocol's actions, so tests can check what a reader sees. Model choices: dirtiness
is kept per 4 KiB page where GAIA's ``is_gpu_page_dirty`` answers per 64 KiB GPU page (fetch and
invalidation stay per 64 KiB); when both sides wrote one page without synchronising, the newer
write survives (a program GAIA leaves undefined). The GPU side's memory is the driver model's:
root chunks from its PMM, the prefetch tree and the policy hooks of ``uvmlab.policy``.
"""

from __future__ import annotations

import numpy as np

from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.driver.eviction import NoEvictableMemory, pick_victim
from uvmlab.driver.uvm import UvmDriver
from uvmlab.driver.va_block import prefetch_pages
from uvmlab.gaia.costs import HostCosts
from uvmlab.workload.ir import Access, AllocKind

GPU = 1  #: processor id of gpu0, the only GPU GAIA's page cache spans here
GPU_PAGE_PAGES = 16  #: GAIA's GPU page: 64 KiB = 16 host pages (retrive_16cached_pages)
_GROUP_SHIFT = 4
_CPU_BIT = np.uint8(1)
_GPU_BIT = np.uint8(1 << GPU)

#: counters of the shared cache (all counts of 4 KiB pages unless named otherwise)
GAIA_COUNTERS = (
    "host_hits",
    "host_misses",  # host page-cache lookups: found / read from storage
    "gpu_hits",
    "gpu_misses",  # GPU touches: served by a GPU copy / had to wait for a fetch
    "gpu_faults",
    "fault_batches",  # faulting 64 KiB GPU pages, fault batches serviced
    "gpu_fetched",
    "gpu_prefetched",  # pages copied into GPU memory (of them: by the prefetcher)
    "bytes_htod",
    "bytes_dtoh",  # bytes over the link, each direction
    "storage_read_bytes",
    "storage_write_bytes",
    "cpu_pulls",  # pages a CPU lookup pulled back from the GPU (get_page_from_gpu)
    "acquire_pulls",  # pages a CPU maquire pulled back
    "acquire_tagged",  # CPU-dirty pages a GPU maquire found (stat_cpu_marked)
    "gpu_invalidations",  # 64 KiB GPU pages a GPU maquire invalidated (stat_gpu_deleted)
    "writebacks",  # GPU pages copied to the host page cache by eviction or invalidation
    "published",  # pages a GPU mrelease marked as latest-on-GPU
    "evictions",
    "pages_evicted",
)


class GaiaCache:
    """The shared page cache of every file allocation of one driver instance."""

    def __init__(self, drv: UvmDriver, host: HostCosts) -> None:
        self.drv = drv
        self.host = host
        va = drv.va
        n = va.total_pages
        self.cpu_ver = np.full(n, -1, dtype=np.int64)
        self.gpu_ver = np.full(n, -1, dtype=np.int64)
        self.disk_ver = np.zeros(n, dtype=np.int64)
        self.cpu_dirty = np.zeros(n, dtype=bool)
        self.disk_dirty = np.zeros(n, dtype=bool)
        self.gpu_dirty = np.zeros(n, dtype=bool)
        self.gpu_latest = np.zeros(n, dtype=bool)
        self.is_file = np.zeros(n, dtype=bool)
        for i, a in enumerate(va.allocs):
            if a.kind != AllocKind.FILE:
                continue
            lo = int(va.alloc_base[i])
            self.is_file[lo : lo + a.pages] = True
            c, d = lo + a.cached_pages, lo + a.dirty_pages
            self.cpu_ver[lo:c] = 0
            va.residency[lo:c] |= _CPU_BIT
            self.cpu_dirty[lo:d] = True  # written by the CPU before the run
            self.disk_dirty[lo:d] = True
        self.next_version = 1
        self.c = dict.fromkeys(GAIA_COUNTERS, 0)
        self.batch = drv.gpu.fault_batch_size(drv.params.uvm_perf_fault_batch_count)
        # distinct VA blocks one GPU slice may touch: the slice's pages must fit in GPU memory
        self.slice_blocks = max(1, drv.pmm[0].n_root_chunks // 2)

    # --- versions --------------------------------------------------------------------------
    def _new_versions(self, n: int) -> np.ndarray:
        v = np.arange(self.next_version, self.next_version + n, dtype=np.int64)
        self.next_version += n
        return v

    # --- GPU touches -------------------------------------------------------------------------
    def gpu_access(self, pages: np.ndarray, acc: np.ndarray) -> None:
        """GPU touches of file pages, in order: misses fault and fetch, writes dirty the copy."""
        pos, n = 0, len(pages)
        forced = 0
        while pos < n:
            end = forced or self._slice_end(pages, pos)
            forced = 0
            sl, a = pages[pos:end], acc[pos:end]
            hits = int(np.count_nonzero(self.gpu_ver[sl] >= 0))
            for _ in range(4):  # a policy may evict a chunk this slice just filled: fetch again
                missing = sl[self.gpu_ver[sl] < 0]
                if not len(missing):
                    break
                self._service_gpu_faults(missing)
            else:
                if len(np.unique(sl >> 9)) == 1:
                    raise RuntimeError("model bug: a GPU fault service left its own block empty")
                forced = pos + int(np.argmax((sl >> 9) != (sl[0] >> 9)))
                continue  # retry the touches of the first block alone
            self.c["gpu_hits"] += hits
            self.c["gpu_misses"] += len(sl) - hits
            w = a >= Access.WRITE
            if w.any():
                wp = sl[w]
                np.maximum.at(self.gpu_ver, wp, self._new_versions(len(wp)))  # last write wins
                self.gpu_dirty[wp] = True
            pos = end

    def _slice_end(self, pages: np.ndarray, pos: int) -> int:
        end = min(len(pages), pos + (1 << 16))
        blocks = pages[pos:end] >> 9
        _, first = np.unique(blocks, return_index=True)
        if len(first) <= self.slice_blocks:
            return end
        return pos + int(np.sort(first)[self.slice_blocks])

    def _service_gpu_faults(self, missing: np.ndarray) -> None:
        """One replayable-fault service: batches of faulting GPU pages, then per VA block the
        prefetch hint, a root chunk, and the copy from the host page cache."""
        drv, prof = self.drv, self.drv.profile
        groups = np.unique(missing >> _GROUP_SHIFT)
        nf = len(groups)
        nb = -(-nf // self.batch)
        self.c["gpu_faults"] += nf
        self.c["fault_batches"] += nb
        drv.counters["gpu_faults"] += nf
        drv.counters["fault_batches"] += nb
        drv.charge(prof.bottom_half_ns + nb * (prof.fault_batch_ns + prof.replay_ns) + nf * prof.fault_ns)
        gpages = (groups[:, None] * GPU_PAGE_PAGES + np.arange(GPU_PAGE_PAGES)).ravel()
        gpages = gpages[self.is_file[gpages] & (self.gpu_ver[gpages] < 0)]
        blocks = gpages >> 9
        order = np.unique(missing >> 9, return_index=True)
        for block in order[0][np.argsort(order[1])]:  # blocks in the order they first faulted
            block = int(block)
            lo, hi = self.drv.va.block_range(block)
            faulted = np.zeros(hi - lo, dtype=bool)
            faulted[gpages[blocks == block] - lo] = True
            hint = prefetch_pages(drv, block, GPU, faulted)  # the driver's tree or a policy's
            pref = np.zeros(hi - lo, dtype=bool)
            if hint is not None:
                pref = hint & ~faulted & self.is_file[lo:hi] & (self.gpu_ver[lo:hi] < 0)
            fresh = self._ensure_chunk(block)
            self._fetch(np.flatnonzero(faulted) + lo, np.flatnonzero(pref) + lo)
            drv.charge(prof.fault_block_ns)
            chunk = int(drv.va.gpu_chunk[0, block])
            if drv.hooks is not None:
                drv.hooks.chunk_used(drv, GPU, block, chunk, fresh)
            elif not fresh:
                drv.pmm[0].mark_used(chunk)

    def _fetch(self, faulted: np.ndarray, prefetched: np.ndarray, cause: str = "fault") -> None:
        """Copy pages of one block from the host page cache (reading storage first where the
        host has no copy) into GPU memory."""
        drv, prof = self.drv, self.drv.profile
        idx = np.concatenate([faulted, prefetched])
        self._host_lookup(idx)
        self.gpu_ver[idx] = self.cpu_ver[idx]
        drv.va.residency[idx] |= _GPU_BIT
        nbytes = len(idx) * PAGE_SIZE
        self.c["gpu_fetched"] += len(idx)
        self.c["gpu_prefetched"] += len(prefetched)
        self.c["bytes_htod"] += nbytes
        drv.counters["bytes_htod"] += nbytes
        drv.counters[f"bytes_htod_{cause}"] += len(faulted) * PAGE_SIZE
        drv.counters["bytes_htod_prefetch"] += len(prefetched) * PAGE_SIZE
        drv.charge(len(idx) * self.host.lookup_ns + prof.copy_latency_ns + nbytes / prof.htod_gbps)

    def _host_lookup(self, pages: np.ndarray) -> np.ndarray:
        """Find pages in the host page cache; read the missing ones from storage. Returns them."""
        miss = pages[self.cpu_ver[pages] < 0]
        self.c["host_misses"] += len(miss)
        self.c["host_hits"] += len(pages) - len(miss)
        if len(miss):
            self.cpu_ver[miss] = self.disk_ver[miss]
            self.drv.va.residency[miss] |= _CPU_BIT
            nbytes = len(miss) * PAGE_SIZE
            self.c["storage_read_bytes"] += nbytes
            self.drv.charge(nbytes / self.host.storage_read_gbps)
        return miss

    # --- GPU memory ----------------------------------------------------------------------------
    def _ensure_chunk(self, block: int) -> bool:
        """A root chunk for ``block`` (block_alloc_gpu_chunk): a free one, else the victim the
        eviction lists (and an eviction policy) pick. Returns whether it was allocated now."""
        drv, va = self.drv, self.drv.va
        if va.gpu_chunk[0, block] >= 0:
            return False
        pmm = drv.pmm[0]
        chunk = pmm.alloc_root_chunk(block)
        if chunk < 0:
            chunk = pick_victim(drv, GPU)
            if chunk < 0:
                raise NoEvictableMemory("gpu0: GPU memory is full and nothing is evictable")
            owner = int(pmm.owner[chunk])
            if owner >= 0:
                self.evict_block(owner)
            pmm.finish_eviction(chunk, block)
        va.gpu_chunk[0, block] = chunk
        drv.charge(drv.profile.chunk_zero_ns)
        pmm.unpin_allocated(chunk)
        if drv.hooks is not None:
            drv.hooks.chunk_activate(drv, GPU, block, chunk)
        return True

    def evict_block(self, block: int) -> None:
        """Evict a block's GPU copies: those newer than the host's go back to the page cache."""
        drv, va = self.drv, self.drv.va
        lo, hi = va.block_range(block)
        idx = lo + np.flatnonzero(self.gpu_ver[lo:hi] >= 0)
        self.c["evictions"] += 1
        self.c["pages_evicted"] += len(idx)
        drv.counters["evictions"] += 1
        drv.counters["pages_evicted"] += len(idx)
        drv.charge(drv.profile.evict_chunk_ns)
        self._write_back(idx, "eviction")
        self._drop_gpu(idx)
        va.gpu_chunk[0, block] = -1

    def _write_back(self, pages: np.ndarray, cause: str) -> None:
        """GPU copies newer than the host's are copied into the host page cache."""
        newer = pages[self.gpu_ver[pages] > self.cpu_ver[pages]]
        if not len(newer):
            return
        self._to_host(newer)
        self.c["writebacks"] += len(newer)
        if cause == "eviction":
            self.drv.counters["bytes_dtoh_eviction"] += len(newer) * PAGE_SIZE

    def _to_host(self, pages: np.ndarray) -> None:
        drv, prof = self.drv, self.drv.profile
        take = self.gpu_ver[pages] > self.cpu_ver[pages]
        self.cpu_ver[pages] = np.where(take, self.gpu_ver[pages], self.cpu_ver[pages])
        self.disk_dirty[pages[take]] = True
        self.gpu_latest[pages] = False
        self.gpu_dirty[pages] = False  # the host now holds them: nothing left to publish
        drv.va.residency[pages] |= _CPU_BIT
        nbytes = len(pages) * PAGE_SIZE
        self.c["bytes_dtoh"] += nbytes
        drv.counters["bytes_dtoh"] += nbytes
        drv.charge(prof.copy_latency_ns + nbytes / prof.dtoh_gbps)

    def _drop_gpu(self, pages: np.ndarray) -> None:
        self.gpu_ver[pages] = -1
        self.gpu_dirty[pages] = False
        self.gpu_latest[pages] = False
        self.drv.va.residency[pages] &= ~_GPU_BIT

    # --- CPU touches ---------------------------------------------------------------------------
    def cpu_access(self, pages: np.ndarray, acc: np.ndarray) -> None:
        """CPU touches through the file mapping: a page whose latest version the GPU published
        is pulled back first (one fault and one copy each), a page the host does not cache is
        read from storage; writes tag the page CPU-dirty."""
        host = self.host
        u = np.unique(pages)
        pull = u[self.gpu_latest[u]]
        if len(pull):
            self.c["cpu_pulls"] += len(pull)
            self.drv.charge(len(pull) * (host.cpu_minor_fault_ns + self.drv.profile.copy_latency_ns))
            self._to_host(pull)
        miss = self._host_lookup(u)
        self.c["host_hits"] += len(pages) - len(u)  # repeated touches of one page hit
        self.drv.charge(len(miss) * host.cpu_minor_fault_ns)
        w = acc >= Access.WRITE
        if w.any():
            wp = pages[w]
            np.maximum.at(self.cpu_ver, wp, self._new_versions(len(wp)))
            self.cpu_dirty[wp] = True
            self.disk_dirty[wp] = True

    # --- maquire / mrelease --------------------------------------------------------------------
    def acquire(self, processor: int, lo: int, n: int) -> None:
        """``maquire``: make ``processor``'s view of pages [lo, lo+n) current."""
        idx = lo + np.flatnonzero(self.is_file[lo : lo + n])
        if processor == GPU:
            self._fsync(idx)
            tagged = idx[self.cpu_dirty[idx]]
            self.c["acquire_tagged"] += len(tagged)
            self.drv.charge(len(tagged) * self.host.tag_ns)
            groups = np.unique(tagged >> _GROUP_SHIFT)
            gp = (groups[:, None] * GPU_PAGE_PAGES + np.arange(GPU_PAGE_PAGES)).ravel()
            gp = gp[self.is_file[gp] & (self.gpu_ver[gp] >= 0)]
            stale_groups = len(np.unique(gp >> _GROUP_SHIFT))
            self.c["gpu_invalidations"] += stale_groups
            self.drv.charge(stale_groups * self.host.gpu_invalidate_ns)
            self._write_back(gp, "invalidation")  # unreleased GPU writes of a shared GPU page
            self._drop_gpu(gp)
            self.cpu_dirty[tagged] = False
        else:
            pull = idx[self.gpu_latest[idx]]
            self.c["acquire_pulls"] += len(pull)
            if len(pull):
                self._to_host(pull)

    def release(self, processor: int, lo: int, n: int) -> None:
        """``mrelease``: publish ``processor``'s writes to pages [lo, lo+n). CPU writes are in
        the host page cache, the file's home, from the moment they happen: nothing to do."""
        if processor != GPU:
            return
        idx = lo + np.flatnonzero(self.is_file[lo : lo + n] & self.gpu_dirty[lo : lo + n])
        pub = idx[self.gpu_ver[idx] > self.cpu_ver[idx]]
        self.gpu_latest[pub] = True
        self.gpu_dirty[idx] = False
        self.c["published"] += len(pub)
        self.drv.charge(len(idx) * self.host.tag_ns)

    def _fsync(self, idx: np.ndarray) -> None:
        """vfs_fsync_range, which maquire runs first: dirty host pages go to storage."""
        d = idx[self.disk_dirty[idx] & (self.cpu_ver[idx] >= 0)]
        if len(d):
            self.disk_ver[d] = self.cpu_ver[d]
            self.disk_dirty[d] = False
            nbytes = len(d) * PAGE_SIZE
            self.c["storage_write_bytes"] += nbytes
            self.drv.charge(nbytes / self.host.storage_write_gbps)

    def prefetch_to_gpu(self, lo: int, n: int) -> None:
        """A prefetch of file pages to the GPU: their missing GPU pages are fetched as faults
        would fetch them, without the fault service's batching cost."""
        idx = lo + np.flatnonzero(self.is_file[lo : lo + n] & (self.gpu_ver[lo : lo + n] < 0))
        for block in np.unique(idx >> 9):
            sel = idx[(idx >> 9) == block]
            fresh = self._ensure_chunk(int(block))
            self._fetch(sel, sel[:0], cause="user")
            if not fresh:
                self.drv.pmm[0].mark_used(int(self.drv.va.gpu_chunk[0, int(block)]))

    def drop_file(self, lo: int, n: int) -> None:
        """munmap / free: newer GPU copies go back to the host page cache, GPU copies go."""
        idx = lo + np.flatnonzero(self.gpu_ver[lo : lo + n] >= 0)
        self._write_back(idx, "free")
        self._drop_gpu(idx)

    # --- invariants ----------------------------------------------------------------------------
    def check_invariants(self) -> None:
        """Raise AssertionError naming the first broken rule of the cache's own bookkeeping."""
        va = self.drv.va
        has_gpu = self.gpu_ver >= 0
        has_cpu = self.cpu_ver >= 0
        f = self.is_file
        assert not (has_gpu & ~f).any() and not (has_cpu & ~f).any(), "copy of a non-file page"
        assert ((va.residency[f] & _GPU_BIT) != 0).tolist() == has_gpu[f].tolist(), (
            "GPU residency bit disagrees with the GPU copy"
        )
        assert ((va.residency[f] & _CPU_BIT) != 0).tolist() == has_cpu[f].tolist(), (
            "CPU residency bit disagrees with the host copy"
        )
        assert not (self.gpu_dirty & ~has_gpu).any(), "GPU-dirty page without a GPU copy"
        assert not (self.gpu_latest & ~has_gpu).any(), "latest-on-GPU page without a GPU copy"
        assert not (self.gpu_latest & (self.gpu_ver <= self.cpu_ver)).any(), (
            "page tagged latest-on-GPU whose host copy is as new"
        )
        blocks = np.unique(np.flatnonzero(has_gpu) >> 9)
        assert (va.gpu_chunk[0, blocks] >= 0).all(), "GPU copies in a block without a root chunk"
        assert (self.cpu_ver < self.next_version).all() and (self.gpu_ver < self.next_version).all()
