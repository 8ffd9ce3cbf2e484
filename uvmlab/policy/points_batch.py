"""The batch-level decision points: a fault batch's VA blocks, all at once, before any is serviced
(``service_fault_batch``, uvm_gpu_replayable_faults.c), and the root chunks they used, once
it is serviced. Part of ``Guard``.

``prefetch_batch`` and ``thrashing_batch`` see every block of the batch as rows of numpy arrays
and decide for all of them in one call, so the compiled fault path applies their decisions
without leaving compiled code: a prefetch row replaces the block's prefetch hint where the
compiled code would compute it; a thrashing row sends its block to the reference path, where
the hints are taken. The reference path applies the same rows at the same points
(``prefetch_hint``, ``thrashing_hints``), so both paths give the same answer.
``chunk_used_batch`` sees the chunks backing the batch's blocks after the service (the same on
both paths) and reorders the eviction lists, where the per-use ``chunk_used`` would stop the
compiled path at every block.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from uvmlab.core.sizes import PAGES_PER_BLOCK
from uvmlab.driver.compiled.policy_calls import BAD, CALLING, PREFETCH, THRASHING, batch_rows, decide_batch
from uvmlab.driver.hooks import BatchDecisions
from uvmlab.driver.perf import prefetch as pf
from uvmlab.policy import base, decisions
from uvmlab.policy.context import _ListRequests, _Requests, _set


class BatchContext(_Requests):
    """``prefetch_batch`` / ``thrashing_batch``: the VA blocks of one fault batch of GPU ``gpu``.

    Row ``i`` of every array is block ``blocks[i]`` (ascending); columns are block-local pages
    (``PAGES_PER_BLOCK`` of them, those past ``n_pages[i]`` are always False). ``faulted``: the
    pages the batch faults on that still need service (duplicates merged, faults already
    authorized dropped). ``faulted``, ``n_pages`` and ``alloc`` (each block's allocation index,
    ``RunInfo.allocs``) are made together when one is first read, once for the batch's hooks;
    ``resident`` (on the GPU) and ``thrashing`` (pages the detector flags) at every read."""

    __slots__ = ("gpu", "blocks", "now_ns", "_drv_view", "_make_rows", "_rows")
    gpu: int
    blocks: np.ndarray
    now_ns: int
    _drv_view: Any
    _make_rows: Any
    _rows: tuple[np.ndarray, np.ndarray, np.ndarray] | None

    def __init__(
        self,
        req: list,
        view: Any,
        *,
        gpu: int,
        blocks: np.ndarray,
        rows: Any,
        now_ns: int,
    ) -> None:
        """``rows()``: (faulted, n_pages, alloc), fresh arrays (``policy_calls.batch_rows``)."""
        _set(self, "_req", req)
        _set(self, "_drv_view", view)
        _set(self, "_make_rows", rows)
        _set(self, "_rows", None)
        _set(self, "gpu", gpu)
        _set(self, "blocks", blocks)
        _set(self, "now_ns", now_ns)

    def _got(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        got = self._rows
        if got is None:  # made on the first read (what the batch's service left is the same
            # through both hooks: their requests move chunks and queue migrations, no more)
            faulted, n_pages, alloc = self._make_rows()
            got = (_ro(faulted), _ro(n_pages), _ro(alloc))
            _set(self, "_rows", got)
        return got

    @property
    def faulted(self) -> np.ndarray:
        """The batch's faulted pages that still need service, bool ``[blocks, PAGES_PER_BLOCK]``."""
        return self._got()[0]

    @property
    def n_pages(self) -> np.ndarray:
        """Each block's pages."""
        return self._got()[1]

    @property
    def alloc(self) -> np.ndarray:
        """Each block's allocation index (``RunInfo.allocs``)."""
        return self._got()[2]

    @property
    def block_first_page(self) -> np.ndarray:
        """Each block's first page, as a global page number."""
        return _ro(self.blocks * PAGES_PER_BLOCK)

    @property
    def resident(self) -> np.ndarray:
        """Pages resident on ``gpu``, bool ``[blocks, PAGES_PER_BLOCK]``."""
        return self._drv_view("resident", self.blocks, self.gpu)

    @property
    def thrashing(self) -> np.ndarray:
        """Pages the thrashing detector flags, bool ``[blocks, PAGES_PER_BLOCK]``."""
        return self._drv_view("thrashing", self.blocks, self.gpu)


