"""The checks a ``.uvmw`` file's header and arrays pass before anything is built from them.

``fileformat.py`` reads a file as hostile: after its checksum matches, these turn the JSON header
into ``Workload`` fields and read the array blobs, checking every type, length, offset and dtype
against the file's real size and an allowlist first. Every failure goes through ``fail``, which
raises a one-line ``TraceFileError`` naming the file.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from collections.abc import Callable
from typing import Any, NoReturn

import numpy as np

from uvmlab.core.units import MAX_SIZE
from uvmlab.workload.bounds import MAX_OPS
from uvmlab.workload.ir import IR_VERSION, OP_TYPES, SEG_RUN, SEGMENT_DTYPE, Advice, Alloc, AllocKind, Op

# The only arrays a file may hold, and the only dtype each may have (as JSON writes numpy's
# ``dtype.descr``), so a reader never builds an object or big-endian array from a file.
_SEGMENT_DESCR = [list(f) for f in SEGMENT_DTYPE.descr]
ARRAYS: dict[str, tuple[Any, np.dtype]] = {
    "segments": (_SEGMENT_DESCR, SEGMENT_DTYPE),
    "pool": ("<u4", np.dtype("<u4")),
}
_INT64 = 1 << 63
Fail = Callable[[str], NoReturn]  # raises TraceFileError naming the file
# Load-time validation walks each op's segment slice and each index segment's pool slice; a
# hostile file can make those slices overlap without limit. Cap the walk at a multiple of the
# data actually present so loading stays proportional to file size, never a hang.
_REUSE_FACTOR = 16
_REUSE_FLOOR = 1 << 24


_OP_KEY = re.compile(rb'"op"\s*:')


def parse_header(data: bytes, fail: Fail) -> dict[str, Any]:
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


def _is_int(v: object) -> bool:
    return type(v) is int  # JSON true/false are bools, 1.0 is a float: neither is a count


def check_header(h: dict[str, Any], fail: Fail) -> dict[str, Any]:
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


def _op_from_json(k: int, d: object, fail: Fail) -> Op:
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


def read_arrays(
    f: io.BufferedIOBase, table: dict[str, Any], data_start: int, data_len: int, fail: Fail
) -> dict[str, np.ndarray]:
    if set(table) != set(ARRAYS):
        fail(f"arrays table holds {sorted(table)[:8]}, expected {sorted(ARRAYS)}")
    out = {}
    for name, (descr, dtype) in ARRAYS.items():
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


def check_bounded(segs: np.ndarray, pool: np.ndarray, ops: list[Op], fail: Fail) -> None:
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
