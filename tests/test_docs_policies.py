"""docs/policies.md: the policies the tutorial has the reader write load and do what it says.

``docs/make_policies_doc.py`` takes them from the page to regenerate its figures; this checks the
extraction and the code on every test run (the regeneration itself takes minutes).
"""

import importlib.util
from pathlib import Path

import pytest

from uvmlab.api import simulate
from uvmlab.core.errors import PolicyEjectedWarning
from uvmlab.policy.loader import load_policy

ROOT = Path(__file__).resolve().parent.parent


def _maker():
    spec = importlib.util.spec_from_file_location("make_policies_doc", ROOT / "docs" / "make_policies_doc.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tutorial_policies_load_from_the_page(tmp_path):
    mk = _maker()
    doc = (ROOT / "docs" / "policies.md").read_text()
    files = mk.policy_files(doc, tmp_path)
    settle = load_policy(str(files["settle"]))
    assert settle.name == "settle" and settle.spare is True
    assert load_policy(f"{files['settle']}(spare=false)").spare is False
    assert load_policy(str(files["buggy"])).name == "buggy"
    # every generated block the script fills is on the page, once
    names = [m.group("name") for m in mk.BLOCK.finditer(doc)]
    assert sorted(names) == sorted({*names}) and {"compare-llm64", "llm150", "belady-sweep"} <= set(names)


def test_buggy_policy_is_ejected_and_the_run_equals_the_driver(tmp_path):
    files = _maker().policy_files((ROOT / "docs" / "policies.md").read_text(), tmp_path)
    base = simulate("llm:size=16MiB", gpu_memory="150%")
    with pytest.warns(PolicyEjectedWarning, match="buggy ejected"):  # loud, as the page shows
        bad = simulate("llm:size=16MiB", gpu_memory="150%", policies=str(files["buggy"]))
    assert bad.totals["policy_ejections"] == 1
    assert bad.totals["evictions"] == base.totals["evictions"]
