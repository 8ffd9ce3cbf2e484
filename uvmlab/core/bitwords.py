"""Page bitmaps as uint64 words, for compiled code: bit ``i & 63`` of word ``i >> 6`` is page ``i``.

A VA block's 512 pages are 8 words, so a count over any range of pages is a few hardware
popcounts instead of a loop over pages, and a walk over the set pages costs one step per set
page (count trailing zeros). The bit operations are LLVM's (``ctpop``, ``cttz``), one
instruction each on x86-64.

numba types ``uint64 & int`` and ``uint64 + int`` as int64 (or float64), so every constant that
meets a word here is a ``np.uint64``; shifts keep the word's type.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = [
    "ZERO",
    "ONE",
    "ALL",
    "popcount",
    "trailing_zeros",
    "range_bits",
    "set_range",
    "count_range",
    "gather_bit",
    "gather_nonzero",
]

ZERO = np.uint64(0)
ONE = np.uint64(1)
ALL = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


@intrinsic
def popcount(typingctx: Any, x: Any) -> Any:  # noqa: ARG001 (numba's intrinsic signature)
    """The number of set bits of an integer (LLVM ``ctpop``)."""
    if not isinstance(x, types.Integer):
        return None
    sig = x(x)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@intrinsic
def trailing_zeros(typingctx: Any, x: Any) -> Any:  # noqa: ARG001 (numba's intrinsic signature)
    """The index of the lowest set bit of an integer (LLVM ``cttz``); its width when it is 0."""
    if not isinstance(x, types.Integer):
        return None
    sig = x(x)

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))

    return sig, codegen


@intrinsic
def _load8(typingctx, arr, i):  # noqa: ARG001 (numba's intrinsic signature)
    """Bytes ``[i, i + 8)`` of a C-contiguous uint8 array (flat index) as one little-endian
    word: one unaligned load. The caller keeps ``i + 8`` inside the array."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.uint8 and isinstance(i, types.Integer)):
        return None
    sig = types.uint64(arr, i)

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        ptr = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(64).as_pointer())
        return builder.load(ptr, align=1)

    return sig, codegen


_LOW_BITS = np.uint64(0x0101_0101_0101_0101)  # bit 0 of every byte
_LOW7 = np.uint64(0x7F7F_7F7F_7F7F_7F7F)
# Multiplying bit 0 of bytes 0..7 by this puts byte j's bit at bit 56 + j, with no carries (the
# partial products land on distinct bits): the top byte is the 8 bits packed.
_PACK = np.uint64(0x0102_0408_1020_4080)
_S56 = np.uint64(56)


@njit(cache=True, inline="always")
def _pack_bytes(x: np.uint64) -> np.uint64:
    """Bit 0 of each byte of ``x`` (the others clear), packed into 8 bits."""
    return (x * _PACK) >> _S56


@njit(cache=True, inline="always")
def gather_bit(arr: np.ndarray, start: int, count: int, bit: int) -> np.uint64:
    """Bit ``bit`` of each of the uint8 ``arr[start : start + count]`` (flat index, ``count`` <= 64),
    packed: bit ``i`` of the result is element ``start + i``'s. Eight elements per load."""
    acc = ZERO
    whole = count & ~7
    b = np.uint64(bit)
    for q in range(0, whole, 8):
        acc |= _pack_bytes((_load8(arr, start + q) >> b) & _LOW_BITS) << np.uint64(q)
    for q in range(whole, count):
        acc |= np.uint64((arr.flat[start + q] >> bit) & 1) << np.uint64(q)
    return acc


@njit(cache=True, inline="always")
def gather_nonzero(arr: np.ndarray, start: int, count: int) -> np.uint64:
    """Whether each of the uint8 ``arr[start : start + count]`` (flat index, ``count`` <= 64) is not
    0, packed as :func:`gather_bit` does."""
    acc = ZERO
    whole = count & ~7
    for q in range(0, whole, 8):
        x = _load8(arr, start + q)
        nz = (((x & _LOW7) + _LOW7) | x) >> np.uint64(7)  # bit 7 of a byte: it is not 0
        acc |= _pack_bytes(nz & _LOW_BITS) << np.uint64(q)
    for q in range(whole, count):
        if arr.flat[start + q] != 0:
            acc |= ONE << np.uint64(q)
    return acc


@njit(cache=True, inline="always")
def range_bits(w: int, a: int, b: int) -> np.uint64:
    """The bits of word ``w`` that stand for pages ``[a, b)``."""
    lo = max(a - 64 * w, 0)
    hi = min(b - 64 * w, 64)
    if hi <= lo:
        return ZERO
    return (ALL >> np.uint64(64 - (hi - lo))) << np.uint64(lo)


@njit(cache=True, inline="always")
def set_range(words: np.ndarray, a: int, b: int) -> None:
    """Set pages ``[a, b)`` (nothing when ``b <= a``)."""
    for w in range(a >> 6, (b + 63) >> 6):
        words[w] |= range_bits(w, a, b)


@njit(cache=True, inline="always")
def count_range(words: np.ndarray, a: int, b: int) -> int:
    """The number of set pages in ``[a, b)``."""
    c = 0
    for w in range(a >> 6, (b + 63) >> 6):
        c += int(popcount(words[w] & range_bits(w, a, b)))
    return c
