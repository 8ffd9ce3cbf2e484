"""Pinned results: every counter and simulated time of every built-in workload, small sizes.

``python3 tests/pinned.py`` writes ``tests/data/pinned_results.json`` (on the tree whose behaviour
is to be pinned); ``tests/test_pinned_results.py`` recomputes the same runs and compares exactly.
A restructuring that changes any counter or time of any run fails the test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from uvmlab.api import simulate
from uvmlab.policy.loader import build_hooks
from uvmlab.workload.synthetic import describe

PINNED = Path(__file__).resolve().parent / "data" / "pinned_results.json"
SIZE = "8MiB"  # four 2 MiB VA blocks: a few ms a run, every path still taken
# The default driver, then two library policies: an eviction policy (runs on the compiled fault
# path) and a prefetch policy (reference fault path). "150%" oversubscribes, so eviction runs too.
POLICIES: tuple[str | None, ...] = (None, "lfu", "stride")
MEMORY: tuple[str | None, ...] = (None, "150%")


def run_key(workload: str, policy: str | None, memory: str | None) -> str:
    return f"{workload}|{policy or 'default'}|{memory or 'fits'}"


def one_run(workload: str, policy: str | None, memory: str | None) -> dict[str, Any]:
    spec = f"{workload}:size={SIZE},seed=3"
    # A generous time budget: the pins are about what a policy decides, and a loaded machine must
    # not eject a library policy on time and so change the pinned counters.
    hooks = build_hooks([policy], budget_ms=60_000) if policy else None
    r = simulate(spec, gpu="h100", policies=hooks, gpu_memory=memory)
    d = r.to_dict()
    d.pop("wall_s", None)
    d.pop("op_wall_s", None)
    d.pop("uvmlab_version", None)  # which release made it, not what it computed
    return json.loads(json.dumps(d, sort_keys=True))


def all_runs() -> dict[str, dict[str, Any]]:
    out = {}
    for w in describe():
        for policy in POLICIES:
            for memory in MEMORY:
                out[run_key(w["name"], policy, memory)] = one_run(w["name"], policy, memory)
    return out


if __name__ == "__main__":
    runs = all_runs()
    PINNED.parent.mkdir(parents=True, exist_ok=True)
    # one run per line: a changed run shows as one changed line in a diff
    lines = [f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in sorted(runs.items())]
    PINNED.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"wrote {len(runs)} runs to {PINNED}", file=sys.stderr)
