"""Plain views of a decoded trace: the call listing, the tree as it grows, the summary.

Shared by the CLI (``uvmlab ioctl decode``) and the script that writes docs/frontend.md, so the
tables in the docs are the command's own output.
"""

from __future__ import annotations

from typing import Any

from uvmlab.frontend.decode import Call, Decoded
from uvmlab.frontend.modules import LOAD_ORDER, MODULES


def module_rows() -> list[dict[str, Any]]:
    """The driver's modules in load order: dependencies, exported interfaces, device files."""
    return [
        {
            "load": i + 1,
            "module": m,
            "depends on": ", ".join(MODULES[m].depends) or "-",
            "exports": ", ".join(MODULES[m].exports),
            "device files": ", ".join(MODULES[m].device_files) or "-",
        }
        for i, m in enumerate(LOAD_ORDER)
    ]


def call_row(c: Call) -> dict[str, Any]:
    """One call as the listing shows it."""
    if c.kind != "ioctl":
        ioc = ""
    elif c.family == "uvm":  # nvidia-uvm's commands are plain numbers, not _IOC-encoded
        ioc = f"cmd {c.request:#x}"
    elif 32 <= c.ioc_type < 127:
        ioc = f"{c.ioc_dir} '{chr(c.ioc_type)}' {c.ioc_nr:#04x} {c.ioc_size}"
    else:
        ioc = f"{c.ioc_dir} {c.ioc_type:#04x} {c.ioc_nr:#04x} {c.ioc_size}"
    return {
        "#": c.index,
        "t_us": round(c.t_ns / 1000, 1),
        "file": c.file.rsplit("/", 1)[-1],
        "_IOC dir/type/nr/size": ioc,
        "call": c.name,
        "detail": c.detail,
        "status": c.status or (f"errno {c.err}" if c.ret < 0 else ""),
    }


def mark_row(c: Call) -> dict[str, Any]:
    """A mark the traced program wrote (a phase boundary) as a row of the listing."""
    return {
        "#": c.index,
        "t_us": round(c.t_ns / 1000, 1),
        "file": "",
        "_IOC dir/type/nr/size": "",
        "call": f"-- {c.name} --",
        "detail": "",
        "status": "",
    }


def call_rows(
    dec: Decoded, *, families: set[str] | None = None, limit: int | None = None, marks: bool = True
) -> list[dict[str, Any]]:
    rows = []
    for c in dec.calls:
        if c.kind == "mark":
            if marks:
                rows.append(mark_row(c))
            continue
        if families is not None and c.family not in families:
            continue
        rows.append(call_row(c))
        if limit is not None and len(rows) >= limit:
            break
    return rows


def tree_rows(dec: Decoded, limit: int | None = None) -> list[dict[str, Any]]:
    """The handle tree as it grows: one row per alloc / dup / free, indented by depth."""
    rows = []
    for idx, e in dec.tree:
        rows.append(
            {
                "call": idx,
                "op": e.op,
                "object": f"{'  ' * e.depth}0x{e.handle:08x} {e.class_name}",
                "parent": "" if e.parent is None else f"0x{e.parent:08x}",
                "client": f"0x{e.client:08x}",
            }
        )
        if limit is not None and len(rows) >= limit:
            break
    return rows


def naming_stats(dec: Decoded) -> dict[str, Any]:
    calls = [c for c in dec.calls if c.kind != "mark"]
    named = sum(c.named for c in calls)
    return {
        "calls": len(calls),
        "named": named,
        "named_pct": round(100.0 * named / len(calls), 2) if calls else 100.0,
        "unnamed": dict(dec.unnamed().most_common()),
        "rm_model_checked": dec.model_checked,
        "rm_model_agreed": dec.model_agreed,
        "objects_alive_at_end": dec.rm.count(),
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        cells = [str(r.get(k, "")).replace("|", "\\|") for k in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
