"""Regenerate the model-generated tables of docs/heuristics.md (run: python3 docs/make_heuristics_tables.py).

Each table sits between ``<!-- generated: NAME -->`` and ``<!-- end generated -->``; the script
rewrites those and leaves the prose alone (read it against the new numbers). About a minute.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

import numpy as np

import uvmlab
from uvmlab.core.units import fmt_bytes
from uvmlab.driver.perf.prefetch import compute_prefetch_mask
from uvmlab.workload.builder import WorkloadBuilder

MiB = 1 << 20


def mask(pages, n=512):
    m = np.zeros(n, dtype=bool)
    m[list(pages)] = True
    return m


def runs(m):
    idx = np.flatnonzero(m)
    if len(idx) == 0:
        return "—"
    cuts = np.flatnonzero(np.diff(idx) != 1) + 1
    parts = np.split(idx, cuts)
    return ", ".join(f"{p[0]}–{p[-1]}" if len(p) > 1 else f"{p[0]}" for p in parts)


def prefetch_table() -> None:
    print("| faulted pages | already on D | pages prefetched | count |")
    print("|---|---|---|---|")
    cases = [
        ([0], []),
        ([16], range(16)),
        ([32], range(32)),
        ([64], range(64)),
        ([128], range(128)),
        ([256], range(256)),
        ([300], []),
        ([0, 1, 2, 3, 20, 40], []),
        ([5, 40, 70, 100], range(64)),
        (range(0, 512, 32), []),
        (range(0, 256), []),
    ]
    for faulted, resident in cases:
        out = compute_prefetch_mask(mask(faulted), mask(resident), None, block_first_page_va=512)
        out &= ~mask(resident)  # the hint may name pages already on D; the copy skips them
        f = list(faulted)
        fdesc = runs(mask(f)) if len(f) <= 8 else f"{len(f)} pages ({runs(mask(f))[:30]}…)"
        print(f"| {fdesc} | {runs(mask(resident))} | {runs(out)} | {int(out.sum())} |")


def simulate_rows(specs, **kw):
    for label, spec, extra in specs:
        r = uvmlab.simulate(spec, **kw, **extra)
        yield label, r.totals


def prefetch_effect_table() -> None:
    print("| workload | prefetch | GPU faults | batches | HtoD fault | HtoD prefetch | time |")
    print("|---|---|---|---|---|---|---|")
    for spec in ("stream:size=256MiB,passes=1", "random:size=256MiB", "stride:size=256MiB"):
        for on in (1, 0):
            t = uvmlab.simulate(spec, params={"uvm_perf_prefetch_enable": on}).totals
            print(
                f"| {spec} | {'on' if on else 'off'} | {t['gpu_faults']:,} | "
                f"{t['fault_batches']:,} | {fmt_bytes(t['bytes_htod_fault'])} | "
                f"{fmt_bytes(t['bytes_htod_prefetch'])} | {t['time_ns'] / 1e6:.1f} ms |"
            )


def pingpong(round_ns: int, rounds: int = 40):
    b = WorkloadBuilder(f"pingpong-{round_ns // 1000}us")
    a = b.alloc("buf", "64KiB")
    for i in range(rounds):
        b.kernel(f"gpu{i}", [b.run(a, 0, 1, access="write")], compute_ns=round_ns // 2)
        b.cpu(f"cpu{i}", [b.run(a, 0, 1, access="write")], compute_ns=round_ns // 2)
    return b.build()


def thrashing_table() -> None:
    print("| ping-pong round | thrashing detections | THROTTLE hints | PIN hints | bytes moved | time |")
    print("|---|---|---|---|---|---|")
    for round_ns in (10_000, 100_000, 400_000, 2_000_000, 31_000_000):
        t = uvmlab.simulate(pingpong(round_ns)).totals
        print(
            f"| {round_ns / 1000:,.0f} µs | {t['thrashing_events']} | {t['throttles']} | "
            f"{t['pins']} | {fmt_bytes(t['bytes_htod'] + t['bytes_dtoh'])} | "
            f"{t['time_ns'] / 1e6:.1f} ms |"
        )


def hotcold(size_mib: int = 256, seed: int = 0):
    """A hot set (25 %) read by every kernel, and one random cold chunk per kernel."""
    b = WorkloadBuilder("hotcold", seed=seed)
    hot = b.alloc("hot", f"{size_mib // 4}MiB")
    cold = b.alloc("cold", f"{size_mib - size_mib // 4}MiB")
    b.cpu("init", [b.run(hot, access="write"), b.run(cold, access="write")])
    rng = np.random.default_rng(seed)
    chunk = 4 * 512  # 8 MiB of cold data per kernel
    for i in range(24):
        start = int(rng.integers(0, b.pages(cold) - chunk))
        b.kernel(f"k{i}", [b.run(hot), b.run(cold, start, chunk)])
    return b.build()


def oversubscription_table() -> None:
    ratios = ("50%", "100%", "125%", "150%", "200%")
    print("| workload | " + " | ".join(f"HtoD @ {r}" for r in ratios) + " | evictions @ 150% |")
    print("|---|" + "---|" * (len(ratios) + 1))
    specs = [
        ("stream 1 GiB, 3 passes", "stream:size=1GiB,passes=3"),
        ("random 4 KiB", "random:size=256MiB"),
        ("tiled GEMM", "gemm:size=256MiB"),
        ("LLM layer sweep", "llm:size=256MiB,tokens=8"),
        ("hot 25 % + cold chunks", hotcold()),
    ]
    for label, spec in specs:
        cells, ev = [], 0
        for r in ratios:
            t = uvmlab.simulate(spec, gpu_memory=r).totals
            cells.append(fmt_bytes(t["bytes_htod"]))
            if r == "150%":
                ev = t["evictions"]
        print(f"| {label} | " + " | ".join(cells) + f" | {ev:,} |")


def hot_set_table() -> None:
    """Where the hot/cold workload's migrations go at 150 %: the hot set is only ever *hit*
    after its first fault, so the driver's list never refreshes it (uvm_pmm_gpu.c)."""
    from uvmlab.driver.va_space import VaSpace

    w = hotcold()
    print("| GPU memory | hot set migrated in | cold data migrated in | evictions of hot blocks |")
    print("|---|---|---|---|")
    for ratio in ("100%", "150%", "200%"):
        r = uvmlab.simulate(w, gpu_memory=ratio, events=True)
        ev = r.events
        lo = int(VaSpace(w.allocs).alloc_base[0]) * 4096
        hi = lo + w.allocs[0].bytes
        mig = ev[(ev.event == "Migration") & (ev.processor == 1)]
        hot = (mig.address >= lo) & (mig.address < hi)
        evi = ev[ev.event == "Eviction"]
        hot_ev = int(((evi.address >= lo) & (evi.address < hi)).sum())
        print(
            f"| {ratio} | {fmt_bytes(mig[hot].bytes.sum())} | {fmt_bytes(mig[~hot].bytes.sum())}"
            f" | {hot_ev} of {len(evi)} |"
        )


TABLES = (
    ("prefetch-regions", prefetch_table),
    ("prefetch-effect", prefetch_effect_table),
    ("thrashing", thrashing_table),
    ("oversubscription", oversubscription_table),
    ("hot-set", hot_set_table),
)
DOC = Path(__file__).resolve().parent / "heuristics.md"
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


def main() -> int:
    doc = DOC.read_text()
    tables = {}
    for name, fn in TABLES:
        print(f"{name} ...", file=sys.stderr, flush=True)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            fn()
        tables[name] = buf.getvalue()
    missing = set(tables) - {m.group("name") for m in BLOCK.finditer(doc)}
    if missing:
        raise SystemExit(f"docs/heuristics.md lacks the generated block(s) {', '.join(sorted(missing))}")
    DOC.write_text(
        BLOCK.sub(lambda m: m.group(1) + tables.get(m.group("name"), m.group("body")) + m.group(4), doc)
    )
    print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
