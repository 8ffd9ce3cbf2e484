"""Regenerate docs/vgpu.md's measured section and its figures.

    python docs/make_vgpu_figures.py [--reuse-real]

* runs ``examples/vgpu/lc_be.toml`` (gpu_ext's two-tenant experiment, scaled down) in every
  memory mode and with the ``tenant-priority`` policy: ``docs/img/vgpu_modes.png`` and
  ``docs/img/vgpu_timeline.png``;
* compares the stored real co-location captures (``uvmlab/vgpu/data/colocate-*.json``, made by
  ``python -m uvmlab.vgpu.real`` on the GPU machine) with the model's best-effort mode:
  ``docs/img/vgpu_real.png``;
* rewrites the part of ``docs/vgpu.md`` between the GENERATED markers with the tables.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from uvmlab.results.plots import _figure, save_png  # noqa: E402
from uvmlab.vgpu import export  # noqa: E402
from uvmlab.vgpu.realcheck import compare, gpu_of, load_capture  # noqa: E402
from uvmlab.vgpu.report import run_scenario  # noqa: E402
from uvmlab.vgpu.scenario import load_scenario  # noqa: E402

DOC = ROOT / "docs" / "vgpu.md"
# --reuse-real: take the model's side of the real check from the stored realcheck-<gpu>.json
# (written by a full run of this script) instead of re-running it (about ten minutes)
REUSE = "--reuse-real" in sys.argv[1:]
IMG = ROOT / "docs" / "img"
BEGIN, END = "<!-- BEGIN GENERATED (docs/make_vgpu_figures.py) -->", "<!-- END GENERATED -->"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def modes_section() -> list[str]:
    base = load_scenario(ROOT / "examples" / "vgpu" / "lc_be.toml")
    half = (base.memory_bytes or 0) // 2
    lc, be = base.tenants

    def with_quota(sc, mode):
        return dataclasses.replace(
            sc,
            mode=mode,
            tenants=[dataclasses.replace(lc, quota_bytes=half), dataclasses.replace(be, quota_bytes=half)],
        )

    runs = [
        ("partition (half each)", with_quota(base, "partition")),
        ("quota (half each, HAMi-like)", with_quota(base, "quota")),
        ("shared, default UVM", base),
        ("shared, tenant-priority(order=lc)", dataclasses.replace(base, policy="tenant-priority(order=lc)")),
    ]
    results = []
    for label, sc in runs:
        log(f"running {label} ...")
        results.append((label, run_scenario(sc)))
    shared = results[2][1]
    save_png(
        export.timeline_figure(shared, title="lc-be, shared memory, default UVM: kernels on the GPU"),
        str(IMG / "vgpu_timeline.png"),
    )
    fig = _figure(9, 3.4)
    ax1, ax2 = fig.add_subplot(121), fig.add_subplot(122)
    labels = ["alone"] + [lab for lab, _ in results]
    y = list(range(len(labels)))
    tpot = [shared.rows[0]["alone_unit_mean_ns"] / 1e6] + [
        r.rows[0]["unit_mean_ns"] / 1e6 for _, r in results
    ]
    colors = ["#7f7f7f", "#1f77b4", "#1f77b4", "#d62728", "#2ca02c"]
    ax1.barh(y, tpot, color=colors)
    ax1.set_yticks(y, labels)
    ax1.invert_yaxis()
    ax1.set_xlabel("lc: mean time per token (ms)")
    be_ms = [shared.rows[1]["alone_makespan_ns"] / 1e6] + [
        r.rows[1]["makespan_ns"] / 1e6 if not r.rows[1]["fatal"] else 0.0 for _, r in results
    ]
    ax2.barh(y, be_ms, color=colors)
    ax2.set_yticks(y, [""] * len(y))
    ax2.invert_yaxis()
    ax2.set_xlabel("be: makespan (ms; 0 = refused, out of memory)")
    fig.suptitle("lc-be on a 1 GiB GPU (model): memory modes and a per-tenant policy")
    save_png(fig, str(IMG / "vgpu_modes.png"))
    lines = [
        "| configuration | lc time per token | lc slowdown | be makespan | be slowdown | "
        "lc data evicted by be | be data evicted by lc | Jain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines.append(f"| lc alone | {tpot[0]:.2f} ms | 1.00x | | | | | |")
    for label, r in results:
        a, b = r.rows
        lines.append(
            f"| {label} | {a['unit_mean_ns'] / 1e6:.2f} ms | {a['slowdown']:.2f}x | "
            + (
                f"refused: {b['fatal']} | |"
                if b["fatal"]
                else f"{b['makespan_ns'] / 1e6:.1f} ms | {b['slowdown']:.2f}x |"
            )
            + f" {a['evicted_by_be'] / 2**20:.0f} MiB | {b['evicted_by_lc'] / 2**20:.0f} MiB |"
            f" {r.fairness:.2f} |"
        )
    return lines


def real_section() -> list[str]:
    caps = sorted((ROOT / "uvmlab" / "vgpu" / "data").glob("colocate-*.json"))
    if not caps:
        return [
            "No real co-location capture is stored yet (run `python -m uvmlab.vgpu.real` "
            "on a GPU machine and save it as `uvmlab/vgpu/data/colocate-<gpu>.json`)."
        ]
    lines: list[str] = []
    fig = _figure(10, 3.4 * len(caps))
    for ci, cap_path in enumerate(caps):
        cap = load_capture(cap_path)
        dev = cap["device"]
        gpu = gpu_of(cap)
        out = cap_path.with_name(f"realcheck-{gpu}.json")
        if REUSE and out.exists():
            log(f"reusing the stored comparison {out.name} (--reuse-real)")
            stored = json.loads(out.read_text())
            rows, generated = stored["rows"], stored["generated_utc"]
        else:
            log(f"model for {cap_path.name} (three fault-service variants) ...")
            rows, generated = compare(cap, log=log), dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        out.write_text(
            json.dumps(
                {
                    "capture": cap_path.name,
                    "gpu": dev.get("gpu"),
                    "generated_utc": generated,
                    "by": "python docs/make_vgpu_figures.py",
                    "rows": rows,
                },
                indent=1,
            )
            + "\n"
        )
        lines += [
            f"**{dev.get('gpu')}**, driver {dev.get('driver_version')}, captured "
            f"{dev.get('date')} ({cap['reps']} repetitions per process; "
            f"`{cap_path.relative_to(ROOT)}`; the model's side was run {generated} and is stored "
            f"with the comparison in `{out.relative_to(ROOT)}`):",
            "",
            "| processes | workload | alone (real) | co-located (real) | slowdown real | "
            "model: slice | model: shared fault buffer | model: overlap | slice / real | shared / real |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['config']} | {r['tenant']} | {r['real_alone_ms']:.0f} ms | "
                f"{r['real_colocated_ms']:.0f} ms | {r['real_slowdown']:.2f}x | "
                f"{r['model_slowdown']:.2f}x | {r['model_shared_slowdown']:.2f}x | "
                f"{r['model_overlap_slowdown']:.2f}x | "
                f"{r['model_slowdown'] / r['real_slowdown']:.2f} | "
                f"{r['model_shared_slowdown'] / r['real_slowdown']:.2f} |"
            )
        lines.append("")
        for n in sorted({r["n"] for r in rows}):
            parts = []
            for key, label in (("model_slowdown", "slice"), ("model_shared_slowdown", "shared fault buffer")):
                errs = sorted(abs(r[key] / r["real_slowdown"] - 1) for r in rows if r["n"] == n)
                parts.append(
                    f"{label}: within {100 * errs[-1]:.0f} % of the real slowdown for every tenant "
                    f"(median {100 * errs[len(errs) // 2]:.0f} %)"
                )
            lines.append(f"- {n} processes: " + "; ".join(parts) + ".")
        four = [r for r in rows if r["config"] == " + ".join(["stream"] * 4)]
        if four:
            m = {k: sum(r[k] for r in four) / len(four) for k in four[0] if k.endswith("slowdown")}
            off = {k: 100 * (m[k] / m["real_slowdown"] - 1) for k in m}
            lines.append(
                f"- `stream` x 4, mean over the tenants: real {m['real_slowdown']:.2f}x, slice "
                f"{m['model_slowdown']:.2f}x ({off['model_slowdown']:+.0f} %), shared fault buffer "
                f"{m['model_shared_slowdown']:.2f}x ({off['model_shared_slowdown']:+.0f} %)."
            )
        inside = sum(
            r["model_overlap_slowdown"] * 0.98 <= r["real_slowdown"] <= r["model_slowdown"] * 1.02
            for r in rows
        )
        lines.append(
            f"- the real slowdown lies between the overlap and the slice variants (2 % slack) for "
            f"{inside} of {len(rows)} tenants."
        )
        lines.append("")
        ax = fig.add_subplot(len(caps), 1, ci + 1)
        ticks, names = [], []
        for x0, r in enumerate(rows):
            for k, (key, color) in enumerate(
                (
                    ("real_slowdown", "#1f77b4"),
                    ("model_slowdown", "#ff7f0e"),
                    ("model_shared_slowdown", "#9467bd"),
                    ("model_overlap_slowdown", "#2ca02c"),
                )
            ):
                ax.bar(x0 + 0.2 * k, r[key], color=color, width=0.19)
            ticks.append(x0 + 0.3)
            names.append(f"{r['tenant']}\n({r['n']}p)")
        ax.set_title(
            f"slowdown vs alone, {gpu.upper()}: real (blue), model slice (orange), "
            f"shared fault buffer (purple), overlap (green)",
            fontsize=9,
        )
        ax.set_xticks(ticks, names, fontsize=7)
        ax.axhline(1.0, color="k", linewidth=0.6)
        ax.set_ylabel("co-located / alone")
    save_png(fig, str(IMG / "vgpu_real.png"))
    return lines


def main() -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    lines = [
        BEGIN,
        "",
        f"Generated {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} on "
        f"{platform.machine()} ({platform.python_implementation()} "
        f"{platform.python_version()}) by `python docs/make_vgpu_figures.py`.",
        "",
        "### Memory modes and a policy (model, `examples/vgpu/lc_be.toml`)",
        "",
        "![modes](img/vgpu_modes.png)",
        "",
        *modes_section(),
        "",
        "![timeline](img/vgpu_timeline.png)",
        "",
        "### Real GPU: processes time-sharing one GPU",
        "",
        "![real](img/vgpu_real.png)",
        "",
        *real_section(),
        "",
        END,
    ]
    text = DOC.read_text()
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + "\n".join(lines) + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + "\n".join(lines) + "\n"
    DOC.write_text(text)
    log(f"wrote {DOC.relative_to(ROOT)} and docs/img/vgpu_*.png")


if __name__ == "__main__":
    main()
