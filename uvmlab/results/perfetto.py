"""A run as a Chrome / Perfetto trace (the JSON Trace Event format), to open in ui.perfetto.dev.

Laid out the way Nsight Systems shows unified memory, one process per processor:

* GPU 0: ``kernels`` as slices; migrations as **ranges on per-direction copy rows** (``copies
  HtoD``, ``copies DtoH``, ``copies DtoD``), each lasting its bytes over the profile's copy
  bandwidth for that direction and queued behind the previous copy of its row, as a copy engine
  runs them; ``fault batches``, ``replays``, ``evictions``, ``remote maps`` as instants;
* CPU: ``CPU phases`` and ``host API`` (prefetch, advise, free, sync) as slices; ``CPU faults``
  and ``thrashing`` (detections as instants, throttling as slices) and ``errors`` (fatal faults,
  policy ejections);
* counter tracks per processor: cumulative bytes migrated to it by cause, cumulative faults and
  evictions, and, when the run was sampled, the bytes resident there.

Nothing is dropped or thinned, whatever the run's size: :func:`write_timeline` streams the
events to the file as they are made, so a run of millions of events needs memory for one chunk
of them, not for the whole trace. Timestamps are simulated time, in µs as the format requires.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

import numpy as np

from uvmlab.core.errors import UvmlabError
from uvmlab.core.output import open_atomic
from uvmlab.driver import tools
from uvmlab.engine.sampling import SAMPLED_COUNTERS
from uvmlab.timing.cost_model import CostProfile, load_profile

if TYPE_CHECKING:
    from uvmlab.results.result import Result

HOST_OPS = ("prefetch", "advise", "free", "sync", "alloc")

# event -> track of its instant on the event's processor (migrations and throttling are ranges)
_INSTANT_TRACKS = {
    tools.CPU_FAULT: "CPU faults",
    tools.GPU_FAULT: "fault batches",
    tools.GPU_FAULT_REPLAY: "replays",
    tools.EVICTION: "evictions",
    tools.MAP_REMOTE: "remote maps",
    tools.THRASHING_DETECTED: "thrashing",
    tools.READ_DUPLICATE: "read duplication",
    tools.READ_DUPLICATE_INVALIDATE: "read duplication",
    tools.FATAL_FAULT: "errors",
    tools.POLICY_EJECTED: "errors",
}

#: track order within a process (others follow in order of appearance)
TRACK_ORDER = (
    "kernels",
    "copies HtoD",
    "copies DtoH",
    "copies DtoD",
    "CPU phases",
    "host API",
    "fault batches",
    "replays",
    "CPU faults",
    "evictions",
    "remote maps",
    "thrashing",
    "read duplication",
    "errors",
)
_CHUNK = 20_000  # events per write when streaming


def _proc_name(p: int) -> str:
    return "CPU" if p <= 0 else f"GPU {p - 1}"


class _Trace:
    """Makes trace events and hands each to ``emit`` (a list's append, or the file writer)."""

    def __init__(self, emit: Callable[[dict[str, Any]], None]) -> None:
        self.emit = emit
        self.tids: dict[tuple[int, str], int] = {}
        self.pids: set[int] = set()

    def pid(self, proc: int) -> int:
        pid = max(proc, 0) + 1
        if pid not in self.pids:
            self.pids.add(pid)
            name = _proc_name(max(proc, 0))
            self.emit({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": name}})
            self.emit(
                {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}}
            )
        return pid

    def tid(self, proc: int, track: str) -> tuple[int, int]:
        pid = self.pid(proc)
        key = (pid, track)
        if key not in self.tids:
            tid = len(self.tids) + 1
            self.tids[key] = tid
            order = TRACK_ORDER.index(track) if track in TRACK_ORDER else len(TRACK_ORDER) + tid
            self.emit({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": track}})
            self.emit(
                {
                    "ph": "M",
                    "name": "thread_sort_index",
                    "pid": pid,
                    "tid": tid,
                    "args": {"sort_index": order},
                }
            )
        return pid, self.tids[key]

    def slice(
        self,
        proc: int,
        track: str,
        name: str,
        ts_ns: float,
        dur_ns: float,
        args: dict[str, Any] | None = None,
        cat: str = "op",
    ) -> None:
        pid, tid = self.tid(proc, track)
        self.emit(
            {
                "ph": "X",
                "name": name,
                "cat": cat,
                "pid": pid,
                "tid": tid,
                "ts": ts_ns / 1000.0,
                "dur": max(0.0, dur_ns) / 1000.0,
                "args": args or {},
            }
        )

    def instant(self, proc: int, track: str, name: str, ts_ns: int, args: dict[str, Any], cat: str) -> None:
        pid, tid = self.tid(proc, track)
        self.emit(
            {
                "ph": "i",
                "s": "t",
                "name": name,
                "cat": cat,
                "pid": pid,
                "tid": tid,
                "ts": ts_ns / 1000.0,
                "args": args,
            }
        )

    def counter(self, proc: int, name: str, ts_ns: np.ndarray, series: dict[str, np.ndarray]) -> None:
        pid = self.pid(proc)
        cols = {k: v.tolist() for k, v in series.items()}
        for i, t in enumerate(ts_ns.tolist()):
            self.emit(
                {
                    "ph": "C",
                    "name": name,
                    "pid": pid,
                    "tid": 0,
                    "ts": t / 1000.0,
                    "args": {k: int(v[i]) for k, v in cols.items()},
                }
            )


def _bandwidths(res: Result) -> tuple[dict[str, float], str]:
    """Copy bandwidth (bytes/ns) per direction from the run's profile, and where it came from."""
    try:
        prof = load_profile(res.profile) if res.profile else CostProfile()
        src = res.profile or "default profile"
    except UvmlabError:
        prof, src = CostProfile(), f"default profile ({res.profile!r} not found)"
    return {"HtoD": prof.htod_gbps, "DtoH": prof.dtoh_gbps, "DtoD": max(prof.htod_gbps, prof.dtoh_gbps)}, src


def _emit_all(res: Result, tr: _Trace) -> dict[str, Any]:
    tr.pid(0)
    tr.pid(1)
    for op in res.ops:
        kind, name = op.get("op", ""), str(op.get("name", op.get("op", "")))
        args = {k: v for k, v in op.items() if k not in ("op", "name") and v}
        start, dur = int(op.get("start_ns", 0)), int(op.get("time_ns", 0))
        if kind == "kernel":
            tr.slice(1, "kernels", name, start, dur, args)
        elif kind == "cpu":
            tr.slice(0, "CPU phases", name, start, dur, args)
        else:
            tr.slice(0, "host API", name if kind in ("", name) else f"{kind} {name}", start, dur, args)
    bw, bw_src = _bandwidths(res)
    if res.events is not None and len(res.events):
        _add_events(tr, res.events, bw)
    elif res.samples is not None:
        _add_sample_counters(tr, res.samples)
    if res.samples is not None:
        _add_residency(tr, res.samples)
    other = {
        "workload": res.workload,
        "source": res.source,
        "gpu": res.gpu,
        "profile": res.profile,
        "gpu_memory_bytes": res.gpu_memory_bytes,
        "params": res.params,
        "totals": res.canonical(),
        "time_unit": "simulated ns",
        "copy_durations": f"bytes / copy bandwidth of {bw_src}, queued per direction",
        "producer": "uvmlab",
    }
    if res.fatal:
        other["fatal"] = res.fatal
    return other


def build_trace(res: Result) -> dict[str, Any]:
    """The Trace Event JSON object for ``res`` (in memory; :func:`write_timeline` streams)."""
    events: list[dict[str, Any]] = []
    other = _emit_all(res, _Trace(events.append))
    return {"traceEvents": events, "displayTimeUnit": "ns", "otherData": other}


def _add_events(tr: _Trace, df: Any, bw: dict[str, float]) -> None:
    t = df["time_ns"].to_numpy(np.int64)
    name = df["event"].astype(str).to_numpy()
    proc = df["processor"].to_numpy(np.int64)
    addr = df["address"].to_numpy(np.int64)
    nbytes = df["bytes"].to_numpy(np.int64)
    cause = df["cause"].astype(str).to_numpy()
    src = df["src"].to_numpy(np.int64)
    info = df["info"].astype(str).to_numpy()

    open_throttle: dict[tuple[int, int], int] = {}
    row_end: dict[str, float] = {}  # each copy row runs one copy at a time, in issue order
    for i in np.argsort(t, kind="stable").tolist():
        n, p, ti = name[i], int(proc[i]), int(t[i])
        if n == tools.THROTTLING_START:
            open_throttle[(p, int(addr[i]))] = ti
            continue
        if n == tools.THROTTLING_END:
            start = open_throttle.pop((p, int(addr[i])), None)
            if start is not None:
                tr.slice(
                    p,
                    "thrashing",
                    "throttled",
                    start,
                    ti - start,
                    {"address": hex(int(addr[i]))},
                    "thrashing",
                )
            continue
        args: dict[str, Any] = {}
        if addr[i] >= 0:
            args["address"] = hex(int(addr[i]))
        if info[i]:
            args["info"] = str(info[i])
        if n == tools.MIGRATION:
            s = int(src[i])
            d = "DtoH" if p == 0 else ("DtoD" if s > 0 else "HtoD")
            b = int(nbytes[i])
            begin = max(float(ti), row_end.get(d, 0.0))
            dur = b / bw[d] if bw[d] > 0 else 0.0
            row_end[d] = begin + dur
            args.update(bytes=b, cause=str(cause[i]), src=_proc_name(s), dst=_proc_name(p))
            # the copy engines are the GPU's: every direction's row is on GPU 0, as in Nsight
            tr.slice(max(p, s, 1), f"copies {d}", f"{d} {cause[i]}", begin, dur, args, "migration")
            continue
        if n == tools.GPU_FAULT:
            label = "fault batch"
            args["faults"] = int(nbytes[i])
        else:
            label = n
            if nbytes[i]:
                args["bytes"] = int(nbytes[i])
            if cause[i]:
                args["cause"] = str(cause[i])
        tr.instant(p, _INSTANT_TRACKS.get(n, "other"), label, ti, args, cat=n)

    # counters: cumulative bytes migrated to each processor by cause, and faults
    order = np.argsort(t, kind="stable")
    for p in sorted(set(int(x) for x in proc[name == tools.MIGRATION])):
        m = order[(name[order] == tools.MIGRATION) & (proc[order] == p)]
        causes = sorted(set(cause[m].tolist()))
        series = {c: np.cumsum(np.where(cause[m] == c, nbytes[m], 0)) for c in causes}
        tr.counter(p, f"bytes migrated to {_proc_name(p)}", t[m], series)
    g = order[name[order] == tools.GPU_FAULT]
    for p in sorted(set(int(x) for x in proc[g])):
        gp = g[proc[g] == p]
        tr.counter(p, "GPU faults (raw, cumulative)", t[gp], {"faults": np.cumsum(nbytes[gp])})
    c = order[name[order] == tools.CPU_FAULT]
    if len(c):
        tr.counter(0, "CPU faults (cumulative)", t[c], {"faults": np.arange(1, len(c) + 1)})
    e = order[name[order] == tools.EVICTION]
    for p in sorted(set(int(x) for x in proc[e])):
        ep = e[proc[e] == p]
        tr.counter(p, "evictions (root chunks, cumulative)", t[ep], {"evictions": np.arange(1, len(ep) + 1)})


def _add_sample_counters(tr: _Trace, s: Any) -> None:
    """Without events: the same counters at the sampled times."""
    cnt = s.counters
    to_gpu = {
        k.removeprefix("bytes_htod_"): cnt[k]
        for k in SAMPLED_COUNTERS
        if k.startswith("bytes_htod_") and k in cnt
    }
    to_cpu = {
        k.removeprefix("bytes_dtoh_"): cnt[k]
        for k in SAMPLED_COUNTERS
        if k.startswith("bytes_dtoh_") and k in cnt
    }
    tr.counter(1, "bytes migrated to GPU 0", s.time_ns, to_gpu)
    tr.counter(0, "bytes migrated to CPU", s.time_ns, to_cpu)
    if "gpu_faults" in cnt:
        tr.counter(1, "GPU faults (raw, cumulative)", s.time_ns, {"faults": cnt["gpu_faults"]})
    if "cpu_faults" in cnt:
        tr.counter(0, "CPU faults (cumulative)", s.time_ns, {"faults": cnt["cpu_faults"]})
    if "evictions" in cnt:
        tr.counter(1, "evictions (root chunks, cumulative)", s.time_ns, {"evictions": cnt["evictions"]})


def _add_residency(tr: _Trace, s: Any) -> None:
    if s.n_samples == 0 or s.n_bins == 0:
        return
    pages = (
        np.minimum(np.arange(1, s.n_bins + 1) * s.bin_pages, s.total_pages)
        - np.arange(s.n_bins) * s.bin_pages
    )
    f = s.fractions()
    on_gpu = ((f[:, :, 2] + f[:, :, 3]) * pages).sum(axis=1) * 4096
    on_cpu = ((f[:, :, 1] + f[:, :, 3]) * pages).sum(axis=1) * 4096
    tr.counter(1, "resident on GPU 0 (bytes, sampled)", s.time_ns, {"bytes": on_gpu.round().astype(np.int64)})
    tr.counter(0, "resident on CPU (bytes, sampled)", s.time_ns, {"bytes": on_cpu.round().astype(np.int64)})


def write_timeline(res: Result, path: str | Path) -> int:
    """Stream ``res`` to ``path`` as a Trace Event JSON file, atomically (temp file + rename, the
    mode a plain ``open`` gives); returns the number of events written."""
    # '-' is standard output, as the other writers allow; a file goes through core.output's
    # rules (no device, FIFO or directory replaced, symlinks resolved, parents created)
    with open_atomic(path, what="timeline", stdout=True) as f:
        return _stream(res, cast(TextIO, f))


def _stream(res: Result, f: TextIO) -> int:
    """Write the trace of ``res`` to ``f`` event by event; returns the number of events."""
    count = 0
    f.write('{"traceEvents":[\n')
    buf: list[str] = []

    def emit(e: dict[str, Any]) -> None:
        nonlocal count
        buf.append(json.dumps(e, separators=(",", ":")))
        count += 1
        if len(buf) >= _CHUNK:
            f.write((",\n" if count > len(buf) else "") + ",\n".join(buf))
            buf.clear()

    other = _emit_all(res, _Trace(emit))
    if buf:
        f.write((",\n" if count > len(buf) else "") + ",\n".join(buf))
    f.write('\n],"displayTimeUnit":"ns","otherData":')
    f.write(json.dumps(other, default=str))
    f.write("}\n")
    return count
