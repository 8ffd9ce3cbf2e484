"""Drive the UVM model from the UVM part of a real ioctl trace (``uvmlab ioctl replay``).

Each ``/dev/nvidia-uvm`` file of the trace (one per traced process and descriptor) gets a
modelled file (``uvm_dev.UvmFile``); its mmaps, munmaps and UVM ioctls are applied in trace order,
and the status the model answers is compared with the one the real driver returned. The file
that holds the program's managed memory becomes an IR workload that runs through the engine like
any other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from uvmlab.frontend import nvtables as nt
from uvmlab.frontend.decode import decode_record
from uvmlab.frontend.trace import KIND_IOCTL, KIND_MMAP, KIND_MUNMAP, Record
from uvmlab.frontend.uvm_dev import HostCall, UvmFile
from uvmlab.workload.ir import AdviseOp, FreeOp, PrefetchOp, Workload


@dataclass
class Replay:
    files: dict[tuple[int, int], UvmFile]
    main: UvmFile | None
    checked: int = 0
    agreed: int = 0
    disagreements: list[str] = field(default_factory=list)

    def workload(self) -> Workload | None:
        return None if self.main is None else self.main.workload()


def _is_uvm(path: str) -> bool:
    return os.path.basename(path) == "nvidia-uvm"


def replay_records(records: list[Record], name: str = "ioctl-replay") -> Replay:
    files: dict[tuple[int, int], UvmFile] = {}
    rep = Replay(files=files, main=None)
    by_addr: dict[tuple[int, int], tuple[int, int]] = {}  # (pid, addr) -> file key of its mmap
    for r in records:
        if r.kind == KIND_MMAP and _is_uvm(r.path) and r.ret == 0:
            key = (r.pid, r.fd)
            f = files.setdefault(key, UvmFile(name=name))
            f.mmap(r.request, r.arg)
            by_addr[(r.pid, r.request)] = key
        elif r.kind == KIND_MUNMAP and (r.pid, r.request) in by_addr:
            files[by_addr.pop((r.pid, r.request))].munmap(r.request, r.arg)
        elif r.kind == KIND_IOCTL and _is_uvm(r.path):
            c = decode_record(r, 0)
            if c.family != "uvm":
                continue
            f = files.setdefault((r.pid, r.fd), UvmFile(name=name))
            got = f.ioctl(c.name, c.fields)
            real = c.fields.get("rmStatus")
            if isinstance(real, int) and r.ret == 0:
                rep.checked += 1
                if real == got:
                    rep.agreed += 1
                else:
                    rep.disagreements.append(
                        f"call {r.index} {c.name} {c.detail}: driver "
                        f"{nt.status_name(real)}, model {nt.status_name(got)}"
                    )
    live = [f for f in files.values() if f.builder.allocs]
    rep.main = max(live, key=lambda f: (len(f.calls), len(f.builder.allocs)), default=None)
    return rep


def host_calls(w: Workload) -> list[HostCall]:
    """The advice, prefetch and free operations of a workload, in order."""
    out: list[HostCall] = []
    for op in w.ops:
        if isinstance(op, AdviseOp):
            out.append(
                HostCall(
                    "advise", op.alloc, op.advice.name.lower(), op.processor, op.start_page, op.num_pages
                )
            )
        elif isinstance(op, PrefetchOp):
            out.append(HostCall("prefetch", op.alloc, "", op.processor, op.start_page, op.num_pages))
        elif isinstance(op, FreeOp):
            out.append(HostCall("free", op.alloc, "", 0, 0, w.allocs[op.alloc].pages))
    return out


# advices whose processor argument the driver ignores (uvm_ioctl.h: these take a range only)
_NO_PROCESSOR = frozenset({"unset_preferred_location", "set_read_mostly", "unset_read_mostly"})


def effective(calls: list[HostCall]) -> list[HostCall]:
    """The calls that change the driver's state: libcuda issues policy resets the program never
    wrote (seen in the stored real trace): it clears read-mostly on every new managed allocation,
    and before unmapping one it unsets read-mostly, accessed-by for each processor and the
    preferred location. A reset of a policy that is not set changes nothing, and resets right
    before the allocation's free change nothing either (the driver drops a range's policy with
    the range at unmap, uvm_va_range.c), so both are left out; prefetches and frees all stay."""
    keep = [True] * len(calls)
    # resets that only precede their allocation's free
    nxt: dict[int, str] = {}
    for i in range(len(calls) - 1, -1, -1):
        c = calls[i]
        if c.op == "advise" and c.advice.startswith("unset_") and nxt.get(c.alloc) == "free":
            keep[i] = False
            continue
        nxt[c.alloc] = c.op
    # advice that leaves the policy as it was (per page: preferred location, read-mostly,
    # accessed-by set)
    pref: dict[int, dict[int, int | None]] = {}
    rm: dict[int, set[int]] = {}
    acc: dict[int, dict[int, set[int]]] = {}
    for i, c in enumerate(calls):
        if not keep[i] or c.op != "advise":
            continue
        pages = range(c.start_page, c.start_page + c.num_pages)
        p, r, a = pref.setdefault(c.alloc, {}), rm.setdefault(c.alloc, set()), acc.setdefault(c.alloc, {})
        if c.advice == "set_preferred_location":
            changed = any(p.get(x) != c.processor for x in pages)
            p.update(dict.fromkeys(pages, c.processor))
        elif c.advice == "unset_preferred_location":
            changed = any(p.get(x) is not None for x in pages)
            p.update(dict.fromkeys(pages, None))
        elif c.advice == "set_read_mostly":
            changed = not r.issuperset(pages)
            r.update(pages)
        elif c.advice == "unset_read_mostly":
            changed = not r.isdisjoint(pages)
            r.difference_update(pages)
        elif c.advice == "set_accessed_by":
            changed = any(c.processor not in a.get(x, ()) for x in pages)
            for x in pages:
                a.setdefault(x, set()).add(c.processor)
        elif c.advice == "unset_accessed_by":
            changed = any(c.processor in a.get(x, ()) for x in pages)
            for x in pages:
                a.get(x, set()).discard(c.processor)
        else:
            changed = True
        keep[i] = changed
    return [c for c, k in zip(calls, keep, strict=True) if k]


def canonical(calls: list[HostCall], *, frees: bool = False) -> list[tuple[Any, ...]]:
    """Calls with allocations renumbered by first appearance, so that two workloads whose
    allocations are listed in different orders (or hold extra, untouched ones) compare equal."""
    order: dict[int, int] = {}
    out = []
    for c in calls:
        if c.op == "free" and not frees:
            continue
        a = order.setdefault(c.alloc, len(order))
        proc = None if c.advice in _NO_PROCESSOR else c.processor
        out.append((c.op, a, c.advice, proc, c.start_page, c.num_pages))
    return out
