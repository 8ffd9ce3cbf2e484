"""Write docs/reliability.md from the fuzzers' JSON reports.

Run the fuzzers with ``--json`` (bench/fuzz_engine.py, bench/fuzz_policies.py, bench/fuzz_cli.py),
save each report, then::

    python docs/make_reliability.py engine.json policies.json cli.json [--isolate isolate.json]

The page states what each run reached — cases, outcome counts, failure classes, time — with the
date and machine of the runs; a run stopped by its time limit says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "reliability.md"
OUTCOMES = {
    "ok": "ran to a result",
    "fatal": "ran; the modelled GPU context ended with a fatal fault (a result, as on a real GPU)",
    "clean": "refused with one clean `UvmlabError` line",
    "not-reached": "the hostile call never came (the run ended before it)",
    "skipped": "not run",
    "crash": "**crash** (an exception that is not a `UvmlabError`)",
    "hang": "**hang** (over the case time limit)",
    "memory": "**memory** (over the worker's memory limit)",
    "died": "**died** (the worker process ended)",
    "bad": "**wrong** (no traceback, but the promise broken: not ejected, a file replaced, ...)",
}
TARGET = {"fuzz_engine": 100_000, "fuzz_cli": 10_000, "fuzz_policies": 0}


def section(rep: dict) -> list[str]:
    name = rep["fuzzer"]
    lines = [f"## {name}", ""]
    target = TARGET.get(name, 0)
    reached = rep["cases"]
    lines.append(
        f"{reached:,} cases in {rep['wall_s']:.0f} s (seed {rep['seed']}, {rep['cpus']} CPUs, "
        f"Python {rep['python']})" + (" — stopped by its time limit" if rep["stopped_by_time"] else "") + "."
    )
    if target and reached < target:
        lines.append(f"**Target not reached**: {target:,} cases were asked; this run reached {reached:,}.")
    lines += ["", "| outcome | cases | meaning |", "|---|---:|---|"]
    for k, v in sorted(rep["counts"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {k} | {v:,} | {OUTCOMES.get(k, '')} |")
    lines += ["", f"Failures (crash, hang, memory, died, wrong): **{rep['failures']}**.", ""]
    if rep["classes"]:
        lines += ["| failure class | count | example |", "|---|---:|---|"]
        for key, c in sorted(rep["classes"].items(), key=lambda kv: -kv[1]["count"]):
            ex = json.dumps(c["example"])[:80].replace("|", "\\|")
            lines.append(f"| {key[:100].replace('|', '/')} | {c['count']} | `{ex}` |")
        lines.append("")
    if rep.get("kinds"):
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(rep["kinds"].items()))
        lines += [f"Case kinds (a case may have several): {kinds}.", ""]
    return lines


def isolate_section(b: dict) -> list[str]:
    lines = [
        "## Cost of `--isolate`",
        "",
        f"`bench/bench_isolate.py` on `{b['workload']}` at {b['gpu_memory']} GPU memory, both ways in one "
        "run (same totals):",
        "",
        "| hook | calls | in process | isolated | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for hook, r in b["hooks"].items():
        lines.append(
            f"| {hook} | {r['calls']:,} | {r['in_process_us']:.1f} µs | {r['isolated_us']:.1f} µs | "
            f"{r['ratio']:.0f}x |"
        )
    lines += [
        "",
        f"Whole run: {b['in_process_wall_s']:.2f} s in the process, {b['isolated_wall_s']:.2f} s isolated "
        f"({b['run_wall_ratio']:.1f}x).",
        "",
    ]
    return lines


def sparse_section(rows: list[dict]) -> list[str]:
    lines = [
        "## Memory of sparse VA",
        "",
        "`bench/bench_sparse.py`: peak resident memory of one run in a fresh process "
        "(target: 16 TiB of sparse managed memory, 10^8 touches, under 4 GiB).",
        "",
        "| workload | VA | touches | evictions | peak RSS | wall |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['spec']}` | {r['va_bytes'] / 2**40:.0f} TiB | {r['touches']:,} | {r['evictions']:,} | "
            f"{r['peak_rss'] / 2**30:.2f} GiB | {r['wall_s']:.0f} s |"
        )
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", type=Path, help="JSON reports of the fuzzers")
    ap.add_argument("--isolate", type=Path, help="JSON of bench/bench_isolate.py")
    ap.add_argument("--machine", default="", help="what ran them, e.g. '2-core shared CI VM'")
    ap.add_argument("--notes", type=Path, help="Markdown appended as-is (open findings, caveats)")
    ap.add_argument("--sparse", type=Path, nargs="*", default=[], help="JSON lines of bench/bench_sparse.py")
    a = ap.parse_args(argv)
    reps = [json.loads(p.read_text()) for p in a.reports]
    lines = [
        "# Reliability: fuzzing counts",
        "",
        "Written by `docs/make_reliability.py` from the fuzzers' `--json` reports "
        f"({time.strftime('%Y-%m-%d')}{', ' + a.machine if a.machine else ''}). What the fuzzers try and "
        "what passing means: the docstrings of `bench/fuzz_engine.py`, `bench/fuzz_policies.py`, "
        "`bench/fuzz_cli.py`; "
        "the promises they check: docs/security.md. A small seeded sample of each runs in the test command "
        "(tests/test_fuzz_samples.py).",
        "",
    ]
    for rep in reps:
        lines += section(rep)
    if a.isolate:
        lines += isolate_section(json.loads(a.isolate.read_text()))
    if a.sparse:
        lines += sparse_section([json.loads(p.read_text()) for p in a.sparse])
    if a.notes:
        lines += ["", a.notes.read_text().strip(), ""]
    OUT.write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
