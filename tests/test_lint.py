"""The project's gates run with the tests: one-way layers and no import cycles (import-linter),
``ruff format`` and ``ruff check`` over the whole tree. Each skips only when its tool is absent."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter not installed")
def test_import_contracts_kept():
    r = _run("lint-imports", "--no-cache")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_ruff_format_clean():
    r = _run("ruff", "format", "--check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_ruff_check_clean():
    r = _run("ruff", "check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_package_data_globs_cover_every_data_file():
    """A built wheel carries every file of the data folders, at any depth."""
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = cfg["tool"]["setuptools"]["package-data"]
    for folder in (
        "uvmlab/validation/data",
        "uvmlab/cuda/data",
        "uvmlab/timing/profiles",
        "uvmlab/vgpu/data",
    ):
        pkg_dir = ROOT / folder.rsplit("/", 1)[0]
        pkg = folder.rsplit("/", 1)[0].replace("/", ".")
        covered = {p for g in globs.get(pkg, []) for p in pkg_dir.glob(g) if p.is_file()}
        files = {p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
        assert files, folder
        assert files <= covered, sorted(str(p) for p in files - covered)[:5]
