"""Importing real programs' unified-memory traces (uvmlab trace import).

The SQLite files are built here with the table and column names of Nsight Systems' "SQLite
Export Schema Reference" (and nvprof's raw CUPTI table), holding one small scenario whose
workload is known: the CPU fills a managed buffer, a kernel faults on it, the driver migrates a
fault region and prefetches the rest of the block, the CPU reads one page back, the program
prefetches the second block explicitly, and the same kernel runs again without faulting.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from uvmlab.core.errors import TraceFileError, WorkloadError
from uvmlab.validation.programs import compare_program
from uvmlab.workload.importers import load_trace, to_workload
from uvmlab.workload.importers.capture import read_capture, write_capture
from uvmlab.workload.importers.um_trace import (
    ALLOC_DTYPE,
    KERNEL_DTYPE,
    UM_RECORD_DTYPE,
    UmTrace,
)
from uvmlab.workload.ir import Access, CpuOp, FreeOp, KernelOp, PrefetchOp

BASE = 0x7F00_0000_0000  # 2 MiB aligned
P = 4096
HTOD_ROWS = [  # (start, end, bytes, address, migrationCause)
    (1110, 1115, 64 << 10, BASE, 2),  # fault region around page 0 (coherence)
    (1120, 1150, (2 << 20) - (64 << 10), BASE + (64 << 10), 3),  # prefetcher: rest of block 0
    (1160, 1161, P, BASE + 512 * P, 2),  # page 512 (block 1) for its write fault
    (2800, 2900, (2 << 20) - P, BASE + 513 * P, 1),  # user prefetch of the rest of block 1
]
DTOH_ROWS = [(2510, 2511, P, BASE + 3 * P, 2)]
GPU_FAULTS = [(1100, BASE + 0, 1, 1), (1100, BASE + 512 * P + 8, 2, 2)]  # (t, addr, n, access)
CPU_FAULTS = [(100 + i, BASE + i * P) for i in range(4)] + [(2500, BASE + 3 * P)]
KERNELS = [(1000, 2000, "axpy"), (3000, 3100, "axpy")]


def _nsys_db(path, *, memory_table=True, release_at=None):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO StringIds VALUES (7, 'axpy')")
    db.execute("CREATE TABLE ENUM_CUDA_MEMCPY_OPER (id INTEGER PRIMARY KEY, name TEXT, label TEXT)")
    db.executemany(
        "INSERT INTO ENUM_CUDA_MEMCPY_OPER VALUES (?, ?, ?)",
        [
            (1, "CUDA_MEMCPY_OPER_HTOD", "Host-to-Device"),
            (11, "CUDA_MEMCPY_OPER_UNIFIED_HTOD", "Unified Host-to-Device"),
            (12, "CUDA_MEMCPY_OPER_UNIFIED_DTOH", "Unified Device-to-Host"),
        ],
    )
    db.execute(
        "CREATE TABLE CUDA_UM_GPU_PAGE_FAULT_EVENTS (start INT NOT NULL, end INT NOT NULL, "
        "globalPid INT, deviceId INT, address INT NOT NULL, numberOfPageFaults INT NOT "
        "NULL, faultAccessType INT NOT NULL)"
    )
    db.executemany(
        "INSERT INTO CUDA_UM_GPU_PAGE_FAULT_EVENTS VALUES (?, ?, 1, 0, ?, ?, ?)",
        [(t, t + 5, a, n, acc) for t, a, n, acc in GPU_FAULTS],
    )
    db.execute(
        "CREATE TABLE CUDA_UM_CPU_PAGE_FAULT_EVENTS (start INT NOT NULL, globalPid INT, "
        "address INT NOT NULL, originalFaultPc INT)"
    )
    db.executemany("INSERT INTO CUDA_UM_CPU_PAGE_FAULT_EVENTS VALUES (?, 1, ?, 0)", CPU_FAULTS)
    db.execute(
        "CREATE TABLE CUPTI_ACTIVITY_KIND_MEMCPY (start INT NOT NULL, end INT NOT NULL, "
        "deviceId INT, bytes INT NOT NULL, copyKind INT NOT NULL, migrationCause INT, "
        "virtualAddress INT)"
    )
    rows = [(s, e, b, 11, c, a) for s, e, b, a, c in HTOD_ROWS]
    rows += [(s, e, b, 12, c, a) for s, e, b, a, c in DTOH_ROWS]
    rows += [(50, 60, 1 << 20, 1, 0, 0)]  # a plain cudaMemcpy: not unified memory, ignored
    db.executemany("INSERT INTO CUPTI_ACTIVITY_KIND_MEMCPY VALUES (?, ?, 0, ?, ?, ?, ?)", rows)
    db.execute(
        "CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INT NOT NULL, end INT NOT NULL, "
        "deviceId INT NOT NULL, streamId INT, shortName INT NOT NULL)"
    )
    db.executemany(
        "INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL VALUES (?, ?, 0, 7, 7)", [(s, e) for s, e, _ in KERNELS]
    )
    if memory_table:
        db.execute(
            "CREATE TABLE CUDA_GPU_MEMORY_USAGE_EVENTS (start INT NOT NULL, globalPid INT, "
            "deviceId INT, address INT NOT NULL, bytes INT NOT NULL, memKind INT NOT "
            "NULL, memoryOperationType INT NOT NULL)"
        )
        mem = [(10, BASE, 4 << 20, 4, 0), (11, 0x5000_0000, 1 << 20, 2, 0)]  # managed, device
        if release_at is not None:
            mem.append((release_at, BASE, 4 << 20, 4, 1))
        db.executemany("INSERT INTO CUDA_GPU_MEMORY_USAGE_EVENTS VALUES (?, 1, 0, ?, ?, ?, ?)", mem)
    db.commit()
    db.close()
    return path


def _cupti_db(path):
    """nvprof's export: the raw CUPTI unified-memory records in one table."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE StringTable (_id_ INTEGER PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO StringTable VALUES (3, 'axpy')")
    db.execute(
        "CREATE TABLE CUPTI_ACTIVITY_KIND_UNIFIED_MEMORY_COUNTER(_id_ INTEGER PRIMARY KEY "
        "AUTOINCREMENT, counterKind INT NOT NULL, value INT NOT NULL, start INT NOT NULL, "
        "end INT NOT NULL, address INT NOT NULL, srcId INT NOT NULL, dstId INT NOT NULL, "
        "streamId INT NOT NULL, processId INT NOT NULL, flags INT NOT NULL)"
    )
    rows = [(1, b, s, e, a, c) for s, e, b, a, c in HTOD_ROWS]
    rows += [(2, b, s, e, a, c) for s, e, b, a, c in DTOH_ROWS]
    rows += [(4, n, t, t + 5, a, acc) for t, a, n, acc in GPU_FAULTS]
    rows += [(3, 0xDEAD, t, t, a, 0) for t, a in CPU_FAULTS]
    db.executemany(
        "INSERT INTO CUPTI_ACTIVITY_KIND_UNIFIED_MEMORY_COUNTER (counterKind, value, "
        "start, end, address, srcId, dstId, streamId, processId, flags) VALUES "
        "(?, ?, ?, ?, ?, 0, 0, 0, 1, ?)",
        rows,
    )
    db.execute(
        "CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL(_id_ INTEGER PRIMARY KEY AUTOINCREMENT, "
        "start INT NOT NULL, end INT NOT NULL, deviceId INT NOT NULL, name INT NOT NULL)"
    )
    db.executemany(
        "INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL (start, end, deviceId, name) VALUES (?, ?, 0, 3)",
        [(s, e) for s, e, _ in KERNELS],
    )
    db.commit()
    db.close()
    return path


