"""Regenerate the model's figures in docs/policies.md (run: python3 docs/make_policies_doc.py).

The tutorial quotes what the model says: console output of ``uvmlab policy run``, the tables of
``uvmlab compare`` and the Belady sweep of section 9, and the numbers in the prose around them.
Each such part sits between ``<!-- generated: NAME -->`` and ``<!-- end generated -->``; this
script runs the model, rewrites those parts and leaves the rest of the page alone. The prose's
claims (who beats whom) are checked on the fresh numbers: a claim that no longer holds stops the
script with a message naming it, so the text is revised instead of going stale. The policy files
the tutorial has the reader write (``settle.py``, ``buggy.py``) are taken from the page itself.
About ten minutes on one core; ``--only NAME[,NAME]`` regenerates only those blocks.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from uvmlab.api import simulate
from uvmlab.core.units import fmt_ns
from uvmlab.lab import compare as cmp
from uvmlab.policy.loader import build_hooks
from uvmlab.workload.rodinia import GENERATORS as RODINIA
from uvmlab.workload.synthetic import describe

DOC = Path(__file__).resolve().parent / "policies.md"
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)
LLM64 = "llm:size=64MiB"
# per-call hook budget for every run here: the figures must not depend on how busy the machine
# is (the guard ejects a hook over its budget; 50 ms by default)
BUDGET_MS = 60_000.0
LLM150 = (
    "lru,fifo,fifo-chance,mru,lfu,tenant-quota,belady,prefetch-none,always-max,adaptive-sequential,"
    "stride,tree(threshold=30),cross-block,replay-once,replay-adaptive,mru+always-max,"
    "lfu+always-max,belady+always-max"
)


class ClaimBroken(SystemExit):
    pass


def claim(ok: bool, text: str) -> None:
    if not ok:
        raise ClaimBroken(
            f"docs/policies.md claims {text!r}, which the model no longer says: revise the prose"
        )


def code_blocks(doc: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", doc, re.S)


def policy_files(doc: str, where: Path) -> dict[str, Path]:
    """settle.py as section 3 leaves it (section 1's class with section 3's parameter), buggy.py."""
    py = code_blocks(doc, "python")
    first = next(b for b in py if 'name = "settle"' in b)
    spare = next(b for b in py if b.lstrip().startswith("params = {"))
    head = first[: first.index("    def eviction_prepare")]
    settle = head + "".join(("    " + ln if ln.strip() else ln) for ln in spare.splitlines(keepends=True))
    bad = next(b for b in py if "not a chunk of this GPU" in b)
    buggy = 'from uvmlab.policy import Policy\n\n\nclass Buggy(Policy):\n    name = "buggy"\n\n' + bad
    out = {"settle": where / "settle.py", "buggy": where / "buggy.py"}
    out["settle"].write_text(settle)
    out["buggy"].write_text(buggy)
    return out


def console(*args: str, cwd: Path, ejects: bool = False) -> str:
    """``$ uvmlab ARGS`` and what it prints, as the reader sees it."""
    env = {**os.environ, "COLUMNS": "200"}  # one line per message, as a wide terminal shows it
    p = subprocess.run(
        [sys.executable, "-m", "uvmlab", *args], cwd=cwd, capture_output=True, text=True, check=False, env=env
    )
    claim(("ejected" in p.stdout + p.stderr) == ejects, f"`uvmlab {' '.join(args)}` ejects only buggy.py")
    shown = " ".join(a if re.fullmatch(r"[\w.,:=%/()+-]+", a) else f'"{a}"' for a in args)
    return f"$ uvmlab {shown}\n{p.stdout}{p.stderr}"


def by_label(rows: list[cmp.Row]) -> dict[str, cmp.Row]:
    ejected = [r.policy for r in rows if r.totals["policy_ejections"]]
    claim(not ejected, f"no policy in the tables is ejected (ejected: {', '.join(ejected)})")
    return {r.policy: r for r in rows}


def ev(r: cmp.Row) -> int:
    return int(r.totals["evictions"])


def section_llm64(files: dict[str, Path]) -> str:
    rows = cmp.compare(
        LLM64, ["lru", str(files["settle"]), "mru", "belady"], gpu_memory="150%", budget_ms=BUDGET_MS
    )
    r = by_label(rows)
    base, settle, bel = r["default"], r["settle"], r["belady"]
    claim(
        ev(r["lru"]) == ev(base) and r["lru"].totals["time_ns"] == base.totals["time_ns"],
        "lru equals default",
    )
    claim(settle.speedup >= 1.25, "settle is clearly faster than LRU")
    claim(ev(bel) <= ev(settle) < ev(base), "Belady <= settle < LRU in evictions")
    claim(r["mru"].speedup >= 1.25, "mru gets close by another route")
    gap_ms = (settle.totals["time_ns"] - bel.totals["time_ns"]) / 1e6
    return (
        cmp.markdown(rows)
        + "\n\n`lru` is the driver's own behaviour written as a policy, so its row equals `default`. "
        f"`settle`\nruns {settle.speedup:.2f}x faster and evicts {ev(settle):,} chunks where LRU "
        f"evicts {ev(base):,}; "
        f"Belady needs {ev(bel):,}. The remaining\ngap, {ev(settle) - ev(bel):,} evictions and "
        f"{gap_ms:.0f} ms, is all that any eviction policy could still win here. `mru`\n"
        "(gpu_ext's `eviction_mru`) gets close by another route: every use moves a chunk to the head.\n"
    )


def section_spare(files: dict[str, Path]) -> str:
    rows = cmp.compare(
        LLM64,
        [str(files["settle"]), f"{files['settle']}(spare=false)"],
        gpu_memory="150%",
        budget_ms=BUDGET_MS,
    )
    r = by_label(rows)
    nospare = next(v for k, v in r.items() if "spare" in k)
    claim(ev(nospare) > 2 * ev(r["settle"]), "without sparing, evictions more than double")
    claim(nospare.speedup < 1.15, "without sparing the gain is gone")
    return cmp.markdown(rows) + "\n"


def section_batch_forward() -> str:
    spec = "stream:size=64MiB,passes=2"
    rows = cmp.compare(
        spec, ["forward", "forward(compiled=false)", "adaptive-sequential"], budget_ms=BUDGET_MS
    )
    r = by_label(rows)
    jit, py = r["forward"], r["forward(compiled=False)"]
    claim(jit.totals == py.totals, "the compiled forward equals its Python source")
    return (
        f"```console\n$ uvmlab compare {spec} --policies "
        '"forward,forward(compiled=false),adaptive-sequential"\n```\n\n'
        + cmp.markdown(rows)
        + "\n\nThe compiled kernel and its Python source take the same decisions, so their rows are "
        "equal; `adaptive-sequential` is the per-page policy nearest to it.\n"
    )


def section_compiled_recent() -> str:
    pols = ["lru", "mru", "recent", "recent(compiled=false)", "recent(spare=0)", "recent(spare=2)"]
    rows = cmp.compare(LLM64, pols, gpu_memory="150%", budget_ms=BUDGET_MS)
    r = by_label(rows)
    jit, py = r["recent"], r["recent(compiled=False)"]
    claim(jit.totals == py.totals, "the compiled victim choice equals its Python hook")
    claim(jit.speedup > 1.15, "recent beats LRU on the cyclic sweep")
    claim(r["recent(spare=0)"].speedup < 1.0, "sparing nothing loses to LRU")
    claim(ev(r["recent(spare=0)"]) > 3 * ev(jit), "sparing nothing multiplies the evictions")
    claim(r["mru"].speedup > jit.speedup, "mru does better still")
    return (
        f"```console\n$ uvmlab compare {LLM64} --gpu-memory 150% --policies "
        f'"{",".join(pols)}"\n```\n\n'
        + cmp.markdown(rows)
        + f"\n\nThe kernel and the Python hook choose the same victims, so their rows are equal. "
        f"On this cyclic sweep `recent` is {jit.speedup:.2f}x LRU ({ev(jit):,} evictions against "
        f"{ev(r['lru']):,}); sparing nothing (`spare=0`) evicts the chunks whose warps wait for the "
        f"replay, and the evictions multiply ({ev(r['recent(spare=0)']):,}). `mru` "
        f"({r['mru'].speedup:.2f}x) does better still: it sees every use (`chunk_used`, a Python "
        "hook at every block that faults), where a victim kernel sees only the lists' order.\n"
    )


def section_llm150() -> str:
    rows = cmp.compare("llm", cmp.parse_policy_list(LLM150), gpu_memory="150%", budget_ms=BUDGET_MS)
    r = by_label(rows)
    lru = r["lru"]
    eviction_only = ("lru", "fifo", "fifo-chance", "mru", "lfu", "tenant-quota")
    claim(r["mru"].speedup > 1.5 and r["lfu"].speedup > 1.5, "MRU and LFU beat LRU")
    claim(ev(r["fifo"]) == ev(lru), "fifo is LRU here")
    claim(all(ev(r["belady"]) <= ev(r[k]) for k in eviction_only), "Belady bounds every eviction policy")
    claim(
        r["belady+always-max"].speedup >= r["lfu+always-max"].speedup, "belady+always-max bounds compositions"
    )
    claim(r["lfu+always-max"].speedup > r["belady"].speedup, "lfu+always-max beats plain belady on time")
    same = {
        round(r[k].speedup, 2) for k in ("always-max", "adaptive-sequential", "cross-block", "mru+always-max")
    }
    claim(len(same) == 1, "always-max, adaptive-sequential, cross-block and mru+always-max act the same")
    claim(r["prefetch-none"].speedup < 1 and r["stride"].speedup < 1, "prefetch-none and stride lose")
    claim(r["replay-once"].speedup < 1, "replay-once loses")
    claim(abs(r["replay-adaptive"].speedup - 1) < 0.02, "replay-adaptive matches the default")
    faults_x = r["replay-once"].totals["gpu_faults"] / max(1, lru.totals["gpu_faults"])
    s = {k: f"{v.speedup:.2f}x" for k, v in r.items()}
    return (
        cmp.markdown(rows) + "\n\nWhat the model says:\n\n"
        f"* **MRU and LFU beat LRU** ({s['mru']} and {s['lfu']}; {ev(r['mru']):,} and {ev(r['lfu']):,} "
        f"evictions against {ev(lru):,}). The sweep is\n"
        "  cyclic and larger than memory, so LRU evicts every layer just before the next token reads it\n"
        "  again. MRU sacrifices the block just used and keeps the rest of the cycle; LFU keeps the\n"
        "  blocks that keep coming back. `fifo` is LRU here: blocks are used in allocation order.\n"
        f"* **Belady bounds every eviction policy** ({s['belady']}, {ev(r['belady']):,} evictions): nothing "
        "that decides only\n  eviction does better, and `belady+always-max` bounds the compositions "
        f"({s['belady+always-max']} against\n  `lfu+always-max` {s['lfu+always-max']}). Belady bounds "
        "eviction *given the prefetcher*: a policy that also\n  changes prefetch can beat plain `belady` "
        "on time, as `lfu+always-max` does.\n"
        "* **Prefetch policies change little by themselves**: with 65,536 threads in flight a layer's\n"
        "  faults all arrive in the first batches, so `always-max`, `adaptive-sequential` and\n"
        "  `cross-block` (whose migrations find the next blocks already resident) act the same, "
        f"{s['always-max']} from\n  fewer, larger copies. `mru+always-max` equals `always-max`: with "
        "whole blocks prefetched a\n  block faults once, so `chunk_used` never fires and MRU has nothing "
        "to reorder — the hooks see\n  only what the driver sees. "
        f"`prefetch-none` ({s['prefetch-none']}) and `stride` ({s['stride']}) lose: this workload\n"
        "  is sequential, and per-4 KiB faults cost more than the copies they save.\n"
        f"* **Replay**: under `replay-once` ({s['replay-once']}) stalled threads fault again and again "
        f"before the\n  single replay, {faults_x:.0f}x as many faults; `replay-adaptive` matches the "
        "default, which is already the\n  right choice for this workload. `fifo-chance` and "
        "`tenant-quota` (equal shares for the weights\n  and the KV cache) stay close to LRU: neither "
        "targets a cyclic sweep.\n"
    )


def section_belady(progress: Callable[[str], None]) -> str:
    rodinia = {g.__name__ for g in RODINIA}
    names = [d["name"] for d in describe() if d["name"] not in rodinia]
    pols = {"LRU": None, "Belady": "belady", "LFU": "lfu", "MRU": "mru"}
    runs = []
    for name in names:
        for size in ("16MiB", "32MiB"):
            for pct in (150, 250, 400):
                spec = f"{name}:size={size}"
                progress(f"{spec} at {pct} %")
                n = {
                    k: int(
                        simulate(
                            spec,
                            gpu_memory=f"{pct}%",
                            policies=build_hooks(p, budget_ms=BUDGET_MS) if p else None,
                        ).totals["evictions"]
                    )
                    for k, p in pols.items()
                }
                runs.append((spec, pct, n))
    tot = {k: sum(n[k] for _, _, n in runs) for k in pols}
    worse = [(s, p, n) for s, p, n in runs if n["Belady"] > n["LRU"]]
    beaten = [(s, p, n) for s, p, n in runs if min(n["LRU"], n["LFU"], n["MRU"]) < n["Belady"]]
    most = max((n["Belady"] / max(1, n["LRU"]) - 1 for _, _, n in worse), default=0.0)
    claim(tot["Belady"] < min(tot["LFU"], tot["LRU"], tot["MRU"]), "in total Belady evicts fewest")
    lines = [
        f"Over the {len(names)} generated workloads at 16 and 32 MiB and 150 / 250 / 400 % "
        f"({len(runs)} runs, default concurrency):\n",
        f"In total Belady evicts {tot['Belady']:,} root chunks where LRU evicts {tot['LRU']:,} "
        f"(LFU {tot['LFU']:,}, MRU {tot['MRU']:,}). It\nevicts more than LRU in {len(worse)} of the "
        f"{len(runs)} runs, by {most:.0%} at most; "
        + ("this is the run" if len(beaten) == 1 else f"these are the {len(beaten)} runs")
        + " in which LRU,\nLFU or MRU evicts fewer chunks than Belady (the fewest in bold):\n",
        "| workload | GPU memory | LRU | Belady | LFU | MRU |",
        "|---|---|---|---|---|---|",
    ]
    for spec, pct, n in beaten:
        low = min(n.values())
        cells = [f"**{n[k]:,}**" if n[k] == low else f"{n[k]:,}" for k in pols]
        lines.append(f"| {spec} | {pct} % | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    doc = DOC.read_text()
    t0 = datetime.datetime.now(datetime.UTC)

    def log(s: str) -> None:
        el = (datetime.datetime.now(datetime.UTC) - t0).total_seconds()
        print(f"[{el:6.0f} s] {s}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        files = policy_files(doc, where)
        gen: dict[str, Callable[[], str]] = {
            "policy-run": lambda: (
                "```console\n"
                + console("policy", "check", "settle.py", cwd=where)
                + console("policy", "run", LLM64, "--policy", "settle.py", "--gpu-memory", "150%", cwd=where)
                + "```\n"
            ),
            "compare-llm64": lambda: section_llm64(files),
            "spare": lambda: section_spare(files),
            "buggy": lambda: (
                "```console\n"
                + console(
                    "policy",
                    "run",
                    LLM64,
                    "--policy",
                    "buggy.py",
                    "--gpu-memory",
                    "150%",
                    cwd=where,
                    ejects=True,
                )
                + "```\n"
            ),
            "batch-forward": section_batch_forward,
            "compiled-recent": section_compiled_recent,
            "llm150": section_llm150,
            "belady-sweep": lambda: section_belady(log),
        }
        found = [m.group("name") for m in BLOCK.finditer(doc)]
        missing = set(gen) - set(found)
        if missing:
            raise SystemExit(f"docs/policies.md lacks the generated block(s) {', '.join(sorted(missing))}")
        out = {}
        simulate("random:size=4MiB")  # compile (or load) the fast paths before any console output
        only = set(sys.argv[2].split(",")) if len(sys.argv) > 2 and sys.argv[1] == "--only" else None
        for name in found:
            if name == "stamp" or only is not None and name not in only:
                continue
            log(name)
            out[name] = gen[name]()
    out["stamp"] = (
        f"*The model's figures on this page were written by `docs/make_policies_doc.py` on "
        f"{t0:%Y-%m-%d} ({platform.machine()}, Python {platform.python_version()}); H200 profile, "
        "driver defaults.*\n"
    )
    text = BLOCK.sub(lambda m: m.group(1) + out.get(m.group("name"), m.group("body")) + m.group(4), doc)
    DOC.write_text(text)
    log(f"wrote {DOC.name} ({fmt_ns(int((datetime.datetime.now(datetime.UTC) - t0).total_seconds() * 1e9))})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
