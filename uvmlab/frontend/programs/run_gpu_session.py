"""The GPU-machine session for issue 19: build the programs, capture their ioctls, read the facts.

Run on the GPU machine from the repo root: ``python3 -m uvmlab.frontend.programs.run_gpu_session OUT``.
Writes ``OUT/frontend_capture.tar.gz`` holding ``traces/*.ioctl.gz``, ``device_attributes.json``,
the programs' output (``*.out``; ``rm_probe.out`` is the real driver's answers as JSON) and
``machine.json`` (loaded modules with their holders and reference counts, device files, driver
version). Stdlib only: the GPU machine's Python may lack the project's dependencies.

Back on the development machine, ``python -m uvmlab.frontend.programs.run_gpu_session --store TAR``
puts each file where the repo keeps it: the traces, ``machine.json`` and ``rm_probe.json`` in
``uvmlab/frontend/data/traces/``, the attributes in ``uvmlab/cuda/data/device_attributes_<gpu>.json``.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from uvmlab.frontend.capture import build_shim, capture

HERE = Path(__file__).parent


def sh(cmd: str) -> str:
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60)
    return (p.stdout + p.stderr).strip()


def machine_facts() -> dict:
    mods = {}
    for line in Path("/proc/modules").read_text().splitlines():
        f = line.split()
        if f[0].startswith("nvidia"):
            holders_dir = Path("/sys/module") / f[0] / "holders"
            holders = sorted(p.name for p in holders_dir.iterdir()) if holders_dir.is_dir() else []
            mods[f[0]] = {
                "size": int(f[1]),
                "refcount": int(f[2]) if f[2].isdigit() else f[2],  # "-": cannot be unloaded
                "used_by": [u for u in f[3].split(",") if u and u != "-"],
                "holders": holders,
                "state": f[4],
            }
    devs = {}
    for p in sorted(Path("/dev").glob("nvidia*")):
        try:
            st = p.stat()
            if p.is_dir():
                devs[str(p)] = {"dir": sorted(x.name for x in p.iterdir())}
            else:
                devs[str(p)] = {"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev)}
        except OSError as exc:
            devs[str(p)] = {"error": str(exc)}
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nvidia_smi": sh("nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader"),
        "driver_version": sh("cat /sys/module/nvidia/version"),
        "proc_driver_version": sh("cat /proc/driver/nvidia/version"),
        "modules": mods,
        "device_files": devs,
        "proc_devices": [l for l in Path("/proc/devices").read_text().splitlines() if "nvidia" in l],
        "nvcc": sh("nvcc --version | tail -2"),
        "python": sys.version.split()[0],
    }


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="uvmlab-gpu-"))
    (work / "traces").mkdir()
    t0 = time.time()
    try:
        facts = machine_facts()
    except Exception as exc:  # facts are a bonus: never lose the captures over them
        facts = {
            "error": repr(exc),
            "driver_version": sh("cat /sys/module/nvidia/version"),
            "nvidia_smi": sh("nvidia-smi -L"),
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    (work / "machine.json").write_text(json.dumps(facts, indent=1))
    print("machine:", facts["nvidia_smi"], facts["driver_version"], flush=True)
    shim = build_shim(work / "shim")
    bins = {}
    for name in ("cuda_init", "managed_advise", "device_attrs"):
        exe = work / name
        r = subprocess.run(
            ["nvcc", "-O2", "-arch=sm_90", "-o", str(exe), str(HERE / f"{name}.cu"), "-ldl"],
            capture_output=True,
            text=True,
        )
        print(f"nvcc {name}: rc={r.returncode} {r.stderr.strip()[:400]}", flush=True)
        if r.returncode == 0:
            bins[name] = exe
    if "device_attrs" in bins:
        r = subprocess.run([str(bins["device_attrs"])], capture_output=True, text=True, timeout=60)
        print("device_attrs:", r.stdout.strip(), flush=True)
        try:
            attrs = json.loads(r.stdout)
        except ValueError:
            attrs = {"raw": r.stdout}
        attrs.update(
            {
                "driver_version": facts["driver_version"],
                "date_utc": facts["date_utc"],
                "nvidia_smi": facts["nvidia_smi"],
            }
        )
        (work / "device_attributes.json").write_text(json.dumps(attrs, indent=1))
    runs = []
    if "cuda_init" in bins:
        runs.append(("cuda_init", [str(bins["cuda_init"])]))
    if "managed_advise" in bins:
        runs.append(("managed_advise", [str(bins["managed_advise"])]))
    runs.append(("rm_probe", [sys.executable, str(HERE / "rm_probe.py")]))
    runs.append(("cupy_program", [sys.executable, str(HERE / "cupy_program.py")]))
    runs.append(("torch_program", [sys.executable, str(HERE / "torch_program.py")]))
    for name, argv in runs:
        t = time.time()
        log = work / f"{name}.out"
        with open(log, "w") as f:
            s = capture(argv, work / "traces" / f"{name}.ioctl.gz", shim=shim, timeout=120, stdout=f)
        print(f"--- {name} output:", log.read_text()[-1500:], flush=True)
        print(
            f"capture {name}: rc={s.returncode} raw={s.bytes_raw} B "
            f"gz={s.trace.stat().st_size} B in {time.time() - t:.1f}s",
            flush=True,
        )
    with tarfile.open(out / "frontend_capture.tar.gz", "w:gz") as tar:
        tar.add(work, arcname="frontend_capture")
    print(f"done in {time.time() - t0:.1f}s", flush=True)
    return 0


def store(tar_path: Path, repo: Path) -> int:
    """Unpack a session's tarball into the repo's data folders."""
    traces = repo / "uvmlab" / "frontend" / "data" / "traces"
    traces.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(tar_path) as tar:
        tar.extractall(tmp, filter="data")
        root = Path(tmp) / "frontend_capture"
        for f in sorted((root / "traces").glob("*.ioctl.gz")):
            (traces / f.name).write_bytes(f.read_bytes())
        (traces / "machine.json").write_text((root / "machine.json").read_text())
        probe = root / "rm_probe.out"
        if probe.exists():
            text = probe.read_text()
            doc = json.loads(text[text.index("{") : text.rindex("}") + 1])
            (traces / "rm_probe.json").write_text(json.dumps(doc, indent=1) + "\n")
        attrs = root / "device_attributes.json"
        if attrs.exists():
            doc = json.loads(attrs.read_text())
            name = str(doc.get("name", doc.get("nvidia_smi", "gpu")))
            gpu = next((g for g in ("h200", "h100") if g in name.lower()), "gpu")
            out = repo / "uvmlab" / "cuda" / "data" / f"device_attributes_{gpu}.json"
            out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"stored {tar_path} into {traces}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--store":
        raise SystemExit(store(Path(sys.argv[2]), Path(__file__).resolve().parents[3]))
    raise SystemExit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "out")))
