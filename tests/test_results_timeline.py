"""`uvmlab run --timeline`: a Chrome / Perfetto trace in the Trace Event format."""

import json
import subprocess
import sys
from collections import defaultdict

from uvmlab.api import simulate_sampled
from uvmlab.results.perfetto import build_trace, write_timeline
from uvmlab.results.result import Result


def uvmlab(*args):
    return subprocess.run(
        [sys.executable, "-m", "uvmlab", *args], capture_output=True, text=True, timeout=600
    )


def tracks(trace):
    """{process name: {thread name, ...}} and the counter names per process."""
    procs, threads, counters = {}, defaultdict(set), defaultdict(set)
    tid_names = {}
    for e in trace["traceEvents"]:
        if e["ph"] == "M" and e["name"] == "process_name":
            procs[e["pid"]] = e["args"]["name"]
        elif e["ph"] == "M" and e["name"] == "thread_name":
            tid_names[(e["pid"], e["tid"])] = e["args"]["name"]
    for e in trace["traceEvents"]:
        if e["ph"] in ("X", "i"):
            threads[procs[e["pid"]]].add(tid_names[(e["pid"], e["tid"])])
        elif e["ph"] == "C":
            counters[procs[e["pid"]]].add(e["name"])
    return procs, threads, counters


def check_trace_event_format(trace):
    """The rules of the JSON Trace Event format that the Perfetto UI relies on."""
    assert isinstance(trace, dict) and isinstance(trace["traceEvents"], list)
    assert trace.get("displayTimeUnit") in ("ns", "ms")
    named = set()
    for e in trace["traceEvents"]:
        assert e["ph"] in ("X", "i", "C", "M"), e
        assert isinstance(e["name"], str) and e["name"]
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if e["ph"] == "M":
            named.add((e["pid"], e["tid"]) if e["name"] == "thread_name" else e["pid"])
            continue
        assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0
        if e["ph"] == "X":
            assert isinstance(e["dur"], (int, float)) and e["dur"] >= 0
        if e["ph"] == "i":
            assert e["s"] in ("t", "p", "g")
        if e["ph"] == "C":
            assert e["args"] and all(isinstance(v, (int, float)) for v in e["args"].values())
        else:
            assert (e["pid"], e["tid"]) in named, e  # every track has a name
        assert e["pid"] in named


def test_run_timeline_is_a_valid_trace_with_the_expected_tracks(tmp_path):
    out = tmp_path / "t.json"
    saved = tmp_path / "r.json"
    r = uvmlab(
        "run",
        "stream:size=8MiB,passes=2",
        "--gpu-memory",
        "150%",
        "--timeline",
        str(out),
        "--out",
        str(saved),
    )
    assert r.returncode == 0, r.stderr
    trace = json.loads(out.read_text())
    check_trace_event_format(trace)
    procs, threads, counters = tracks(trace)
    assert set(procs.values()) == {"CPU", "GPU 0"}
    assert {"kernels", "copies HtoD", "copies DtoH", "fault batches", "replays", "evictions"} <= threads[
        "GPU 0"
    ]
    assert {"CPU phases", "CPU faults"} <= threads["CPU"]
    assert {
        "bytes migrated to GPU 0",
        "GPU faults (raw, cumulative)",
        "resident on GPU 0 (bytes, sampled)",
    } <= counters["GPU 0"]
    assert "bytes migrated to CPU" in counters["CPU"]

    res = Result.load(saved)
    # kernel slices are the run's kernels, at their simulated times (µs)
    kernels = [
        e
        for e in trace["traceEvents"]
        if e["ph"] == "X" and e["cat"] == "op" and e["name"].startswith("pass")
    ]
    ops = [o for o in res.ops if o["op"] == "kernel"]
    assert [(k["name"], k["ts"], k["dur"]) for k in kernels] == [
        (o["name"], o["start_ns"] / 1000, o["time_ns"] / 1000) for o in ops
    ]
    # migrations are ranges on per-direction copy rows, by cause, as Nsight Systems draws them;
    # on each row one copy follows another, and the ranges add up to the run's bytes
    copies = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["cat"] == "migration"]
    assert {e["args"]["cause"] for e in copies} >= {"Coherence", "Eviction"}
    assert all(e["dur"] > 0 for e in copies)
    for row in {e["tid"] for e in copies}:
        mine = [e for e in copies if e["tid"] == row]
        assert all(b["ts"] >= a["ts"] + a["dur"] - 1e-6 for a, b in zip(mine, mine[1:], strict=False))
    htod = sum(e["args"]["bytes"] for e in copies if e["name"].startswith("HtoD"))
    dtoh = sum(e["args"]["bytes"] for e in copies if e["name"].startswith("DtoH"))
    assert (htod, dtoh) == (res.totals["bytes_htod"], res.totals["bytes_dtoh"])
    last = {}
    for e in trace["traceEvents"]:
        if e["ph"] == "C":
            last[e["name"]] = e["args"]
    t = res.totals
    assert sum(last["bytes migrated to GPU 0"].values()) == t["bytes_htod"]
    assert sum(last["bytes migrated to CPU"].values()) == t["bytes_dtoh"]
    assert last["GPU faults (raw, cumulative)"]["faults"] == t["gpu_faults"]
    assert last["evictions (root chunks, cumulative)"]["evictions"] == t["evictions"]
    assert trace["otherData"]["totals"]["gpu_faults"] == t["gpu_faults"]


def test_timeline_from_a_saved_result_and_without_events(tmp_path):
    res = simulate_sampled("pingpong:size=4MiB,rounds=2")  # no events: counters from samples
    trace = build_trace(res)
    check_trace_event_format(trace)
    _, threads, counters = tracks(trace)
    assert {"kernels"} <= threads["GPU 0"] and {"CPU phases"} <= threads["CPU"]
    assert "bytes migrated to GPU 0" in counters["GPU 0"]
    p = tmp_path / "r.parquet"
    res.save(p)
    r = uvmlab("timeline", str(p), "-o", str(tmp_path / "t.json"))
    assert r.returncode == 0, r.stderr
    check_trace_event_format(json.loads((tmp_path / "t.json").read_text()))


def test_nothing_is_dropped_and_the_file_streams_the_same_trace(tmp_path):
    res = simulate_sampled("random:size=8MiB,seed=1", events=True, params={"uvm_perf_prefetch_enable": 0})
    full = build_trace(res)
    ev = res.events
    ranges = {"Migration", "ThrottlingStart", "ThrottlingEnd"}
    instants = sum(e["ph"] == "i" for e in full["traceEvents"])
    assert instants == int((~ev["event"].isin(ranges)).sum()) > 1000  # every event, no thinning
    copies = sum(e["ph"] == "X" and e["cat"] == "migration" for e in full["traceEvents"])
    assert copies == int((ev["event"] == "Migration").sum())
    n = write_timeline(res, tmp_path / "t.json")
    streamed = json.loads((tmp_path / "t.json").read_text())
    assert n == len(streamed["traceEvents"]) and streamed == json.loads(json.dumps(full))
    assert (tmp_path / "t.json").stat().st_mode & 0o777 == 0o644
