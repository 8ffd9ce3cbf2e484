"""Name every call of an ioctl trace and rebuild the RM handle tree as it grows.

Each record becomes one row: the ``_IOC`` fields of the request, the file, the escape or UVM
ioctl, the RM class (allocs) or control command, the status the driver returned, and the decoded
parameter fields. A call is *named* when its escape / UVM ioctl is known and, for RM_ALLOC and
RM_CONTROL, its class / control command is known too; anything else is kept with its raw numbers
and counted. Nothing in the parameter bytes is trusted: short, long or random bytes decode to
fewer fields, never to an exception.

Every RM alloc / free / control / dup of the trace is also replayed through the object model
(``uvmlab.frontend.rm``): the model's status is compared with the one the real driver returned,
and the tree events give the object tree as it grows.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from uvmlab.frontend import nvtables as nt
from uvmlab.frontend.rm import ResourceManager, TreeEvent
from uvmlab.frontend.trace import KIND_IOCTL, KIND_MARK, KIND_MMAP, KIND_MUNMAP, Record


@dataclass
class Call:
    index: int
    t_ns: int  # from the first record
    dur_ns: int
    pid: int
    tid: int
    kind: str  # ioctl / mmap / munmap / mark
    file: str
    fd: int
    request: int
    ioc_dir: str
    ioc_type: int
    ioc_nr: int
    ioc_size: int
    family: str  # rm / os / uvm / mmap / mark / unknown
    name: str
    detail: str
    status: str
    ret: int
    err: int
    named: bool
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class Decoded:
    calls: list[Call]
    rm: ResourceManager
    tree: list[tuple[int, TreeEvent]]  # (call index, event)
    model_checked: int = 0  # RM alloc/free/control/dup whose status the model reproduced or not
    model_agreed: int = 0
    disagreements: list[str] = field(default_factory=list)

    @property
    def ioctls(self) -> list[Call]:
        return [c for c in self.calls if c.kind == "ioctl"]

    def named_fraction(self) -> float:
        calls = [c for c in self.calls if c.kind != "mark"]
        return sum(c.named for c in calls) / len(calls) if calls else 1.0

    def unnamed(self) -> Counter[str]:
        return Counter(
            f"{c.family} {c.name} {c.detail}".strip() for c in self.calls if not c.named and c.kind != "mark"
        )

    def summary(self) -> list[dict[str, Any]]:
        """One row per (family, call name): count, errors, total time."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for c in self.calls:
            if c.kind == "mark":
                continue
            r = rows.setdefault(
                (c.family, c.name),
                {"family": c.family, "call": c.name, "count": 0, "errors": 0, "time_us": 0.0},
            )
            r["count"] += 1
            r["errors"] += int(c.ret < 0 or (c.status not in ("", "NV_OK")))
            r["time_us"] += c.dur_ns / 1000
        return sorted(rows.values(), key=lambda r: (-r["count"], r["family"], r["call"]))

    def to_pandas(self) -> Any:
        cols = [f for f in Call.__dataclass_fields__ if f != "fields"]
        df = pd.DataFrame([[getattr(c, k) for k in cols] for c in self.calls], columns=cols)
        df["fields"] = [
            json.dumps({k: (v.hex() if isinstance(v, bytes) else v) for k, v in c.fields.items()})
            for c in self.calls
        ]
        df["request"] = df["request"].astype("uint64")
        return df


def _uuid(v: Any) -> str:
    if not isinstance(v, bytes):
        return "?"
    if v == nt.CPU_UUID:
        return "cpu"
    h = v.hex()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _fields(fields: tuple[nt.Field, ...], before: bytes, after: bytes) -> dict[str, Any]:
    """Inputs from the bytes before the call, outputs (status, generated handles) from after."""
    f = nt.unpack_fields(fields, before)
    out = nt.unpack_fields(fields, after) if after else {}
    for k in (
        "status",
        "rmStatus",
        "Status",
        "hObjectNew",
        "hObject",
        "reply",
        "numaEnabled",
        "numaNodeId",
        "pageableMemAccess",
        "userSpaceStart",
        "userSpaceLength",
        "rangeGroupId",
        "gpu_id",
        "minor_number",
        "valid",
        "pLinearAddress",
        "dmaOffset",
    ):
        if k in out:
            f[k if k not in f or k in ("status", "rmStatus", "Status") else k + "_out"] = out[k]
    return f