def _touches(w, op):
    """(allocation, page, access) of every touch of ``op``, in order."""
    out = []
    for s in w.segments[op.seg_lo : op.seg_hi]:
        for i in range(int(s["count"])):
            out.append((int(s["alloc"]), int(s["start"]) + i * int(s["stride"]), int(s["access"])))
    return out


def test_nsys_export_becomes_the_scenario(tmp_path):
    w, rep = to_workload(load_trace(_nsys_db(tmp_path / "r.sqlite")), "scenario")
    assert [a.bytes for a in w.allocs] == [4 << 20]  # the device allocation is not managed
    kinds = [type(op).__name__ for op in w.ops]
    assert kinds == ["CpuOp", "KernelOp", "CpuOp", "PrefetchOp", "KernelOp"]
    init, k1, back, pf, k2 = w.ops
    # the CPU faulted on pages 0-3; every other page that later moved to the GPU must have been
    # on the CPU too: the import adds those writes (the replay would otherwise copy nothing)
    assert [p for _, p, _ in _touches(w, init)] == list(range(1024))
    assert rep.cpu_touches_estimated == 1020
    assert all(acc == Access.WRITE for *_, acc in _touches(w, init))  # first touches fill
    t1 = _touches(w, k1)
    # the two faults first (same time), then the pages the fault region and prefetcher brought
    assert [p for _, p, _ in t1] == [0, 512] + list(range(1, 512))
    assert t1[1][2] == Access.WRITE and t1[0][2] == Access.READ
    assert _touches(w, back) == [(0, 3, Access.READ)]  # seen before: the CPU reads it back
    assert (pf.alloc, pf.processor, pf.start_page, pf.num_pages) == (0, 1, 513, 511)
    assert k2.seg_lo == k2.seg_hi and k1.name == k2.name == "axpy"
    # the faulting run took 1000 ns, the clean one 100: compute is the fastest run of the name
    assert k1.compute_ns == k2.compute_ns == 100
    assert rep.touches_from_faults == 2 + 5 and rep.kernels_with_touches == 1
    assert not rep.allocations_inferred and rep.records_outside_allocations == 0


