"""Borrowed views of the compiled path's state: arrays without a reference count.

numba takes and drops a reference (an atomic add on the array's meminfo) for every array it
binds, and an inlined helper binds every array of every named tuple it receives: about a
hundred atomic operations per fault, half the CPU fault path's time. A view made by
``carray`` from the data pointer has no meminfo, so binding it costs a null check. The views
are only valid while the caller holds the arrays, which is the whole of one compiled call: the
loops borrow their state on entry and never return or store the views.
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit, types
from numba.extending import intrinsic

from uvmlab.driver.compiled.state import Scratch, ThrashingState, VaArrays
from uvmlab.driver.pmm_lists import PmmArrays


@intrinsic
def _data(typingctx, arr):  # noqa: ARG001 (numba's intrinsic signature)
    """The array's data pointer, typed by its dtype."""
    sig = types.CPointer(arr.dtype)(arr)

    def codegen(context, builder, signature, args):
        return context.make_array(signature.args[0])(context, builder, args[0]).data

    return sig, codegen


@njit(cache=True, inline="always")
def view(a: np.ndarray) -> np.ndarray:
    """``a`` without a reference count; ``a`` must be C-contiguous (all of the driver's are)."""
    if not a.flags.c_contiguous:
        raise ValueError("a borrowed view needs a C-contiguous array")
    return carray(_data(a), a.shape)


@njit(cache=True, inline="always")
def borrow_va(va: VaArrays) -> VaArrays:
    return VaArrays(
        view(va.residency),
        view(va.perm),
        view(va.preferred),
        view(va.accessed_by),
        view(va.read_dup),
        view(va.block_alloc),
        view(va.block_pages),
        view(va.alloc_live),
        view(va.alloc_kind),
        view(va.gpu_chunk),
        view(va.prefetch_last_proc),
        view(va.prefetch_fault_migrations),
        view(va.block_advised),
    )


@njit(cache=True, inline="always")
def borrow_pmm(pmm: PmmArrays) -> PmmArrays:
    return PmmArrays(
        view(pmm.state),
        view(pmm.owner),
        view(pmm.list_of),
        view(pmm.prev),
        view(pmm.nxt),
        view(pmm.list_count),
    )


@njit(cache=True, inline="always")
def borrow_th(th: ThrashingState) -> ThrashingState:
    return ThrashingState(
        th.enable, th.lapse_ns, view(th.block_last_ts), view(th.block_last_proc), view(th.block_has_pages)
    )


@njit(cache=True, inline="always")
def borrow_sc(sc: Scratch) -> Scratch:
    return Scratch(
        view(sc.fpages),
        view(sc.pages),
        view(sc.extra),
        view(sc.need_copy),
        view(sc.words),
    )
