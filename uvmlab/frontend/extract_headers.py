"""Regenerate the RM name tables in ``data/`` from a checkout of NVIDIA's open-gpu-kernel-modules.

Usage: ``python -m uvmlab.frontend.extract_headers OGKM_ROOT`` (a checkout of the 580 branch).

The tables are facts read from NVIDIA's public headers, not code: class numbers from
``src/common/sdk/nvidia/inc/class/cl*.h``, control command numbers from
``src/common/sdk/nvidia/inc/ctrl/**/*.h`` and each class's allowed parents and multi-instance
flag from ``src/nvidia/src/kernel/rmapi/resource_list.h``. The committed TSV files are what the
decoder reads; this script only exists so that they can be refreshed for a newer driver.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_DEFINE = re.compile(r"^#define\s+([A-Z0-9_]+)\s+\(?\s*(0x[0-9a-fA-F]+)U?\s*\)?", re.M)


def _classes(root: Path) -> dict[str, int]:
    """Class names whose value equals the number in their header's name (``cl2080.h`` -> 0x2080)."""
    out: dict[str, int] = {}
    for header in sorted((root / "src/common/sdk/nvidia/inc/class").glob("cl*.h")):
        m = re.fullmatch(r"cl([0-9a-fA-F]{4})\.h", header.name)
        if not m:
            continue
        number = int(m.group(1), 16)
        for name, value in _DEFINE.findall(header.read_text(errors="replace")):
            if int(value, 16) == number and not name.endswith(("_H", "_H_", "_MESSAGE_ID")):
                out.setdefault(name, number)
    return out


def _controls(root: Path) -> dict[int, str]:
    """Control commands: ``NVxxxx_CTRL_CMD_*`` whose top 16 bits are the class of their prefix."""
    out: dict[int, str] = {}
    for header in sorted((root / "src/common/sdk/nvidia/inc/ctrl").rglob("*.h")):
        for name, value in _DEFINE.findall(header.read_text(errors="replace")):
            m = re.match(r"NV([0-9A-F]{4})_CTRL_CMD_", name)
            if not m:
                continue
            number = int(value, 16)
            if number >> 16 != int(m.group(1), 16) or (number & 0xFFFF) == 0 and "NULL" not in name:
                continue
            out.setdefault(number, name)
    return out


def _split_top(text: str) -> list[str]:
    """Split at the commas outside parentheses."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        depth += (ch == "(") - (ch == ")")
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def _resource_list(root: Path) -> dict[str, tuple[str, bool, str]]:
    """External class -> (internal class, multi-instance, parents) from resource_list.h."""
    text = (root / "src/nvidia/src/kernel/rmapi/resource_list.h").read_text(errors="replace")
    out: dict[str, tuple[str, bool, str]] = {}
    for m in re.finditer(r"RS_ENTRY\((.*?)\n\)", text, re.S):
        body = " ".join(re.sub(r"/\*.*?\*/", "", m.group(1)).split())
        fields = _split_top(body)
        if len(fields) < 4:
            continue
        ext, internal, multi, parents = fields[:4]
        if parents == "RS_ROOT_OBJECT":
            plist = "-"
        elif parents == "RS_ANY_PARENT":
            plist = "*"
        else:
            plist = ",".join(re.findall(r"classId\((\w+)\)", parents))
        out.setdefault(ext, (internal, multi == "NV_TRUE", plist))
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m uvmlab.frontend.extract_headers OGKM_ROOT", file=sys.stderr)
        return 2
    root = Path(argv[0])
    data = Path(__file__).parent / "data"
    classes = _classes(root)
    rl = _resource_list(root)
    with open(data / "rm_classes.tsv", "w") as f:
        f.write("# class\tname\tinternal_class\tmulti_instance\tparents\n")
        for name, number in sorted(classes.items(), key=lambda kv: (kv[1], kv[0])):
            internal, multi, parents = rl.get(name, ("", True, ""))
            f.write(f"0x{number:04x}\t{name}\t{internal}\t{int(multi)}\t{parents}\n")
    controls = _controls(root)
    with open(data / "rm_controls.tsv", "w") as f:
        f.write("# cmd\tname\n")
        for number, name in sorted(controls.items()):
            f.write(f"0x{number:08x}\t{name}\n")
    print(f"{len(classes)} classes, {len(controls)} control commands")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
