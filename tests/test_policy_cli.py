"""``uvmlab compare`` and ``uvmlab policy ...`` as a user meets them."""

import json
import subprocess
import sys

import pytest


def uvmlab(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "uvmlab", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def one_line_error(r, *needles):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr + r.stdout
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.slow  # subprocesses of the CLI or long model runs
def test_compare_json_table_and_plot(tmp_path):
    png = tmp_path / "cmp.png"
    r = uvmlab(
        "compare",
        "llm:size=16MiB",
        "--policies",
        "lru,mru,tree(threshold=30)+lfu",
        "--gpu-memory",
        "150%",
        "--json",
        "--plot",
        str(png),
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [x["policy"] for x in rows] == ["default", "lru", "mru", "tree(threshold=30)+lfu"]
    assert rows[0]["speedup"] == 1.0 and rows[1]["totals"] == rows[0]["totals"]
    assert rows[2]["totals"] != rows[0]["totals"]  # MRU decides differently
    assert png.stat().st_size > 1000
    r = uvmlab("compare", "llm:size=16MiB", "--policies", "mru,belady", "--gpu-memory", "150%")
    assert r.returncode == 0, r.stderr
    for word in ("policy", "speedup", "evictions", "HtoD prefetch", "belady", "default"):
        assert word in r.stdout


@pytest.mark.slow  # subprocesses of the CLI or long model runs
def test_compare_markdown_and_policy_params():
    r = uvmlab("compare", "stride:size=8MiB", "--policies", "tree", "-P", "tree.threshold=90", "--markdown")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("| policy | time | speedup |") and len(lines) == 4


@pytest.mark.slow  # subprocesses of the CLI
@pytest.mark.parametrize(
    "args, needles",
    [
        (["compare", "llm:size=8MiB", "--policies", "belday"], ["unknown policy", "belady"]),
        (["compare", "llm:size=8MiB", "--policies", "mru+lfu"], ["both decide eviction"]),
        (["compare", "llm:size=8MiB", "--policies", "tree(thresh=3)"], ["no parameter"]),
        (["compare", "llm:size=8MiB", "--policies", "nope.py"], ["does not exist"]),
        (["policy", "run", "llm:size=8MiB", "--policy", "mru", "-P", "oops"], ["POLICY.KEY=VALUE"]),
    ],
)
def test_bad_policies_are_one_line_errors(args, needles):
    one_line_error(uvmlab(*args), *needles)


def test_policy_list_run_and_check(tmp_path):
    r = uvmlab("policy", "list")
    assert r.returncode == 0
    for name in (
        "prefetch-none",
        "always-max",
        "adaptive-sequential",
        "stride",
        "tree",
        "cross-block",
        "lru",
        "fifo",
        "mru",
        "lfu",
        "fifo-chance",
        "tenant-quota",
        "belady",
        "replay-block",
        "replay-batch",
        "replay-batch-flush",
        "replay-once",
        "replay-adaptive",
    ):
        assert name in r.stdout, name
    f = tmp_path / "pol.py"
    f.write_text(
        "from uvmlab.policy import Policy\n"
        "class Raises(Policy):\n"
        "    name = 'raises'\n"
        "    def chunk_used(self, ctx):\n"
        "        raise KeyError('boom')\n"
    )
    r = uvmlab("policy", "check", str(f))
    assert r.returncode == 0 and "decides eviction" in r.stdout and "chunk_used" in r.stdout
    r = uvmlab("policy", "run", "llm:size=8MiB", "--policy", str(f), "--gpu-memory", "150%")
    assert r.returncode == 0, r.stderr
    assert "policy raises ejected" in r.stdout and "in hook chunk_used" in r.stdout and "KeyError" in r.stdout
    assert "uvmlab: warning: " in r.stderr and "in hook chunk_used" in r.stderr
    r = uvmlab("policy", "run", "llm:size=8MiB", "--policy", "mru", "--json")
    assert json.loads(r.stdout)["policy_ejections"] == 0


def test_the_tutorial_policy_works_as_documented(tmp_path):
    """docs/policies.md §1: the policy in the tutorial, under 30 lines, beats LRU on the
    tutorial's own workload; Belady bounds it."""
    from pathlib import Path

    from uvmlab.lab.compare import compare

    doc = (Path(__file__).parent.parent / "docs" / "policies.md").read_text()
    code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) < 30
    f = tmp_path / "settle.py"
    f.write_text(code)
    rows = {
        r.policy: r.totals for r in compare("llm:size=64MiB", ["lru", str(f), "belady"], gpu_memory="150%")
    }
    assert rows["lru"] == rows["default"]
    assert rows["settle"]["evictions"] < rows["lru"]["evictions"]
    assert rows["settle"]["time_ns"] < rows["lru"]["time_ns"]
    assert rows["belady"]["evictions"] <= rows["settle"]["evictions"]
    assert rows["settle"]["policy_ejections"] == 0
