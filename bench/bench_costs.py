"""What the optional outputs cost: residency sampling, the event stream and the timeline.

    python3 bench/bench_costs.py            # the sizes docs/performance.md quotes
    python3 bench/bench_costs.py --quick    # tiny sizes (the smoke test)
    python3 bench/bench_costs.py --json     # one JSON object

Each workload runs plainly, then with residency sampling (what ``--out`` / sweeps take), with
the event stream (``--events``), and with the event stream written as a Perfetto timeline
(``--timeline``: the run plus writing the file). Every figure is a ratio of wall time to the
plain run measured in the same process (best of ``--repeats``), since absolute times on a
shared machine are noise. The numbers ``uvmlab run --help`` states come from this.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

from uvmlab.api import load_workload, simulate
from uvmlab.engine.sampling import record_samples
from uvmlab.results.perfetto import write_timeline

WORKLOADS = {
    "hit-heavy": ("stream:size=2GiB,passes=8", None),
    "fault-heavy": ("random:size=512MiB", None),
    "oversubscribed": ("llm:size=512MiB", "150%"),
}
QUICK = {
    "hit-heavy": ("stream:size=32MiB,passes=2", None),
    "fault-heavy": ("random:size=8MiB", None),
    "oversubscribed": ("llm:size=32MiB", "150%"),
}


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(spec: str, gpu_memory: str | None, repeats: int) -> dict[str, float]:
    w = load_workload(spec)  # built once: the figures are the run's, not the generator's
    simulate(w, gpu_memory=gpu_memory)  # compile and warm caches outside the timings

    def plain():
        simulate(w, gpu_memory=gpu_memory)

    def sampled():
        with record_samples() as rec:
            r = simulate(w, gpu_memory=gpu_memory)
        rec.attach(r)

    def events():
        simulate(w, gpu_memory=gpu_memory, events=True)

    n_events = [0]

    def timeline():
        r = simulate(w, gpu_memory=gpu_memory, events=True)
        n_events[0] = len(r.events)
        with tempfile.TemporaryDirectory() as d:
            write_timeline(r, os.path.join(d, "t.json"))

    base = _best(plain, repeats)
    return {
        "plain_s": base,
        "sampling": _best(sampled, repeats) / base,
        "events": _best(events, repeats) / base,
        "timeline": _best(timeline, repeats) / base,
        "events_recorded": n_events[0],
    }


BEGIN = "<!-- BEGIN costs (written by bench/bench_costs.py --doc) -->"
END = "<!-- END costs -->"


def write_doc(rows: dict[str, dict]) -> None:
    """The table between the markers of docs/performance.md, with the date and the machine."""
    doc = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    lines = [
        BEGIN,
        "",
        f"`python3 bench/bench_costs.py --doc` on {stamp} ({machine}); wall time of the run with the "
        "option over the plain run's, best of 3, measured in the same process:",
        "",
        "| scenario | workload | plain run | residency sampling | `--events` | `--timeline` | events |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        wl = r["workload"] + (f" at {r['gpu_memory']}" if r["gpu_memory"] else "")
        lines.append(
            f"| {name} | `{wl}` | {r['plain_s']:.2f} s | {r['sampling']:.2f}x | {r['events']:.1f}x | "
            f"{r['timeline']:.1f}x | {r['events_recorded']:,} |"
        )
    lines += ["", END]
    text = doc.read_text()
    if BEGIN not in text:
        text = text.rstrip() + "\n\n## What the optional outputs cost\n\n" + BEGIN + "\n" + END + "\n"
    text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), "\n".join(lines), text, flags=re.S)
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--doc", action="store_true", help="Also write the table into docs/performance.md.")
    a = ap.parse_args(argv)
    rows = {}
    for name, (spec, mem) in (QUICK if a.quick else WORKLOADS).items():
        if not a.json:
            print(f"{name}: {spec}{' at ' + mem if mem else ''} ...", file=sys.stderr, flush=True)
        rows[name] = {"workload": spec, "gpu_memory": mem, **measure(spec, mem, a.repeats)}
    if a.doc:
        write_doc(rows)
    if a.json:
        print(json.dumps(rows))
        return 0
    print(f"{'scenario':<15} {'plain':>8} {'sampling':>9} {'events':>8} {'timeline':>9} {'events':>10}")
    for name, r in rows.items():
        print(
            f"{name:<15} {r['plain_s']:>7.2f}s {r['sampling']:>8.2f}x {r['events']:>7.2f}x "
            f"{r['timeline']:>8.2f}x {r['events_recorded']:>10,}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
