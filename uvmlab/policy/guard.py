"""The guard: the eBPF verifier's job, done at run time (docs/policies.md).

``Guard`` is the object the modeled driver holds as ``drv.hooks``. The driver calls it at each
decision point; it builds the hook's read-only context, calls the policy, times the call,
validates the decision and the requests the call recorded, and applies them. A policy is
*ejected* — all of its hooks, for the rest of the run — when a hook

* raises (any exception, ``SystemExit`` included),
* returns a decision the hook does not allow (a prefetch region outside the VA block, a victim
  that is not evictable, an unknown code, a malformed or out-of-range request),
* takes longer than its per-call time budget (``budget_ms``, 50 ms by default; the first call of
  each hook is exempt, since it may compile or import), or throttles one page more than
  ``max_throttles`` times in a row (a livelock).

The decision of the failing call is dropped and the driver's default takes its place, from that
call on; decisions taken before stand. The ejection is counted (``policy_ejections``), kept in
``Guard.ejected`` with the hook and the reason, and logged as a ``PolicyEjected`` event. Nothing a
policy does can break the driver's invariants, because the guard only ever applies decisions the
driver itself could have taken: list moves within the PMM's eviction lists, prefetch regions
inside the block, UVM_MIGRATE of managed pages, NONE / THROTTLE / PIN hints.

A hook that never returns is stopped by a watchdog when the run is inside ``Guard.session()``
(``uvmlab.simulate`` and the CLI use it; it needs the main thread): after ``hard_limit_s`` the
hook is interrupted by a ``HookTimeout`` and the policy is ejected. Code that never returns to
the Python interpreter (a numba loop) cannot be interrupted.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from uvmlab.core.errors import PolicyError
from uvmlab.driver import tools
from uvmlab.driver.eviction import NoEvictableMemory
from uvmlab.driver.migrate import migrate
from uvmlab.driver.perf import prefetch as pf
from uvmlab.driver.perf.thrashing import Hint
from uvmlab.driver.pmm import ALLOCATED
from uvmlab.policy import base
from uvmlab.policy.bitmap_tree import BitmapTree, compute_mask
from uvmlab.policy.context import (
    AllocInfo,
    ChunkContext,
    EvictionContext,
    PrefetchContext,
    ReplayContext,
    RunInfo,
    ThrashingContext,
    tenant_of_name,
)
from uvmlab.policy.future import FutureOracle, position, stalled
from uvmlab.workload.ir import AllocKind

CPU = 0
_EVICTION_LISTS = ("va_block_used", "va_block_unused", "va_block_discarded")
_NONE_HINT = Hint(base.HINT_NONE, -1, 0, 0)
_MAX_PENDING_MIGRATIONS = 4096


class HookTimeout(BaseException):
    """Raised inside a hook that ran past the hard limit. A BaseException so that a policy's
    ``except Exception`` does not swallow it."""


@dataclass
class _Slot:
    policy: Any
    label: str
    fns: dict[str, Any]
    ejected: bool = False
    warm: set[str] = field(default_factory=set)


@dataclass
class _Fail:
    reason: str


@njit(cache=True)
def _nodes(leaf, level_count, leaf_count, cs, offset, m_first, m_outer):
    """The nodes from ``leaf`` to the root: [s, e) in tree leaves, populated count, and the
    node in block pages with the driver's clamp."""
    s_out = np.empty(level_count, np.int64)
    e_out = np.empty(level_count, np.int64)
    c_out = np.empty(level_count, np.int64)
    f_out = np.empty(level_count, np.int64)
    o_out = np.empty(level_count, np.int64)
    for k in range(level_count):
        size = 1 << k
        s = leaf - (leaf & (size - 1))
        e = min(s + size, leaf_count)
        s_out[k] = s
        e_out[k] = e
        c_out[k] = cs[e] - cs[s]
        f = s + m_first
        o = e + m_first
        f_out[k] = offset if f < offset else max(f - offset, m_first)
        o_out[k] = offset if o < offset else min(o - offset, m_outer)
    return s_out, e_out, c_out, f_out, o_out


