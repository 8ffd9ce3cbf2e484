"""A built wheel is complete: installed into a fresh virtual environment, away from the source
tree, it runs ``uvmlab demo``, ``uvmlab validate`` (the stored captures) and ``uvmlab fit``.
The venv's package is given the source tree's numba cache (the same sources, so the same machine
code): a cold compile costs minutes on CI's 2 cores, and the note that announces one is tested
in tests/test_ejections_loud.py.

The environment sees the machine's site-packages for the dependencies (CI has no network), but
uvmlab itself comes from the wheel: the test checks that the imported package is the venv's.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "NUMBA_CACHE_DIR")  # the cache beside the venv's package
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path):
    dist = tmp_path / "dist"
    r = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(ROOT),
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = dist.glob("uvmlab-*.whl")

    # every data file of the source tree is in the wheel
    names = set(zipfile.ZipFile(wheel).namelist())
    data = [
        p
        for folder in ("uvmlab/validation/data", "uvmlab/timing/profiles")
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert data
    missing = [str(p.relative_to(ROOT)) for p in data if str(p.relative_to(ROOT)) not in names]
    assert not missing, missing[:5]
    assert "uvmlab/cuda/managed_alloc.c" in names

    venv = tmp_path / "venv"
    r = _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], tmp_path)
    assert r.returncode == 0, r.stderr
    py, exe = venv / "bin" / "python", venv / "bin" / "uvmlab"
    r = _run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    work = tmp_path / "work"
    work.mkdir()
    r = _run([str(py), "-c", "import uvmlab; print(uvmlab.__file__)"], work)
    assert r.returncode == 0 and str(venv) in r.stdout, r.stdout + r.stderr
    _seed_numba_cache(Path(r.stdout.strip()).parent)

    r = _run([str(exe), "--version"], work)
    assert r.returncode == 0 and r.stdout.split()[-1] == _version(), r.stdout + r.stderr
    r = _run([str(exe), "demo", "--quick"], work)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Oversubscription" in r.stdout
    r = _run([str(exe), "validate", "--only", "random", "-o", str(work / "validation.md")], work)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "hold-out" in (work / "validation.md").read_text().lower()
    r = _run([str(exe), "fit", "--gpu", "h200", "--out", str(work)], work)
    assert r.returncode == 0, r.stderr[-2000:]
    # the wheel's own stored captures refit to the profile it ships (all but the note of the date)
    fitted = json.loads((work / "h200-pcie5.json").read_text())
    shipped = json.loads((ROOT / "uvmlab/timing/profiles/h200-pcie5.json").read_text())
    fitted.pop("sources"), shipped.pop("sources")
    assert fitted == shipped


def _seed_numba_cache(package: Path) -> None:
    """Copy the source tree's numba cache (``.nbi`` / ``.nbc`` beside each module) into the
    installed ``package`` and give its modules the tree's modification times, which numba's
    index checks. Where the tree's cache is cold (this test run alone) the venv compiles."""
    src = ROOT / "uvmlab"
    for f in src.rglob("__pycache__/*.nb[ic]"):
        dest = package / f.relative_to(src)
        if dest.parent.parent.is_dir():
            dest.parent.mkdir(exist_ok=True)
            shutil.copyfile(f, dest)
    for f in src.rglob("*.py"):
        dest = package / f.relative_to(src)
        if dest.is_file():
            st = f.stat()
            os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))


def _version() -> str:
    tree = ast.parse((ROOT / "uvmlab/core/version.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "__version__":
            return node.value.value
    raise AssertionError("no __version__")


#: what ``import X`` in the real-GPU backend needs from PyPI
GPU_DISTRIBUTIONS = {"cupy": "cupy-cuda13x", "cuda": "cuda-bindings", "cupti": "cupti-python"}


def test_gpu_extra_brings_every_import_of_the_real_gpu_backend():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = {d.split(">")[0].split("=")[0].split("[")[0].strip() for d in cfg["optional-dependencies"]["gpu"]}
    core = {d.split(">")[0].split("=")[0].split("[")[0].strip() for d in cfg["dependencies"]}
    stdlib = set(sys.stdlib_module_names)
    seen = set()
    for f in (ROOT / "uvmlab" / "cuda").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            mods = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            for m in mods:
                top = m.split(".")[0]
                if top in stdlib or top == "uvmlab" or top in core or top in ("numpy",):
                    continue
                seen.add(top)
                assert top in GPU_DISTRIBUTIONS, f"{f.name} imports {m}: add it to the gpu extra"
                assert GPU_DISTRIBUTIONS[top] in extra, f"{GPU_DISTRIBUTIONS[top]} not in [gpu]"
    assert {"cupy", "cuda", "cupti"} <= seen