class ChunkBatchContext(_ListRequests):
    """``chunk_used_batch``: a fault batch of GPU ``gpu`` was serviced; ``chunks`` back its
    VA blocks ``blocks`` (block order, blocks with no chunk left out). The driver has already
    moved each chunk the service used to the tail of va_block_used (its LRU); the hook may
    reorder with ``move_head`` / ``move_tail``. ``used`` / ``unused``: the lists, head first.
    ``alloc`` (each block's allocation index) is computed when first read."""

    __slots__ = ("gpu", "chunks", "blocks", "now_ns", "_view")

    chunks: np.ndarray
    blocks: np.ndarray
    now_ns: int

    def __init__(
        self,
        req: list,
        view: Any,
        *,
        gpu: int,
        chunks: np.ndarray,
        blocks: np.ndarray,
        now_ns: int,
    ) -> None:
        _set(self, "_req", req)
        _set(self, "_view", view)
        _set(self, "gpu", gpu)
        _set(self, "chunks", chunks)
        _set(self, "blocks", blocks)
        _set(self, "now_ns", now_ns)

    @property
    def alloc(self) -> np.ndarray:
        """Each block's allocation index (``RunInfo.allocs``), int64."""
        return _ro(self._view.alloc_index(self.blocks).astype(np.int64))


