"""The word-wise bitmap tree (uvmlab/driver/perf/prefetch_tree.py) against a per-page reading of
the driver's rule.

Both the reference path (``compute_prefetch_mask``) and the compiled block service
(``compiled.prefetch.prefetch_pages``) run the same ``tree_fill``, so the fast-vs-reference
identity test cannot see a mistake in it. ``plain_prefetch`` below is uvm_perf_prefetch.c's rule
written page by page, with none of the tree's shortcuts (no words, no popcounts, no early out,
no skipping of pages inside an earlier winner, every level of every faulted page's walk):

1. leaves: the region's pages resident on the destination or faulted, shifted right by the
   offset that puts big-page boundaries on tree-node boundaries;
2. ``grow_fault_granularity``: a part (prefix, each big page, suffix; the whole region when it
   holds no whole big page) with a faulted page and no thrashing page is filled;
3. from each faulted, non-thrashing page, the largest node of its leaf-to-root path whose count
   passes ``count * 100 > size * threshold`` is filled (nodes clipped to the leaf count; the
   driver's clamp of a start among the virtual leaves);
4. the post-filter drops faulted, thrashing and (CPU destination) CPU-resident-readable pages.

The driver's worked examples A-E are pinned in tests/test_prefetch.py.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uvmlab.api import load_workload
from uvmlab.driver.compiled.prefetch import prefetch_pages_call
from uvmlab.driver.compiled.state import new_scratch
from uvmlab.driver.hal import get_gpu
from uvmlab.driver.params import Params
from uvmlab.driver.perf.prefetch import PrefetchParams, compute_prefetch_mask
from uvmlab.engine.core import Engine
from uvmlab.timing.cost_model import load_profile, profile_for_gpu

PAGES = 512
CPU, GPU0 = 0, 1
BIGS = [1, 2, 4, 8, 16, 16, 32, 32, 64, 128, 256, 512]


def plain_prefetch(
    faulted: np.ndarray,
    resident: np.ndarray,
    thrashing: np.ndarray,
    cpu_rr: np.ndarray,
    *,
    va: int,
    big: int,
    threshold: int,
    dest_is_cpu: bool,
    region: tuple[int, int],
    clamp: bool,
) -> np.ndarray:
    """uvm_perf_prefetch.c steps 2 and 4-6, one page at a time (see the module docstring)."""
    n = len(faulted)
    m_first, m_outer = region
    # the whole big pages inside the region, in block pages
    big_first = -(-(va + m_first) // big) * big - va
    big_outer = (va + m_outer) // big * big - va
    has_big = big_outer > big_first
    offset = big - (big_first - m_first) if has_big and big_first > m_first else 0
    leaf_count = m_outer - m_first + offset
    leaves = [False] * leaf_count
    for p in range(m_first, m_outer):
        leaves[p - m_first + offset] = bool(faulted[p] or resident[p])
    if has_big:
        parts = [(m_first, big_first)] if big_first > m_first else []
        parts += [(a, a + big) for a in range(big_first, big_outer, big)]
        parts += [(big_outer, m_outer)] if big_outer < m_outer else []
    else:
        parts = [(m_first, m_outer)]
    for a, b in parts:
        if any(faulted[a:b]) and not any(thrashing[a:b]):
            for p in range(a, b):
                leaves[p - m_first + offset] = True
    levels = 1
    while 1 << (levels - 1) < leaf_count:
        levels += 1
    out = np.zeros(n, dtype=bool)
    for p in range(m_first, m_outer):
        if not faulted[p] or thrashing[p]:
            continue
        leaf = p - m_first + offset
        win = None
        for k in range(levels):  # leaf to root: the last node that passes is the largest
            s = leaf // (1 << k) * (1 << k)
            e = min(s + (1 << k), leaf_count)
            if sum(leaves[s:e]) * 100 > (e - s) * threshold:
                win = (s, e)
        if win is None:
            continue
        f, o = win[0] + m_first, win[1] + m_first
        if clamp:  # compute_prefetch_region of 580.142, virtual leaves and all
            f = offset if f < offset else max(f - offset, m_first)
            o = offset if o < offset else min(o - offset, m_outer)
        else:
            f, o = max(f - offset, m_first), min(o - offset, m_outer)
        for q in range(f, o):
            out[q] = True
    out &= ~faulted & ~thrashing
    if dest_is_cpu:
        out &= ~cpu_rr
    return out


@st.composite
def bitmap(draw, n: int, density: st.SearchStrategy[float]) -> np.ndarray:
    """Random pages, or runs of pages (what residency looks like after sweeps)."""
    m = np.zeros(n, dtype=bool)
    if draw(st.booleans()):
        seed = draw(st.integers(0, 2**32 - 1))
        m[:] = np.random.default_rng(seed).random(n) < draw(density)
    else:
        for _ in range(draw(st.integers(0, 5))):
            a = draw(st.integers(0, n - 1))
            m[a : a + draw(st.integers(1, 200))] = True
    return m


@st.composite
def cases(draw):
    n = draw(st.sampled_from([PAGES, PAGES, PAGES, draw(st.integers(1, PAGES))]))
    va = draw(st.integers(0, 7)) * PAGES + draw(st.sampled_from([0, draw(st.integers(0, PAGES - n))]))
    if draw(st.booleans()):
        first = draw(st.integers(0, n - 1))
        region = (first, draw(st.integers(first + 1, n)))
    else:
        region = (0, n)
    faulted = draw(bitmap(n, st.sampled_from([0.002, 0.01, 0.05, 0.3, 0.9])))
    faulted[: region[0]] = False
    faulted[region[1] :] = False
    if not faulted.any():
        faulted[draw(st.integers(region[0], region[1] - 1))] = True
    resident = draw(bitmap(n, st.sampled_from([0.05, 0.5, 0.95]))) & ~faulted
    none = np.zeros(n, dtype=bool)
    thrashing = draw(st.one_of(st.just(none), bitmap(n, st.sampled_from([0.002, 0.02]))))
    cpu_rr = draw(bitmap(n, st.sampled_from([0.3, 0.9]))) & resident
    kw = dict(
        va=va,
        big=draw(st.sampled_from(BIGS)),
        threshold=draw(st.sampled_from([51, 51, 0, 1, 50, 99, 100, draw(st.integers(0, 100))])),
        dest_is_cpu=draw(st.booleans()),
        region=region,
        clamp=draw(st.booleans()),
    )
    return faulted, resident, thrashing, cpu_rr, kw


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(cases())
def test_tree_matches_per_page_rule(case):
    faulted, resident, thrashing, cpu_rr, kw = case
    want = plain_prefetch(faulted, resident, thrashing, cpu_rr, **kw)
    got = compute_prefetch_mask(
        faulted,
        resident,
        thrashing,
        block_first_page_va=kw["va"],
        big_page_pages=kw["big"],
        threshold=kw["threshold"],
        dest_is_cpu=kw["dest_is_cpu"],
        cpu_resident_readable=cpu_rr,
        max_region=kw["region"],
        driver_offset_clamp=kw["clamp"],
    )
    assert np.array_equal(got, want), np.flatnonzero(got ^ want)


# --- the compiled block service's entry: its bitmaps come from the driver's per-page arrays ---


_STATE: list = []


def _driver_arrays():
    """The compiled path's VA arrays and scratch of a small driver (16 blocks)."""
    if not _STATE:
        gpu = get_gpu("h200")
        eng = Engine(
            load_workload("random:size=32MiB"),
            gpu=gpu,
            params=Params.from_overrides({}),
            profile=load_profile(profile_for_gpu(gpu.name)),
        )
        _STATE.append(eng.drv.fast)
    return _STATE[0]