def test_faults_only_keeps_the_faulting_pages(tmp_path):
    w, rep = to_workload(load_trace(_nsys_db(tmp_path / "r.sqlite")), "s", touches="faults")
    k1 = next(op for op in w.ops if isinstance(op, KernelOp))
    # page 3 moves back to the CPU later, so it was on the GPU: the kernel that faulted first in
    # its block gets it, even with migrations not counted as touches
    assert [p for _, p, _ in _touches(w, k1)] == [0, 512, 3]
    assert rep.touches_estimated == 0 and rep.gpu_touches_estimated == 1
    with pytest.raises(WorkloadError, match="touch mode"):
        to_workload(load_trace(tmp_path / "r.sqlite"), "s", touches="all")


def test_release_becomes_a_free_after_the_last_use(tmp_path):
    # released during the second kernel: the free follows the explicit prefetch that used it
    w, rep = to_workload(load_trace(_nsys_db(tmp_path / "r.sqlite", release_at=3050)), "s")
    assert rep.frees == 1 and isinstance(w.ops[-1], FreeOp)
    assert [type(op) for op in w.ops[:-1]] == [CpuOp, KernelOp, CpuOp, PrefetchOp, KernelOp]


def test_nvprof_cupti_table_gives_the_same_ops(tmp_path):
    a, _ = to_workload(load_trace(_nsys_db(tmp_path / "n.sqlite", memory_table=False)), "s")
    b, rep = to_workload(load_trace(_cupti_db(tmp_path / "c.sqlite")), "s")
    assert rep.allocations_inferred
    # without allocation records both infer the same 2-block allocation at the same base
    assert [x.bytes for x in b.allocs] == [x.bytes for x in a.allocs] == [4 << 20]
    assert [type(o) for o in a.ops] == [type(o) for o in b.ops]
    for x, y in zip(a.ops, b.ops, strict=True):
        if isinstance(x, KernelOp | CpuOp):
            assert _touches(a, x) == _touches(b, y)


def test_import_round_trips_and_replays(tmp_path):
    from uvmlab.api import simulate
    from uvmlab.workload.fileformat import read_workload, write_workload

    w, _ = to_workload(load_trace(_nsys_db(tmp_path / "r.sqlite")), "scenario")
    write_workload(w, tmp_path / "w.uvmw")
    assert read_workload(tmp_path / "w.uvmw") == w
    res = simulate(w, gpu="h100")
    # the replay moves at least the pages the kernel touched (block 0 and page 512) and the
    # explicitly prefetched rest of block 1
    assert res.totals["bytes_htod"] >= (2 << 20) + (2 << 20)
    assert res.totals["cpu_faults"] >= 1


def test_real_totals_read_the_records(tmp_path):
    t = load_trace(_nsys_db(tmp_path / "r.sqlite"))
    real = t.real_totals()
    assert real["bytes_htod"] == sum(r[2] for r in HTOD_ROWS)
    assert real["bytes_dtoh"] == P and real["cpu_faults"] == len(CPU_FAULTS)
    assert real["gpu_fault_groups"] == 3 and real["kernel_time_ns"] == 1100


