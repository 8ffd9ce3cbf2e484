"""Score the model per operation kind over stored sessions (``uvmlab validate --json``).

For each GPU with a stored session (``sessions.py``) and each scored set, the model runs every
captured workload with a profile and :class:`uvmlab.validation.score.Scores` groups the errors by
kind. Profiles compared:

* ``same-machine``: the profile ``uvmlab calibrate --quick`` fitted on the session's own
  ``calib`` captures (the acceptance figures of issue 13 are taken with it);
* ``shipped``: the built-in ``<gpu>-pcie5`` profile (fitted on an earlier session's training
  captures), showing what the day-to-day drift between machines costs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from uvmlab.timing.cost_model import builtin_profiles
from uvmlab.validation.runs import pairs
from uvmlab.validation.score import KINDS, Scores
from uvmlab.validation.sessions import SET_ORDER, SET_PATHS, Session, latest, session_profile_name

JSON_KEYS = ("n", "median_abs", "within_30", "signed_median")


def score_set(
    s: Session, label: str, profile: Any, *, gpu: Any = None, log: Callable[[str], None] | None = None
) -> Scores:
    """The scores of one set of session ``s`` under ``profile``."""

    family, set_name, _sub = SET_PATHS[label]
    sc = Scores()
    for real, model, _w in pairs(s.set_dir(label), family, set_name, gpu or s.gpu, profile, log=log):
        sc.add(real, model)
    return sc


def profiles_for(s: Session) -> dict[str, str]:
    """Label -> profile name of the profiles compared on session ``s``."""

    out = {}
    same = session_profile_name(s)
    if same in builtin_profiles():
        out["same-machine"] = same
    out["shipped"] = f"{s.gpu}-pcie5"
    return out


def evaluate(
    gpus: list[str], sets: list[str] | None = None, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """{gpu: {"session", "profiles": {label: {set: {kind: summary}}}}} over stored sessions."""
    out: dict[str, Any] = {}
    for gpu in gpus:
        s = latest(gpu)
        entry: dict[str, Any] = {"session": s.label, "profiles": {}}
        for plabel, prof in profiles_for(s).items():
            per_set = {}
            for label in sets or SET_ORDER:
                if log:
                    log(f"{gpu} {plabel} ({prof}): {label}")
                summ = score_set(s, label, prof, log=log).summary()
                per_set[label] = {k: {j: summ[k].as_dict()[j] for j in JSON_KEYS} for k in KINDS if summ[k].n}
            entry["profiles"][plabel] = {"profile": prof, "sets": per_set}
        out[gpu] = entry
    return out


__all__ = ["JSON_KEYS", "evaluate", "profiles_for", "score_set"]
