"""The guard: the eBPF verifier's job, done at run time (design.md section 5).

``Guard`` is the object the modeled driver holds as ``drv.hooks`` (``uvmlab.driver.hooks``).
At each decision point it builds the hook's read-only context, calls the policy, times the
call, coerces and validates the decision and the requests the call recorded, and applies
them. The work is split by job:

* ``uvmlab.policy.decisions`` — every returned or recorded value coerced once to a plain
  bounded int and checked;
* ``uvmlab.policy.watchdog`` — the hard time limit and the user's Ctrl-C;
* ``uvmlab.policy.ejection`` — the ejection record;
* ``uvmlab.policy.views`` — the read-only answers contexts compute on demand;
* ``points_prefetch`` / ``points_memory`` / ``points_batch`` — the decision points themselves.

A policy is *ejected* — all of its hooks, for the rest of the run — when a hook raises anything
(``BaseException`` included: only a real Ctrl-C from the user passes through and stops the
run), returns a decision the hook does not allow, takes longer than its per-call budget
(``budget_ms``, 50 ms; a hook's first call is exempt, since it may compile), runs past the hard
limit, changes the handler of SIGINT, SIGTERM or the watchdog's signal, or throttles one page
more than ``max_throttles`` times in a row. The failing call's decision is dropped and the
driver's default takes over from that call on; the ejection is recorded with its reason and
logged as a ``PolicyEjected`` event. The guard only ever applies decisions the driver itself
could have taken, so no policy can break the driver's invariants.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from uvmlab.core.errors import PolicyError
from uvmlab.driver import compiled
from uvmlab.driver.compiled.policy_calls import (
    BAD,
    BAD_KIND,
    BAD_VALUE,
    CALLING,
    REPLAY,
    SIGNATURES,
    THRASHING,
    VICTIM,
    PolicyKernels,
    make_kernels,
    replay_kernel_list,
)
from uvmlab.policy import base, decisions
from uvmlab.policy.context import RunInfo
from uvmlab.policy.ejection import Ejections, Fail, Slot, describe
from uvmlab.policy.future import FutureOracle
from uvmlab.policy.points_batch import BatchPoints
from uvmlab.policy.points_memory import MemoryPoints
from uvmlab.policy.points_prefetch import PrefetchPoints
from uvmlab.policy.views import alloc_infos, run_view
from uvmlab.policy.watchdog import CallState, HookTimeout, Watchdog

__all__ = ["Guard", "HookTimeout"]

#: hooks that decide inside one block's service, page by page: only the interpreted reference
#: path calls them, so a live one sends every block there. Their batch-level forms
#: (``prefetch_batch``, ``thrashing_batch``) and the eviction and replay hooks keep the
#: compiled path, which stops only where a live hook must be called.
PER_BLOCK_HOOKS = ("prefetch_before_compute", "prefetch_on_tree_iter", "thrashing_hint")


#: kernels compiled for their signature in this process (one look-up a run, not numba's)
_COMPILED: dict[tuple[int, int], Any] = {}

_clock = time.perf_counter


class Guard(PrefetchPoints, MemoryPoints, BatchPoints):
    """The hooks object the driver calls (``drv.hooks``): composed policies under the guard.

    ``policies``: policy objects (or ``IsolatedPolicy`` stand-ins), at most one per family
    (prefetch, eviction, replay, thrashing).
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
        if not budget_ms > 0 or budget_ms > 3.6e6:
            raise PolicyError(f"the per-call time budget must be in (0, 3600000] ms, got {budget_ms}")
        if hard_limit_s is not None and not 0 < hard_limit_s <= 86400:
            raise PolicyError(f"the hard time limit must be in (0, 86400] s, got {hard_limit_s}")
        self.budget_s = budget_ms / 1000.0
        self.hard_limit_s = hard_limit_s if hard_limit_s is not None else max(10.0, 20 * self.budget_s)
        self.max_throttles = max_throttles
        self.migrate_fraction = migrate_fraction
        self.slots: list[Slot] = []
        owner: dict[str, str] = {}
        params: dict[str, Any] = {}
        for p in self.policies:
            hooks = base.implemented_hooks(p)
            kernels = base.implemented_kernels(p)  # (getattr_static: ~5 µs a name, looked up once)
            label = p.label if isinstance(p, base.Policy) else (getattr(p, "name", "") or type(p).__name__)
            for fam in base.families(p, hooks, kernels):
                if fam in owner:
                    raise PolicyError(
                        f"policies {owner[fam]!r} and {label!r} both decide {fam}; compose at most one "
                        "policy per family"
                    )
                owner[fam] = label
            for k, v in (getattr(p, "module_params", None) or {}).items():
                if k in params and params[k] != v:
                    raise PolicyError(f"policies disagree on module parameter {k}")
                params[k] = v
            slot = Slot(p, str(label), {h: getattr(p, h) for h in hooks})
            if not getattr(p, "isolated", False):  # an isolated policy's kernels run in its process
                slot.kernels = {k: inspect.getattr_static(p, k) for k in kernels}
            self.slots.append(slot)
        self.module_params = params
        self.needs_future = any(getattr(p, "needs_future", False) for p in self.policies)
        self.engine: Any = None
        self.drv: Any = None
        self._state = CallState()
        self._dog: Watchdog | None = None
        self._all_kernels: PolicyKernels | None = None  # built when a driver attaches
        self._all_replay: tuple[Any, np.ndarray] | None = None  # the replay kernel and its state
        self._reset()

    # ---- set-up ------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.slots]

    @property
    def ejections(self) -> int:
        return self._ejections.count

    @property
    def ejected(self) -> list[dict[str, Any]]:
        """The ejection record: policy, hook, reason, time_ns (copies)."""
        return self._ejections.records

    def _reset(self) -> None:
        self._ejections = Ejections()
        self._stats: dict[str, list] = {h: [0, 0.0] for h in (*base.HOOKS, "start")}
        self.migrated_pages = 0
        self.migrations_dropped = 0
        for s in self.slots:
            s.ejected = False
            s.warm = set()
        self._reset_points()
        self._reset_batch()
        self._rebind()

    def _rebind(self) -> None:
        """Point each decision at the live policy that implements it (None: driver default)."""
        live = {}
        kernels: dict[str, Slot] = {}
        for s in self.slots:
            if not s.ejected:
                for h in s.fns:
                    live[h] = s
                for k in s.kernels:
                    kernels[k] = s
        for k in kernels:  # a compiled kernel stands for its Python hook (base.KERNELS)
            live.pop(base.KERNELS[k][1], None)
        self._by_hook = live
        self._kernel_slot = kernels
        kern = self._all_kernels
        if kern is not None:
            for i, k in enumerate(list(base.KERNELS)[:REPLAY]):
                kern.on[i] = k in kernels
        self.kernels = kern if kern is not None and kern.on.any() else None
        # plain bools for the per-batch test (begin_batch)
        self._k_batch = self.kernels is not None and (
            "prefetch_kernel" in kernels or "thrashing_kernel" in kernels
        )
        self._replay_kernel = self._all_replay if "replay_kernel" in kernels else None
        rk = self._replay_kernel
        self.replay_kernel = None if rk is None else (replay_kernel_list(rk[0]), rk[1])
        self.python_hooks = bool(live)
        # begin_batch calls a Python hook (else the compiled loop need not stop before a batch)
        self.begin_hooks = "prefetch_batch" in live or "thrashing_batch" in live
        self.prefetch_active = (
            "prefetch_before_compute" in live or "prefetch_batch" in live or "prefetch_kernel" in kernels
        )
        # what the compiled fault path must stop for (fast_service): only live hooks cost
        self.stops_for_allocation = "chunk_activate" in live or "eviction_prepare" in live
        self.stops_for_use = "chunk_used" in live
        self.steers_block_service = any(h in PER_BLOCK_HOOKS for h in live)
        # a policy that reads the run's future asks the kernel run between replays (future.py)
        self.loop_ok = not self.steers_block_service and not self.needs_future

    def attach(self, engine: Any) -> None:
        """Called by the engine once its driver exists."""
        self.engine = engine
        self._attach_driver(engine.drv)

    def _attach_driver(self, drv: Any) -> None:
        self.drv = drv
        self._reset()
        va = drv.va
        self.allocs = alloc_infos(drv)
        self.future = None
        if self.needs_future and self.engine is not None:
            self.future = FutureOracle(self.engine.workload, va.alloc_base, va.n_blocks)
        self.view = run_view(drv, self.engine, self.allocs, self.future)
        self._all_kernels = self._all_replay = None
        self._rebind()
        pmm = drv.pmm[0]
        # several VA spaces over one PMM (driver/pmm_share.py): a tenant is a VA space
        tenants = (
            drv.share.tenants
            if drv.share is not None
            else tuple(dict.fromkeys(a.tenant for a in self.allocs if a.kind == "managed"))
        )
        info = RunInfo(
            workload=str(getattr(getattr(self.engine, "workload", None), "name", "")),
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
                if isinstance(r, Fail):
                    self._eject(s, "start", r.reason)
                elif r is not None:
                    self._eject(s, "start", f"returned {decisions.short(r)}: start returns None")
        self._build_kernels()

    def _build_kernels(self) -> None:
        """Compile (or load from numba's cache) the live policies' kernels for their signatures
        and bundle them for the compiled code; a kernel that does not compile, or a
        ``kernel_state`` that fails, ejects its policy."""
        got: dict[int, tuple[Any, np.ndarray]] = {}
        for s in self.slots:
            if s.ejected or not s.kernels:
                continue
            try:
                state = np.ascontiguousarray(s.policy.kernel_state(), dtype=np.int64).reshape(-1)
            except BaseException as e:  # noqa: BLE001 - whatever the policy throws ejects it
                self._eject(s, "kernel_state", describe(e))
                continue
            mine = {}
            for k, fn in s.kernels.items():
                which = list(base.KERNELS).index(k)
                try:
                    if _COMPILED.get((id(fn), which)) is not fn:
                        fn.compile(SIGNATURES[which])  # its return value cast to the signature's
                        _COMPILED[(id(fn), which)] = fn  # held: its id is not reused meanwhile
                except BaseException as e:  # noqa: BLE001 - a kernel numba cannot compile
                    msg = str(e).strip().splitlines()
                    self._eject(
                        s, k, f"does not compile for its signature: {msg[0] if msg else type(e).__name__}"
                    )
                    break
                mine[which] = (fn, state)
            else:
                got.update(mine)
        self._all_replay = got.pop(REPLAY, None)
        if got:  # the fault service's versions for kernels are compiled at the first such run
            compiled.first_kernels()
        self._all_kernels = make_kernels(got) if got else None
        self._rebind()

    def kernel_failed(self, which: int, error: BaseException | None, value: int | None = None) -> None:
        """A compiled kernel raised ``error``, or returned what its point does not allow
        (``status[BAD]``, or ``value`` for the replay kernel): eject its policy. ``which``
        REPLAY with an ``error`` or a ``value``: the replay kernel, which the compiled fault loop
        calls (``policy_calls.call_replay``); with neither, BAD_KIND (the same code)."""
        if which == REPLAY and (error is not None or value is not None):
            slot = self._kernel_slot.get("replay_kernel")
            if slot is not None:
                reason = (
                    describe(error)
                    if error is not None
                    else f"returned {value}: expected 1 (now), 0 (default) or -1 (defer)"
                )
                self._eject(slot, "replay_kernel", reason)
            return
        kern = self._all_kernels
        if kern is None:
            return
        st = kern.status
        v = int(st[BAD_VALUE])
        if error is not None:
            reason = describe(error)
        elif which == BAD_KIND:
            which, reason = THRASHING, f"wrote hint kind {v}: expected -1 keep, 0 none, 1 throttle, 2 pin"
        elif which == VICTIM:
            reason = f"returned {v}: expected a chunk on an eviction list or -1"
        else:
            reason = f"returned {v}: expected 1 (decided) or 0 (the driver's hints)"
        name = list(base.KERNELS)[which]
        st[BAD] = st[CALLING] = -1
        slot = self._kernel_slot.get(name)
        if slot is not None:
            self._eject(slot, name, reason)

    @contextlib.contextmanager
    def session(self) -> Iterator[Guard]:
        """Run inside this to arm the watchdog (hooks that never return, the user's Ctrl-C);
        isolated policies' processes end with it."""
        dog = Watchdog(self._state, self.hard_limit_s)
        dog.start()
        self._dog = dog
        try:
            yield self
        finally:
            self._dog = None
            dog.stop()
            self.close()

    def close(self) -> None:
        """End the processes of isolated policies (a no-op for in-process ones)."""
        for s in self.slots:
            close = getattr(s.policy, "close", None)
            if callable(close) and getattr(s.policy, "isolated", False):
                close()

    # ---- calling a hook ----------------------------------------------------------------------
    def _invoke(self, slot: Slot, hook: str, fn: Any, arg: Any) -> Any:
        """Call one hook; return its value, or a Fail (the caller ejects). Lets only the
        user's own Ctrl-C through. (~1,100 calls a run of a policy on every hook: the common
        path reads each attribute once and leaves a failure's work to ``_failed``.)"""
        st = self._state
        st.seq += 1
        st.t0 = t0 = _clock()  # before in_call: the watchdog reads in_call, then t0
        try:
            st.in_call = True
            value = fn(arg)
            st.in_call = False  # inside the try: a late HookTimeout is still caught here
        except BaseException as e:  # noqa: BLE001 - whatever a hook throws ejects it
            st.in_call = False
            return self._failed(e)
        dog = self._dog
        if dog is not None:
            changed = dog.handlers_changed()
            if changed:
                return Fail(f"changed {changed} (restored)")
        dt = _clock() - t0
        stat = self._stats[hook]
        stat[0] += 1
        stat[1] += dt
        warm = slot.warm
        if hook in warm:
            if dt > self.budget_s:
                return Fail(f"took {dt * 1e3:.1f} ms, over its {self.budget_s * 1e3:g} ms budget")
        else:
            warm.add(hook)
        return value

    def _failed(self, e: BaseException) -> Fail:
        """A hook call raised ``e``: its Fail, or ``e`` again for the user's own Ctrl-C. A
        changed signal handler or mask is restored and reported first, as after any call."""
        if isinstance(e, KeyboardInterrupt) and self._state.user_interrupt:
            raise e
        changed = self._dog.handlers_changed() if self._dog is not None else None
        if changed:
            return Fail(f"changed {changed} (restored)")
        if isinstance(e, HookTimeout):
            return Fail(f"still running after {self.hard_limit_s:g} s (hard time limit)")
        return Fail(describe(e))

    def _eject(self, slot: Slot, hook: str, reason: str) -> None:
        if self._ejections.eject(slot, hook, reason, self.drv):
            self._rebind()

    def _call(self, hook: str, ctx: Any, req: list) -> tuple[Slot, Any, list] | None:
        """Call ``hook`` of its live policy. None when there is none or the call failed (then
        the policy is ejected); else the slot, the raw decision and the checked requests."""
        slot = self._by_hook.get(hook)
        if slot is None:
            return None
        req.clear()
        r = self._invoke(slot, hook, slot.fns[hook], ctx)
        if r.__class__ is Fail:
            self._eject(slot, hook, r.reason)
            return None
        checked: list = []
        if req:
            try:
                checked = decisions.check_requests(req, self.drv.pmm[0], self.drv.va)
            except decisions.Bad as e:
                self._eject(slot, hook, str(e))
                return None
            finally:
                req.clear()
        return slot, r, checked

    @property
    def stats(self) -> dict[str, dict[str, float]]:
        """Per hook: calls and total seconds spent in the policy."""
        return {h: {"calls": c, "seconds": t} for h, (c, t) in self._stats.items() if c}

    def _apply(self, checked: list, gpu: int) -> None:
        """Apply requests that ``decisions.check_requests`` returned (plain values only)."""
        if not checked:
            return
        pmm = self.drv.pmm[gpu - 1]
        for kind, a, b in checked:
            if kind == "move":
                (pmm.move_to_head if b == "head" else pmm.move_to_tail)(a)
            else:
                self._queue_migration(a, b, gpu)
