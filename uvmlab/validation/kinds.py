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
from pathlib import Path
from typing import Any

from uvmlab.timing.cost_model import builtin_profiles
from uvmlab.validation.references import references
from uvmlab.validation.runs import pairs
from uvmlab.validation.score import KINDS, THRASH_KEYS, Scores, is_thrash_case
from uvmlab.validation.sessions import DATA, SET_ORDER, SET_PATHS, Session, latest, session_profile_name

JSON_KEYS = ("n", "median_abs", "within_30", "signed_median")


def score_set(
    s: Session,
    label: str,
    profile: Any,
    *,
    gpu: Any = None,
    log: Callable[[str], None] | None = None,
    data: Path = DATA,
) -> Scores:
    """The scores of one set of session ``s`` under ``profile``; the thrashing counters against
    the median of the runs of their case stored under ``data`` (``references.py``)."""

    family, set_name, _sub = SET_PATHS[label]
    sc = Scores()
    d = s.set_dir(label)
    for real, model, _w in pairs(d, family, set_name, gpu or s.gpu, profile, log=log):
        refs = None
        if is_thrash_case(real.workload):
            # the counters' reference: the median of the stored runs of this case on this GPU kind
            own = d / f"{real.meta.get('suite_name') or real.workload}.json"
            refs = references(real, THRASH_KEYS, s.gpu, label, own if own.is_file() else None, data)
        sc.add(real, model, refs)
    return sc


def profiles_for(s: Session) -> dict[str, str]:
    """Label -> profile name of the profiles compared on session ``s``."""

    out = {}
    same = session_profile_name(s)
    if same in builtin_profiles():
        out["same-machine"] = same
    out["shipped"] = f"{s.gpu}-pcie5"
    return out


def thrashing_json(sc: Scores) -> dict[str, Any]:
    """What the thrashing figure is scored against, the same counters against the single run,
    and every counter (``Score.as_dict``: real = the reference, ``ref`` = single run and spread)."""
    one = sc.thrashing_single().as_dict()
    return {
        "reference": sc.thrashing_reference(),
        "single_run": {j: one[j] for j in JSON_KEYS},
        "counters": [x.as_dict() for x in sc.by_kind["thrashing"]],
    }


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
                sc = score_set(s, label, prof, log=log)
                summ = sc.summary()
                per_set[label] = {k: {j: summ[k].as_dict()[j] for j in JSON_KEYS} for k in KINDS if summ[k].n}
                if "thrashing" in per_set[label]:
                    per_set[label]["thrashing"].update(thrashing_json(sc))
            entry["profiles"][plabel] = {"profile": prof, "sets": per_set}
        out[gpu] = entry
    return out


__all__ = ["JSON_KEYS", "evaluate", "profiles_for", "score_set", "thrashing_json"]
