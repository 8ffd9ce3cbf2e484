"""What a sweep is: a workload and axes (module parameters, policies, GPU memory); its points.

A point is one run of the model. Its identity is a hash of everything that decides its result
(workload spec and, for a trace file, the file's content hash; GPU; cost profile; parameter
values; policies; GPU memory; what is recorded) — so a point computed once is recognised in a
later run of the same or an extended sweep, and a changed trace file is never mistaken for the
old one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uvmlab.core.errors import UvmlabError
from uvmlab.driver.params import Params, parse_param_assignment
from uvmlab.policy.loader import DEFAULT_POLICY, NO_POLICY, load_policies

POINT_FORMAT = 1  # bump when a point's result would change for the same config
NO_POLICY_NAMES = NO_POLICY  # the driver's own behaviour, no hooks (shown as "default")


@dataclass(frozen=True)
class Point:
    config: dict[str, Any]  # JSON-able, canonical: decides the result
    label: str  # short human label: the axis values that vary in the sweep
    axes: dict[str, Any]  # axis name -> this point's value

    @property
    def id(self) -> str:
        blob = json.dumps({"format": POINT_FORMAT, **self.config}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class SweepSpec:
    workload: str
    gpu: str = "h200"
    profile: str | None = None
    params: list[tuple[str, list[str]]] = field(default_factory=list)  # name, raw values
    policies: list[str] = field(default_factory=lambda: [DEFAULT_POLICY])
    gpu_memory: list[str | None] = field(default_factory=lambda: [None])
    events: bool = False
    samples: bool = True

    @classmethod
    def from_cli(
        cls,
        workload: str,
        *,
        params: Sequence[str] = (),
        policies: str | None = None,
        gpu_memory: str | None = None,
        gpu: str = "h200",
        profile: str | None = None,
        events: bool = False,
        samples: bool = True,
    ) -> SweepSpec:
        """Parse ``--param name=v1,v2`` (repeatable), ``--policies a,b``, ``--gpu-memory 50%,1GiB``."""
        axes: list[tuple[str, list[str]]] = []
        for text in params:
            name, sep, raw = text.partition("=")
            name = name.strip()
            if not sep or not name:
                raise UvmlabError(f"--param expects name=v1,v2,..., got {text!r}")
            values = [v.strip() for v in raw.split(",")]
            if not all(values):
                raise UvmlabError(f"--param {name}: empty value in {raw!r}")
            if any(n == name for n, _ in axes):
                raise UvmlabError(f"--param {name} given twice (list its values once: {name}=v1,v2)")
            axes.append((name, values))
        pol = _split(policies, "--policies", top_level=True) if policies else [DEFAULT_POLICY]
        pol = [DEFAULT_POLICY if p.strip().lower() in NO_POLICY else p for p in pol]
        mem: list[str | None] = list(_split(gpu_memory, "--gpu-memory")) if gpu_memory else [None]
        return cls(
            workload=workload,
            gpu=gpu,
            profile=profile,
            params=axes,
            policies=pol,
            gpu_memory=mem,
            events=events,
            samples=samples,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "gpu": self.gpu,
            "profile": self.profile,
            "params": [[n, list(v)] for n, v in self.params],
            "policies": self.policies,
            "gpu_memory": self.gpu_memory,
            "events": self.events,
            "samples": self.samples,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepSpec:
        return cls(
            workload=d["workload"],
            gpu=d.get("gpu", "h200"),
            profile=d.get("profile"),
            params=[(str(n), [str(x) for x in v]) for n, v in d.get("params", [])],
            policies=[
                DEFAULT_POLICY if p.strip().lower() in NO_POLICY else p
                for p in d.get("policies", [DEFAULT_POLICY])
            ],
            gpu_memory=list(d.get("gpu_memory", [None])),
            events=bool(d.get("events")),
            samples=bool(d.get("samples", True)),
        )

    @property
    def name(self) -> str:
        """The workload's short name: ``stream`` for ``stream:size=1GiB``, a file's stem."""
        w = self.workload
        if w.endswith(".uvmw") or Path(w).is_file():
            return Path(w).stem
        return w.split(":", 1)[0]

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]

    def points(self) -> list[Point]:
        """The cross product, parameters first (in the order given), then policies, then GPU
        memory; every value checked before anything runs."""
        typed: list[list[tuple[str, Any]]] = []
        for name, values in self.params:
            typed.append([parse_param_assignment(f"{name}={v}") for v in values])
        for p in self.policies:
            if not p or any(not part.strip() for part in p.split("+")):
                raise UvmlabError(f"--policies: empty policy name in {p!r}")
            if p.strip().lower() not in NO_POLICY_NAMES:
                _check_policy(p)
        wl_hash = _file_hash(self.workload)
        varying = {
            "params": [len(v) > 1 for v in typed],
            "policies": len(self.policies) > 1,
            "gpu_memory": len(self.gpu_memory) > 1,
        }
        points = []
        for combo in itertools.product(*typed) if typed else [()]:
            overrides = dict(combo)
            Params.from_overrides(overrides)  # ranges and combinations checked here, up front
            for pol in self.policies:
                for mem in self.gpu_memory:
                    # a trace file is known by its content, not its path: the same sweep
                    # resumed from another directory finds its points again
                    config = {
                        "workload": f"file:{Path(self.workload).name}" if wl_hash else self.workload,
                        "workload_sha256": wl_hash,
                        "gpu": self.gpu,
                        "profile": self.profile,
                        "params": {k: overrides[k] for k in sorted(overrides)},
                        "policies": pol,
                        "gpu_memory": mem,
                        "events": self.events,
                        "samples": self.samples,
                    }
                    parts = [
                        f"{k}={v}" for (k, v), vary in zip(combo, varying["params"], strict=True) if vary
                    ]
                    if varying["policies"]:
                        parts.append(f"policy={pol}")
                    if varying["gpu_memory"]:
                        parts.append(f"mem={mem}")
                    axes = {**{k: v for k, v in combo}, "policies": pol, "gpu_memory": mem}
                    points.append(Point(config, ", ".join(parts) or self.name, axes))
        ids = [p.id for p in points]
        if len(set(ids)) != len(ids):
            raise UvmlabError("the sweep lists the same point twice (a value repeated?)")
        return points


def _split(text: str, what: str, top_level: bool = False) -> list[str]:
    """Values separated by commas; with ``top_level``, commas inside parentheses (a policy's
    parameters: ``tree(threshold=30,x=1)``) do not separate."""
    if top_level:
        vals, depth, cur = [], 0, ""
        for ch in text:
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if ch == "," and depth == 0:
                vals.append(cur.strip())
                cur = ""
            else:
                cur += ch
        vals.append(cur.strip())
    else:
        vals = [v.strip() for v in text.split(",")]
    if not all(vals):
        raise UvmlabError(f"{what}: empty value in {text!r}")
    if len(set(vals)) != len(vals):
        raise UvmlabError(f"{what}: a value is repeated in {text!r}")
    return vals


def _check_policy(spec: str) -> None:
    """Load the policies of one axis value now, so that a bad name fails before any run."""
    try:
        pass
    except ModuleNotFoundError:
        raise UvmlabError(f"--policies {spec}: this uvmlab has no policy support") from None
    load_policies(spec)  # a PolicyError (a UvmlabError) names what is wrong


def _file_hash(workload: str) -> str:
    """Content hash of a trace file (a changed file is a different workload); '' for specs."""
    p = Path(workload)
    if not (workload.endswith(".uvmw") or p.is_file()):
        return ""
    try:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except OSError as e:
        raise UvmlabError(f"{workload}: cannot read ({e.strerror})") from None
