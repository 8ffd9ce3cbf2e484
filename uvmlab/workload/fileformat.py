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
a one-line ``TraceFileError`` naming the file. Only then is the IR rebuilt and validated.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import stat
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import numpy as np

from uvmlab.core.errors import TraceFileError, UvmlabError, WorkloadError
from uvmlab.core.output import write_atomic
from uvmlab.core.units import MAX_SIZE
from uvmlab.workload.bounds import MAX_OPS
from uvmlab.workload.ir import (
    IR_VERSION,
    OP_TYPES,
    SEG_RUN,
    SEGMENT_DTYPE,
    Advice,
    Alloc,
    AllocKind,
    Op,
    Workload,
)

EXTENSION = ".uvmw"
MAGIC = b"UVMLABW\0"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 64 << 20

_PRELUDE = struct.Struct("<8sIQ")  # magic, format version, header length
_TRAILER = struct.Struct("<I")  # CRC32
_CHUNK = 16 << 20  # read/write/CRC granularity: bounds memory on multi-GB files
_ALIGN = 8

# The only arrays a file may hold, and the only dtype each may have (as JSON writes numpy's
# ``dtype.descr``), so a reader never builds an object or big-endian array from a file.
_SEGMENT_DESCR = [list(f) for f in SEGMENT_DTYPE.descr]
_ARRAYS: dict[str, tuple[Any, np.dtype]] = {
    "segments": (_SEGMENT_DESCR, SEGMENT_DTYPE),
    "pool": ("<u4", np.dtype("<u4")),
}
_INT64 = 1 << 63
_Fail = Callable[[str], NoReturn]  # raises TraceFileError naming the file
# Load-time validation walks each op's segment slice and each index segment's pool slice; a
# hostile file can make those slices overlap without limit. Cap the walk at a multiple of the
# data actually present so loading stays proportional to file size, never a hang.
_REUSE_FACTOR = 16
_REUSE_FLOOR = 1 << 24


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
            "dtype": _ARRAYS[name][0],
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


def _read_open(f: io.BufferedIOBase, size: int, fail: _Fail) -> tuple[Workload, int, int]:
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

    header = _parse_header(header_bytes, fail)
    w_fields = _check_header(header, fail)
    arrays = _read_arrays(f, header["arrays"], data_start, size - _TRAILER.size - data_start, fail)
    segments, pool = arrays["segments"], arrays["pool"].astype(np.uint32, copy=False)
    _check_bounded(segments, pool, w_fields["ops"], fail)
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


_OP_KEY = re.compile(rb'"op"\s*:')


def _parse_header(data: bytes, fail: _Fail) -> dict[str, Any]:
    # Parsing JSON costs ~20 bytes of memory per byte of small objects: count the operations
    # first, so a header of millions of tiny ops is refused before it takes gigabytes.
    n_ops = len(_OP_KEY.findall(data))
    if n_ops > MAX_OPS:
        fail(f"header holds {n_ops} operations (at most {MAX_OPS})")
    try:
        header = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # RecursionError: absurdly nested JSON
        fail(f"header is not valid UTF-8 JSON ({str(e).splitlines()[0][:120]})")
    if not isinstance(header, dict):
        fail("header is not a JSON object")
    return header


def _described_size(header_bytes: bytes, data_start: int) -> int | None:
    """The file size the header's arrays table implies, or None when it cannot be read."""
    try:
        arrays = json.loads(header_bytes.decode("utf-8"))["arrays"]
        end = max(int(a["offset"]) + int(a["nbytes"]) for a in arrays.values())
        return data_start + end + _TRAILER.size
    except Exception:  # any malformation: the checksum message stands on its own
        return None


def _is_int(v: object) -> bool:
    return type(v) is int  # JSON true/false are bools, 1.0 is a float: neither is a count