@njit(cache=True)
def _walk(nxt, n, lst, count):
    out = np.empty(count, np.int32)
    s = n + lst
    c = nxt[s]
    i = 0
    while c != s and i < count:
        out[i] = c
        i += 1
        c = nxt[c]
    return out


class Guard:
    """The hooks object the driver calls (``drv.hooks``): composed policies under the guard.

    ``policies``: policy objects, at most one per family (prefetch, eviction, replay, thrashing).
    """

    def __init__(
        self,
        policies: Iterable[Any],
        *,
        budget_ms: float = 50.0,
        hard_limit_s: float | None = None,
        max_throttles: int = 64,
        migrate_fraction: float = 0.25,
    ) -> None:
        self.policies = list(policies)
        if budget_ms <= 0:
            raise PolicyError(f"the per-call time budget must be positive, got {budget_ms} ms")
        self.budget_s = budget_ms / 1000.0
        self.hard_limit_s = hard_limit_s if hard_limit_s is not None else max(10.0, 20 * self.budget_s)
        self.max_throttles = max_throttles
        self.migrate_fraction = migrate_fraction
        self.slots: list[_Slot] = []
        owner: dict[str, str] = {}
        params: dict[str, Any] = {}
        for p in self.policies:
            hooks = base.implemented_hooks(p)
            label = p.label if isinstance(p, base.Policy) else (getattr(p, "name", "") or type(p).__name__)
            for fam in base.families(p):
                if fam in owner:
                    raise PolicyError(
                        f"policies {owner[fam]!r} and {label!r} both decide "
                        f"{fam}; compose at most one policy per family"
                    )
                owner[fam] = label
            for k, v in (getattr(p, "module_params", None) or {}).items():
                if k in params and params[k] != v:
                    raise PolicyError(f"policies disagree on module parameter {k}")
                params[k] = v
            self.slots.append(_Slot(p, label, {h: getattr(p, h) for h in hooks}))
        self.module_params = params
        self.needs_future = any(getattr(p, "needs_future", False) for p in self.policies)
        self.engine = None
        self.drv = None
        self._reset()

    # ---- set-up ------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.slots]

    def _reset(self) -> None:
        self.ejections = 0
        self.ejected: list[dict[str, Any]] = []
        self._stats: dict[str, list] = {h: [0, 0.0] for h in (*base.HOOKS, "start")}
        self.migrated_pages = 0
        self.migrations_dropped = 0
        for s in self.slots:
            s.ejected = False
            s.warm = set()
        self._pending: list[tuple[int, int, int]] = []
        self._recent: set[int] = set()
        self._older: set[int] = set()
        self._seen_replays = 0
        self._protect: set[int] | None = None
        self._streak: dict[tuple[int, int], int] = {}
        self._in_call = False
        self._call_seq = 0
        self._call_t0 = 0.0
        self._rebind()

    def _rebind(self) -> None:
        """Point each decision at the live policy that implements it (None: driver default)."""
        live = {}
        for s in self.slots:
            if not s.ejected:
                for h in s.fns:
                    live[h] = s
        self._by_hook = live
        self.prefetch_active = "prefetch_before_compute" in live

    @property
    def steers_block_service(self) -> bool:
        """A live policy decides inside the per-block fault service (prefetch regions or
        thrashing hints): only the interpreted reference path calls those hooks. Eviction and
        replay policies leave the compiled path usable (it stops at their hooks)."""
        return any(base.HOOKS[h] in ("prefetch", "thrashing") for h in self._by_hook)

    def attach(self, engine: Any) -> None:
        """Called by the engine once its driver exists."""
        self.engine = engine
        self._attach_driver(engine.drv)

    def _attach_driver(self, drv: Any) -> None:
        self.drv = drv
        self._reset()
        va = drv.va
        kinds = {int(k): k.name.lower() for k in AllocKind}
        self.allocs = tuple(
            AllocInfo(
                i,
                a.name,
                tenant_of_name(a.name) if drv.share is None else drv.tenant,
                kinds[int(a.kind)],
                int(va.alloc_base[i]),
                int(a.pages),
            )
            for i, a in enumerate(va.allocs)
        )
        self._block_alloc = np.array(va.block_alloc, copy=True)
        self.future = None
        if self.needs_future and self.engine is not None:
            self.future = FutureOracle(self.engine.workload, va.alloc_base, va.n_blocks)
        pmm = drv.pmm[0]
        # several VA spaces over one PMM (driver/pmm_share.py): a tenant is a VA space
        tenants = (
            drv.share.tenants
            if drv.share is not None
            else tuple(dict.fromkeys(a.tenant for a in self.allocs if a.kind == "managed"))
        )
        info = RunInfo(
            workload=getattr(getattr(self.engine, "workload", None), "name", ""),
            gpu=drv.gpu.name,
            n_root_chunks=pmm.n_root_chunks,
            capacity_bytes=pmm.capacity_bytes,
            allocs=self.allocs,
            tenants=tenants,
            params=drv.params.to_dict(),
            future=self.future is not None,
        )
        for s in self.slots:
            start = getattr(s.policy, "start", None)
            if callable(start):
                r = self._invoke(s, "start", start, info)
                if isinstance(r, _Fail):
                    self._eject(s, "start", r.reason)

    @contextlib.contextmanager
    def session(self) -> Iterator[Guard]:
        """Run inside this to arm the watchdog that stops hooks that never return."""
        dog = _Watchdog(self)
        dog.start()
        try:
            yield self
        finally:
            dog.stop()

    # ---- calling a hook ----------------------------------------------------------------------
    def _invoke(self, slot: _Slot, hook: str, fn: Any, ctx: Any) -> Any:
        """Call one hook; return its value, or a _Fail (the caller ejects)."""
        self._call_seq += 1
        t0 = time.perf_counter()
        self._call_t0 = t0
        try:
            self._in_call = True
            try:
                value = fn(ctx)
            finally:
                self._in_call = False
        except HookTimeout:
            self._in_call = False
            return _Fail(f"still running after {self.hard_limit_s:g} s (hard time limit)")
        except (Exception, SystemExit) as e:
            self._in_call = False
            msg = " ".join(str(e).split())[:200]
            return _Fail(f"raised {type(e).__name__}" + (f": {msg}" if msg else ""))
        dt = time.perf_counter() - t0
        st = self._stats[hook]
        st[0] += 1
        st[1] += dt
        if dt > self.budget_s and hook in slot.warm:
            return _Fail(f"took {dt * 1e3:.1f} ms, over its {self.budget_s * 1e3:g} ms budget")
        slot.warm.add(hook)
        return value

    def _eject(self, slot: _Slot, hook: str, reason: str) -> None:
        if slot.ejected:
            return
        slot.ejected = True
        self.ejections += 1
        now = int(self.drv.now_ns) if self.drv is not None else 0
        self.ejected.append({"policy": slot.label, "hook": hook, "reason": reason, "time_ns": now})
        if self.drv is not None:
            self.drv.counters["policy_ejections"] = self.ejections
            self.drv.log.add(now, tools.POLICY_EJECTED, -1, -1, 0, hook, -1, f"{slot.label}: {reason}")
        self._rebind()

    def _call(self, hook: str, ctx: Any, req: list) -> tuple[_Slot, Any] | None:
        """Call ``hook`` of its live policy; None when there is none or the call failed (then
        the policy is ejected). Requests recorded on ``req`` are validated here."""
        slot = self._by_hook.get(hook)
        if slot is None:
            return None
        if req:
            req.clear()
        r = self._invoke(slot, hook, slot.fns[hook], ctx)
        if r.__class__ is _Fail:
            self._eject(slot, hook, r.reason)
            return None
        if req:
            problem = self._check_requests(req, hook)
            if problem:
                self._eject(slot, hook, problem)
                return None
        return slot, r

    def _reject(self, slot: _Slot, hook: str, reason: str, req: list) -> None:
        req.clear()
        self._eject(slot, hook, reason)

    # ---- requests ---------------------------------------------------------------------------
    def _check_requests(self, req: list, hook: str) -> str | None:
        if not req:
            return None
        if len(req) > 4 * self._n_chunks() + 64:
            return f"recorded {len(req)} requests in one call"
        for r in req:
            if r[0] == "move":
                problem = self._check_chunk(r[1], "move")
                if problem:
                    return problem
                if r[2] not in ("head", "tail"):
                    return f"list position {r[2]!r} is neither 'head' nor 'tail'"
            else:
                problem = self._check_migration(r[1], r[2])
                if problem:
                    return problem
        return None

    def _n_chunks(self) -> int:
        return self.drv.pmm[0].n_root_chunks

    def _check_chunk(self, chunk: Any, what: str) -> str | None:
        if not _is_int(chunk):
            return f"{what}: chunk {chunk!r} is not an integer"
        c = int(chunk)
        pmm = self.drv.pmm[0]
        if not 0 <= c < pmm.n_root_chunks:
            return f"{what}: chunk {c} does not exist (0..{pmm.n_root_chunks - 1})"
        if pmm.list_of(c) not in _EVICTION_LISTS:
            return f"{what}: chunk {c} is not evictable (it is {pmm.list_of(c) or 'on no list'})"
        return None

    def _check_migration(self, first: Any, n: Any) -> str | None:
        if not (_is_int(first) and _is_int(n)):
            return f"migrate({first!r}, {n!r}): page and count must be integers"
        first, n = int(first), int(n)
        va = self.drv.va
        if n < 1 or first < 0 or first >= va.total_pages:
            return f"migrate({first}, {n}): not a page range of the address space"
        a = int(va.block_alloc[first >> 9])
        if a < 0 or not va.alloc_live[a] or not va.is_managed(a):
            return f"migrate({first}, {n}): not in a live managed allocation"
        lo = int(va.alloc_base[a])
        if first < lo or first + n > lo + int(va.alloc_pages[a]):
            return f"migrate({first}, {n}): runs past its allocation"
        return None

    @property
    def stats(self) -> dict[str, dict[str, float]]:
        """Per hook: calls and total seconds spent in the policy."""
        return {h: {"calls": c, "seconds": t} for h, (c, t) in self._stats.items() if c}

    def _apply(self, req: list, gpu: int) -> None:
        if not req:
            return
        pmm = self.drv.pmm[gpu - 1]
        for r in req:
            if r[0] == "move":
                (pmm.move_to_head if r[2] == "head" else pmm.move_to_tail)(int(r[1]))
            elif len(self._pending) < _MAX_PENDING_MIGRATIONS:
                self._pending.append((int(r[1]), int(r[2]), gpu))
            else:
                self.migrations_dropped += int(r[2])
        req.clear()

    # ---- prefetch -----------------------------------------------------------------------------
    def prefetch_hint(
        self,
        drv: Any,
        block: int,
        dest: int,
        faulted: np.ndarray,
        resident: np.ndarray,
        thrashing: np.ndarray,
        cpu_readable: np.ndarray | None,
    ) -> np.ndarray:
        """``uvm_perf_prefetch_get_hint_va_block`` with the prefetch hooks in its tree walk."""
        if self.drv is not drv:
            self._attach_driver(drv)
        va, pp = drv.va, drv.prefetch_params
        n = len(faulted)
        if not pp.enable:
            return np.zeros(n, dtype=bool)
        count = pf.update_prefetch_info(
            va.prefetch_last_proc, va.prefetch_fault_migrations, block, dest, int(np.count_nonzero(faulted))
        )
        lo = block << 9
        threshold = pp.threshold
        if pf.first_touch_shortcut_applies(
            int(np.count_nonzero(va.residency[lo : lo + n])), dest, int(va.preferred[lo]) - 1
        ):
            out = ~faulted & ~thrashing  # uvm_perf_prefetch.c step 3: the whole block, no tree, no hook
            if dest == CPU and cpu_readable is not None:
                out &= ~cpu_readable
        else:
            tree = BitmapTree(
                faulted,
                resident,
                thrashing,
                block_first_page_va=lo,
                big=pp.big_page_pages,
                m_first=0,
                m_outer=n,
            )
            req: list = []
            ctx = PrefetchContext(
                req,
                block=block,
                block_first_page=lo,
                n_pages=n,
                dest=dest,
                faulted=_ro(faulted),
                resident=_ro(resident),
                thrashing=_ro(thrashing),
                populated=_ro(tree.populated(n)),
                cs=tree.cs,
                tree_offset=tree.offset,
                leaf_count=tree.leaf_count,
                level_count=tree.level_count,
                alloc=self.allocs[int(self._block_alloc[block])],
                now_ns=int(drv.now_ns),
            )

            def region_for(page: int, leaf: int, stock: tuple[int, int] | None) -> tuple[int, int] | None:
                ctx.page_index = page
                ctx.level = -1
                got = self._call("prefetch_before_compute", ctx, req)
                if got is None:
                    return stock
                slot, d = got
                if d is None or (_is_int(d) and int(d) == base.DEFAULT):
                    self._apply(req, dest if dest != CPU else 1)
                    return stock
                if _is_int(d) and int(d) == base.ENTER_LOOP:
                    if "prefetch_on_tree_iter" not in slot.fns:
                        self._reject(
                            slot,
                            "prefetch_before_compute",
                            "returned ENTER_LOOP but has no prefetch_on_tree_iter",
                            req,
                        )
                        return stock
                    self._apply(req, dest if dest != CPU else 1)
                    return self._tree_loop(slot, ctx, req, tree, leaf, stock, dest)
                region = _as_region(d)
                if region is None:
                    self._reject(
                        slot,
                        "prefetch_before_compute",
                        f"returned {_short(d)}: not DEFAULT, ENTER_LOOP or a region",
                        req,
                    )
                    return stock
                f, o = region
                if not 0 <= f <= o <= n:
                    self._reject(
                        slot,
                        "prefetch_before_compute",
                        f"region [{f}, {o}) is outside the VA block's [0, {n})",
                        req,
                    )
                    return stock
                self._apply(req, dest if dest != CPU else 1)
                return f, o

            out = compute_mask(
                tree,
                faulted,
                thrashing,
                threshold=threshold,
                region_for=region_for,
                dest_is_cpu=dest == CPU,
                cpu_resident_readable=cpu_readable,
            )
        if not pf.hint_allowed(count, pp.min_faults):
            return np.zeros(n, dtype=bool)
        return out

    def _tree_loop(
        self,
        slot: _Slot,
        ctx: PrefetchContext,
        req: list,
        tree: BitmapTree,
        leaf: int,
        stock: tuple[int, int] | None,
        dest: int,
    ) -> tuple[int, int] | None:
        """ENTER_LOOP: on_tree_iter per node, leaf to root; the last selection wins. A failure
        inside the walk gives this page the driver's region."""
        sel = None
        ns, ne, cnt, sf, so = (
            a.tolist()
            for a in _nodes(
                leaf, tree.level_count, tree.leaf_count, tree.cs, tree.offset, tree.m_first, tree.m_outer
            )
        )
        region = base.Region
        for k in range(tree.level_count):
            s, e = ns[k], ne[k]
            ctx.level = k
            ctx.node = region(s, e)
            ctx.size = e - s
            ctx.counter = cnt[k]
            ctx.subregion = region(sf[k], so[k])
            got = self._call("prefetch_on_tree_iter", ctx, req)
            if got is None:
                return stock
            d = got[1]
            if (
                d is None
                or d is True
                or d is False
                or isinstance(d, np.bool_)
                or (_is_int(d) and int(d) in (0, 1))
            ):
                if d:
                    sel = (s, e)
                if req:
                    self._apply(req, dest if dest != CPU else 1)
            else:
                self._reject(
                    slot, "prefetch_on_tree_iter", f"returned {_short(d)}: expected True / False", req
                )
                return stock
        return None if sel is None else tree.to_block(*sel)

    # ---- eviction -----------------------------------------------------------------------------
    def _chunk_ctx(self, gpu: int, block: int, chunk: int, event: str, req: list) -> ChunkContext:
        return ChunkContext(
            req,
            self,
            gpu=gpu,
            chunk=chunk,
            block=block,
            alloc=self.allocs[int(self._block_alloc[block])],
            event=event,
            now_ns=int(self.drv.now_ns),
        )

    def chunk_activate(self, drv: Any, gpu: int, block: int, chunk: int) -> None:
        """chunk_update_lists_locked: a root chunk was allocated to ``block`` (tail of used)."""
        if self.drv is not drv:
            self._attach_driver(drv)
        self._recent.add(chunk)
        if "chunk_activate" not in self._by_hook:
            return
        req: list = []
        got = self._call("chunk_activate", self._chunk_ctx(gpu, block, chunk, "activate", req), req)
        if got is not None:
            self._apply(req, gpu)

    def chunk_used(self, drv: Any, gpu: int, block: int, chunk: int, fresh: bool) -> None:
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
        slot, d = got
        if d is None or (_is_int(d) and int(d) in (base.DEFAULT, base.BYPASS)):
            self._apply(req, gpu)
            if not d:
                pmm.mark_used(chunk)
            return
        self._reject(slot, "chunk_used", f"returned {_short(d)}: expected 0 (DEFAULT) or 1 (BYPASS)", req)
        pmm.mark_used(chunk)

    def eviction_prepare(self, drv: Any, gpu: int) -> None:
        """pick_root_chunk_to_evict is about to take the head of unused, else of used."""
        if self.drv is not drv:
            self._attach_driver(drv)
        pmm = drv.pmm[gpu - 1]
        if "eviction_prepare" in self._by_hook:
            req: list = []
            frontier = position(self.engine) if self.engine is not None else 0
            ctx = EvictionContext(
                req,
                self,
                gpu=gpu,
                used=self._list(gpu, "used"),
                unused=self._list(gpu, "unused"),
                owner=_ro(pmm.owner),
                now_ns=int(drv.now_ns),
                position=frontier,
            )
            got = self._call("eviction_prepare", ctx, req)
            if got is not None:
                slot, d = got
                victim = None
                if d is None:
                    pass
                elif _is_int(d):
                    problem = self._check_chunk(d, "victim")
                    if problem:
                        self._reject(slot, "eviction_prepare", problem, req)
                        req = []
                    else:
                        victim = int(d)
                else:
                    moves = _as_moves(d)
                    problem = (
                        f"returned {_short(d)}: expected None, a chunk or [(chunk, 'head'|'tail')]"
                        if moves is None
                        else self._check_requests(moves, "eviction_prepare")
                    )
                    if problem:
                        self._reject(slot, "eviction_prepare", problem, req)
                        req = []
                    else:
                        req.extend(moves)
                self._apply(req, gpu)
                if victim is not None:
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

    def _list(self, gpu: int, name: str) -> np.ndarray:
        pmm = self.drv.pmm[gpu - 1]
        try:  # the PMM's own walk is a Python loop; this one is compiled (read only)
            lst = {"used": 1, "unused": 2}[name]
            out = _walk(pmm._next, pmm.n_root_chunks, lst, pmm.count(name))
        except AttributeError:
            out = pmm.list_chunks(name)
        out.flags.writeable = False
        return out

    def _resident_pages(self, block: int, gpu: int) -> int:
        return int(self.drv.va.gpu_resident_count(block, gpu))

    def _alloc_index(self, blocks: Any) -> Any:
        if np.ndim(blocks) == 0:
            return int(self._block_alloc[int(blocks)])
        return _ro(self._block_alloc[np.asarray(blocks, dtype=np.int64)])

    def _next_use(self, blocks: Any) -> Any:
        if self.future is None:
            raise RuntimeError("next_use is only for policies with needs_future = True, run by the engine")
        frontier = position(self.engine)
        b = np.asarray(blocks, dtype=np.int64)
        nu = self.future.next_use(b.ravel(), frontier)
        waiting, first = stalled(self.engine)
        if len(waiting):  # a stalled touch is still to come, at its own position in the trace
            at = np.searchsorted(waiting, b.ravel())
            hit = (at < len(waiting)) & (waiting[np.minimum(at, len(waiting) - 1)] == b.ravel())
            nu[hit] = np.minimum(nu[hit], first[at[hit]])
        if b.ndim == 0:
            return int(nu[0])
        nu.flags.writeable = False
        return nu

    # ---- after a fault batch: policy migrations, then decide_replay ---------------------------
    def after_batch(
        self,
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
        if batch == 0 or replays != self._seen_replays:
            self._older.clear()  # those warps were replayed: nothing waits on them any more
        self._seen_replays = replays
        if self._pending:
            self._run_migrations(drv)
        self._older |= self._recent
        self._recent = set()
        if "decide_replay" not in self._by_hook:
            return 0
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
        slot, d = got
        if d is None:
            d = 0
        if not _is_int(d) or int(d) not in (-1, 0, 1):
            self._reject(
                slot,
                "decide_replay",
                f"returned {_short(d)}: expected 1 (now), 0 (default) or -1 (defer)",
                req,
            )
            return 0
        self._apply(req, gpu)
        return int(d)

    def _run_migrations(self, drv: Any) -> None:
        """Run queued policy migrations (UVM_MIGRATE to the GPU), at most ``migrate_fraction`` of
        GPU memory per fault batch; never by evicting a chunk that waiting warps need."""
        reqs, self._pending = self._pending, []
        pmm = drv.pmm[0]
        budget = max(512, int(pmm.n_root_chunks * 512 * self.migrate_fraction))
        self._protect = self._recent | self._older
        try:
            for i, (first, n, gpu) in enumerate(reqs):
                end = first + n
                page = first
                while page < end:
                    stop = min(end, ((page >> 9) + 1) << 9)
                    if budget < stop - page or not self._room(drv, gpu, page >> 9):
                        self.migrations_dropped += end - page + sum(r[1] for r in reqs[i + 1 :])
                        return
                    try:
                        migrate(drv, page, stop - page, gpu)
                    except NoEvictableMemory:
                        self.migrations_dropped += end - page
                        return
                    self._protect.add(int(drv.va.gpu_chunk[gpu - 1, page >> 9]))
                    budget -= stop - page
                    self.migrated_pages += stop - page
                    page = stop
        finally:
            self._protect = None

    def _room(self, drv: Any, gpu: int, block: int) -> bool:
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
        self,
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
        if "thrashing_hint" not in self._by_hook:
            return hints
        kinds = np.array([h.kind for h in hints], dtype=np.int8)
        lo = block << 9
        req: list = []
        ctx = ThrashingContext(
            req,
            block=block,
            block_first_page=lo,
            requester=requester,
            pages=_ro(np.asarray(local, dtype=np.int64)),
            default=_ro(kinds),
            thrashing=_ro(drv.thrashing.thrashing_mask(block)[: int(drv.va.block_pages[block])]),
            alloc=self.allocs[int(self._block_alloc[block])],
            now_ns=int(now_ns),
        )
        got = self._call("thrashing_hint", ctx, req)
        if got is None:
            return hints
        slot, d = got
        if d is None:
            self._apply(req, 1)
            return hints
        new = _as_kinds(d, len(hints))
        if new is None:
            self._reject(
                slot,
                "thrashing_hint",
                f"returned {_short(d)}: expected a hint kind "
                f"or {len(hints)} of them (-1 keep, 0 none, 1 throttle, 2 pin)",
                req,
            )
            return hints
        changed = np.flatnonzero((new != base.KEEP) & (new != kinds))
        throttled = [int(pages[i]) for i in changed.tolist() if new[i] == base.HINT_THROTTLE]
        for pg in throttled:  # a policy that keeps a page waiting forever is a livelock
            if self._streak.get((requester, pg), 0) >= self.max_throttles:
                self._reject(
                    slot,
                    "thrashing_hint",
                    f"throttled page {pg} more than {self.max_throttles} times in a row (livelock)",
                    req,
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
        self._apply(req, 1)
        return out


class _Watchdog:
    """Interrupts a hook that has run past the hard limit (main thread only: it uses a signal
    handler, which Python runs between bytecodes of the main thread)."""

    SIG = getattr(signal, "SIGUSR2", None)

    def __init__(self, guard: Guard) -> None:
        self.g = guard
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self.old: Any = None
        self.fired_seq = -1
        self.fired_at = 0.0

    def start(self) -> None:
        if self.SIG is None or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(self.SIG) not in (signal.SIG_DFL, None):
            return  # the program uses this signal: run without the watchdog
        self.old = signal.signal(self.SIG, self._handler)
        self.thread = threading.Thread(target=self._run, name="uvmlab-policy-watchdog", daemon=True)
        self.thread.start()

    def _handler(self, signum: int, frame: Any) -> None:
        g = self.g
        # Runs in the main thread, so _in_call is exact here: a late signal is ignored.
        if g._in_call and g._call_seq == self.fired_seq:
            raise HookTimeout

    def _run(self) -> None:
        poll = min(0.05, self.g.hard_limit_s / 4)
        while not self.stopping.wait(poll):
            g = self.g
            seq = g._call_seq
            now = time.perf_counter()
            if (
                g._in_call
                and now - g._call_t0 > g.hard_limit_s
                and (seq != self.fired_seq or now - self.fired_at > g.hard_limit_s)
            ):
                self.fired_seq = seq
                self.fired_at = now
                _thread.interrupt_main(self.SIG)

    def stop(self) -> None:
        if self.thread is None:
            return
        self.stopping.set()
        self.thread.join()
        signal.signal(self.SIG, self.old)


# ---- decision parsing ----------------------------------------------------------------------------
def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_)


def _ro(a: np.ndarray) -> np.ndarray:
    c = np.array(a, copy=True)
    c.flags.writeable = False
    return c


def _short(x: Any) -> str:
    s = repr(x)
    return s if len(s) <= 60 else s[:57] + "..."


def _as_region(d: Any) -> tuple[int, int] | None:
    if isinstance(d, tuple | list) and len(d) == 2 and all(_is_int(v) for v in d):
        return int(d[0]), int(d[1])
    return None


def _as_moves(d: Any) -> list | None:
    if not isinstance(d, list | tuple):
        return None
    out = []
    for r in d:
        if not (isinstance(r, tuple | list) and len(r) == 2):
            return None
        out.append(("move", r[0], r[1]))
    return out


def _as_kinds(d: Any, n: int) -> np.ndarray | None:
    if _is_int(d):
        arr = np.full(n, int(d), dtype=np.int64)
    else:
        try:
            arr = np.asarray(d)
        except Exception:
            return None
        if arr.shape != (n,) or arr.dtype.kind not in "iu":
            return None
        arr = arr.astype(np.int64)
    if not np.isin(arr, (base.KEEP, base.HINT_NONE, base.HINT_THROTTLE, base.HINT_PIN)).all():
        return None
    return arr
