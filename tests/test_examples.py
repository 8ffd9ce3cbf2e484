"""The examples/ notebook runs end to end (its cells assert that no policy was ejected)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_policy_comparison_notebook_executes(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(ROOT / "examples" / "policy_comparison.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # both tables and the figures were produced
    tables = [
        o
        for o in outputs
        if o.output_type == "execute_result" and "policy" in o["data"].get("text/plain", "")
    ]
    assert len(tables) == 2
    assert any(o.output_type == "display_data" and "image/png" in o["data"] for o in outputs)
