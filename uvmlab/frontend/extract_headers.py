"""Regenerate the RM name tables in ``data/`` from a checkout of NVIDIA's open-gpu-kernel-modules.

Usage: ``python -m uvmlab.frontend.extract_headers OGKM_ROOT`` (a checkout of the 580 branch).

The tables are facts read from NVIDIA's public sources, not code:

- class numbers from ``src/common/sdk/nvidia/inc/class/cl*.h`` and the driver's list of every
  class, ``src/nvidia/generated/g_allclasses.h`` (where e.g. ``NV01_EVENT_OS_EVENT`` 0x79 is
  defined, a class every CUDA program allocates);
- each class's internal class, allowed parents, multi-instance flag and whether its alloc
  parameters are required / optional / absent from ``src/nvidia/src/kernel/rmapi/resource_list.h``
  (``RS_REQUIRED`` / ``RS_OPTIONAL`` / ``RS_NONE``: ``resource_desc.c`` refuses a missing
  required parameter struct);
- control command numbers from ``src/common/sdk/nvidia/inc/ctrl/**/*.h``: every ``#define`` whose
  value is a command, i.e. finn's ``(..._INTERFACE_ID << 8) | ...`` evaluation (so names without
  ``_CMD_`` such as ``NV906F_CTRL_GET_CLASS_ENGINEID`` are found), plus the older ``*_CTRL_CMD_*``
  defines without that note;
- the RM's exported-method tables in ``src/nvidia/generated/g_*_nvoc.c`` (``methodId``,
  ``paramSize``, ``func``): whether each command takes a parameter struct (``control.c``
  ``_rmapiRmControl`` refuses a size that is not the table's with ``NV_ERR_INVALID_ARGUMENT``) and,
  for a command the SDK headers do not name, the RM function that serves it.

The committed TSV files are what the decoder reads; this script only exists so that they can be
refreshed for a newer driver.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_DEFINE = re.compile(r"^#define[ \t]+([A-Za-z0-9_]+)[ \t]+\(?[ \t]*(0x[0-9a-fA-F]+)U?[ \t]*\)?(.*)$", re.M)
_SDK = "src/common/sdk/nvidia/inc"
_GENERATED = "src/nvidia/generated"


def _classes(root: Path) -> dict[str, int]:
    """Class names whose value equals the number in their header's name (``cl2080.h`` -> 0x2080),
    and every class of ``g_allclasses.h``."""
    out: dict[str, int] = {}
    for header in sorted((root / _SDK / "class").glob("cl*.h")):
        m = re.fullmatch(r"cl([0-9a-fA-F]{4})\.h", header.name)
        if not m:
            continue
        number = int(m.group(1), 16)
        for name, value, _ in _DEFINE.findall(header.read_text(errors="replace")):
            if int(value, 16) == number and not name.endswith(("_H", "_H_", "_MESSAGE_ID")):
                out.setdefault(name, number)
    allclasses = root / _GENERATED / "g_allclasses.h"
    if allclasses.exists():
        for name, value, _ in _DEFINE.findall(allclasses.read_text(errors="replace")):
            if not name.startswith("_") and not name.endswith(("_H", "_H_")):
                out.setdefault(name, int(value, 16))
    return out


def _is_command(number: int) -> bool:
    """A command is class << 16 | interface << 8 | message; NV0000's (class 0) have an interface."""
    return (number >> 8) & 0xFF != 0 if number >> 16 == 0 else number & 0xFFFF != 0


def _controls(root: Path) -> dict[int, str]:
    """Control commands named in the SDK's ``ctrl`` headers."""
    out: dict[int, str] = {}
    for header in sorted((root / _SDK / "ctrl").rglob("*.h")):
        for name, value, rest in _DEFINE.findall(header.read_text(errors="replace")):
            number = int(value, 16)
            if "INTERFACE_ID << 8" in rest and _is_command(number):  # finn's note on a command
                out.setdefault(number, name)
                continue
            m = re.match(r"NV([0-9A-F]{4})_CTRL_CMD_", name)
            if (
                m
                and number >> 16 == int(m.group(1), 16)
                and (_is_command(number) or "NULL" in name)
                and not name.endswith("_MESSAGE_ID")
            ):
                out.setdefault(number, name)
    return out


_METHOD = re.compile(
    r"/\*methodId=\*/\s*(0x[0-9a-fA-F]+)u,\s*/\*paramSize=\*/\s*([^,]+?),.*?/\*func=\*/\s*\"(\w+)\"",
    re.S,
)


def _exported_methods(root: Path) -> dict[int, tuple[str, bool]]:
    """methodId -> (RM function, takes a parameter struct) from the NVOC exported-method tables."""
    out: dict[int, tuple[str, bool]] = {}
    for src in sorted((root / _GENERATED).glob("g_*_nvoc.c")):
        for mid, size, func in _METHOD.findall(src.read_text(errors="replace")):
            out.setdefault(int(mid, 16), (func, not size.strip().startswith("0")))
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


def _resource_list(root: Path) -> dict[str, tuple[str, bool, str, str]]:
    """External class -> (internal class, multi-instance, parents, alloc params) from resource_list.h."""
    text = (root / "src/nvidia/src/kernel/rmapi/resource_list.h").read_text(errors="replace")
    out: dict[str, tuple[str, bool, str, str]] = {}
    for m in re.finditer(r"RS_ENTRY\((.*?)\n\)", text, re.S):
        body = " ".join(re.sub(r"/\*.*?\*/", "", m.group(1)).split())
        fields = _split_top(body)
        if len(fields) < 5:
            continue
        ext, internal, multi, parents, params = fields[:5]
        if parents == "RS_ROOT_OBJECT":
            plist = "-"
        elif parents == "RS_ANY_PARENT":
            plist = "*"
        else:
            plist = ",".join(re.findall(r"classId\((\w+)\)", parents))
        kind = "none"
        if params.startswith(("RS_REQUIRED", "RS_OPTIONAL")):
            kind = "required" if params.startswith("RS_REQUIRED") else "optional"
        out.setdefault(ext, (internal, multi == "NV_TRUE", plist, kind))
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
        f.write("# class\tname\tinternal_class\tmulti_instance\tparents\talloc_params\n")
        for name, number in sorted(classes.items(), key=lambda kv: (kv[1], kv[0])):
            internal, multi, parents, params = rl.get(name, ("", True, "", ""))
            f.write(f"0x{number:04x}\t{name}\t{internal}\t{int(multi)}\t{parents}\t{params}\n")
    controls = _controls(root)
    methods = _exported_methods(root)
    with open(data / "rm_controls.tsv", "w") as f:
        f.write("# cmd\tname\ttakes_params (1/0 from the exported-method table; empty: not in it)\n")
        for number in sorted(set(controls) | set(methods)):
            name = controls.get(number) or methods[number][0]
            takes = "" if number not in methods else str(int(methods[number][1]))
            f.write(f"0x{number:08x}\t{name}\t{takes}\n")
    print(f"{len(classes)} classes, {len(controls)} named control commands, {len(methods)} exported methods")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