def _rm_call(c: Call, esc: nt.Escape, before: bytes, after: bytes) -> None:
    fields = esc.fields
    if esc.nr == 0x2B and len(before) == 32:  # RM_ALLOC with the short NVOS21 struct
        fields = nt.NVOS21
    f = _fields(fields, before, after)
    c.fields = f
    st = f.get("status", f.get("Status"))
    if isinstance(st, int):
        c.status = nt.status_name(st)
    if esc.sizes and c.ioc_size not in esc.sizes:
        c.detail = f"size {c.ioc_size} (driver expects {'/'.join(map(str, esc.sizes))})"
        return
    if esc.name == "NV_ESC_RM_ALLOC" and "hClass" in f:
        cls = nt.rm_classes().get(int(f["hClass"]))
        c.detail = cls.name if cls else f"class 0x{int(f['hClass']):04x}"
        c.named = cls is not None
    elif esc.name == "NV_ESC_RM_CONTROL" and "cmd" in f:
        cmd = int(f["cmd"])
        name = nt.control_name(cmd)
        c.detail = (
            name or f"ctrl 0x{cmd:08x} ({nt.class_name(cmd >> 16)} interface 0x{(cmd >> 8) & 0xFF:02x})"
        )
        c.named = name is not None
    elif esc.name == "NV_ESC_RM_ALLOC_MEMORY" and "hClass" in f:
        c.detail = nt.class_name(int(f["hClass"]))


def _uvm_call(c: Call, u: nt.UvmIoctl, before: bytes, after: bytes) -> None:
    f = _fields(u.fields, before[: u.size], after[: u.size])
    c.fields = f
    if isinstance(f.get("rmStatus"), int):
        c.status = nt.status_name(int(f["rmStatus"]))
    parts = []
    for k in ("requestedBase", "base"):
        if k in f:
            parts.append(f"0x{int(f[k]):x}+{int(f.get('length', 0)):#x}")
    for k in ("preferredLocation", "accessedByUuid", "destinationUuid", "gpu_uuid", "gpuUuid"):
        if k in f:
            parts.append(f"{k}={_uuid(f[k])}")
    c.detail = " ".join(parts)


def decode_record(r: Record, t0: int) -> Call:
    ioc = nt.ioc_decode(r.request) if r.kind == KIND_IOCTL else nt.Ioc(0, 0, 0, 0)
    c = Call(
        index=r.index,
        t_ns=r.t_start_ns - t0,
        dur_ns=max(0, r.t_end_ns - r.t_start_ns),
        pid=r.pid,
        tid=r.tid,
        kind=nt_kind(r.kind),
        file=r.path,
        fd=r.fd,
        request=r.request,
        ioc_dir=ioc.dir_name,
        ioc_type=ioc.type,
        ioc_nr=ioc.nr,
        ioc_size=ioc.size,
        family="unknown",
        name=f"0x{r.request:x}",
        detail="",
        status="",
        ret=r.ret,
        err=r.err,
        named=False,
    )
    if r.kind == KIND_MARK:
        c.family, c.name, c.named = "mark", r.path, True
        return c
    if r.kind in (KIND_MMAP, KIND_MUNMAP):
        c.family, c.named = "mmap", True
        c.name = "mmap" if r.kind == KIND_MMAP else "munmap"
        c.detail = f"0x{r.request:x}+{r.arg:#x} {os.path.basename(r.path)}".strip()
        c.fields = {"addr": r.request, "length": r.arg}
        return c
    if r.kind != KIND_IOCTL:
        c.name = f"record kind {r.kind}"
        return c
    base = os.path.basename(r.path)
    if ioc.type == nt.NV_IOCTL_MAGIC:
        esc = nt.ESCAPES.get(ioc.nr)
        if esc is not None:
            c.family = "os" if ioc.nr >= nt.NV_IOCTL_BASE else "rm"
            c.name, c.named = esc.name, True
            _rm_call(c, esc, r.params_in, r.params_out)
        else:
            c.name = f"NV escape 0x{ioc.nr:02x}"
    elif base.startswith("nvidia-uvm"):
        u = nt.UVM_IOCTLS.get(r.request)
        if u is not None:
            c.family, c.name, c.named = "uvm", u.name, True
            _uvm_call(c, u, r.params_in, r.params_out)
        else:
            c.name = f"UVM ioctl {r.request}"
    return c


def nt_kind(kind: int) -> str:
    return {KIND_IOCTL: "ioctl", KIND_MMAP: "mmap", KIND_MUNMAP: "munmap", KIND_MARK: "mark"}.get(
        kind, f"kind{kind}"
    )


