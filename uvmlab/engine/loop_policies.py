"""A policy's compiled kernels as the compiled fault loop calls them (engine/fault_loop.py).

``hk`` is ``kernel_loop.KernelLoop``'s bundle of the live kernels — typed lists of first-class
functions (``driver/compiled/policy_calls.py``), the kernels' states, the status words and the
kernels' output rows — or None when the run has none. Each helper here is compiled for both:
with None it is nothing at all, so a run without a policy runs the loop it ran before policies
could (no function pointer, no typed list to build: numba compiles the typed lists' own code
in every process, ~2 s).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import types
from numba.extending import overload

from uvmlab.core.sizes import BLOCK_SHIFT
from uvmlab.driver.compiled.policy_calls import BAD, PREFETCH, REPLAY, THRASHING, call_replay, decide_batch
from uvmlab.engine.loop_layout import D_PYTHON

# hk's fields
(
    H_PREFETCH,
    H_THRASHING,
    H_VICTIM,
    H_REPLAY,
    H_ON,
    H_S_PREFETCH,
    H_S_THRASHING,
    H_S_VICTIM,
    H_S_REPLAY,
    H_STATUS,
    H_VSTATUS,
    H_ROWS,
) = range(12)
BAD_CALL = -2  # decide / replay: the kernel returned garbage (status[BAD]); Python ejects it


def _compiled_only(*args: Any) -> Any:
    raise NotImplementedError("compiled code only")


def decide(hk: Any, gpu: int, now: int, nb: int, sp: Any, sa: Any, keep: Any, starts: Any, va: Any) -> int:
    """The prefetch and thrashing kernels on a sorted batch (``policy_calls.decide_batch``):
    which decided (bits PREFETCH, THRASHING; rows in ``hk[H_ROWS]``), or BAD_CALL."""
    return _compiled_only()


@overload(decide)
def _decide(hk, gpu, now, nb, sp, sa, keep, starts, va):  # noqa: ANN001, ANN202
    if isinstance(hk, types.NoneType):
        return lambda hk, gpu, now, nb, sp, sa, keep, starts, va: 0

    def impl(hk, gpu, now, nb, sp, sa, keep, starts, va):  # noqa: ANN001, ANN202
        on = hk[H_ON]
        if not (on[PREFETCH] or on[THRASHING]):
            return 0
        blocks = np.empty(nb, np.int64)
        for i in range(nb):
            blocks[i] = sp[starts[i]] >> BLOCK_SHIFT
        rows = hk[H_ROWS]
        bits = decide_batch(
            hk[H_PREFETCH],
            hk[H_THRASHING],
            on,
            hk[H_S_PREFETCH],
            hk[H_S_THRASHING],
            hk[H_STATUS],
            gpu,
            now,
            blocks,
            sp,
            sa,
            keep,
            va.perm[gpu],
            va.block_pages,
            va.block_alloc,
            rows[0],
            rows[1],
            rows[2],
            rows[3],
        )
        if hk[H_STATUS][BAD] >= 0:
            return BAD_CALL
        return bits

    return impl


def rows(hk: Any, bits: int, nb: int, pf_mask: Any, pf_set: Any, reference: Any) -> tuple:
    """The batch's decision rows for the block service: the kernels' (``bits``), the
    ``decided`` ones Python passed (D_PYTHON), or none (empty)."""
    return _compiled_only()


@overload(rows)
def _rows(hk, bits, nb, pf_mask, pf_set, reference):  # noqa: ANN001, ANN202
    if isinstance(hk, types.NoneType):

        def none(hk, bits, nb, pf_mask, pf_set, reference):  # noqa: ANN001, ANN202
            if bits & D_PYTHON:
                return pf_mask, pf_set, reference
            return pf_mask, pf_set[:0], reference[:0]

        return none

    def impl(hk, bits, nb, pf_mask, pf_set, reference):  # noqa: ANN001, ANN202
        out = hk[H_ROWS]
        if bits & (1 << PREFETCH):
            pf_mask, pf_set = out[0][:nb], out[1][:nb]
        elif not bits & D_PYTHON:
            pf_set = pf_set[:0]
        if bits & (1 << THRASHING):
            reference = out[2][:nb]
        elif not bits & D_PYTHON:
            reference = reference[:0]
        return pf_mask, pf_set, reference

    return impl


def victim(hk: Any) -> tuple:
    """The victim kernel, its state and status word for ``gpu_faults.service_blocks``."""
    return _compiled_only()


@overload(victim)
def _victim(hk):  # noqa: ANN001, ANN202
    if isinstance(hk, types.NoneType):
        return lambda hk: (None, None, None)
    return lambda hk: (hk[H_VICTIM], hk[H_S_VICTIM], hk[H_VSTATUS])


def victim_bad(hk: Any) -> bool:
    """The victim kernel returned garbage during the service (Python ejects it)."""
    return _compiled_only()


@overload(victim_bad)
def _victim_bad(hk):  # noqa: ANN001, ANN202
    if isinstance(hk, types.NoneType):
        return lambda hk: False
    return lambda hk: hk[H_VSTATUS][BAD] >= 0


def replay(  # noqa: PLR0913 (the kernel's arguments)
    hk: Any,
    gpu: int,
    batch: int,
    faults: int,
    unique: int,
    duplicates: int,
    throttled: int,
    pending: int,
    policy: int,
    replays: int,
    now: int,
) -> int:
    """The replay kernel's decision after a batch (0 without one), or BAD_CALL."""
    return _compiled_only()


@overload(replay)
def _replay(hk, gpu, batch, faults, unique, duplicates, throttled, pending, policy, replays, now):  # noqa: ANN001, ANN202, PLR0913
    if isinstance(hk, types.NoneType):
        return lambda hk, gpu, batch, faults, unique, duplicates, throttled, pending, policy, replays, now: 0

    def impl(hk, gpu, batch, faults, unique, duplicates, throttled, pending, policy, replays, now):  # noqa: ANN001, ANN202, PLR0913
        if not hk[H_ON][REPLAY]:
            return 0
        st = hk[H_STATUS]
        r = call_replay(
            hk[H_REPLAY], hk[H_S_REPLAY], st, gpu, batch, faults, unique, duplicates, throttled, pending,
            policy, replays, now,
        )  # fmt: skip
        if st[BAD] >= 0:
            return BAD_CALL
        return r

    return impl
