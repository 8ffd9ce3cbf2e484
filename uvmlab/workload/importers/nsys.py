"""Nsight Systems (``nsys export --type sqlite``) and nvprof SQLite exports -> :class:`UmTrace`.

Tables read (Nsight Systems "SQLite Export Schema Reference"; tables are created lazily, so any
of them may be absent):

* ``CUDA_UM_GPU_PAGE_FAULT_EVENTS`` (start, address, numberOfPageFaults, faultAccessType),
  ``CUDA_UM_CPU_PAGE_FAULT_EVENTS`` (start, address) and the unified-memory rows of
  ``CUPTI_ACTIVITY_KIND_MEMCPY`` (copyKind "Unified Host-to-Device" / "Unified Device-to-Host",
  11 / 12 in ``ENUM_CUDA_MEMCPY_OPER``; start, end, bytes, virtualAddress, migrationCause): what
  Nsight Systems writes with ``--cuda-um-cpu-page-faults=true --cuda-um-gpu-page-faults=true``;
* ``CUPTI_ACTIVITY_KIND_UNIFIED_MEMORY_COUNTER`` (counterKind, value, start, end, address,
  srcId, dstId, flags): the raw CUPTI records, as nvprof's export and older Nsight Systems
  write them;
* ``CUPTI_ACTIVITY_KIND_KERNEL`` (start, end, deviceId and a name id: shortName, demangledName
  or name, resolved through ``StringIds`` / ``StringTable``);
* ``CUDA_GPU_MEMORY_USAGE_EVENTS`` (start, address, bytes, memKind 4 = managed,
  memoryOperationType 0 = allocation / 1 = release): with ``--cuda-memory-usage=true``.

Enumerations are CUPTI's (migration cause, fault access type, counter kind), which the export
keeps as numbers.
"""

from __future__ import annotations

import sqlite3

import numpy as np

from uvmlab.core.errors import TraceFileError
from uvmlab.workload.importers.um_trace import (
    ALLOC_DTYPE,
    CPU_FAULT,
    DTOH,
    GPU_FAULT,
    HTOD,
    KERNEL_DTYPE,
    UM_RECORD_DTYPE,
    UmTrace,
)

UM_HTOD_COPY, UM_DTOH_COPY = 11, 12  # ENUM_CUDA_MEMCPY_OPER: Unified HtoD / DtoH
MEM_KIND_MANAGED = 4  # ENUM_CUDA_MEM_KIND
ALLOCATION, RELEASE = 0, 1  # memoryOperationType


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _need(path: str, db: sqlite3.Connection, table: str, cols: tuple[str, ...]) -> None:
    have = _columns(db, table)
    missing = [c for c in cols if c not in have]
    if missing:
        raise TraceFileError(f"{path}: table {table} lacks column(s) {', '.join(missing)}")


def _rows(db: sqlite3.Connection, sql: str, n: int) -> np.ndarray:
    data = db.execute(sql).fetchall()
    return np.array(data, dtype=np.int64).reshape(len(data), n) if data else np.zeros((0, n), np.int64)


def _copy_kinds(db: sqlite3.Connection, tables: set[str]) -> tuple[int, int]:
    """The copyKind numbers of unified HtoD / DtoH migrations, from the export's own enum."""
    if "ENUM_CUDA_MEMCPY_OPER" not in tables:
        return UM_HTOD_COPY, UM_DTOH_COPY
    htod, dtoh = UM_HTOD_COPY, UM_DTOH_COPY
    for row in db.execute("SELECT * FROM ENUM_CUDA_MEMCPY_OPER"):
        text = "".join(str(x) for x in row[1:]).upper()
        text = text.replace("-", "").replace(" ", "").replace("_", "")
        if "UNIFIED" not in text:
            continue
        if "HTOD" in text or "HOSTTODEVICE" in text:
            htod = int(row[0])
        elif "DTOH" in text or "DEVICETOHOST" in text:
            dtoh = int(row[0])
    return htod, dtoh


def _records_nsys(path: str, db: sqlite3.Connection, tables: set[str]) -> list[np.ndarray]:
    parts = []
    if "CUDA_UM_GPU_PAGE_FAULT_EVENTS" in tables:
        t = "CUDA_UM_GPU_PAGE_FAULT_EVENTS"
        _need(path, db, t, ("start", "address"))
        cols = _columns(db, t)
        n = "numberOfPageFaults" if "numberOfPageFaults" in cols else "1"
        a = "faultAccessType" if "faultAccessType" in cols else "0"
        end = "end" if "end" in cols else "start"
        d = _rows(db, f'SELECT start, "{end}" , address, {n}, {a} FROM {t}', 5)
        rec = np.zeros(len(d), dtype=UM_RECORD_DTYPE)
        rec["kind"] = GPU_FAULT
        rec["start"], rec["end"], rec["address"], rec["value"], rec["flags"] = d.T
        parts.append(rec)
    if "CUDA_UM_CPU_PAGE_FAULT_EVENTS" in tables:
        t = "CUDA_UM_CPU_PAGE_FAULT_EVENTS"
        _need(path, db, t, ("start", "address"))
        d = _rows(db, f"SELECT start, address FROM {t}", 2)
        rec = np.zeros(len(d), dtype=UM_RECORD_DTYPE)
        rec["kind"] = CPU_FAULT
        rec["start"], rec["address"] = d.T
        rec["end"] = rec["start"]
        parts.append(rec)
    if "CUPTI_ACTIVITY_KIND_MEMCPY" in tables:
        t = "CUPTI_ACTIVITY_KIND_MEMCPY"
        cols = _columns(db, t)
        if "virtualAddress" in cols:  # only exports with UM migrations have the column
            _need(path, db, t, ("start", "end", "bytes", "copyKind"))
            htod, dtoh = _copy_kinds(db, tables)
            cause = "migrationCause" if "migrationCause" in cols else "0"
            d = _rows(
                db,
                f'SELECT copyKind, start, "end", bytes, virtualAddress, {cause} '
                f"FROM {t} WHERE copyKind IN ({htod}, {dtoh})",
                6,
            )
            rec = np.zeros(len(d), dtype=UM_RECORD_DTYPE)
            rec["kind"] = np.where(d[:, 0] == htod, HTOD, DTOH)
            rec["start"], rec["end"], rec["value"], rec["address"], rec["flags"] = d[:, 1:].T
            parts.append(rec)
    return parts


