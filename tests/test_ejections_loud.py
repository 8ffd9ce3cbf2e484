"""An ejected policy is never silent: a warning per ejection from the API and every command,
a line in ``summary()``, a field in the saved result, and ``--strict`` for an error exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest

from uvmlab import simulate
from uvmlab.core.errors import PolicyEjectedError, PolicyEjectedWarning
from uvmlab.policy import Policy
from uvmlab.results.result import Result

POLICY = """
from uvmlab.policy import Policy


class Odd(Policy):
    name = "odd"

    def decide_replay(self, ctx):
        return 2  # not a replay decision: the guard ejects the policy
"""


class Odd(Policy):
    name = "odd"

    def decide_replay(self, ctx):
        return 2


def uvmlab(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "uvmlab", *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


def test_api_warns_once_per_ejection_and_strict_raises():
    with pytest.warns(
        PolicyEjectedWarning, match=r"policy odd ejected at .* ms simulated in hook decide_replay"
    ):
        r = simulate("random:size=8MiB", policies=Odd())
    assert r.totals["policy_ejections"] == 1 and len(r.ejections) == 1
    assert "WARNING: policy odd ejected" in r.summary()
    with pytest.raises(PolicyEjectedError, match="decide_replay"):
        simulate("random:size=8MiB", policies=Odd(), strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a policy that behaves: no warning at all
        assert not simulate("random:size=8MiB", policies="lru").ejections


def test_saved_result_carries_the_ejections_and_the_version(tmp_path):
    with pytest.warns(PolicyEjectedWarning):
        r = simulate("random:size=8MiB", policies=Odd())
    r.save(tmp_path / "r.json")
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["ejections"][0]["hook"] == "decide_replay" and d["uvmlab_version"]
    r.save(tmp_path / "r.parquet")
    back = Result.load(tmp_path / "r.parquet")
    assert back.ejections == r.ejections and back.uvmlab_version == r.uvmlab_version


def test_every_command_warns_and_strict_exits_4(tmp_path):
    pol = tmp_path / "odd.py"
    pol.write_text(POLICY)
    out = tmp_path / "r.json"
    r = uvmlab("run", "random:size=8MiB", "--policy", f"{pol}:Odd", "--out", str(out))
    assert r.returncode == 0
    lines = [x for x in r.stderr.splitlines() if "warning: " in x]
    assert len(lines) == 1 and "hook decide_replay" in lines[0], r.stderr
    assert "WARNING: policy odd ejected" in r.stdout
    r = uvmlab("--quiet", "--strict", "run", "random:size=8MiB", "--policy", f"{pol}:Odd", "--out", str(out))
    assert r.returncode == 4, r.stderr
    assert "warning: " in r.stderr and "--strict" in r.stderr  # quiet never hides an ejection
    assert json.loads(out.read_text())["ejections"]  # the output was still written
    r = uvmlab("compare", "random:size=8MiB", "--policies", f"lru,{pol}:Odd")
    assert r.returncode == 0 and sum("warning: " in x for x in r.stderr.splitlines()) == 1, r.stderr


def test_bad_input_is_refused_before_any_compiling(tmp_path):
    """The first-run compile starts at the first simulation, not with the command: a wrong
    workload name, with an empty numba cache, is one error line at once, without the notes."""
    r = subprocess.run(
        [sys.executable, "-m", "uvmlab", "run", "strem:size=8MiB"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")},
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "error" in r.stderr and "compil" not in r.stderr, r.stderr


def test_first_run_compile_is_announced_with_its_time(monkeypatch):
    """With the cache empty the first run says it is compiling (and how long it took) instead of
    sitting silent for minutes; with it filled it says nothing. The warm-up is stubbed: the real
    first run's compile is exercised once, by the suite's first test that runs the model."""
    from uvmlab.cli import notices

    ran: list[str] = []
    said: list[str] = []
    monkeypatch.setattr(notices, "simulate", lambda spec, **kw: ran.append(spec))
    # the notes themselves, whatever handlers the CLI's earlier runs left on the logger
    monkeypatch.setattr(notices.log, "info", lambda msg, *args: said.append(msg % args))
    for filled in (False, True):
        monkeypatch.setattr(notices.state, "compiled", False)
        monkeypatch.setattr(notices, "cache_filled", lambda filled=filled: filled)
        said.clear()
        notices.compile_model()
        notices.compile_model()  # once per process
        text = " ".join(said)
        if filled:
            assert "compil" not in text, text
        else:
            assert "compiling the model's fast paths" in text and "compiled in" in text, text
    assert len(ran) == 6  # three warm-up runs per process, not per call


def test_cache_filled_tells_an_empty_cache_from_a_filled_one(tmp_path):
    """``cache_filled`` (what decides the note) is False for an empty numba cache folder and True
    once the warm-up has run (this process's cache, filled by the suite's runs)."""
    from uvmlab.cli import notices

    simulate("random:size=8MiB,seed=1", gpu="h200", gpu_memory="50%")
    simulate("pingpong:size=4MiB,rounds=1", gpu="h200")
    assert notices.cache_filled()
    r = subprocess.run(
        [sys.executable, "-c", "from uvmlab.cli.notices import cache_filled; print(cache_filled())"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")},
    )
    assert r.returncode == 0 and r.stdout.split() == ["False"], r.stdout + r.stderr
