"""``uvmlab ioctl``: demo -> decode -> replay on a modelled trace; bad input is one line, exit 2."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from uvmlab.cli.app import app

runner = CliRunner()


def test_demo_decode_replay(tmp_path):
    t = tmp_path / "m.ioctl.gz"
    r = runner.invoke(app, ["ioctl", "demo", "-o", str(t)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        [
            "ioctl",
            "decode",
            str(t),
            "--json",
            "--parquet",
            str(tmp_path / "c.parquet"),
            "--timeline",
            str(tmp_path / "t.json"),
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["stats"]["named_pct"] == 100.0 and doc["stats"]["objects_alive_at_end"] == 0
    assert (tmp_path / "c.parquet").stat().st_size > 0 and (tmp_path / "t.json").stat().st_size > 0
    r = runner.invoke(app, ["ioctl", "replay", str(t), "--json", "--workload-out", str(tmp_path / "w.uvmw")])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert [c["op"] for c in doc["calls"]].count("prefetch") == 2
    assert doc["totals"]["bytes_dtoh"] == 16 << 20  # a[16MiB:32MiB] migrated back to the CPU
    assert (tmp_path / "w.uvmw").exists()


@pytest.mark.slow  # subprocesses of the CLI or long model runs
def test_bad_trace_is_one_line(tmp_path):
    bad = tmp_path / "bad.ioctl"
    bad.write_bytes(b"UVMLIOC1" + b"\x01\0\0\0" + b"\0\0\2\0" + b"\xff" * 40)
    for args, needle in (
        (["decode", str(bad)], "truncated record"),
        (["replay", str(tmp_path / "missing.gz")], "no such file"),
    ):
        r = subprocess.run(
            [sys.executable, "-m", "uvmlab", "ioctl", *args], capture_output=True, text=True, timeout=300
        )
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr
