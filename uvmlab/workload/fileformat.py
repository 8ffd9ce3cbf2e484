"""The ``.uvmw`` file format: a Workload on disk (schema in docs/trace-format.md).

Layout, every integer little-endian::

    offset 0     8 bytes   magic b"UVMLABW\\0"
           8     u32       format version (FORMAT_VERSION)
           12    u64       header length H
           20    H bytes   UTF-8 JSON header, space-padded so the data section is 8-byte aligned
           20+H  ...       array blobs; header["arrays"][name]["offset"] counts from here
           end-4 u32       CRC32 of every byte before it

Reading treats the file as hostile: every length, offset, dtype and type is checked against the
file's real size and an allowlist *before* anything is allocated from it, and every failure is
a one-line ``TraceFileError`` naming the file (the checks are in ``fileformat_checks.py``). Only
then is the IR rebuilt and validated.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import stat
import struct
import zlib
from collections.abc import Iterator
from typing import Any, NoReturn

import numpy as np

from uvmlab.core.errors import TraceFileError, UvmlabError, WorkloadError
from uvmlab.core.output import write_atomic
from uvmlab.workload.fileformat_checks import (
    ARRAYS,
    Fail,
    check_bounded,
    check_header,
    parse_header,
    read_arrays,
)
from uvmlab.workload.ir import SEGMENT_DTYPE, Advice, Alloc, AllocKind, Op, Workload

EXTENSION = ".uvmw"
MAGIC = b"UVMLABW\0"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 64 << 20

_PRELUDE = struct.Struct("<8sIQ")  # magic, format version, header length
_TRAILER = struct.Struct("<I")  # CRC32
_CHUNK = 16 << 20  # read/write/CRC granularity: bounds memory on multi-GB files
_ALIGN = 8


# --- writing -----------------------------------------------------------------------------------


def write_workload(w: Workload, path: str | os.PathLike[str]) -> None:
    """Write ``w`` to ``path`` atomically: a crash leaves the old file or the new one, never half.

    The workload is validated first, so a file this writes always reads back (``Workload``
    equality holds after ``read_workload``).
    """
    p = os.fspath(path)
    w.validate()
    header, blobs = _encode(w)

    def chunks() -> Iterator[bytes]:
        crc = 0
        for chunk in _file_chunks(header, blobs):
            crc = zlib.crc32(chunk, crc)
            yield chunk
        yield _TRAILER.pack(crc)

    try:
        write_atomic(p, chunks(), what="workload file", parents=False)
    except UvmlabError as e:
        raise TraceFileError(str(e)) from None


def _encode(w: Workload) -> tuple[bytes, list[tuple[int, np.ndarray]]]:
    """The padded JSON header and (offset, byte view) of each array blob."""
    params = _json_roundtrip(w.params)
    if params != w.params:
        raise WorkloadError(
            f"workload {w.name!r}: params must be plain JSON values (str keys; "
            "str, int, float, bool, None, lists, dicts) to be saved"
        )
    arrays = {
        "segments": np.ascontiguousarray(w.segments, dtype=SEGMENT_DTYPE),
        "pool": np.ascontiguousarray(w.pool, dtype="<u4"),
    }
    table: dict[str, dict[str, Any]] = {}
    blobs: list[tuple[int, np.ndarray]] = []
    offset = 0
    for name, arr in arrays.items():
        table[name] = {
            "dtype": ARRAYS[name][0],
            "shape": list(arr.shape),
            "offset": offset,
            "nbytes": arr.nbytes,
        }
        blobs.append((offset, arr.reshape(-1).view(np.uint8)))
        offset = _aligned(offset + arr.nbytes)
    header = {
        "format": "uvmlab-workload",
        "name": w.name,
        "seed": w.seed,
        "version": w.version,
        "params": w.params,
        "allocs": [_alloc_to_json(a) for a in w.allocs],
        "ops": [_op_to_json(op) for op in w.ops],
        "arrays": table,
    }
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    pad = (-(_PRELUDE.size + len(text))) % _ALIGN  # JSON ignores trailing whitespace
    return text + b" " * pad, blobs


def _file_chunks(header: bytes, blobs: list[tuple[int, np.ndarray]]) -> Iterator[bytes]:
    yield _PRELUDE.pack(MAGIC, FORMAT_VERSION, len(header))
    yield header
    pos = 0
    for offset, data in blobs:
        if offset > pos:
            yield bytes(offset - pos)
        for lo in range(0, len(data), _CHUNK):
            yield data[lo : lo + _CHUNK].tobytes()
        pos = offset + len(data)


def _alloc_to_json(a: Alloc) -> list[Any]:
    """``[name, bytes, kind]``; a file allocation (IR version 2) adds its page-cache state."""
    out: list[Any] = [a.name, a.bytes, a.kind.name.lower()]
    if a.kind == AllocKind.FILE:
        out.append({"cached_pages": a.cached_pages, "dirty_pages": a.dirty_pages})
    return out


def _op_to_json(op: Op) -> dict[str, Any]:
    d: dict[str, Any] = {"op": op.op}
    for f in dataclasses.fields(op):
        if f.init:
            v = getattr(op, f.name)
            d[f.name] = v.name.lower() if isinstance(v, Advice) else v
    return d


# --- reading -----------------------------------------------------------------------------------


def read_workload(path: str | os.PathLike[str]) -> Workload:
    """Read and fully validate a ``.uvmw`` file; any problem raises a one-line TraceFileError."""
    return _read(os.fspath(path))[0]


def validate_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check a ``.uvmw`` file as ``read_workload`` does and summarise it.

    Returns ``name, version`` (file format), ``ir_version, seed, allocations, ops, kernels,
    touches, segments, pool, alloc_bytes, managed_bytes, file_bytes``.
    """
    w, version, file_bytes = _read(os.fspath(path))
    return {
        "path": os.fspath(path),
        "name": w.name,
        "version": version,
        "ir_version": w.version,
        "seed": w.seed,
        "allocations": len(w.allocs),
        "ops": len(w.ops),
        "kernels": sum(op.op == "kernel" for op in w.ops),
        "touches": w.touch_count(),
        "segments": len(w.segments),
        "pool": len(w.pool),
        "alloc_bytes": sum(a.bytes for a in w.allocs),
        "managed_bytes": w.managed_bytes,
        "file_bytes": file_bytes,
    }


def _read(p: str) -> tuple[Workload, int, int]:
    def fail(msg: str) -> NoReturn:
        raise TraceFileError(f"{p}: {msg}")

    try:
        st = os.stat(p)
        # A FIFO or device would block or never end; only plain files are workload files.
        if not stat.S_ISREG(st.st_mode):
            fail("not a regular file")
        with open(p, "rb") as f:
            return _read_open(f, os.fstat(f.fileno()).st_size, fail)
    except OSError as e:
        raise TraceFileError(f"{p}: cannot read: {e.strerror or e}") from None


def _read_open(f: io.BufferedIOBase, size: int, fail: Fail) -> tuple[Workload, int, int]:
    head = f.read(_PRELUDE.size)
    if len(head) >= len(MAGIC) and head[: len(MAGIC)] != MAGIC:
        fail("not a uvmlab workload file (bad magic bytes)")
    if size < _PRELUDE.size + _TRAILER.size:
        fail(f"truncated: only {size} bytes")
    _, version, hlen = _PRELUDE.unpack(head)
    if version > FORMAT_VERSION:
        fail(f"format version {version} is newer than this uvmlab reads ({FORMAT_VERSION}); upgrade uvmlab")
    if version < 1:
        fail(f"unknown format version {version}")
    if hlen > MAX_HEADER_BYTES:
        fail(f"header length {hlen} exceeds the {MAX_HEADER_BYTES >> 20} MiB limit")
    data_start = _PRELUDE.size + hlen
    if data_start + _TRAILER.size > size:
        fail(f"truncated: header length {hlen} runs past the end of the file ({size} bytes)")
    header_bytes = f.read(hlen)

    # Checksum before interpretation, so a flipped bit reads as corruption, not as a puzzling
    # schema error; a wrong size is the usual cause, so say so when the header reveals it.
    f.seek(size - _TRAILER.size)
    (stored,) = _TRAILER.unpack(f.read(_TRAILER.size))
    computed = _crc_of(f, size - _TRAILER.size)
    if stored != computed:
        expected = _described_size(header_bytes, data_start)
        if expected is not None and expected != size:
            fail(f"truncated or padded: the header describes {expected} bytes, the file has {size}")
        fail(f"checksum mismatch (stored {stored:08x}, computed {computed:08x}): file is corrupt")

    header = parse_header(header_bytes, fail)
    w_fields = check_header(header, fail)
    arrays = read_arrays(f, header["arrays"], data_start, size - _TRAILER.size - data_start, fail)
    segments, pool = arrays["segments"], arrays["pool"].astype(np.uint32, copy=False)
    check_bounded(segments, pool, w_fields["ops"], fail)
    w = Workload(segments=segments, pool=pool, **w_fields)
    try:
        w.validate()
    except WorkloadError as e:
        fail(f"invalid workload: {e}")
    return w, version, size


def _crc_of(f: io.BufferedIOBase, end: int) -> int:
    f.seek(0)
    buf = bytearray(min(_CHUNK, max(end, 1)))
    view = memoryview(buf)
    crc, pos = 0, 0
    while pos < end:
        n = f.readinto(view[: min(len(buf), end - pos)])
        if not n:
            break  # the file shrank under us; the mismatch reports it
        crc = zlib.crc32(view[:n], crc)
        pos += n
    return crc


def _described_size(header_bytes: bytes, data_start: int) -> int | None:
    """The file size the header's arrays table implies, or None when it cannot be read."""
    try:
        arrays = json.loads(header_bytes.decode("utf-8"))["arrays"]
        end = max(int(a["offset"]) + int(a["nbytes"]) for a in arrays.values())
        return data_start + end + _TRAILER.size
    except Exception:  # any malformation: the checksum message stands on its own
        return None


# --- small helpers -----------------------------------------------------------------------------


def _aligned(n: int) -> int:
    return n + (-n) % _ALIGN


def _json_roundtrip(v: object) -> object:
    try:
        return json.loads(json.dumps(v, allow_nan=False))
    except (TypeError, ValueError):
        return None  # unequal to any params dict, so the caller reports it
