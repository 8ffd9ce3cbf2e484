"""Take a whole capture session on this machine's GPU and store it (``uvmlab validate --capture``).

One call (:func:`capture_session`) runs ``capture_space.run`` (the quick-calibration captures,
the suite and its hold-out set, the design space, time-boxed), files the captures into the stored
layout of ``sessions.py`` and fits the same-machine profile on the session's ``calib`` captures
(``quick.py``), written as ``timing/profiles/<gpu>-pcie5-<date>.json``. :func:`file_session`
does the filing alone, for a session taken elsewhere (the tarball a device call brought back).
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path

from uvmlab.core.errors import UvmlabError
from uvmlab.cuda import runtime
from uvmlab.timing.cost_model import CostProfile
from uvmlab.validation.capture_space import run as run_captures
from uvmlab.validation.quick import profile_from_captures, write_profile
from uvmlab.validation.runs import load_dir
from uvmlab.validation.sessions import DATA, Session, session_profile_name
from uvmlab.validation.stored import gpu_key

PROFILES = Path(__file__).resolve().parent.parent / "timing" / "profiles"


def file_session(staging: Path, data: Path = DATA) -> Session:
    """Move a ``capture_space`` output directory into the stored layout; returns the session."""
    man_path = staging / "manifest.json"
    if not man_path.is_file():
        raise UvmlabError(f"{staging}: no manifest.json (not a capture session)")
    man = json.loads(man_path.read_text())
    gpu = gpu_key(str(man.get("gpu")))
    date = str(man.get("date", ""))[:10] or _dt.date.today().isoformat()
    s = Session(gpu, date, data / "space" / f"{gpu}-{date}", data / "repeats" / f"{gpu}-{date}")
    if s.space.exists() or s.repeats.exists():
        raise UvmlabError(f"a stored session {s.label} exists already; move it away first")
    s.space.mkdir(parents=True)
    for sub in ("calib", "train", "holdout"):
        if (staging / "space" / "run0" / sub).is_dir():
            shutil.copytree(staging / "space" / "run0" / sub, s.space / sub)
    if (staging / "space" / "run1" / "calib").is_dir():
        shutil.copytree(staging / "space" / "run1" / "calib", s.space / "calib-run1")
    for wu in sorted((staging / "space").glob("warmup*/calib")):  # kept, never fitted nor scored
        shutil.copytree(wu, s.space / f"calib-{wu.parent.name}")
    shutil.copy(man_path, s.space / "manifest.json")
    if (staging / "repeats").is_dir():
        shutil.copytree(staging / "repeats", s.repeats)
    return s


def same_machine_profile(s: Session, log: Callable[[str], None] | None = None) -> CostProfile:
    """Fit and write the profile of session ``s`` (on its ``calib`` captures)."""
    man = s.manifest()
    fr = profile_from_captures(
        load_dir(s.space / "calib"),
        s.gpu,
        session_profile_name(s),
        stamp={"gpu": man.get("gpu"), "driver": man.get("driver"), "date": s.date},
        log=log,
    )
    write_profile(fr.profile, PROFILES / f"{fr.profile.name}.json")
    return fr.profile


def capture_session(
    deadline_s: float, staging: Path, log: Callable[[str], None] = print
) -> tuple[Session, CostProfile]:
    """Capture a session on this GPU (no capture starts after ``deadline_s``), store it, fit
    its same-machine profile."""
    runtime.device_info()  # no GPU: one clear error before anything is written
    run_captures(str(staging), deadline_s, log=log)
    s = file_session(staging)
    return s, same_machine_profile(s, log=log)


__all__ = ["capture_session", "file_session", "same_machine_profile"]
