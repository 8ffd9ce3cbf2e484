"""The eviction, replay and thrashing decision points, and the policy migrations they queue.
Part of ``Guard``: chunk_update_lists_locked / root_chunk_update_eviction_list (uvm_pmm_gpu.c),
pick_root_chunk_to_evict, the end of a fault batch (uvm_gpu_replayable_faults.c) and the
thrashing hint (uvm_perf_thrashing.c)."""

from __future__ import annotations

from typing import Any

import numpy as np

from uvmlab.core.sizes import BLOCK_SHIFT
from uvmlab.driver.compiled.policy_calls import BAD, CALLING, CHOSEN, VICTIM, choose_victim
from uvmlab.driver.eviction import NoEvictableMemory
from uvmlab.driver.migrate import migrate
from uvmlab.driver.perf.thrashing_state import Hint
from uvmlab.driver.pmm_lists import ALLOCATED
from uvmlab.policy import base, decisions
from uvmlab.policy.context import ChunkContext, EvictionContext, ReplayContext, ThrashingContext
from uvmlab.policy.ejection import Fail, describe
from uvmlab.policy.future import position
from uvmlab.policy.views import ro

_NONE_HINT = Hint(base.HINT_NONE, -1, 0, 0)
_MAX_PENDING_MIGRATIONS = 4096


