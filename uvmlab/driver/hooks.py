"""Every point where the modelled driver hands a decision to a policy, as one typed Protocol.

The driver calls these through ``UvmDriver.hooks`` (None: the driver's own behaviour, no call at
all). ``uvmlab.policy.guard.Guard`` implements them: it validates each decision, times each call
against its budget and ejects a policy that misbehaves (docs/policies.md). The points mirror the
driver's own decision sites, named after its functions:

* ``prefetch_hint`` — ``uvm_perf_prefetch_get_hint_va_block`` (uvm_perf_prefetch.c);
* ``thrashing_hints`` — ``uvm_perf_thrashing_get_hint`` (uvm_perf_thrashing.c);
* ``chunk_activate`` / ``chunk_used`` / ``eviction_prepare`` — the PMM's used list and the
  choice of a victim root chunk (``chunk_update_lists_locked``, ``pick_root_chunk_to_evict``,
  uvm_pmm_gpu.c);
* ``begin_batch`` — a fault batch, sorted and cut into VA blocks, before any block is serviced
  (``service_fault_batch``, uvm_gpu_replayable_faults.c): batch-level policy decisions for all
  of its blocks at once, which the compiled path applies without leaving compiled code;
* ``after_batch`` — the replay decision after a fault batch (uvm_gpu_replayable_faults.c);
* ``kernels`` — a policy's compiled kernels, which the compiled code calls itself
  (``compiled/policy_calls.py``): the batch's prefetch and thrashing decisions inside
  ``begin_batch``, the victim inside the compiled service.

``drv`` is the ``uvm.UvmDriver`` calling (typed ``Any`` here: that module imports this one).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from uvmlab.driver.perf.thrashing_state import Hint


class BatchDecisions(NamedTuple):
    """What policies decided for a fault batch's blocks (row ``i``: the batch's ``i``-th block)."""

    prefetch: np.ndarray  # bool [blocks, PAGES_PER_BLOCK]: the pages to prefetch, where chosen
    prefetch_set: np.ndarray  # bool [blocks]: the row replaces the driver's prefetch hint
    reference: np.ndarray  # bool [blocks]: a thrashing decision: serviced by the reference path


@runtime_checkable
class DriverHooks(Protocol):
    #: the compiled fault path leaves blocks to the reference path when a policy steers them
    steers_block_service: bool
    #: whether ``prefetch_hint`` may replace the driver's prefetch decision
    prefetch_active: bool
    #: the compiled path hands every root chunk allocation to the caller (``chunk_activate``,
    #: ``eviction_prepare`` are live)
    stops_for_allocation: bool
    #: the compiled path stops after a block whose chunk was used (``chunk_used`` is live)
    stops_for_use: bool
    #: the live compiled kernels (``compiled.policy_calls.PolicyKernels``), None when none is
    kernels: Any
    #: the live compiled replay kernel as ``(typed list, state)`` (``policy_calls.call_replay``),
    #: None when none is
    replay_kernel: Any
    #: the compiled fault loop (engine/fault_loop.py) may run with these hooks: nothing is
    #: decided per page or per block, and no policy reads the run's future
    loop_ok: bool
    #: a Python hook is live: the compiled fault loop hands every batch to ``after_batch``;
    #: without one it calls the compiled kernels itself
    python_hooks: bool
    #: a Python batch hook is live: the compiled fault loop hands every batch to
    #: ``begin_batch`` too (without one, ``note_batch`` or ``adopt_batch`` tells the hooks
    #: the batch's blocks at its first stop)
    begin_hooks: bool

    def kernel_failed(self, which: int, error: BaseException | None, value: int | None = None) -> None:
        """Compiled kernel ``which`` (``policy_calls.PREFETCH`` ...) raised ``error``, or
        returned what its point does not allow (``error`` None: ``status[BAD]`` says what, or
        ``value`` for the replay kernel)."""
        ...

    def adopt_batch(
        self,
        drv: Any,
        gpu: int,
        blocks: np.ndarray,
        prefetch: tuple[np.ndarray, np.ndarray] | None,
        kinds: tuple[np.ndarray, np.ndarray] | None,
    ) -> BatchDecisions | None:
        """The compiled kernels' decisions for a batch the compiled loop hands back part-way:
        ``prefetch`` (rows, the blocks they decide) and ``kinds`` (the blocks sent to the
        reference path, hint kinds), as ``begin_batch`` would have taken them."""
        ...

    def note_batch(self, drv: Any, gpu: int, blocks: np.ndarray) -> None:
        """A batch the compiled loop services with no batch decision from Python (no batch
        hook live, no kernel decided): its blocks, as ``begin_batch`` would have taken them."""
        ...

    def begin_batch(
        self,
        drv: Any,
        gpu: int,
        blocks: np.ndarray,
        page: np.ndarray,
        access: np.ndarray,
        keep: np.ndarray,
        starts: np.ndarray,
    ) -> BatchDecisions | None:
        """A fault batch of ``gpu`` (sorted ``page`` / ``access``, ``keep``: not a duplicate) is
        about to be serviced, block ``blocks[i]`` from entry ``starts[i]``. None: nothing decided."""
        ...

    def prefetch_hint(
        self,
        drv: Any,
        block: int,
        dest: int,
        faulted: np.ndarray,
        resident: np.ndarray,
        thrashing: np.ndarray,
        cpu_readable: np.ndarray | None,
    ) -> np.ndarray | None:
        """The pages of ``block`` to prefetch to ``dest`` with the ``faulted`` ones (a mask);
        None: the driver's own hint."""
        ...

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
        """The thrashing hint (NONE / THROTTLE / PIN) of each faulted page; ``hints`` are the
        driver's own."""
        ...

    def chunk_activate(self, drv: Any, gpu: int, block: int, chunk: int) -> None:
        """Root chunk ``chunk`` of ``gpu`` was allocated to ``block``."""
        ...

    def chunk_used(self, drv: Any, gpu: int, block: int, chunk: int, fresh: bool) -> None:
        """``block``'s chunk was used by a fault service (``fresh``: just allocated)."""
        ...

    def eviction_prepare(self, drv: Any, gpu: int) -> None:
        """``gpu`` is about to evict: a policy may reorder the eviction list now."""
        ...

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
        """After a serviced fault batch: 1 replay now, 0 the driver's replay policy, -1 defer."""
        ...