def _replay_rm(dec: Decoded, c: Call) -> None:
    """Feed one RM alloc / free / control / dup into the object model and compare its status with
    the real one (a control is only dispatched: see ``ResourceManager.control``)."""
    f = c.fields
    real = f.get("status")
    if not isinstance(real, int) or c.ret < 0:
        return
    rm = dec.rm
    n_before = len(rm.events)
    if c.name == "NV_ESC_RM_ALLOC" and "hClass" in f:
        h_new = (
            int(f.get("hObjectNew_out", f.get("hObjectNew", 0))) if real == 0 else int(f.get("hObjectNew", 0))
        )
        has_params = bool(f["pAllocParms"]) if "pAllocParms" in f else None
        got, _ = rm.alloc(int(f["hRoot"]), int(f["hObjectParent"]), h_new, int(f["hClass"]), has_params)
    elif c.name == "NV_ESC_RM_FREE" and "hObjectOld" in f:
        got = rm.free(int(f["hRoot"]), int(f["hObjectParent"]), int(f["hObjectOld"]))
    elif c.name == "NV_ESC_RM_CONTROL" and "cmd" in f:
        size, ptr = f.get("paramsSize"), f.get("params")
        got = rm.control(
            int(f["hClient"]),
            int(f["hObject"]),
            int(f["cmd"]),
            None if size is None else int(size),
            None if ptr is None else int(ptr),
        )
    elif c.name == "NV_ESC_RM_DUP_OBJECT" and "hObjectSrc" in f:
        h_new = int(f.get("hObject_out", f.get("hObject", 0))) if real == 0 else int(f.get("hObject", 0))
        got, _ = rm.dup(
            int(f["hClient"]), int(f["hParent"]), h_new, int(f["hClientSrc"]), int(f["hObjectSrc"])
        )
    else:
        return
    dec.model_checked += 1
    if got == real:
        dec.model_agreed += 1
    else:
        if real == 0 and c.name != "NV_ESC_RM_FREE":  # keep the tree on the driver's side
            h_new = int(f.get("hObjectNew_out", f.get("hObject_out", 0)))
            if c.name == "NV_ESC_RM_ALLOC" and h_new:
                rm.adopt(int(f["hRoot"]), int(f["hObjectParent"]), h_new, int(f["hClass"]))
        dec.disagreements.append(
            f"call {c.index} {c.name} {c.detail}: driver {nt.status_name(real)}, model {nt.status_name(got)}"
        )
    dec.tree += [(c.index, e) for e in rm.events[n_before:]]


def decode(records: list[Record], gpus_attached: bool = False) -> Decoded:
    """``gpus_attached``: whether the traced machine had its GPU attached before the program
    started (a persistence daemon, another client); the captures here had not, so the model
    waits for the program's own ``NV0000_CTRL_CMD_GPU_ATTACH_IDS``."""
    t0 = min((r.t_start_ns for r in records), default=0)
    dec = Decoded(calls=[], rm=ResourceManager(gpus_attached), tree=[])
    for r in records:
        c = decode_record(r, t0)
        dec.calls.append(c)
        if c.family == "rm":
            _replay_rm(dec, c)
    return dec


def write_parquet(dec: Decoded, path: str | Path) -> None:
    p = Path(path)
    tmp = p.with_name(p.name + ".part")
    dec.to_pandas().to_parquet(tmp, index=False)
    os.replace(tmp, p)


def timeline(dec: Decoded) -> dict[str, Any]:
    """Chrome / Perfetto JSON: one process per traced pid, one track per thread; each call a
    slice named by its decoded name, marks as instants."""
    ev: list[dict[str, Any]] = []
    for pid in sorted({c.pid for c in dec.calls}):
        ev.append({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": f"pid {pid}"}})
    for c in dec.calls:
        ts = c.t_ns / 1000
        if c.kind == "mark":
            ev.append({"ph": "i", "name": c.name, "pid": c.pid, "tid": c.tid, "ts": ts, "s": "p"})
            continue
        name = c.name if not c.detail or c.family not in ("rm", "uvm") else f"{c.name} {c.detail}"
        ev.append(
            {
                "ph": "X",
                "name": name[:120],
                "cat": c.family,
                "pid": c.pid,
                "tid": c.tid,
                "ts": ts,
                "dur": max(c.dur_ns / 1000, 0.001),
                "args": {"file": c.file, "status": c.status, "ret": c.ret, "index": c.index},
            }
        )
    return {"traceEvents": ev, "displayTimeUnit": "ns"}


def write_timeline(dec: Decoded, path: str | Path) -> None:
    p = Path(path)
    tmp = p.with_name(p.name + ".part")
    tmp.write_text(json.dumps(timeline(dec)))
    os.replace(tmp, p)