def _records_cupti(path: str, db: sqlite3.Connection) -> np.ndarray:
    t = "CUPTI_ACTIVITY_KIND_UNIFIED_MEMORY_COUNTER"
    _need(path, db, t, ("counterKind", "value", "start", "address"))
    cols = _columns(db, t)
    pick = ", ".join(f'"{c}"' if c in cols else "0" for c in ("end", "srcId", "dstId", "flags"))
    d = _rows(db, f"SELECT counterKind, value, start, address, {pick} FROM {t}", 8)
    rec = np.zeros(len(d), dtype=UM_RECORD_DTYPE)
    (
        rec["kind"],
        rec["value"],
        rec["start"],
        rec["address"],
        rec["end"],
        rec["src"],
        rec["dst"],
        rec["flags"],
    ) = d.T
    return rec


def _kernels(path: str, db: sqlite3.Connection, tables: set[str]) -> tuple[np.ndarray, list[str]]:
    t = "CUPTI_ACTIVITY_KIND_KERNEL"
    if t not in tables:
        return np.zeros(0, dtype=KERNEL_DTYPE), []
    _need(path, db, t, ("start", "end"))
    cols = _columns(db, t)
    name_col = next((c for c in ("shortName", "demangledName", "name", "mangledName") if c in cols), None)
    dev = "deviceId" if "deviceId" in cols else "0"
    d = _rows(db, f'SELECT start, "end", {name_col or "0"}, {dev} FROM {t}', 4)
    strings: dict[int, str] = {}
    for st, key in (("StringIds", "id"), ("StringTable", "_id_")):
        if st in tables:
            strings.update({int(i): str(v) for i, v in db.execute(f"SELECT {key}, value FROM {st}")})
    ids = sorted(set(d[:, 2].tolist()))
    names = [strings.get(i, f"kernel{i}") for i in ids]
    k = np.zeros(len(d), dtype=KERNEL_DTYPE)
    k["start"], k["end"], k["device"] = d[:, 0], d[:, 1], d[:, 3]
    k["name"] = np.searchsorted(np.array(ids, dtype=np.int64), d[:, 2])
    return k, names


def _allocs(path: str, db: sqlite3.Connection, tables: set[str]) -> np.ndarray:
    t = "CUDA_GPU_MEMORY_USAGE_EVENTS"
    if t not in tables:
        return np.zeros(0, dtype=ALLOC_DTYPE)
    _need(path, db, t, ("start", "address", "bytes", "memKind", "memoryOperationType"))
    d = _rows(
        db,
        f"SELECT start, address, bytes, memoryOperationType FROM {t} "
        f"WHERE memKind = {MEM_KIND_MANAGED} ORDER BY start",
        4,
    )
    out: list[tuple[int, int, int, int, int]] = []
    live: dict[int, int] = {}
    for start, addr, nbytes, op in d.tolist():
        if op == ALLOCATION:
            live[addr] = len(out)
            out.append((addr, nbytes, 0, start, 0))
        elif op == RELEASE and addr in live:
            i = live.pop(addr)
            out[i] = out[i][:4] + (max(start, 1),)
    return np.array(out, dtype=ALLOC_DTYPE) if out else np.zeros(0, dtype=ALLOC_DTYPE)


def read_sqlite(path: str) -> UmTrace:
    """Read the unified-memory activity, kernels and managed allocations of an SQLite export."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise TraceFileError(f"{path}: cannot open as SQLite ({e})") from None
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        parts = _records_nsys(path, db, tables)
        layout = "nsys"
        if "CUPTI_ACTIVITY_KIND_UNIFIED_MEMORY_COUNTER" in tables:
            parts.append(_records_cupti(path, db))
            layout = "cupti" if len(parts) == 1 else "nsys+cupti"
        if not parts:
            raise TraceFileError(
                f"{path}: no unified-memory tables (record with nsys profile "
                "--cuda-um-cpu-page-faults=true --cuda-um-gpu-page-faults=true, then "
                "nsys export --type sqlite)"
            )
        records = np.concatenate(parts)
        records = records[np.argsort(records["start"], kind="stable")]
        kernels, names = _kernels(path, db, tables)
        allocs = _allocs(path, db, tables)
    except sqlite3.Error as e:
        raise TraceFileError(f"{path}: unreadable SQLite export ({' '.join(str(e).split())})") from None
    finally:
        db.close()
    return UmTrace(records, kernels, names, allocs, source=path, meta={"layout": layout})
