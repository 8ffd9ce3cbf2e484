"""IR version 2: file-backed (GAIA) and pageable (HMM) allocations, maquire / mrelease."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_fileformat import _fails, _forge, _split

from uvmlab.core.errors import WorkloadError
from uvmlab.workload.builder import WorkloadBuilder
from uvmlab.workload.fileformat import read_workload, validate_file, write_workload
from uvmlab.workload.ir import AcquireOp, AllocKind, ReleaseOp


def _hostmem():
    b = WorkloadBuilder("hostmem", seed=3)
    f = b.file("data", "6MiB", cached=0.5, dirty=0.25)
    p = b.alloc("heap", "4MiB", "pageable")
    b.cpu("produce", [b.run(f, count=100, access="write"), b.run(p, access="write")])
    b.mrelease(f, "cpu", 0, 100)
    b.maquire(f, "gpu0", 0, 100)
    b.kernel("consume", [b.run(f, count=100), b.run(p, count=10, access="write")])
    b.mrelease(f, "gpu0")
    b.maquire(f, "cpu")
    return b.build()


def test_new_kinds_and_ops_round_trip(tmp_path: Path) -> None:
    w = _hostmem()
    assert w.version == 2
    f = w.allocs[0]
    assert (f.kind, f.cached_pages, f.dirty_pages) == (AllocKind.FILE, 768, 384)
    assert w.allocs[1].kind == AllocKind.PAGEABLE
    assert sum(isinstance(op, AcquireOp) for op in w.ops) == 2
    assert sum(isinstance(op, ReleaseOp) for op in w.ops) == 2
    path = tmp_path / "h.uvmw"
    write_workload(w, path)
    assert read_workload(path) == w
    assert validate_file(path)["ir_version"] == 2


def test_old_workloads_stay_version_1(tmp_path: Path) -> None:
    b = WorkloadBuilder("old")
    a = b.alloc("a", "2MiB")
    b.kernel("k", [b.run(a)])
    w = b.build()
    assert w.version == 1  # a file that older uvmlab releases read too
    path = tmp_path / "o.uvmw"
    write_workload(w, path)
    header, _ = _split(path)
    assert header["version"] == 1 and header["allocs"] == [["a", 2 << 20, "managed"]]
    assert read_workload(path) == w


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda h: h["allocs"][0].__setitem__(3, [1, 2]), ("page-cache state",)),
        (lambda h: h["allocs"][0][3].__setitem__("cached_pages", -1), ("page-cache state",)),
        (lambda h: h["allocs"][0][3].__setitem__("dirty_pages", 10_000), ("dirty_pages",)),
        (lambda h: h["allocs"][1].append({"cached_pages": 0, "dirty_pages": 0}), ("kind 'file' only",)),
        (lambda h: h["allocs"][0].pop(), ("kind 'file' only",)),
        (lambda h: h.__setitem__("version", 1), ("needs IR version 2",)),
        (lambda h: h["ops"][2].__setitem__("alloc", 1), ("not a file allocation",)),
        (lambda h: h["ops"][2].__setitem__("processor", 2), ("CPU and gpu0 only",)),
    ],
)
def test_hostile_hostmem_headers(tmp_path: Path, mutate, words) -> None:
    good = tmp_path / "g.uvmw"
    write_workload(_hostmem(), good)
    header, data = _split(good)
    mutate(header)
    bad = tmp_path / "b.uvmw"
    _forge(bad, header, data)
    _fails(bad, *words)


def test_builder_checks_file_state() -> None:
    b = WorkloadBuilder("x")
    with pytest.raises(WorkloadError, match="dirty"):
        b.file("f", "1MiB", cached=0.2, dirty=0.5)
    a = b.alloc("m", "1MiB")
    b.maquire(a)
    with pytest.raises(WorkloadError, match="not a file allocation"):
        b.build()