def _check_header(h: dict[str, Any], fail: _Fail) -> dict[str, Any]:
    """Type-check the JSON header and turn it into Workload constructor fields."""
    for key in ("name", "seed", "version", "params", "allocs", "ops", "arrays"):
        if key not in h:
            fail(f"header has no {key!r} field")
    if h.get("format") != "uvmlab-workload":
        fail(f"header format is {h.get('format')!r}, expected 'uvmlab-workload'")
    if not isinstance(h["name"], str):
        fail("header 'name' is not a string")
    if not _is_int(h["seed"]):
        fail("header 'seed' is not an integer")
    if not _is_int(h["version"]) or h["version"] < 1:
        fail(f"header IR version {h['version']!r} is not a positive integer")
    if h["version"] > IR_VERSION:
        fail(f"IR version {h['version']} is newer than this uvmlab reads ({IR_VERSION}); upgrade uvmlab")
    if not isinstance(h["params"], dict):
        fail("header 'params' is not an object")
    if not isinstance(h["arrays"], dict):
        fail("header 'arrays' is not an object")

    if not isinstance(h["allocs"], list):
        fail("header 'allocs' is not a list")
    kinds = {k.name.lower(): k for k in AllocKind}
    allocs = []
    for i, a in enumerate(h["allocs"]):
        if not (
            isinstance(a, list)
            and len(a) in (3, 4)
            and isinstance(a[0], str)
            and _is_int(a[1])
            and isinstance(a[2], str)
        ):
            fail(f"allocation {i} is not [name, bytes, kind]")
        if not 0 < a[1] <= MAX_SIZE:
            fail(f"allocation {i} ({a[0]!r}) has size {a[1]} outside 1 byte .. 1 PiB")
        if a[2] not in kinds:
            fail(f"allocation {i} ({a[0]!r}) has unknown kind {a[2]!r}")
        cached = dirty = 0
        if len(a) == 4:  # a file's page-cache state (IR version 2)
            st = a[3]
            if not (
                isinstance(st, dict)
                and set(st) == {"cached_pages", "dirty_pages"}
                and all(_is_int(v) and 0 <= v <= MAX_SIZE for v in st.values())
            ):
                fail(
                    f"allocation {i} ({a[0]!r}): page-cache state is not "
                    "{cached_pages, dirty_pages} with non-negative integers"
                )
            cached, dirty = st["cached_pages"], st["dirty_pages"]
        if (len(a) == 4) != (a[2] == "file"):
            fail(f"allocation {i} ({a[0]!r}): page-cache state goes with kind 'file' only")
        allocs.append(Alloc(a[0], a[1], kinds[a[2]], cached, dirty))

    if not isinstance(h["ops"], list):
        fail("header 'ops' is not a list")
    ops = [_op_from_json(k, d, fail) for k, d in enumerate(h["ops"])]
    return {
        "name": h["name"],
        "allocs": allocs,
        "ops": ops,
        "seed": h["seed"],
        "params": h["params"],
        "version": h["version"],
    }


def _op_from_json(k: int, d: object, fail: _Fail) -> Op:
    if not isinstance(d, dict) or not isinstance(d.get("op"), str) or d["op"] not in OP_TYPES:
        kind = d.get("op") if isinstance(d, dict) else d
        fail(f"op {k} has unknown type {str(kind)[:40]!r}")
    cls = OP_TYPES[d["op"]]
    fields = [f for f in dataclasses.fields(cls) if f.init]
    expected = {f.name for f in fields} | {"op"}
    # a field with a default may be absent (files written before it existed, e.g. a kernel's
    # threads): it takes its default
    required = {f.name for f in fields if f.default is dataclasses.MISSING} | {"op"}
    if not required <= set(d) <= expected:
        fail(f"op {k} ({d['op']}) has fields {sorted(d)}, expected {sorted(expected)}")
    kwargs: dict[str, Any] = {}
    for f in fields:
        if f.name not in d:
            continue
        v = d[f.name]
        if f.type == "str":
            if not isinstance(v, str):
                fail(f"op {k} ({d['op']}): {f.name} is not a string")
        elif f.type == "Advice":
            if not isinstance(v, str) or v.upper() not in Advice.__members__:
                fail(f"op {k} ({d['op']}): unknown advice {str(v)[:40]!r}")
            v = Advice[v.upper()]
        elif f.type == "int":
            if not _is_int(v) or not -_INT64 <= v < _INT64:
                fail(f"op {k} ({d['op']}): {f.name} is not a 64-bit integer")
        else:  # a new op field type in ir.py needs a rule here and in docs/trace-format.md
            fail(f"op {k} ({d['op']}): field {f.name} has unsupported type {f.type}")
        kwargs[f.name] = v
    return cls(**kwargs)


