"""The figures behind ``docs/validation.md``: every stored session of each GPU scored by the
model under each profile, per set and operation kind, with the same-machine fit again (for its
leave-one-workload-out), older sessions' suite hold-out set and earlier design-space sessions.

``fidelity_acceptance.py`` judges these against issue 13's targets; ``fidelity_report.py`` writes
them out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from uvmlab.timing.cost_model import load_profile
from uvmlab.validation.fit import FitResult, Training, fit_profile
from uvmlab.validation.kinds import profiles_for, score_set
from uvmlab.validation.runs import load_dir, workload_of
from uvmlab.validation.score import Scores
from uvmlab.validation.sessions import DATA, REPEATS, Session, latest, session_profile_name, sessions


@dataclass
class GpuResults:
    session: Session
    profiles: dict[str, str]  # label -> profile name
    scores: dict[str, dict[str, Scores]] = field(default_factory=dict)  # profile -> set -> ..
    fit: FitResult | None = None  # the same-machine fit again, for its leave-one-workload-out
    fit_set: str = ""
    older: dict[str, Scores] = field(default_factory=dict)  # older session label -> suite-holdout
    # earlier design-space sessions of this GPU: label -> (their same-machine profile, their
    # scores by set) -- the acceptance figures again on another machine start (a replication)
    earlier: dict[str, tuple[str, dict[str, Scores]]] = field(default_factory=dict)
    # a session with warm-up captures (warmup.py): the hold-out set under the profile fitted as
    # the calibration did before the warm-up (warmup_training), and that profile's name
    first_seconds: tuple[str, Scores] | None = None


def warmup_training(s: Session) -> list[Training] | None:
    """The calibration set of session ``s`` as it was taken before the warm-up existed: its
    cases from the first warm-up pass (``calib-warmup0``, the machine's first seconds) where that
    pass has them, the others (ping-pong, accessed-by, read-mostly) from ``calib``; None for a
    session without warm-up captures. Fitted beside the same-machine profile, it measures what
    the warm-up changes (the two differ only in when the kernel cases ran)."""
    wu = s.space / "calib-warmup0"
    if not wu.is_dir():
        return None
    first = {r.workload: r for r in load_dir(wu)}
    caps = [first.get(r.workload, r) for r in load_dir(s.set_dir("calib"))]
    return [Training(r.workload, workload_of(r, "space", "calib"), r) for r in caps]


def collect(gpus: list[str], log: Callable[[str], None] | None = None) -> list[GpuResults]:
    """Score the newest stored session of each GPU in ``gpus`` (see the module's docstring)."""
    out = []
    for gpu in gpus:
        s = latest(gpu)
        g = GpuResults(s, profiles_for(s))
        for plabel, prof in g.profiles.items():
            g.scores[plabel] = {}
            for label in s.sets():
                if log:
                    log(f"{gpu} {plabel}: {label}")
                g.scores[plabel][label] = score_set(s, label, prof, log=log)
        g.fit_set = "calib" if "calib" in s.sets() else "suite"
        family = "space" if g.fit_set == "calib" else "suite"
        train = [
            Training(r.workload, workload_of(r, family, g.fit_set), r) for r in load_dir(s.set_dir(g.fit_set))
        ]
        g.fit = fit_profile(load_profile(f"{gpu}-pcie5-measured"), train, gpu=gpu, name="lowo")
        wtrain = warmup_training(s) if g.fit_set == "calib" else None
        if wtrain is not None and "holdout" in s.sets():
            name = f"{session_profile_name(s)}-first-seconds"
            if log:
                log(f"{gpu}: profile {name} (calibration before the warm-up), holdout")
            fr = fit_profile(load_profile(f"{gpu}-pcie5-measured"), wtrain, gpu=gpu, name=name)
            g.first_seconds = (name, score_set(s, "holdout", fr.profile))
        for d in sorted(REPEATS.glob(f"{gpu}-*")):  # older days' suite hold-out captures
            old = Session(gpu, d.name.partition("-")[2], DATA / "space" / d.name, d)
            if old.date < s.date and old.set_dir("suite-holdout").is_dir():
                g.older[old.label] = score_set(old, "suite-holdout", g.profiles[main_profile(g)])
        for old in sessions(gpu):
            same = session_profile_name(old)
            if old.date < s.date and old.has_space and same in profiles_for(old).values():
                if log:
                    log(f"{gpu} earlier session {old.label} ({same}): holdout")
                have: list[str] = [label for label in ("holdout", "train") if label in old.sets()]
                sets = {label: score_set(old, label, same) for label in have}
                g.earlier[old.label] = (same, sets)
        out.append(g)
    return out


def main_profile(g: GpuResults) -> str:
    return "same-machine" if "same-machine" in g.scores else "shipped"


def holdout_set(g: GpuResults) -> str:
    """The hold-out set the acceptance is judged on: the design space's, else the suite's."""
    return "holdout" if "holdout" in g.scores[main_profile(g)] else "suite-holdout"


__all__ = ["GpuResults", "collect", "holdout_set", "main_profile", "warmup_training"]