@SETTINGS
@given(cases(), st.integers(0, 2**32 - 1))
def test_compiled_entry_matches_per_page_rule(case, seed):
    # The whole block is the region and nothing thrashes there (what the compiled path takes);
    # the residency and CPU permissions are random bytes, so every bit of a page's state is
    # exercised, not only the ones the tree reads.
    faulted, _resident, _thr, _cpu_rr, kw = case
    n = len(faulted)
    lo = kw["va"]  # any start, 512-aligned or not (blocks are aligned; the tree is not bound to it)
    fp = _driver_arrays()
    va, sc = fp.va, new_scratch()
    r = np.random.default_rng(seed)
    residency = r.integers(0, 4, n).astype(np.uint8) * (r.random(n) < r.choice([0.1, 0.5, 0.95]))
    perm_cpu = r.integers(0, 4, n).astype(np.uint8) * (r.random(n) < 0.7)
    dest = CPU if kw["dest_is_cpu"] else GPU0
    block = lo >> 9
    va.residency[lo : lo + n] = residency
    va.perm[CPU, lo : lo + n] = perm_cpu
    va.prefetch_last_proc[block] = -1  # a new destination: the counter is this batch's faults
    fpages = np.flatnonzero(faulted)
    sc.fpages[: len(fpages)] = fpages
    pf = PrefetchParams(True, 1, kw["threshold"], kw["big"])
    m = prefetch_pages_call(va, pf, block, lo, n, dest, len(fpages), sc)
    pages, extra = sc.pages[:m], sc.extra[:m]
    assert np.all(np.diff(pages) > 0)  # ascending, no repeats
    resident = (residency >> dest & 1).astype(bool)
    want = plain_prefetch(
        faulted,
        resident,
        np.zeros(n, dtype=bool),
        resident & (perm_cpu > 0),
        va=lo,
        big=kw["big"],
        threshold=kw["threshold"],
        dest_is_cpu=dest == CPU,
        region=(0, n),
        clamp=True,
    )
    assert set(pages[~extra].tolist()) == set(fpages.tolist())
    assert np.array_equal(np.sort(pages[extra]), np.flatnonzero(want))