def _read_arrays(
    f: io.BufferedIOBase, table: dict[str, Any], data_start: int, data_len: int, fail: _Fail
) -> dict[str, np.ndarray]:
    if set(table) != set(_ARRAYS):
        fail(f"arrays table holds {sorted(table)[:8]}, expected {sorted(_ARRAYS)}")
    out = {}
    for name, (descr, dtype) in _ARRAYS.items():
        e = table[name]
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "offset", "nbytes"}:
            fail(f"array {name!r}: entry must have exactly dtype, shape, offset, nbytes")
        if e["dtype"] != descr:
            fail(f"array {name!r}: dtype {str(e['dtype'])[:80]} is not the allowed {descr}")
        shape, off, nbytes = e["shape"], e["offset"], e["nbytes"]
        if not (isinstance(shape, list) and len(shape) == 1 and _is_int(shape[0]) and shape[0] >= 0):
            fail(f"array {name!r}: shape {str(shape)[:40]} is not [length]")
        if not (_is_int(off) and _is_int(nbytes) and off >= 0 and nbytes >= 0):
            fail(f"array {name!r}: offset and nbytes must be non-negative integers")
        if nbytes != shape[0] * dtype.itemsize:
            fail(f"array {name!r}: nbytes {nbytes} != length {shape[0]} x itemsize {dtype.itemsize}")
        if off + nbytes > data_len:
            fail(
                f"array {name!r}: bytes {off}..{off + nbytes} lie outside the data section "
                f"({data_len} bytes); truncated or corrupt"
            )
        # Sizes are proven to fit inside the file, so this allocation is at most the file size.
        buf = bytearray(nbytes)
        f.seek(data_start + off)
        if f.readinto(buf) != nbytes:
            fail(f"array {name!r}: short read (file changed while reading?)")
        out[name] = np.frombuffer(buf, dtype=dtype)
    return out


def _check_bounded(segs: np.ndarray, pool: np.ndarray, ops: list[Op], fail: _Fail) -> None:
    """Reject what Workload.validate() would compute wrongly (int64 overflow) or slowly."""
    run = segs["kind"] == SEG_RUN
    start = segs["start"][run].astype(np.float64)
    span = (segs["count"][run].astype(np.float64) - 1) * segs["stride"][run]
    # validate() computes start + (count-1)*stride in int64; keep every term far from 2^63.
    # Real runs stay below 2^38 pages (1 PiB), so the float rounding here never matters.
    if np.any(np.abs(start) > 2.0**52) or np.any(np.abs(span) > 2.0**52):
        fail("invalid workload: a run segment reaches beyond any possible allocation")
    index_touches = int(np.maximum(segs["count"][~run], 0).sum(dtype=np.float64))
    if index_touches > max(_REUSE_FACTOR * len(pool), _REUSE_FLOOR):
        fail(f"index segments reference {index_touches} pool entries, far more than the pool's {len(pool)}")
    n_seg, sliced = len(segs), 0
    for op in ops:
        if op.op in ("kernel", "cpu"):
            sliced += max(0, min(op.seg_hi, n_seg) - max(op.seg_lo, 0))  # type: ignore[union-attr]
    if sliced > max(_REUSE_FACTOR * n_seg, _REUSE_FLOOR):
        fail(f"ops reference {sliced} segments, far more than the {n_seg} stored")


# --- small helpers -----------------------------------------------------------------------------


def _aligned(n: int) -> int:
    return n + (-n) % _ALIGN


def _json_roundtrip(v: object) -> object:
    try:
        return json.loads(json.dumps(v, allow_nan=False))
    except (TypeError, ValueError):
        return None  # unequal to any params dict, so the caller reports it