def _ro(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _batch_view(drv: Any) -> Any:
    """The context's on-demand answers: fresh read-only arrays, no path to the driver."""
    va, th = drv.va, drv.thrashing
    cols = np.arange(PAGES_PER_BLOCK)

    def answer(what: str, blocks: np.ndarray, gpu: int) -> np.ndarray:
        n = va.block_pages[blocks]
        inside = cols[None, :] < n[:, None]
        if what == "resident":
            idx = np.minimum(blocks[:, None] * PAGES_PER_BLOCK + cols[None, :], len(va.residency) - 1)
            out = ((va.residency[idx] >> gpu) & 1).astype(bool) & inside
        else:
            out = np.zeros((len(blocks), PAGES_PER_BLOCK), dtype=bool)
            for i, b in enumerate(blocks.tolist()):
                if th.tracks_pages(b):
                    m = th.thrashing_mask(b)[: int(n[i])]
                    out[i, : len(m)] = m
        return _ro(out)

    return answer


class BatchPoints:
    """``begin_batch``, and the rows it leaves for ``prefetch_hint`` and ``thrashing_hints``."""

    def _reset_batch(self: Any) -> None:
        self._batch_gpu = -1
        self._batch_blocks: np.ndarray | None = None
        self._pf_rows: dict[int, np.ndarray] | None = None
        self._th_rows: dict[int, np.ndarray] | None = None
        self._th_slot: Any = None
        self._bview: Any = None  # the batch contexts' on-demand answers (_batch_view)
        self._kbuf: tuple[np.ndarray, ...] | None = None  # the batch kernels' output buffers

    def begin_batch(
        self: Any,
        drv: Any,
        gpu: int,
        blocks: np.ndarray,
        page: np.ndarray,
        access: np.ndarray,
        keep: np.ndarray,
        starts: np.ndarray,
    ) -> BatchDecisions | None:
        self.note_batch(drv, gpu, blocks)
        want_pf = "prefetch_batch" in self._by_hook
        want_th = "thrashing_batch" in self._by_hook
        k_batch = self._k_batch
        if not (want_pf or want_th or k_batch):
            return None
        va = drv.va
        nb = len(blocks)
        pf_mask = pf_set = reference = kinds = None
        th_slot = None
        if k_batch:  # compiled kernels: one compiled call decides for both (policy_calls)
            pf_mask, pf_set, reference, kinds = self._kernel_batch(gpu, blocks, page, access, keep)
            th_slot = self._kernel_slot.get("thrashing_kernel")
        if want_pf or want_th:
            if self._bview is None:
                self._bview = _batch_view(drv)
            req: list = []
            ctx = BatchContext(
                req,
                self._bview,
                gpu=gpu,
                blocks=_ro(blocks.copy()),  # (blocks itself stays writeable: batch_rows' type)
                rows=lambda: batch_rows(
                    page, access, keep, va.perm[gpu], blocks, va.block_pages, va.block_alloc
                ),
                now_ns=int(drv.now_ns),
            )
        if want_pf:
            got = self._call("prefetch_batch", ctx, req)
            if got is not None:
                slot, d, checked = got
                try:
                    if d is not None:
                        pf_mask, pf_set = decisions.as_block_mask(d, nb, PAGES_PER_BLOCK)
                except decisions.Bad as e:
                    self._eject(slot, "prefetch_batch", str(e))
                else:
                    self._apply(checked, gpu)
        if want_th:
            got = self._call("thrashing_batch", ctx, req)
            if got is not None:
                slot, d, checked = got
                try:
                    kinds = None if d is None else decisions.as_block_kinds(d, nb, PAGES_PER_BLOCK)
                except decisions.Bad as e:
                    self._eject(slot, "thrashing_batch", str(e))
                else:
                    self._apply(checked, gpu)
                    th_slot = slot
                    if kinds is not None:
                        reference = ((kinds != base.KEEP) & ctx.faulted).any(axis=1)
        return self._install(blocks, pf_mask, pf_set, reference, kinds, th_slot)

    def note_batch(self: Any, drv: Any, gpu: int, blocks: np.ndarray) -> None:
        """The batch about to be serviced (its blocks, ascending), with no batch decision
        yet: what ``begin_batch`` does where it calls no hook and no kernel (the compiled
        fault loop calls this in its place where no batch hook is live)."""
        if self.drv is not drv:
            self._attach_driver(drv)
        self._batch_gpu, self._batch_blocks = gpu, blocks
        self._pf_rows = self._th_rows = None

    def adopt_batch(
        self: Any,
        drv: Any,
        gpu: int,
        blocks: np.ndarray,
        prefetch: tuple[np.ndarray, np.ndarray] | None,
        kinds: tuple[np.ndarray, np.ndarray] | None,
    ) -> BatchDecisions | None:
        """The compiled kernels' decisions the compiled fault loop took for this batch
        (``decide_batch``), taken as ``begin_batch`` takes ``_kernel_batch``'s."""
        self._batch_gpu, self._batch_blocks = gpu, blocks
        self._pf_rows = self._th_rows = None
        pf_mask, pf_set = prefetch if prefetch is not None else (None, None)
        reference, kind_rows = kinds if kinds is not None else (None, None)
        th_slot = self._kernel_slot.get("thrashing_kernel")
        return self._install(blocks, pf_mask, pf_set, reference, kind_rows, th_slot)

    def _install(
        self: Any,
        blocks: np.ndarray,
        pf_mask: np.ndarray | None,
        pf_set: np.ndarray | None,
        reference: np.ndarray | None,
        kinds: np.ndarray | None,
        th_slot: Any,
    ) -> BatchDecisions | None:
        """Keep the batch's rows for the reference path (``prefetch_hint``,
        ``thrashing_hints``) and return them for the compiled one."""
        if kinds is not None and reference is not None:
            self._th_rows = {int(blocks[i]): kinds[i] for i in np.flatnonzero(reference).tolist()}
            self._th_slot = th_slot
            if not self._th_rows:
                reference = None
        if pf_mask is not None and pf_set is not None and pf_set.any():
            self._pf_rows = {int(blocks[i]): pf_mask[i] for i in np.flatnonzero(pf_set).tolist()}
        else:
            pf_mask = pf_set = None
        if pf_mask is None and reference is None:
            return None
        none = np.zeros(0, dtype=bool)
        return BatchDecisions(
            pf_mask if pf_mask is not None else np.zeros((1, PAGES_PER_BLOCK), dtype=bool),
            pf_set if pf_set is not None else none,
            reference if reference is not None else none,
        )

    def _kernel_batch(
        self: Any, gpu: int, blocks: np.ndarray, page: np.ndarray, access: np.ndarray, keep: np.ndarray
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """The compiled prefetch / thrashing kernels' decisions for this batch: (prefetch rows,
        the blocks they decide, the blocks a thrashing decision sends to the reference path,
        hint kinds), None where a kernel decided nothing. A kernel that raises or returns what
        its point does not allow is ejected, its decision dropped."""
        kern = self.kernels
        va = self.drv.va
        nb = len(blocks)
        buf = self._kbuf
        if buf is None or len(buf[1]) < nb:  # decide_batch's output buffers, grown as needed
            cap = max(64, 2 * nb)
            buf = self._kbuf = (
                np.zeros((cap, PAGES_PER_BLOCK), np.bool_),
                np.zeros(cap, np.bool_),
                np.zeros(cap, np.bool_),
                np.zeros((cap, PAGES_PER_BLOCK), np.int8),
            )
        try:
            done = decide_batch(
                kern.prefetch,
                kern.thrashing,
                kern.on,
                kern.state_prefetch,
                kern.state_thrashing,
                kern.status,
                gpu,
                int(self.drv.now_ns),
                blocks,
                page,
                access,
                keep,
                va.perm[gpu],
                va.block_pages,
                va.block_alloc,
                *buf,
            )
        except Exception as e:  # noqa: BLE001 - a kernel's own exception (status[CALLING])
            which = int(kern.status[CALLING])
            if which < 0:
                raise
            self.kernel_failed(which, e)
            return None, None, None, None  # this batch keeps the driver's hints
        if kern.status[BAD] >= 0:
            self.kernel_failed(int(kern.status[BAD]), None)
            return None, None, None, None
        if not done:
            return None, None, None, None
        # views of the buffers: the rows serve this batch only (begin_batch drops them)
        pf = done >> PREFETCH & 1
        th = done >> THRASHING & 1
        return (
            buf[0][:nb] if pf else None,
            buf[1][:nb] if pf else None,
            buf[2][:nb] if th else None,
            buf[3][:nb] if th else None,
        )

    def _drop_batch(self: Any) -> None:
        """The batch is serviced and no Python hook needs its chunks: its rows apply no more."""
        self._pf_rows = self._th_rows = None
        self._batch_blocks = None

    def _end_batch(self: Any) -> None:
        """The batch is serviced: its rows apply no more; its chunks were just used by the
        fault service (``_recent``: what warps waiting for the replay need); then
        ``chunk_used_batch``."""
        self._pf_rows = self._th_rows = None
        blocks, gpu = self._batch_blocks, self._batch_gpu
        self._batch_blocks = None
        if blocks is None or gpu <= 0:
            return
        ch = self.drv.va.gpu_chunk[gpu - 1].take(blocks)  # int64, as gpu_chunk; a copy
        has = ch >= 0
        used = ch[has]  # a copy: kept here, and the context's chunks
        self._recent_batches.append(used)
        if "chunk_used_batch" not in self._by_hook or not len(used):
            return
        req: list = []
        ctx = ChunkBatchContext(
            req,
            self.view,
            gpu=gpu,
            chunks=_ro(used.astype(np.int64, copy=False)),
            blocks=_ro(blocks[has].astype(np.int64, copy=False)),  # a copy (has: a mask)
            now_ns=int(self.drv.now_ns),
        )
        got = self._call("chunk_used_batch", ctx, req)
        if got is None:
            return
        slot, d, checked = got
        if d is not None:
            self._eject(
                slot, "chunk_used_batch", f"returned {decisions.short(d)}: chunk_used_batch returns None"
            )
            return
        self._apply(checked, gpu)

    def _batch_prefetch(
        self: Any, drv: Any, block: int, dest: int, faulted: np.ndarray, thrashing: np.ndarray
    ) -> np.ndarray | None:
        """A ``prefetch_batch`` row for this block of the batch being serviced, applied as the
        compiled path applies it (compiled.prefetch): faulted and thrashing pages out, the
        min_faults rule kept. None: no row, the driver's own hint."""
        rows = self._pf_rows
        if rows is None or dest != self._batch_gpu:
            return None
        row = rows.get(block)
        if row is None:
            return None
        n = len(faulted)
        pp = drv.prefetch_params
        if not pp.enable:
            return np.zeros(n, dtype=bool)
        va = drv.va
        count = pf.update_prefetch_info(
            va.prefetch_last_proc, va.prefetch_fault_migrations, block, dest, int(np.count_nonzero(faulted))
        )
        if not pf.hint_allowed(count, pp.min_faults):
            return np.zeros(n, dtype=bool)
        return row[:n] & ~faulted & ~thrashing

    def _batch_kinds(self: Any, block: int, requester: int, local: np.ndarray) -> np.ndarray | None:
        """A ``thrashing_batch`` row's kinds for these faulted pages, or None."""
        rows = self._th_rows
        if rows is None or requester != self._batch_gpu:
            return None
        row = rows.get(block)
        return None if row is None else row[local].astype(np.int64)
