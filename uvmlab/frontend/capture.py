"""Record the ioctls a real program makes on the NVIDIA device files (``uvmlab ioctl capture``).

The recorder is an LD_PRELOAD shim (``shim/ioctl_shim.c``) built here with the machine's C
compiler, because the GPU machines have gcc but no strace, ltrace or gdb. The shim interposes
``ioctl``, ``mmap`` and ``munmap`` and appends binary records to the file named by
``UVMLAB_IOCTL_TRACE``; the format is read by ``uvmlab.frontend.trace``.

Stdlib only (plus the error family): this module runs on the GPU machine, whose Python may lack
the project's other dependencies.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uvmlab.core.errors import UvmlabError

SHIM_SOURCE = Path(__file__).parent / "shim" / "ioctl_shim.c"


class CaptureError(UvmlabError):
    """The shim cannot be built, or the traced program cannot be started."""


@dataclass(frozen=True)
class CaptureSummary:
    """What one capture produced."""

    trace: Path
    returncode: int
    bytes_raw: int


def build_shim(out_dir: Path, cc: str | None = None) -> Path:
    """Compile the shim into ``out_dir/ioctl_shim.so``; raise CaptureError if no compiler works."""
    cc = cc or os.environ.get("CC") or "gcc"
    if shutil.which(cc) is None:
        raise CaptureError(f"no C compiler '{cc}' on PATH: the ioctl shim is built from source")
    out_dir.mkdir(parents=True, exist_ok=True)
    so = out_dir / "ioctl_shim.so"
    cmd = [cc, "-O2", "-shared", "-fPIC", "-o", str(so), str(SHIM_SOURCE), "-ldl", "-lpthread"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["unknown error"])[0]
        raise CaptureError(f"building the ioctl shim failed: {first}")
    return so


def capture(
    argv: list[str],
    trace: Path,
    *,
    shim: Path | None = None,
    compress: bool = True,
    prefix: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    stdout: Any = None,
) -> CaptureSummary:
    """Run ``argv`` with the shim preloaded and write its ioctl trace to ``trace``.

    ``trace`` ending in ``.gz`` is gzip-compressed after the run (traces of repeated small
    records compress 10-30x). The file is written to a temporary name and renamed, so an
    interrupted capture never leaves half a trace under the final name.
    """
    if not argv:
        raise CaptureError("nothing to capture: give the program after '--'")
    with tempfile.TemporaryDirectory(prefix="uvmlab-shim-") as tmp:
        so = shim or build_shim(Path(tmp))
        raw = Path(tmp) / "trace.bin"
        run_env = dict(os.environ if env is None else env)
        preload = run_env.get("LD_PRELOAD", "")
        run_env["LD_PRELOAD"] = f"{so}:{preload}" if preload else str(so)
        run_env["UVMLAB_IOCTL_TRACE"] = str(raw)
        if prefix:
            run_env["UVMLAB_IOCTL_PREFIX"] = prefix
        try:
            returncode = subprocess.run(
                argv,
                env=run_env,
                timeout=timeout,
                stdout=stdout,
                stderr=subprocess.STDOUT if stdout else None,
            ).returncode
        except OSError as exc:
            raise CaptureError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None
        except subprocess.TimeoutExpired:
            returncode = -9  # keep what was recorded before the time limit
        size = raw.stat().st_size if raw.exists() else 0
        trace.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = trace.with_name(trace.name + ".part")
        data = raw.read_bytes() if size else b""
        if compress and trace.suffix == ".gz":
            with gzip.open(tmp_out, "wb", compresslevel=9) as f:
                f.write(data)
        else:
            tmp_out.write_bytes(data)
        os.replace(tmp_out, trace)
    return CaptureSummary(trace=trace, returncode=returncode, bytes_raw=size)


def main(argv: list[str]) -> int:
    """``python -m uvmlab.frontend.capture TRACE -- PROG ARGS``: the CLI-free entry point."""
    if "--" not in argv or argv.index("--") != 1:
        print("usage: python -m uvmlab.frontend.capture TRACE -- PROG [ARGS...]", file=sys.stderr)
        return 2
    try:
        summary = capture(argv[2:], Path(argv[0]))
    except UvmlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"{summary.trace}: {summary.bytes_raw} bytes of records, program exit {summary.returncode}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
