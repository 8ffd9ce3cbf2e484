"""Stored capture sessions (issue 13): one device call per GPU took the quick-calibration
micro-captures, the design space and repeats of the suite on one machine.

Layout under ``data/``:

* ``space/<gpu>-<date>/{calib,train,holdout}/<case>.json`` (``uvmlab.validation.space``), with
  ``calib-run1/`` (the calibration set again later in the same session: the within-session drift)
  and ``manifest.json`` (GPU, driver, date, seconds per capture);
* ``repeats/<gpu>-<date>/rep<i>/{suite,holdout}/<name>.json``: the suite and its hold-out set,
  repeated in the same session.

A *set* names what is scored: ``calib``, ``train``, ``holdout`` (design space), ``suite`` and
``suite-holdout`` (the suite's hold-out set), each as (family, set name, directory).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uvmlab.core.errors import UvmlabError

DATA = Path(__file__).resolve().parent / "data"
SPACE = DATA / "space"
REPEATS = DATA / "repeats"
#: scored sets: label -> (family, set name inside the family, sub-path of a session)
SET_PATHS: dict[str, tuple[str, str, str]] = {
    "calib": ("space", "calib", "calib"),
    "train": ("space", "train", "train"),
    "holdout": ("space", "holdout", "holdout"),
    "suite": ("suite", "suite", "rep0/suite"),
    "suite-holdout": ("suite", "holdout", "rep0/holdout"),
}
SET_ORDER = tuple(SET_PATHS)


@dataclass(frozen=True)
class Session:
    """One device call's captures of one GPU."""

    gpu: str  # h100, h200
    date: str  # YYYY-MM-DD
    space: Path
    repeats: Path

    @property
    def label(self) -> str:
        return f"{self.gpu}-{self.date}"

    @property
    def has_space(self) -> bool:
        """Whether the session captured the design space (older ones hold the suite only)."""
        return self.space.is_dir()

    def sets(self) -> list[str]:
        """The scored sets this session has captures of."""
        return [label for label in SET_ORDER if self.set_dir(label).is_dir()]

    def set_dir(self, label: str) -> Path:
        family, _name, sub = SET_PATHS[label]
        return (self.space if family == "space" else self.repeats) / sub

    def manifest(self) -> dict[str, Any]:
        p = self.space / "manifest.json"
        return json.loads(p.read_text()) if p.is_file() else {}


def sessions(gpu: str | None = None, data: Path | None = None) -> list[Session]:
    """The stored sessions, oldest first (the directory names sort by date)."""
    root = data or DATA
    out = []
    for d in sorted((root / "space").glob("*-*")):
        key, _, date = d.name.partition("-")
        if gpu is not None and key != gpu:
            continue
        out.append(Session(key, date, d, root / "repeats" / d.name))
    # a GPU with no design-space session: its newest session of suite repeats alone
    have = {s.gpu for s in out}
    older: dict[str, Path] = {}
    for d in sorted((root / "repeats").glob("*-*")):
        key = d.name.partition("-")[0]
        if key not in have and (gpu is None or key == gpu) and (d / "rep0" / "suite").is_dir():
            older[key] = d
    for key, d in older.items():
        out.append(Session(key, d.name.partition("-")[2], root / "space" / d.name, d))
    return sorted(out, key=lambda s: (s.gpu, s.date))


def latest(gpu: str, data: Path | None = None) -> Session:
    s = sessions(gpu, data)
    if not s:
        raise UvmlabError(f"no stored capture session of {gpu} under {(data or DATA) / 'space'}")
    return s[-1]


def session_profile_name(s: Session) -> str:
    """The built-in profile calibrated on session ``s`` (``uvmlab calibrate --quick``)."""
    return f"{s.gpu}-pcie5-{s.date}"


__all__ = ["DATA", "SET_ORDER", "SET_PATHS", "Session", "latest", "session_profile_name", "sessions"]
