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


@pytest.mark.skipif(shutil.which("mypy") is None, reason="mypy not installed")
def test_mypy_clean():
    """The packages listed in ``[tool.mypy] files`` type-check (pyproject.toml)."""
    r = _run("mypy")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr


TYPED_PACKAGES = ("core", "workload", "driver", "policy", "engine", "results")


def _untyped_public_functions() -> list[str]:
    import ast

    bad = []
    for pkg in TYPED_PACKAGES:
        for f in sorted((ROOT / "uvmlab" / pkg).rglob("*.py")):
            tree = ast.parse(f.read_text())
            todo = [(n, "") for n in tree.body]
            while todo:
                n, owner = todo.pop()
                if isinstance(n, ast.ClassDef) and not n.name.startswith("_"):
                    todo += [(c, n.name + ".") for c in n.body]
                elif isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef):
                    if n.name.startswith("_") and n.name != "__init__":
                        continue
                    a = n.args
                    args = [x for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
                    args += [x for x in (a.vararg, a.kwarg) if x is not None]
                    no_return = n.returns is None and n.name != "__init__"
                    if no_return or any(x.annotation is None for x in args):
                        bad.append(f"{f.relative_to(ROOT)}:{n.lineno} {owner}{n.name}")
    return bad


def test_public_functions_are_typed():
    """Every public function and method of the typed packages annotates its arguments and
    return value (numba kernels included: numba ignores the annotations)."""
    bad = _untyped_public_functions()
    assert not bad, "\n".join(bad)