@pytest.mark.parametrize(
    "content,match",
    [
        (b"SQLite format 3\x00" + b"\x00" * 200, "SQLite"),
        (b"hello", "neither"),
    ],
)
def test_bad_files_are_one_clear_error(tmp_path, content, match):
    p = tmp_path / "bad.sqlite"
    p.write_bytes(content)
    with pytest.raises(TraceFileError, match=match):
        load_trace(p)


def test_export_without_um_tables_says_how_to_record(tmp_path):
    p = tmp_path / "e.sqlite"
    db = sqlite3.connect(p)
    db.execute("CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT)")
    db.commit()
    db.close()
    with pytest.raises(TraceFileError, match="cuda-um-gpu-page-faults"):
        load_trace(p)
    rep = tmp_path / "r.nsys-rep"
    rep.write_bytes(b"\x00\x01binary")
    with pytest.raises(TraceFileError, match="nsys export"):
        load_trace(rep)
    with pytest.raises(TraceFileError, match="no such file"):
        load_trace(tmp_path / "missing.sqlite")


def test_faults_without_kernels_are_refused(tmp_path):
    p = _nsys_db(tmp_path / "r.sqlite")
    db = sqlite3.connect(p)
    db.execute("DROP TABLE CUPTI_ACTIVITY_KIND_KERNEL")
    db.commit()
    db.close()
    with pytest.raises(TraceFileError, match="no kernel records"):
        to_workload(load_trace(p), "s")


def test_missing_column_names_table_and_column(tmp_path):
    p = tmp_path / "r.sqlite"
    db = sqlite3.connect(p)
    db.execute("CREATE TABLE CUDA_UM_GPU_PAGE_FAULT_EVENTS (start INT)")
    db.commit()
    db.close()
    with pytest.raises(TraceFileError, match="CUDA_UM_GPU_PAGE_FAULT_EVENTS lacks column"):
        load_trace(p)


def _small_trace():
    rec = np.zeros(3, dtype=UM_RECORD_DTYPE)
    rec["kind"] = [3, 4, 1]
    rec["start"] = [5, 20, 21]
    rec["address"] = [BASE, BASE, BASE]
    rec["value"] = [0, 1, 8192]
    rec["flags"] = [0, 1, 2]
    k = np.array([(10, 40, 0, 0)], dtype=KERNEL_DTYPE)
    al = np.array([(BASE, 1 << 20, 0, 1, 0)], dtype=ALLOC_DTYPE)
    return UmTrace(rec, k, ["k"], al, meta={"gpu": "test"})


def test_capture_file_round_trip_and_corruption(tmp_path):
    p = str(tmp_path / "c.npz")
    write_capture(p, _small_trace())
    assert (tmp_path / "c.npz").stat().st_mode & 0o777 == 0o644
    t = read_capture(p)
    assert t.meta["gpu"] == "test" and t.kernel_names == ["k"]
    assert np.array_equal(t.records, _small_trace().records)
    w, rep = to_workload(load_trace(p), "c")
    assert [type(o) for o in w.ops] == [CpuOp, KernelOp]
    assert [p for _, p, _ in _touches(w, w.ops[0])] == [0, 1]  # page 1: moved, so was on the CPU
    assert [p for _, p, _ in _touches(w, w.ops[1])] == [0, 1]
    data = (tmp_path / "c.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceFileError, match="unreadable capture"):
        load_trace(tmp_path / "t.npz")
    np.savez(tmp_path / "o.npz", records=np.zeros(1))
    with pytest.raises(TraceFileError, match="not a uvmlab capture"):
        load_trace(tmp_path / "o.npz")


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["cupy_jacobi", "torch_mlp"])
def test_captured_programs_replay_the_bytes_they_moved(name):
    """The stored captures (a CuPy program and a PyTorch loop on an H200, examples/programs/)
    replay in the model moving what the real run moved, within 5 % each way."""
    c = compare_program(ROOT / "examples" / "captures" / f"{name}.npz")
    assert c["bytes_source"] == "driver counters" and not any(c["records_missing"].values())
    for key in ("bytes_htod", "bytes_dtoh"):
        row = c["rows"][key]
        assert row["real"] > 16 << 20, row  # the programs move tens of MiB each way
        assert abs(row["error"]) <= 0.05, (key, row)
