"""Read the binary ioctl traces written by ``shim/ioctl_shim.c`` (format: docs/frontend.md).

A trace is a 16-byte header (magic ``UVMLIOC1``, u32 version, u32 UVM window) followed by
records: a 64-byte fixed part, u32 in_len, u32 out_len, the device path, the parameter bytes
before the call and after it. A ``.gz`` suffix means gzip. A corrupt or truncated file stops
the reader with a ``TraceFileError`` naming the file and the byte offset; a record whose lengths
do not add up is never trusted to size an allocation.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from uvmlab.core.errors import TraceFileError

MAGIC = b"UVMLIOC1"
HEADER = struct.Struct("<8sII")
FIXED = struct.Struct("<IIIIQQiiiIQQII")  # 72 bytes: the fixed part and the two payload lengths
MAX_FILE = 1 << 30  # a trace larger than this is refused rather than read into memory

KIND_IOCTL, KIND_MMAP, KIND_MUNMAP, KIND_MARK = 1, 2, 3, 4
KIND_NAMES = {KIND_IOCTL: "ioctl", KIND_MMAP: "mmap", KIND_MUNMAP: "munmap", KIND_MARK: "mark"}


@dataclass(frozen=True)
class Record:
    """One recorded call. For ioctls ``request`` is the request code and ``arg`` the user pointer;
    for mmap ``request`` is the returned address and ``arg`` the length; for marks ``path`` is the
    label."""

    index: int
    kind: int
    pid: int
    tid: int
    t_start_ns: int
    t_end_ns: int
    fd: int
    ret: int
    err: int
    path: str
    request: int
    arg: int
    params_in: bytes
    params_out: bytes


def _open_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=f) as g:
                    data = g.read(MAX_FILE + 1)
            else:
                data = f.read(MAX_FILE + 1)
    except FileNotFoundError:
        raise TraceFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TraceFileError(f"{path}: is a directory, not an ioctl trace") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise TraceFileError(f"{path}: cannot read ({exc})") from None
    if len(data) > MAX_FILE:
        raise TraceFileError(f"{path}: larger than {MAX_FILE >> 20} MiB, refused")
    return data


def parse_trace(data: bytes, name: str = "<bytes>") -> list[Record]:
    """Parse trace bytes. Raises TraceFileError on a bad header or a record that runs past the
    end; a truncated last record (a program killed mid-write) is reported the same way."""
    if len(data) < HEADER.size:
        raise TraceFileError(f"{name}: too short for an ioctl trace ({len(data)} bytes)")
    magic, version, _window = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise TraceFileError(f"{name}: not a uvmlab ioctl trace (bad magic)")
    if version != 1:
        raise TraceFileError(f"{name}: trace format version {version}, this uvmlab reads 1")
    out: list[Record] = []
    off = HEADER.size
    n = len(data)
    while off < n:
        if n - off < FIXED.size:
            raise TraceFileError(f"{name}: truncated record at byte {off}")
        (total, kind, pid, tid, t0, t1, fd, ret, err, plen, req, arg, in_len, out_len) = FIXED.unpack_from(
            data, off
        )
        if total != FIXED.size + plen + in_len + out_len or off + total > n:
            raise TraceFileError(f"{name}: corrupt record at byte {off} (lengths do not add up)")
        p = off + FIXED.size
        path = data[p : p + plen].decode("utf-8", "replace")
        p += plen
        pin = data[p : p + in_len]
        p += in_len
        pout = data[p : p + out_len]
        out.append(Record(len(out), kind, pid, tid, t0, t1, fd, ret, err, path, req, arg, pin, pout))
        off += total
    return out


def read_trace(path: str | Path) -> list[Record]:
    """Records of the trace file at ``path`` (raw or gzip)."""
    p = Path(path)
    return parse_trace(_open_bytes(p), str(p))


def write_trace(records: list[Record], path: str | Path, window: int = 512) -> None:
    """Write records in the shim's format (tests, and traces filtered by the tools)."""
    chunks = [HEADER.pack(MAGIC, 1, window)]
    for r in records:
        path_b = r.path.encode()
        total = FIXED.size + len(path_b) + len(r.params_in) + len(r.params_out)
        chunks.append(
            FIXED.pack(
                total,
                r.kind,
                r.pid,
                r.tid,
                r.t_start_ns,
                r.t_end_ns,
                r.fd,
                r.ret,
                r.err,
                len(path_b),
                r.request,
                r.arg,
                len(r.params_in),
                len(r.params_out),
            )
        )
        chunks += [path_b, r.params_in, r.params_out]
    data = b"".join(chunks)
    p = Path(path)
    tmp = p.with_name(p.name + ".part")
    if p.suffix == ".gz":
        with gzip.open(tmp, "wb") as f:
            f.write(data)
    else:
        tmp.write_bytes(data)
    tmp.replace(p)
