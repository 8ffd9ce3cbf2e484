"""The stalled-thread queues a kernel keeps between replays (engine/stalls.py) give the fault
entries that the sorting definition (engine/arrival.arrival_order) gives, and re-execute
exactly the threads whose pages are mapped, over random sequences of stalls, mappings and
completions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uvmlab.engine import reexecute as rx
from uvmlab.engine import stalls as sl
from uvmlab.engine.arrival import arrival_order, report

BLOCK = 512


def reference_entries(
    pos: np.ndarray,
    page: np.ndarray,
    acc: np.ndarray,
    shape: tuple[int, int, int, int, int],
    k: int,
    t0: int,
    interval: int,
    rounds: int,
) -> tuple[np.ndarray, ...]:
    """The first ``k`` entries by ``arrival_order``, cut after ``rounds`` rounds of reports:
    (page, access, uTLB, write time)."""
    conc, tpb, n_sm, n_utlb, burst = shape
    order, utlb = arrival_order(pos, conc, tpb, n_sm, n_utlb, burst)
    sm = (pos % conc) // tpb % n_sm
    rank = np.zeros(len(pos), dtype=np.int64)  # index among its SM's threads, in touch order
    seen: dict[int, int] = {}
    for i in np.argsort(pos, kind="stable"):
        rank[i] = seen.get(int(sm[i]), 0)
        seen[int(sm[i])] = rank[i] + 1
    order = order[:k]
    rnd = rank[order] // burst
    order = order[rnd < rounds]
    return page[order], acc[order], utlb[order], t0 + rank[order] // burst * interval


class Model:
    """A kernel's stalled threads as plain lists, next to the compiled queues."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int, int, int, int], pages: int) -> None:
        self.rng = rng
        self.shape = shape
        conc, tpb, n_sm, _, _ = shape
        self.total = pages
        self.st = sl.StalledThreads(conc, tpb, n_sm, pages)
        self.perm = np.zeros(pages, dtype=np.uint8)
        self.residency = np.zeros(pages, dtype=np.uint8)
        self.live: dict[int, tuple[int, int]] = {}  # pos -> (page, access)
        self.next_pos = int(rng.integers(0, 3 * conc))

    def stall(self, n: int) -> None:
        """Stall up to ``n`` new touches after every earlier one, within the issue window, on
        pages they miss on."""
        conc, tpb = self.shape[0], self.shape[1]
        limit = (min(self.live) if self.live else self.next_pos) + conc
        pos, page, acc = [], [], []
        while len(pos) < n and self.next_pos < limit:
            p = self.next_pos
            self.next_pos += 1 + int(self.rng.integers(0, 3))
            g = int(self.rng.integers(BLOCK, self.total))
            if self.perm[g] == 3:
                continue
            a = (
                int(self.rng.integers(max(int(self.perm[g]), 1) + 1, 4))
                if self.perm[g]
                else int(self.rng.integers(0, 4))
            )
            pos.append(p)
            page.append(g)
            acc.append(a)
        if not pos:
            return
        base = pos[0]
        idx = np.array(pos, dtype=np.int64) - base
        chunk_page = np.zeros(idx[-1] + 1, dtype=np.int64)
        chunk_acc = np.zeros(idx[-1] + 1, dtype=np.uint8)
        chunk_page[idx] = page
        chunk_acc[idx] = acc
        t = self.st
        sl.append(
            idx, len(idx), base, chunk_page, chunk_acc, tpb, t.t, t.meta, t.q_pos, t.q, t.phead, t.need_words
        )
        for p, g, a in zip(pos, page, acc, strict=True):
            self.live[p] = (g, a)

    def map_some(self, n: int, everything: bool) -> None:
        """Raise the permission of ``n`` pages (mostly ones threads wait on), marking their
        blocks dirty (a prefetch may map another page of the block) or, without prefetching,
        only their words, and lower some others without a mark (an eviction)."""
        stalled = [g for g, _ in self.live.values()]
        by_word = self.rng.random() < 0.5
        for _ in range(n):
            if stalled and self.rng.random() < 0.8:
                g = stalled[int(self.rng.integers(0, len(stalled)))]
            else:
                g = int(self.rng.integers(BLOCK, self.total))
            self.perm[g] = max(int(self.perm[g]), int(self.rng.integers(1, 4)))
            # a prefetch maps a neighbour of the faulted page in the same block, unmarked
            h = (g & ~(BLOCK - 1)) + int(self.rng.integers(0, BLOCK))
            if h >= BLOCK and self.rng.random() < 0.3 and not by_word:
                self.perm[h] = 3
            if everything:
                pass
            elif by_word:
                self.st.mark_words(np.array([g], dtype=np.int64))
            else:
                self.st.mark_pages(np.array([g], dtype=np.int64))
        for _ in range(int(self.rng.integers(0, 3))):
            g = int(self.rng.integers(BLOCK, self.total))
            if not any(pg == g for pg, _ in self.live.values()):
                self.perm[g] = 0
        if everything:
            self.st.mark_all()

    def replay(self) -> None:
        t = self.st
        expect = [p for p, (g, a) in self.live.items() if self.perm[g] >= max(a, 1)]
        remote_expect = sum(1 for p in expect if self.residency[self.live[p][0]] & 2 == 0)
        done, remote = rx.reexecute(
            self.perm,
            self.residency,
            np.uint8(2),
            t.t,
            t.meta,
            t.q_pos,
            t.q,
            t.phead,
            t.need_words,
            t.block_dirty,
            t.dirty,
            t.dirty_w,
            t.hits,
            t.hit_words,
        )
        assert (done, remote) == (len(expect), remote_expect)
        for p in expect:
            del self.live[p]
        assert t.n == len(self.live)
        assert rx.missed(self.perm, t.t, t.q_pos, t.q) == 0

    def check_report(self, k: int, t0: int, interval: int, rounds: int) -> None:
        conc, tpb, n_sm, n_utlb, burst = self.shape
        t = self.st
        pos = np.array(sorted(self.live), dtype=np.int64)
        page = np.array([self.live[p][0] for p in pos], dtype=np.int64)
        acc = np.array([self.live[p][1] for p in pos], dtype=np.uint8)
        got_pos, got_page, got_acc = t.in_order()
        np.testing.assert_array_equal(got_pos, pos)
        np.testing.assert_array_equal(got_page, page)
        np.testing.assert_array_equal(got_acc, acc)
        if len(pos):
            assert t.oldest() == pos[0]
        cap = max(k, 1)
        out = (
            np.empty(cap, np.int64),
            np.empty(cap, np.uint8),
            np.empty(cap, np.int32),
            np.empty(cap, np.int64),
        )
        n = report(t.t, t.q_pos, t.q, t.cursor, k, n_utlb, burst, t0, interval, rounds, *out)
        ref = reference_entries(pos, page, acc, self.shape, k, t0, interval, rounds)
        assert n == len(ref[0])
        for got, want in zip(out, ref, strict=True):
            np.testing.assert_array_equal(got[:n], want)
        # the report dropped stale entries only: the queues still hold every stalled thread
        np.testing.assert_array_equal(t.in_order()[0], pos)


