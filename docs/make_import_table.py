"""Write the "Captured programs, replayed" table of docs/importing.md and its JSON.

    python3 docs/make_import_table.py

Imports every stored capture in ``examples/captures/`` (made with ``uvmlab capture`` from the
programs in ``examples/programs/``), replays it in the model on the GPU it was captured on, and
writes the comparison to ``examples/captures/comparison.json`` and between the markers of
``docs/importing.md``, stamped with the date and the machine the model ran on.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
from pathlib import Path

from uvmlab.core.units import fmt_bytes, fmt_ns
from uvmlab.core.version import __version__
from uvmlab.validation.programs import compare_program

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "examples" / "captures"
DOC = ROOT / "docs" / "importing.md"
BEGIN = "<!-- BEGIN import table (written by docs/make_import_table.py) -->"
END = "<!-- END import table -->"


def _cell(key: str, v: float) -> str:
    return fmt_bytes(v) if key.startswith("bytes") else fmt_ns(v) if key.endswith("_ns") else f"{int(v):,}"


def main() -> None:
    results = [compare_program(p) for p in sorted(CAPTURES.glob("*.npz"))]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d")
    (CAPTURES / "comparison.json").write_text(
        json.dumps({"date": stamp, "machine": machine, "uvmlab": __version__, "programs": results}, indent=1)
        + "\n"
    )
    lines = [
        BEGIN,
        "",
        f"Written by `docs/make_import_table.py` on {stamp} (model on {machine}, uvmlab {__version__}); "
        "the data are in `examples/captures/comparison.json`. Real bytes are the driver's lossless "
        "counters over the captured run; real kernel time is the sum of the captured kernels' "
        "durations, against the model's kernel operations (CPU phases excluded: host code between "
        "faults is not in a trace).",
        "",
        "| program | captured on | quantity | real | model | error |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        where = f"{r['captured_on']}, driver {r['driver']}, {r['date'][:10]}"
        for key, row in r["rows"].items():
            e = "—" if row["error"] is None else f"{row['error']:+.1%}"
            lines.append(
                f"| `{r['program']}` | {where} | {key} | {_cell(key, row['real'])} | "
                f"{_cell(key, row['model'])} | {e} |"
            )
            where = ""
    lines += ["", END]
    text = DOC.read_text()
    text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), "\n".join(lines), text, flags=re.S)
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(ROOT)} and {(CAPTURES / 'comparison.json').relative_to(ROOT)}")


if __name__ == "__main__":
    main()
