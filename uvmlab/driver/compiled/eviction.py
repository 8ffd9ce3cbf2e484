"""Eviction of a root chunk on the compiled path (uvm_pmm_gpu.c, uvm_va_block.c): whether the
victim is plain, and its eviction; ``count_migration``, the one counter of every copied run.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from uvmlab.core.bitwords import popcount
from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.driver.compiled.state import (
    DTOH,
    DTOH_EVICTION,
    EVICTIONS,
    MIGRATIONS,
    PAGES_EVICTED,
    Costs,
    VaArrays,
)
from uvmlab.driver.pmm_lists import PmmArrays, chunk_peek_victim
from uvmlab.driver.va_space import BLOCK_SHIFT, CPU

_BYTES = np.uint64(0x0101010101010101)  # 1 in every byte of a word
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_FF = np.uint64(0xFF)


@njit(cache=True, inline="always")
def count_migration(
    ctr: np.ndarray,
    work: np.ndarray,
    nbytes: int,
    total: int,
    by_cause: int,
    bw: float,
) -> None:
    """One migration of ``nbytes`` (one contiguous run): the direction's byte counter, its
    by-cause counter, the migration count, and its copy time at ``bw``."""
    ctr[total] += nbytes
    ctr[by_cause] += nbytes
    ctr[MIGRATIONS] += 1
    work[0] += nbytes / bw


@njit(cache=True, inline="always")
def victim_is_plain(va: VaArrays, pmm: PmmArrays, n_chunks: int, gpu: int) -> bool:
    """The chunk eviction would pick belongs to a block none of whose GPU-resident pages has an
    AccessedBy mapping to re-create (``evict_block_chunk``'s deferred mappings)."""
    c = chunk_peek_victim(pmm.nxt, n_chunks)
    if c < 0:
        return False  # nothing evictable: the reference path raises the out-of-memory error
    vb = pmm.owner[c]
    if vb < 0 or not va.block_advised[vb]:
        return True
    lo = vb << BLOCK_SHIFT
    residency, accessed_by = va.residency, va.accessed_by
    for i in range(lo, lo + va.block_pages[vb]):  # noqa: SIM110 (a loop: numba has no generator all())
        if residency[i] >> gpu & 1 and accessed_by[i] >> gpu & 1:
            return False
    return True


@njit(cache=True, inline="always")
def evict_block_chunk(
    va: VaArrays,
    costs: Costs,
    ctr: np.ndarray,
    work: np.ndarray,
    vb: int,
    gpu: int,
) -> None:
    """``evict_root_chunk_from_va_block`` (uvm_pmm_gpu.c) for a victim without AccessedBy mappings: its
    GPU-resident pages move to the CPU (cause EVICTION: no thrashing event), one copy per run of
    pages that have no CPU copy, every mapping of them goes, the block loses its chunk.

    Residency and permissions are read and written 8 pages (bytes) a word: a block starts on a
    word (512 pages) and every page array's length is a multiple of 8 (va_space), so only the
    pages past a partial block's last whole word are visited one by one."""
    residency, perm, gpu_chunk = va.residency, va.perm, va.gpu_chunk
    lo = vb << BLOCK_SHIFT
    n = va.block_pages[vb]
    gbit = 1 << gpu
    res_w = residency.view(np.uint64)
    w0 = lo >> 3
    w1 = w0 + (n >> 3)  # the whole words; pages [lo + (n & ~7), lo + n) one by one
    gb = np.uint64(gbit) * _BYTES  # the GPU's bit in every byte
    on_gpu = np.int64(0)
    only_gpu = np.int64(0)
    for w in range(w0, w1):
        x = res_w[w]
        on_gpu += np.int64(popcount(x & gb))
        y = x ^ gb  # a zero byte: a page on the GPU only
        only_gpu += np.int64(popcount(~(((y & _LOW7) + _LOW7) | y | _LOW7)))
    for i in range(w1 << 3, lo + n):
        if residency[i] & gbit:
            on_gpu += 1
            if residency[i] == gbit:
                only_gpu += 1
    ctr[EVICTIONS] += 1
    ctr[PAGES_EVICTED] += on_gpu
    work[0] += costs.evict_chunk_ns
    if only_gpu:
        work[0] += costs.copy_latency_ns
        if only_gpu == n:  # the usual victim: one run, the whole block
            count_migration(ctr, work, n * PAGE_SIZE, DTOH, DTOH_EVICTION, costs.dtoh_gbps)
        else:
            i = lo
            while i < lo + n:
                if residency[i] != gbit:
                    i += 1
                    continue
                j = i + 1
                while j < lo + n and residency[j] == gbit:
                    j += 1
                count_migration(ctr, work, (j - i) * PAGE_SIZE, DTOH, DTOH_EVICTION, costs.dtoh_gbps)
                i = j
    if on_gpu:
        shift = np.uint64(gpu)
        for q in range(perm.shape[0]):  # every mapping of the GPU's pages goes
            perm_w = perm[q].view(np.uint64)
            for w in range(w0, w1):
                perm_w[w] &= ~(((res_w[w] >> shift) & _BYTES) * _FF)
            for i in range(w1 << 3, lo + n):
                if residency[i] & gbit:
                    perm[q, i] = 0
        cpu = np.uint64(1 << CPU)
        for w in range(w0, w1):  # the GPU's pages are now on the CPU only
            on = (res_w[w] >> shift) & _BYTES
            res_w[w] = (res_w[w] & ~(on * _FF)) | on * cpu
        for i in range(w1 << 3, lo + n):
            if residency[i] & gbit:
                residency[i] = 1 << CPU
    gpu_chunk[gpu - 1, vb] = -1
