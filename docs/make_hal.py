"""Write the estimated cost profiles and docs/hal.md from the HAL data.

Run: ``python3 docs/make_hal.py`` (``--check`` only compares, for the tests). The GPU and
architecture facts come from ``uvmlab/driver/hal.py`` and ``uvmlab/driver/hal_arch.py``; the
estimated profiles are derived from the calibrated H100 profile by
``uvmlab.timing.estimate.estimate_profile``; this script writes both the profiles and the tables,
so the document and the data cannot disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from uvmlab.driver.hal import GPUS, GpuSpec
from uvmlab.driver.hal_arch import ARCHS, LINKS
from uvmlab.timing.cost_model import load_profile
from uvmlab.timing.estimate import estimate_profile


def profile_for_gpu(gpu: str, link: str) -> str:
    """The profile name a GPU's model runs use (``uvmlab.timing.cost_model.profile_for_gpu``
    falls back to the default until the file exists; this script creates it)."""
    return f"{gpu}-{link}"


ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "uvmlab" / "timing" / "profiles"
DOC = ROOT / "docs" / "hal.md"
BASE = "h100"  # the calibrated GPU the estimates start from
GiB = 1 << 30


def estimated_profiles() -> dict[str, str]:
    """file name -> JSON text of every estimated profile."""
    base_gpu = GPUS[BASE]
    base = load_profile(profile_for_gpu(BASE, base_gpu.link))
    out = {}
    for g in GPUS.values():
        if g.calibrated:
            continue
        name = profile_for_gpu(g.name, g.link)
        link_ratio = g.host_link_gbps / base_gpu.host_link_gbps
        mem_ratio = g.memory_gbps / base_gpu.memory_gbps
        why = (
            f"{g.marketing_name}: host link {g.link} ({g.host_link_gbps:g} GB/s raw) vs "
            f"{base_gpu.link} ({base_gpu.host_link_gbps:g}), memory {g.memory_gbps:g} GB/s vs "
            f"{base_gpu.memory_gbps:g} ({g.sources.get('memory_gbps', '')})"
        )
        prof = estimate_profile(
            base, name=name, gpu=g.marketing_name, host_link_ratio=link_ratio, memory_ratio=mem_ratio, why=why
        )
        if name in {profile_for_gpu(c.name, c.link) for c in GPUS.values() if c.calibrated}:
            raise SystemExit(f"refusing to overwrite calibrated profile {name}")
        out[f"{name}.json"] = prof.to_json()
    return out


def _yes(b: bool) -> str:
    return "yes" if b else "no"


def _size(n: int) -> str:
    return f"{n // 1024} KiB" if n < 1 << 20 else (f"{n >> 20} MiB" if n < GiB else f"{n >> 30} GiB")


def arch_table() -> list[str]:
    rows = ["| | " + " | ".join(a.name for a in ARCHS.values()) + " |", "|---|" + "---|" * len(ARCHS)]

    def row(label: str, fn) -> None:
        rows.append(f"| {label} | " + " | ".join(fn(a) for a in ARCHS.values()) + " |")

    row("architecture ids", lambda a: a.chips)
    row("replayable faults", lambda a: _yes(a.replayable_faults))
    row("non-replayable fault buffer", lambda a: _yes(a.non_replayable_faults))
    row("access counters serviced", lambda a: a.access_counters)
    row("hardware prefetch faults", lambda a: _yes(a.prefetch_faults))
    row("precise VA cancel", lambda a: _yes(a.fault_cancel_va))
    row("fault entry", lambda a: f"{a.fault_entry_class}, {a.fault_entry_bytes} B")
    row("uTLBs", lambda a: f"{a.utlb_gpcs} x ({a.utlbs_per_gpc})")
    row("GPU page sizes", lambda a: ", ".join(_size(p) for p in a.page_sizes))
    row("big page", lambda a: _size(a.big_page_size))
    row("peer copy addressing", lambda a: a.peer_copy_mode)
    row("VA bits", lambda a: str(a.va_bits))
    return rows


def gpu_table() -> list[str]:
    rows = [
        "| GPU | arch | memory | free for UVM | SMs | uTLBs | memory GB/s | host link "
        "(GB/s per direction) | peer link (GB/s per direction) | access counters | timing |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in GPUS.values():
        peer = (
            f"{g.peer_links} x {g.peer_link} ({g.peer_gbps:g})"
            if g.peer_link
            else (f"PCIe P2P ({g.peer_gbps:g})" if g.pcie_p2p else "none")
        )
        timing = "calibrated" if g.calibrated else "estimate"
        rows.append(
            f"| {g.name} ({g.marketing_name}) | {g.arch} | {g.memory_bytes >> 20} MiB | "
            f"{g.free_bytes >> 20} MiB | {g.sm_count} | {g.utlb_count} | "
            f"{g.memory_gbps:g} | {g.link} ({g.host_link_gbps:g}) | {peer} | "
            f"{_yes(g.has_access_counters)} | {profile_for_gpu(g.name, g.link)}: "
            f"{timing} |"
        )
    return rows


def sources_section(g: GpuSpec) -> list[str]:
    lines = [f"### {g.name}: {g.marketing_name}", ""]
    for key, src in sorted(g.sources.items()):
        lines.append(f"- `{key}`: {src}")
    for key, src in sorted(g.arch_hal.sources.items()):
        lines.append(f"- architecture `{key}` ({g.arch}): {src}")
    lines.append(f"- `link` {g.link}: {LINKS[g.link].source}")
    if g.peer_link:
        lines.append(f"- `peer_link` {g.peer_link}: {LINKS[g.peer_link].source}")
    prof = load_profile(profile_for_gpu(g.name, g.link)) if not g.calibrated else None
    if g.calibrated:
        p = load_profile(profile_for_gpu(g.name, g.link))
        lines.append(f"- timing `{p.name}`: calibrated — {p.sources.get('_measured', '')}")
    elif prof is not None:
        lines.append(f"- timing `{prof.name}`: {prof.sources['_estimate']}")
    return lines + [""]


def document() -> str:
    out = [
        "# The HAL: what each GPU generation changes in the model",
        "",
        "Written by `python3 docs/make_hal.py` from `uvmlab/driver/hal.py` (GPUs),",
        "`uvmlab/driver/hal_arch.py` (architectures, links) and the timing profiles; do not edit",
        "by hand. NVIDIA source files are those of `kernel-open/nvidia-uvm/` in",
        "open-gpu-kernel-modules; datasheets and whitepapers are NVIDIA's, by title.",
        "",
        "Why the differences matter to the model:",
        "",
        "- **Replayable faults** (Pascal and later) are what lets UVM page on demand at all;",
        "  every architecture here has them. Volta added a separate **non-replayable** buffer",
        "  (faults from engines that cannot replay) and **precise VA cancel**: on Pascal a fatal",
        "  fault cancels globally.",
        "- The **fault buffer** entry is 32 bytes everywhere; its capacity is a hardware reset",
        "  value read by RM, not in any source, so it is marked unconfirmed. It only caps the",
        "  batch size (256 by default) and sets when the buffer overflows.",
        "- **uTLBs** decide which faults coalesce at fetch (same uTLB, same page): Ampere doubled",
        "  the uTLBs per TPC, so the same kernel spreads its faults over more uTLBs there.",
        "- **Access counters** drive migrations only on ATS systems or when forced on; Pascal has",
        "  none, and this UVM services them from Turing on.",
        "- **Big pages** are 64 KiB on every architecture here: the prefetcher's tree and the",
        "  PTE choice use that size. Ampere and later add 512 MiB GPU pages (unused by managed",
        "  memory's 2 MiB blocks).",
        "- **Links**: host copies are bound by the PCIe generation; GPU peers copy and map over",
        "  NVLink where present (bandwidth = links x per-link rate), else over PCIe P2P where",
        "  the board allows it. Copy engines: the number of physical CEs is reported by RM at",
        "  run time and not fixed by the UVM source; the model charges copies per direction and",
        "  per source (one CE queue each).",
        "- **Timing**: only the H100 and H200 profiles were measured (`uvmlab calibrate`); every",
        "  other profile is an estimate derived from the H100 one (`uvmlab/timing/estimate.py`:",
        "  link-bound constants scale with the host link, resident touches with memory",
        "  bandwidth, driver costs are kept) and says so in each constant's source.",
        "",
        "## Architectures",
        "",
        *arch_table(),
        "",
        "## GPUs",
        "",
        *gpu_table(),
        "",
        "## Sources, per GPU",
        "",
    ]
    for g in GPUS.values():
        out += sources_section(g)
    return "\n".join(out).rstrip() + "\n"


def main(check: bool = False) -> int:
    files = {PROFILES / k: v for k, v in estimated_profiles().items()}
    if not check:  # the document reads the profiles: write them first
        for p, text in files.items():
            p.write_text(text)
    files[DOC] = document()
    stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
    if check:
        for p in stale:
            print(f"stale: {p.relative_to(ROOT)}", file=sys.stderr)
        return 1 if stale else 0
    DOC.write_text(files[DOC])
    print(f"wrote {len(files)} files", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv[1:]))
