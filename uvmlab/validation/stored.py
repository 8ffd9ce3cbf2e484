"""Where the stored real-GPU data lives (``validation/data``) and which GPU a capture is of."""

from __future__ import annotations

from pathlib import Path

from uvmlab.core.errors import UvmlabError
from uvmlab.driver.hal import GPUS

DATA = Path(__file__).resolve().parent / "data"
#: repeated captures of one session: ``repeats/<gpu>-<date>/rep<i>/{suite,holdout}``
REPEATS = DATA / "repeats"
#: the stored captures of each GPU (the H100 set came first and kept the plain name)
STORED_CAPTURES: dict[str, Path] = {"h100": DATA / "captures", "h200": DATA / "captures-h200"}
#: the stored captures of the hold-out set (never fit anything to these)
STORED_HOLDOUT: dict[str, Path] = {"h100": DATA / "holdout-h100", "h200": DATA / "holdout-h200"}
#: the stored captures of each workload set
STORED_SETS: dict[str, dict[str, Path]] = {"suite": STORED_CAPTURES, "holdout": STORED_HOLDOUT}
#: how the report names each set
SET_LABELS: dict[str, str] = {"suite": "suite", "holdout": "hold-out set"}
NOTES = DATA / "validation_notes.md"
CALIBRATION = DATA / "calibration"


def gpu_key(device_name: str) -> str:
    """The model's GPU spec key (``h100``, ``h200``) for a device name reported by CUDA."""
    for key, spec in GPUS.items():
        if device_name.strip() == spec.marketing_name:
            return key
    for key in GPUS:  # e.g. "NVIDIA H100 PCIe": same architecture, nearest spec
        if key in device_name.lower().replace(" ", ""):
            return key
    raise UvmlabError(
        f"the model has no GPU spec for {device_name!r} "
        f"(known: {', '.join(spec.marketing_name for spec in GPUS.values())})"
    )
