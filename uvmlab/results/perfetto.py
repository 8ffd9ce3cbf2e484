"""A run as a Chrome / Perfetto trace (the JSON Trace Event format), to open in ui.perfetto.dev.

One process per processor ("CPU", "GPU 0"), with tracks (threads) for what happened there:

* CPU: ``CPU phases`` and ``host API`` (prefetch, advise, free, sync) as slices; ``CPU faults``,
  ``migrations to CPU`` (named by cause) and ``thrashing`` (detections as instants, throttling
  as slices) as instant events;
* GPU 0: ``kernels`` as slices; ``fault batches``, ``replays``, ``migrations to GPU 0``,
  ``evictions``, ``remote maps``, ``thrashing`` as instant events;
* counters per processor: cumulative bytes migrated to it by cause, cumulative faults, and,
  when the run was sampled, the bytes resident there.

Operation slices come from the per-operation rows (always there); instants and counters need
the event stream (``--events``, implied by ``--timeline``) or the run's samples. Timestamps are
simulated time, in µs as the format requires. Slices are never dropped; a run with more than
``max_instants`` instant events keeps an evenly spaced subset of them (counters still count
every event) and says so in the trace's ``otherData``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from uvmlab.driver import tools
from uvmlab.engine.sampling import SAMPLED_COUNTERS
from uvmlab.results.io import write_atomic

if TYPE_CHECKING:
    from uvmlab.results.result import Result

MAX_INSTANTS = 200_000
MAX_COUNTER_POINTS = 2_000  # per counter track: more is invisible at any zoom that shows a run

HOST_OPS = ("prefetch", "advise", "free", "sync", "alloc")

# event -> (track on the event's processor, instant name); Migration is special (cause)
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
    "CPU phases",
    "host API",
    "fault batches",
    "replays",
    "CPU faults",
    "migrations",
    "evictions",
    "remote maps",
    "thrashing",
    "read duplication",
    "errors",
)


def _proc_name(p: int) -> str:
    return "CPU" if p <= 0 else f"GPU {p - 1}"


class _Trace:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.tids: dict[tuple[int, str], int] = {}
        self.pids: set[int] = set()

    def pid(self, proc: int) -> int:
        pid = max(proc, 0) + 1
        if pid not in self.pids:
            self.pids.add(pid)
            self.events.append(
                {
                    "ph": "M",
                    "name": "process_name",
                    "pid": pid,
                    "tid": 0,
                    "args": {"name": _proc_name(max(proc, 0))},
                }
            )
            self.events.append(
                {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}}
            )
        return pid

    def tid(self, proc: int, track: str) -> tuple[int, int]:
        pid = self.pid(proc)
        key = (pid, track)
        if key not in self.tids:
            tid = len(self.tids) + 1
            self.tids[key] = tid
            base = track.split(" to ")[0]
            order = TRACK_ORDER.index(base) if base in TRACK_ORDER else len(TRACK_ORDER) + tid
            self.events.append(
                {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": track}}
            )
            self.events.append(
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
        ts_ns: int,
        dur_ns: int,
        args: dict[str, Any] | None = None,
        cat: str = "op",
    ) -> None:
        pid, tid = self.tid(proc, track)
        self.events.append(
            {
                "ph": "X",
                "name": name,
                "cat": cat,
                "pid": pid,
                "tid": tid,
                "ts": ts_ns / 1000.0,
                "dur": max(0, dur_ns) / 1000.0,
                "args": args or {},
            }
        )

    def instant(self, proc: int, track: str, name: str, ts_ns: int, args: dict[str, Any], cat: str) -> None:
        pid, tid = self.tid(proc, track)
        self.events.append(
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
        idx = _thin(len(ts_ns), MAX_COUNTER_POINTS)
        for i in idx:
            self.events.append(
                {
                    "ph": "C",
                    "name": name,
                    "pid": pid,
                    "tid": 0,
                    "ts": int(ts_ns[i]) / 1000.0,
                    "args": {k: int(v[i]) for k, v in series.items()},
                }
            )


def _thin(n: int, cap: int) -> np.ndarray:
    """Indices of at most ``cap`` evenly spaced items of ``n``, always keeping the last."""
    if n <= cap:
        return np.arange(n)
    idx = np.unique(np.linspace(0, n - 1, cap).round().astype(np.int64))
    return idx


def build_trace(res: Result, *, max_instants: int = MAX_INSTANTS) -> dict[str, Any]:
    """The Trace Event JSON object for ``res``."""
    tr = _Trace()
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
    dropped = 0
    if res.events is not None and len(res.events):
        dropped = _add_events(tr, res.events, max_instants)
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
        "instants_dropped": dropped,
        "producer": "uvmlab",
    }
    if res.fatal:
        other["fatal"] = res.fatal
    return {"traceEvents": tr.events, "displayTimeUnit": "ns", "otherData": other}


def _add_events(tr: _Trace, df: Any, max_instants: int) -> int:
    t = df["time_ns"].to_numpy(np.int64)
    name = df["event"].astype(str).to_numpy()
    proc = df["processor"].to_numpy(np.int64)
    addr = df["address"].to_numpy(np.int64)
    nbytes = df["bytes"].to_numpy(np.int64)
    cause = df["cause"].astype(str).to_numpy()
    src = df["src"].to_numpy(np.int64)
    info = df["info"].astype(str).to_numpy()

    # throttling: a slice from each ThrottlingStart to the next ThrottlingEnd of that page
    open_throttle: dict[tuple[int, int], int] = {}
    instant_rows = []
    for i in range(len(t)):
        n = name[i]
        if n == tools.THROTTLING_START:
            open_throttle[(int(proc[i]), int(addr[i]))] = int(t[i])
        elif n == tools.THROTTLING_END:
            start = open_throttle.pop((int(proc[i]), int(addr[i])), None)
            if start is not None:
                tr.slice(
                    int(proc[i]),
                    "thrashing",
                    "throttled",
                    start,
                    int(t[i]) - start,
                    {"address": hex(int(addr[i]))},
                    cat="thrashing",
                )
        else:
            instant_rows.append(i)
    keep = np.asarray(instant_rows, dtype=np.int64)
    dropped = 0
    if len(keep) > max_instants:
        sel = _thin(len(keep), max_instants)
        dropped = len(keep) - len(sel)
        keep = keep[sel]
    for i in keep:
        n, p = name[i], int(proc[i])
        args: dict[str, Any] = {}
        if addr[i] >= 0:
            args["address"] = hex(int(addr[i]))
        if n == tools.MIGRATION:
            track = f"migrations to {_proc_name(p)}"
            label = f"Migration {cause[i]}"
            args.update(bytes=int(nbytes[i]), cause=str(cause[i]), src=_proc_name(int(src[i])))
        elif n == tools.GPU_FAULT:
            track, label = "fault batches", "fault batch"
            args["faults"] = int(nbytes[i])
        else:
            track, label = _INSTANT_TRACKS.get(n, "other"), n
            if nbytes[i]:
                args["bytes"] = int(nbytes[i])
            if cause[i]:
                args["cause"] = str(cause[i])
        if info[i]:
            args["info"] = str(info[i])
        tr.instant(p, track, label, int(t[i]), args, cat=n)

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
    return dropped


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


def write_timeline(res: Result, path: str | Path, *, max_instants: int = MAX_INSTANTS) -> None:
    """Write ``res`` as a Trace Event JSON file, atomically."""
    trace = build_trace(res, max_instants=max_instants)
    write_atomic(Path(path), json.dumps(trace, separators=(",", ":")).encode(), what="timeline", stdout=True)