def run_sequence(seed: int, shape: tuple[int, int, int, int, int], blocks: int, steps: int) -> None:
    rng = np.random.default_rng(seed)
    m = Model(rng, shape, (blocks + 1) * BLOCK)
    m.residency[rng.integers(0, m.total, size=m.total // 3)] = 2  # some pages local, others remote
    for _ in range(steps):
        m.stall(int(rng.integers(0, shape[0] + 1)))
        m.check_report(
            int(rng.integers(0, shape[0] + 2)),
            int(rng.integers(0, 10**6)),
            int(rng.integers(0, 5000)),
            int(rng.integers(1, 4)),
        )
        m.map_some(int(rng.integers(0, 12)), everything=rng.random() < 0.15)
        m.replay()
    m.check_report(shape[0] + 1, 0, 1, shape[0] + 1)


SHAPES = [  # conc, tpb, n_sm, n_utlb, burst
    (1, 1, 1, 1, 1),
    (1, 256, 132, 66, 8),
    (7, 2, 3, 2, 1),
    (64, 4, 5, 3, 2),
    (256, 32, 132, 66, 8),
    (300, 7, 20, 9, 3),
    (1000, 32, 7, 4, 8),
    (4096, 256, 132, 66, 8),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_queues_match_the_sorting_definition(shape: tuple[int, int, int, int, int]) -> None:
    for seed in range(3):
        run_sequence(
            seed * 1000 + shape[0], shape, blocks=int(np.random.default_rng(seed).integers(1, 6)), steps=25
        )


@settings(max_examples=150, deadline=None)
@given(
    conc=st.integers(1, 400),
    tpb=st.integers(1, 64),
    n_sm=st.integers(1, 40),
    n_utlb=st.integers(1, 20),
    burst=st.integers(1, 9),
    blocks=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_queues_match_the_sorting_definition_property(
    conc: int, tpb: int, n_sm: int, n_utlb: int, burst: int, blocks: int, seed: int
) -> None:
    run_sequence(seed, (conc, tpb, n_sm, n_utlb, burst), blocks, steps=12)


def stall_all(conc: int, tpb: int, n_sm: int) -> sl.StalledThreads:
    """Every thread of a kernel stalled on touches 0 .. conc - 1, each on its own page."""
    t = sl.StalledThreads(conc, tpb, n_sm, (conc // BLOCK + 2) * BLOCK)
    idx = np.arange(conc, dtype=np.int64)
    sl.append(
        idx,
        conc,
        0,
        idx + BLOCK,
        np.zeros(conc, np.uint8),
        tpb,
        t.t,
        t.meta,
        t.q_pos,
        t.q,
        t.phead,
        t.need_words,
    )
    return t


def test_write_times_and_utlb_cap() -> None:
    """Each SM writes ``burst`` entries per round, round j at t0 + j * interval; a uTLB reports
    at most ``rounds`` rounds per replay, so few occupied SMs give few entries."""
    conc, tpb, n_sm, n_utlb, burst = 2048, 256, 132, 152, 8
    t = stall_all(conc, tpb, n_sm)  # 8 blocks of 256 threads on 8 SMs
    out = (
        np.empty(conc, np.int64),
        np.empty(conc, np.uint8),
        np.empty(conc, np.int32),
        np.empty(conc, np.int64),
    )
    k = report(t.t, t.q_pos, t.q, t.cursor, conc, n_utlb, burst, 1000, 4000, 2, *out)
    assert k == 8 * 2 * burst  # 8 SMs x 2 rounds x 8
    np.testing.assert_array_equal(out[3][:k], 1000 + 4000 * (np.arange(k) // (8 * burst)))
    # the same kernel shape spread over every SM fills a batch at once
    big = 256 * n_sm
    t = stall_all(big, tpb, n_sm)
    out = (np.empty(big, np.int64), np.empty(big, np.uint8), np.empty(big, np.int32), np.empty(big, np.int64))
    k = report(t.t, t.q_pos, t.q, t.cursor, big, n_utlb, burst, 0, 4000, 2, *out)
    assert k == n_sm * 2 * burst and (out[3][: n_sm * burst] == 0).all()


def test_queue_capacity_holds_the_busiest_sm() -> None:
    for conc, tpb, n_sm in [(65536, 256, 132), (7, 256, 132), (1000, 3, 7), (1, 1, 1), (300, 7, 1000)]:
        threads = np.bincount((np.arange(conc) // tpb) % n_sm, minlength=n_sm)
        cap = sl.queue_capacity(conc, tpb, n_sm)
        assert cap >= threads.max() and cap & (cap - 1) == 0 and cap < 2 * max(threads.max(), 1)
