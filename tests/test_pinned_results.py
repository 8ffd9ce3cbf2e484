"""No behaviour change: every built-in workload, under the default driver and two library
policies, fitting and oversubscribed, gives exactly the counters and simulated times pinned in
``tests/data/pinned_results.json`` (written by ``python3 tests/pinned.py``)."""

import json

import pytest
from pinned import MEMORY, PINNED, POLICIES, all_runs, run_key

from uvmlab.workload.synthetic import describe


@pytest.fixture(scope="module")
def pinned():
    return json.loads(PINNED.read_text())


@pytest.fixture(scope="module")
def now():
    return all_runs()


def test_pins_every_builtin_workload_and_policy(pinned):
    expected = {run_key(w["name"], p, m) for w in describe() for p in POLICIES for m in MEMORY}
    assert set(pinned) == expected
    # the pins exercise what they claim to: eviction when oversubscribed, the policies loaded
    assert any(r["totals"]["evictions"] > 0 for k, r in pinned.items() if k.endswith("|150%"))
    assert all(r["meta"].get("policies") for k, r in pinned.items() if "|default|" not in k)


def test_results_identical_to_pins(pinned, now):
    changed = sorted(k for k in pinned if now.get(k) != pinned[k])
    assert not changed, f"{len(changed)} runs differ from the pins, first: {changed[:5]}"
