"""The .uvmw format: exact round trips, and clear one-line errors for every kind of bad file."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from uvmlab.core.errors import TraceFileError, WorkloadError
from uvmlab.workload.builder import WorkloadBuilder
from uvmlab.workload.fileformat import (
    FORMAT_VERSION,
    MAGIC,
    read_workload,
    validate_file,
    write_workload,
)
from uvmlab.workload.synthetic import WORKLOADS, make_workload

SMALL = "16MiB"  # every generator at a size that keeps the whole suite fast


def _mixed():
    """A workload that uses every op type, access type, allocation kind and both segment kinds."""
    b = WorkloadBuilder("mixed", seed=7, params={"note": "x", "n": 3, "f": 0.5, "l": [1, 2]})
    buf = b.alloc("buf", "8MiB")
    dev = b.alloc("dev", "1MiB", kind="device")
    pin = b.alloc("pin", 12345, kind="pinned")
    b.cpu("init", [b.run(buf, access="write"), b.run(pin, access="write")])
    b.advise(buf, "set_preferred_location", "gpu0")
    b.advise(buf, "set_read_mostly", start=4, num_pages=8)
    b.prefetch(buf, "gpu0", start=0, num_pages=16)
    b.kernel(
        "k",
        [
            b.run(buf, 3, 10, 7),
            b.index(buf, np.array([5, 1, 2047]), access="atomic"),
            b.run(dev, access="write"),
        ],
        compute_ns=999,
    )
    b.sync()
    b.free(dev)
    b.cpu("back", [b.index(pin, np.array([0, 2, 1]))])
    return b.build()


@pytest.fixture
def good(tmp_path: Path) -> Path:
    p = tmp_path / "w.uvmw"
    write_workload(_mixed(), p)
    return p


def _split(path: Path) -> tuple[dict, bytes]:
    """(header, data section) of a valid file, for building hostile variants of it."""
    raw = path.read_bytes()
    hlen = struct.unpack_from("<Q", raw, 12)[0]
    return json.loads(raw[20 : 20 + hlen]), raw[20 + hlen : -4]


def _forge(path: Path, header: dict, data: bytes, version: int = FORMAT_VERSION) -> None:
    """Write a file with a correct checksum, so only the deeper checks can reject it."""
    h = json.dumps(header).encode()
    body = MAGIC + struct.pack("<IQ", version, len(h)) + h + data
    path.write_bytes(body + struct.pack("<I", zlib.crc32(body)))


def _fails(path: Path, *words: str) -> str:
    with pytest.raises(TraceFileError) as ei:
        read_workload(path)
    msg = str(ei.value)
    assert "\n" not in msg and str(path) in msg
    for w in words:
        assert w in msg, msg
    return msg


def test_round_trip_is_exact(good: Path) -> None:
    assert read_workload(good) == _mixed()
    assert read_workload(str(good)) == _mixed()


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_every_generator_round_trips(tmp_path: Path, name: str) -> None:
    w = make_workload(f"{name}:size={SMALL},seed=3")
    p = tmp_path / f"{name}.uvmw"
    write_workload(w, p)
    assert read_workload(p) == w


def test_validate_file_summarises(good: Path) -> None:
    info = validate_file(good)
    w = _mixed()
    assert info["name"] == "mixed" and info["version"] == FORMAT_VERSION
    assert info["allocations"] == 3 and info["ops"] == len(w.ops)
    assert info["touches"] == w.touch_count()
    assert info["file_bytes"] == good.stat().st_size


def test_write_is_atomic_and_leaves_no_temp_files(good: Path) -> None:
    before = good.read_bytes()
    write_workload(make_workload("stream:size=1MiB"), good)
    assert good.read_bytes() != before
    assert sorted(os.listdir(good.parent)) == ["w.uvmw"]


def test_write_refuses_invalid_workloads(tmp_path: Path) -> None:
    w = _mixed()
    w.segments["start"][0] = 10**6
    with pytest.raises(WorkloadError, match="outside"):
        write_workload(w, tmp_path / "bad.uvmw")
    w = _mixed()
    w.params["bad"] = object()
    with pytest.raises(WorkloadError, match="JSON"):
        write_workload(w, tmp_path / "bad.uvmw")
    assert not list(tmp_path.iterdir())


def test_write_to_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(TraceFileError, match="cannot write"):
        write_workload(_mixed(), tmp_path / "nope" / "w.uvmw")


def test_missing_file(tmp_path: Path) -> None:
    _fails(tmp_path / "absent.uvmw", "cannot read")


def test_not_a_regular_file(tmp_path: Path) -> None:
    _fails(tmp_path, "not a regular file")


def test_truncated_at_any_point(good: Path, tmp_path: Path) -> None:
    raw = good.read_bytes()
    hlen = struct.unpack_from("<Q", raw, 12)[0]
    cuts = [0, 3, 8, 15, 20, 21, 20 + hlen // 2, 20 + hlen, 20 + hlen + 17, len(raw) - 5, len(raw) - 1]
    for cut in cuts:
        p = tmp_path / f"cut{cut}.uvmw"
        p.write_bytes(raw[:cut])
        _fails(p, "truncated")


def test_flipped_data_byte_is_a_checksum_error(good: Path) -> None:
    raw = bytearray(good.read_bytes())
    raw[-10] ^= 0x40  # inside the index pool
    good.write_bytes(bytes(raw))
    _fails(good, "checksum")


def test_any_flipped_byte_is_caught(good: Path, tmp_path: Path) -> None:
    raw = good.read_bytes()
    rng = np.random.default_rng(0)
    for pos in {*range(24), *rng.integers(0, len(raw), 40).tolist(), len(raw) - 1}:
        bad = bytearray(raw)
        bad[pos] ^= 1 << int(rng.integers(8))
        p = tmp_path / "flip.uvmw"
        p.write_bytes(bytes(bad))
        _fails(p)


def test_wrong_magic(good: Path) -> None:
    good.write_bytes(b"NOTUVMLB" + good.read_bytes()[8:])
    _fails(good, "magic")
    good.write_bytes(b"PAR1")
    _fails(good)


def test_future_version(good: Path) -> None:
    header, data = _split(good)
    _forge(good, header, data, version=FORMAT_VERSION + 1)
    _fails(good, "newer", "upgrade")
    header["version"] = 99  # the IR version inside an otherwise current file
    _forge(good, header, data)
    _fails(good, "IR version 99")


def test_huge_header_length(good: Path) -> None:
    raw = bytearray(good.read_bytes())
    raw[12:20] = struct.pack("<Q", 1 << 60)
    good.write_bytes(bytes(raw))
    _fails(good, "header length")


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("offset", 1 << 40, ("outside", "segments")),
        ("nbytes", 1 << 40, ("nbytes",)),
        ("shape", [1 << 40], ("nbytes",)),
        ("dtype", "|O", ("dtype",)),
        ("dtype", ">u4", ("dtype",)),
        ("offset", -8, ("non-negative",)),
    ],
)
def test_hostile_array_table(good: Path, field: str, value: object, words: tuple) -> None:
    header, data = _split(good)
    header["arrays"]["segments"][field] = value
    _forge(good, header, data)
    _fails(good, *words)


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda h: h.update(allocs="x"), ("allocs",)),
        (lambda h: h["allocs"][0].__setitem__(1, 1 << 60), ("1 PiB",)),
        (lambda h: h["allocs"][0].__setitem__(2, "gpu"), ("unknown kind",)),
        (lambda h: h["ops"].append({"op": "launch"}), ("unknown type",)),
        (lambda h: h["ops"][0].__setitem__("compute_ns", "1"), ("compute_ns",)),
        (lambda h: h["ops"][0].__setitem__("seg_lo", True), ("seg_lo",)),
        (lambda h: h["ops"][1].__setitem__("advice", "bogus"), ("advice",)),
        (lambda h: h["ops"][0].pop("name"), ("fields",)),
        (lambda h: h.pop("seed"), ("seed",)),
        (lambda h: h["arrays"].update(extra={}), ("arrays",)),
        (
            lambda h: h["ops"].append(
                {"op": "kernel", "name": "x", "gpu": 1, "seg_lo": 0, "seg_hi": 10**6, "compute_ns": 0}
            ),
            ("bad segment slice",),
        ),
    ],
)
def test_hostile_header(good: Path, mutate, words: tuple) -> None:
    header, data = _split(good)
    mutate(header)
    _forge(good, header, data)
    _fails(good, *words)


def test_header_not_json(good: Path, tmp_path: Path) -> None:
    for text in (b"{not json", b"\xff\xfe", b"[" * 100_000, b"[1, 2]"):
        body = MAGIC + struct.pack("<IQ", FORMAT_VERSION, len(text)) + text
        p = tmp_path / "j.uvmw"
        p.write_bytes(body + struct.pack("<I", zlib.crc32(body)))
        _fails(p, "header")


def _segment_offset(header: dict, i: int, field: str) -> int:
    from uvmlab.workload.ir import SEGMENT_DTYPE

    return (
        header["arrays"]["segments"]["offset"] + i * SEGMENT_DTYPE.itemsize + SEGMENT_DTYPE.fields[field][1]
    )


def test_touch_outside_allocation_in_valid_file(good: Path) -> None:
    header, data = _split(good)
    data = bytearray(data)
    at = _segment_offset(header, 2, "start")  # the run of 10 pages, stride 7, in "buf"
    data[at : at + 8] = struct.pack("<q", 2040)
    _forge(good, header, bytes(data))
    _fails(good, "invalid workload", "outside its allocation")


def test_index_touch_outside_allocation_in_valid_file(good: Path) -> None:
    header, data = _split(good)
    data = bytearray(data)
    at = header["arrays"]["pool"]["offset"]
    data[at : at + 4] = struct.pack("<I", 1 << 31)
    _forge(good, header, bytes(data))
    _fails(good, "outside its allocation")


def test_run_that_would_overflow_int64(good: Path) -> None:
    header, data = _split(good)
    data = bytearray(data)
    count, stride = _segment_offset(header, 2, "count"), _segment_offset(header, 2, "stride")
    # (count-1)*stride wraps to a small number in int64; the reader must not be fooled.
    data[count : count + 8] = struct.pack("<q", (1 << 62) + 1)
    data[stride : stride + 8] = struct.pack("<q", 4)
    _forge(good, header, bytes(data))
    _fails(good, "beyond any possible allocation")