class MemoryPoints:
    """Eviction lists, the victim, replay, thrashing hints; and policy migrations."""

    def _reset_points(self: Any) -> None:
        self._pending: list[tuple[int, int, int]] = []
        self._recent: set[int] = set()
        self._older: set[int] = set()
        # the chunks of serviced batches' blocks (points_batch), as arrays: made a set only
        # when a policy migration needs the protected set
        self._recent_batches: list[np.ndarray] = []
        self._older_batches: list[np.ndarray] = []
        self._seen_replays = 0
        self._protect: set[int] | None = None
        self._streak: dict[tuple[int, int], int] = {}

    def _queue_migration(self: Any, first: int, n: int, gpu: int) -> None:
        if len(self._pending) < _MAX_PENDING_MIGRATIONS:
            self._pending.append((first, n, gpu))
        else:
            self.migrations_dropped += n

    # ---- eviction -----------------------------------------------------------------------------
    def _chunk_ctx(self: Any, gpu: int, block: int, chunk: int, event: str, req: list) -> ChunkContext:
        return ChunkContext(
            req,
            self.view,
            gpu=gpu,
            chunk=chunk,
            block=block,
            alloc=self.allocs[int(self.view.alloc_index(block))],
            event=event,
            now_ns=int(self.drv.now_ns),
        )

    def chunk_activate(self: Any, drv: Any, gpu: int, block: int, chunk: int) -> None:
        """chunk_update_lists_locked: a root chunk was allocated to ``block`` (tail of used)."""
        if self.drv is not drv:
            self._attach_driver(drv)
        self._recent.add(chunk)
        if "chunk_activate" not in self._by_hook:
            return
        req: list = []
        got = self._call("chunk_activate", self._chunk_ctx(gpu, block, chunk, "activate", req), req)
        if got is None:
            return
        slot, d, checked = got
        if d is not None:
            self._eject(slot, "chunk_activate", f"returned {decisions.short(d)}: chunk_activate returns None")
            return
        self._apply(checked, gpu)

    def chunk_used(self: Any, drv: Any, gpu: int, block: int, chunk: int, fresh: bool) -> None:
        """root_chunk_update_eviction_list via block_mark_memory_used."""
        if self.drv is not drv:
            self._attach_driver(drv)
        self._recent.add(chunk)
        pmm = drv.pmm[gpu - 1]
        if fresh:
            return  # allocated by this operation: still pinned in the driver, not moved
        if "chunk_used" not in self._by_hook or int(pmm.state[chunk]) != ALLOCATED:
            pmm.mark_used(chunk)
            return
        req: list = []
        got = self._call("chunk_used", self._chunk_ctx(gpu, block, chunk, "used", req), req)
        if got is None:
            pmm.mark_used(chunk)
            return
        slot, d, checked = got
        try:
            code = decisions.as_opt_int(d) or 0
            if code not in (base.DEFAULT, base.BYPASS):
                raise decisions.Bad(f"returned {code}: expected 0 (DEFAULT) or 1 (BYPASS)")
        except decisions.Bad as e:
            self._eject(slot, "chunk_used", str(e))
            pmm.mark_used(chunk)
            return
        self._apply(checked, gpu)
        if code == base.DEFAULT:
            pmm.mark_used(chunk)

    def eviction_prepare(self: Any, drv: Any, gpu: int) -> None:
        """pick_root_chunk_to_evict is about to take the head of unused, else of used."""
        if self.drv is not drv:
            self._attach_driver(drv)
        pmm = drv.pmm[gpu - 1]
        kern = self.kernels
        if kern is not None and kern.on[VICTIM]:
            if kern.status[CHOSEN]:  # the compiled service chose for this allocation already
                kern.status[CHOSEN] = 0
            else:
                self._kernel_victim(gpu, pmm)
        if "eviction_prepare" in self._by_hook:
            req: list = []
            view = self.view
            ctx = EvictionContext(
                req,
                view,
                gpu=gpu,
                n_root_chunks=pmm.n_root_chunks,
                now_ns=int(drv.now_ns),
                position=position(self.engine) if self.engine is not None else 0,
            )
            got = self._call("eviction_prepare", ctx, req)
            if got is not None:
                slot, d, checked = got
                victim = None
                try:
                    if d is None:
                        pass
                    elif isinstance(d, list | tuple):
                        moves = decisions.as_moves(d, 4 * pmm.n_root_chunks + 64)
                        checked = checked + decisions.check_requests(moves, pmm, drv.va)
                    else:
                        victim = decisions.check_chunk(pmm, d, "victim")
                except decisions.Bad as e:
                    self._eject(slot, "eviction_prepare", str(e))
                    checked, victim = [], None
                self._apply(checked, gpu)
                if victim is not None and pmm.list_of(victim) is not None:
                    # evicted next: the driver takes the head of va_block_unused first
                    if pmm.list_of(victim) != "va_block_unused":
                        pmm.mark_unused(victim)
                    pmm.move_to_head(victim)
        if self._protect:
            # A policy's own migration is allocating: spare the chunks that warps waiting for
            # the next replay need (else a bad policy could evict them forever, a livelock).
            for c in self._protect:
                if pmm.list_of(c) == "va_block_used":
                    pmm.move_to_tail(c)

    def _kernel_victim(self: Any, gpu: int, pmm: Any) -> None:
        """The compiled victim kernel, called from here as the compiled service calls it
        (``policy_calls.choose_victim``: the same checks, the same list moves)."""
        kern = self.kernels
        slot = self._kernel_slot["victim_kernel"]
        a = pmm.arrays()
        now = int(self.drv.now_ns)

        def call(_: Any) -> int:
            return int(
                choose_victim(
                    kern.victim,
                    kern.state_victim,
                    kern.status,
                    gpu,
                    now,
                    a.state,
                    a.owner,
                    a.list_of,
                    a.prev,
                    a.nxt,
                    a.list_count,
                )
            )

        r = self._invoke(slot, "eviction_prepare", call, None)
        kern.status[CALLING] = -1
        if r.__class__ is Fail:
            self._eject(slot, "victim_kernel", r.reason)
        elif kern.status[BAD] >= 0:
            self.kernel_failed(VICTIM, None)

    def _kernel_replay(
        self: Any,
        drv: Any,
        gpu: int,
        policy: int,
        batch: int,
        faults: int,
        unique: int,
        duplicates: int,
        throttled: bool,
        pending: int,
        replays: int,
    ) -> int:
        """The compiled replay kernel's decision (0 without one). Called from here, where the
        decision is taken, with plain ints: no context, no per-call timing."""
        rk = self._replay_kernel
        if rk is None:
            return 0
        fn, state = rk
        slot = self._kernel_slot["replay_kernel"]
        try:
            r = fn(
                gpu, batch, faults, unique, duplicates, int(bool(throttled)), pending, int(policy), replays,
                int(drv.now_ns), state,
            )  # fmt: skip
        except Exception as e:  # noqa: BLE001 - whatever the kernel raises ejects it (Ctrl-C passes)
            self._eject(slot, "replay_kernel", describe(e))
            return 0
        if r not in (-1, 0, 1):
            self._eject(slot, "replay_kernel", f"returned {r}: expected 1 (now), 0 (default) or -1 (defer)")
            return 0
        return int(r)

    # ---- after a fault batch: policy migrations, then decide_replay ---------------------------
    def after_batch(
        self: Any,
        drv: Any,
        gpu: int,
        policy: int,
        batch: int,
        faults: int,
        unique: int,
        duplicates: int,
        throttled: bool,
        pending: int,
        replays: int,
    ) -> int:
        if self.drv is not drv:
            self._attach_driver(drv)
        code = (
            0
            if self._replay_kernel is None
            else self._kernel_replay(
                drv, gpu, policy, batch, faults, unique, duplicates, throttled, pending, replays
            )
        )
        if not self._by_hook:  # compiled kernels only: no Python hook reads or migrates anything
            self._drop_batch()
            return code
        self._end_batch()
        if batch == 0 or replays != self._seen_replays:
            self._older.clear()  # those warps were replayed: nothing waits on them any more
            self._older_batches.clear()
        self._seen_replays = replays
        if self._pending:
            self._run_migrations(drv)
        self._older |= self._recent
        self._recent.clear()
        self._older_batches += self._recent_batches
        self._recent_batches.clear()
        if "decide_replay" not in self._by_hook:
            return code
        req: list = []
        ctx = ReplayContext(
            req,
            gpu=gpu,
            batch=batch,
            faults=faults,
            unique=unique,
            duplicates=duplicates,
            throttled=bool(throttled),
            pending=pending,
            default_policy=int(policy),
            replays=replays,
            now_ns=int(drv.now_ns),
        )
        got = self._call("decide_replay", ctx, req)
        if got is None:
            return 0
        slot, d, checked = got
        try:
            code = decisions.as_opt_int(d) or 0
            if code not in (-1, 0, 1):
                raise decisions.Bad(f"returned {code}: expected 1 (now), 0 (default) or -1 (defer)")
        except decisions.Bad as e:
            self._eject(slot, "decide_replay", str(e))
            return 0
        self._apply(checked, gpu)
        return code

    def _run_migrations(self: Any, drv: Any) -> None:
        """Run queued policy migrations (UVM_MIGRATE to the GPU), at most ``migrate_fraction`` of
        GPU memory per fault batch; never by evicting a chunk that waiting warps need."""
        reqs, self._pending = self._pending, []
        pmm = drv.pmm[0]
        budget = max(512, int(pmm.n_root_chunks * 512 * self.migrate_fraction))
        self._protect = self._recent | self._older
        for a in self._recent_batches + self._older_batches:
            self._protect.update(a.tolist())
        try:
            for i, (first, n, gpu) in enumerate(reqs):
                end = first + n
                page = first
                while page < end:
                    stop = min(end, ((page >> BLOCK_SHIFT) + 1) << BLOCK_SHIFT)
                    if budget < stop - page or not self._room(drv, gpu, page >> BLOCK_SHIFT):
                        self.migrations_dropped += end - page + sum(r[1] for r in reqs[i + 1 :])
                        return
                    try:
                        migrate(drv, page, stop - page, gpu)
                    except NoEvictableMemory:
                        self.migrations_dropped += end - page
                        return
                    self._protect.add(int(drv.va.gpu_chunk[gpu - 1, page >> BLOCK_SHIFT]))
                    budget -= stop - page
                    self.migrated_pages += stop - page
                    page = stop
        finally:
            self._protect = None

    def _room(self: Any, drv: Any, gpu: int, block: int) -> bool:
        """Can ``block`` get a root chunk without evicting a protected one?"""
        pmm = drv.pmm[gpu - 1]
        if drv.va.gpu_chunk[gpu - 1, block] >= 0 or pmm.free_chunks > 0:
            return True
        if pmm.count("unused") + pmm.count("discarded") > 0:
            return True
        protected = sum(1 for c in self._protect if pmm.list_of(c) == "va_block_used")
        return pmm.count("used") > protected

    # ---- thrashing -------------------------------------------------------------------------------
    def thrashing_hints(
        self: Any,
        drv: Any,
        block: int,
        requester: int,
        local: np.ndarray,
        pages: np.ndarray,
        hints: list[Hint],
        now_ns: int,
    ) -> list[Hint]:
        if self.drv is not drv:
            self._attach_driver(drv)
        batch = self._batch_kinds(block, requester, local)
        if "thrashing_hint" not in self._by_hook and batch is None:
            return hints
        kinds = np.array([h.kind for h in hints], dtype=np.int8)
        if batch is not None:  # the block's thrashing_batch row decides (points_batch)
            return self._take_hints(
                drv, self._th_slot, "thrashing_batch", hints, kinds, batch, requester, pages, now_ns
            )
        req: list = []
        ctx = ThrashingContext(
            req,
            block=block,
            block_first_page=block << BLOCK_SHIFT,
            requester=requester,
            pages=ro(np.asarray(local, dtype=np.int64)),
            default=ro(kinds),
            thrashing=ro(drv.thrashing.thrashing_mask(block)[: int(drv.va.block_pages[block])]),
            alloc=self.allocs[int(self.view.alloc_index(block))],
            now_ns=int(now_ns),
        )
        got = self._call("thrashing_hint", ctx, req)
        if got is None:
            return hints
        slot, d, checked = got
        if d is None:
            self._apply(checked, 1)
            return hints
        try:
            new = decisions.as_kinds(d, len(hints))
        except decisions.Bad as e:
            self._eject(slot, "thrashing_hint", str(e))
            return hints
        out = self._take_hints(drv, slot, "thrashing_hint", hints, kinds, new, requester, pages, now_ns)
        if out is not hints:
            self._apply(checked, 1)
        return out

    def _take_hints(
        self: Any,
        drv: Any,
        slot: Any,
        hook: str,
        hints: list[Hint],
        kinds: np.ndarray,
        new: np.ndarray,
        requester: int,
        pages: np.ndarray,
        now_ns: int,
    ) -> list[Hint]:
        """Apply a policy's hint kinds (KEEP: the detector's) to the faulted ``pages``; a
        policy that throttles one page too many times in a row is ejected (the hints stay)."""
        changed = np.flatnonzero((new != base.KEEP) & (new != kinds))
        throttled = [int(pages[i]) for i in changed.tolist() if new[i] == base.HINT_THROTTLE]
        for pg in throttled:  # a policy that keeps a page waiting forever is a livelock
            if self._streak.get((requester, pg), 0) >= self.max_throttles:
                self._eject(
                    slot,
                    hook,
                    f"throttled page {pg} more than {self.max_throttles} times in a row (livelock)",
                )
                return hints
        for i in np.flatnonzero(new != base.HINT_THROTTLE).tolist():
            self._streak.pop((requester, int(pages[i])), None)
        for pg in throttled:
            self._streak[(requester, pg)] = self._streak.get((requester, pg), 0) + 1
        out = list(hints)
        va = drv.va
        c = drv.counters
        for i in changed.tolist():
            k = int(new[i])
            # the counters say which hints were *taken*: the overridden one was not
            if kinds[i] == base.HINT_THROTTLE:
                c["throttles"] -= 1
            elif kinds[i] == base.HINT_PIN:
                c["pins"] -= 1
            if k == base.HINT_THROTTLE:
                out[i] = Hint(base.HINT_THROTTLE, -1, int(now_ns) + drv.thrashing.nap_ns, 0)
                c["throttles"] += 1
            elif k == base.HINT_PIN:
                pg = int(pages[i])
                bits = int(va.residency[pg])
                res = requester
                if bits:
                    closest = va.closest_resident(bits, requester)
                    if va.can_access(requester, closest):
                        res = closest  # pin where it is and map it remotely
                out[i] = Hint(base.HINT_PIN, res, 0, 1 << requester)
                c["pins"] += 1
            else:
                out[i] = _NONE_HINT
        return out
