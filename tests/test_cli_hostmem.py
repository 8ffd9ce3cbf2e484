"""``uvmlab gaia`` and ``uvmlab hmm`` as a user meets them: one command for the comparison,
JSON that parses, one-line errors for bad input."""

import json

import pytest
from test_cli import assert_one_line_error, uvmlab

from uvmlab.workload.builder import WorkloadBuilder
from uvmlab.workload.fileformat import write_workload


@pytest.mark.slow  # subprocesses of the CLI or long model runs
def test_gaia_compare_runs_all_three_strategies_from_one_command(tmp_path):
    out = tmp_path / "rows.json"
    r = uvmlab("gaia", "compare", "--scale", "0.01", "--json", "--out", str(out))
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert {(x["scenario"], x["strategy"]) for x in rows} == {
        (s, k) for s in ("scan", "prodcons", "reread") for k in ("gaia", "memcpy", "managed")
    }
    assert json.loads(out.read_text()) == rows
    text = uvmlab("gaia", "compare", "-s", "reread", "--scale", "0.01")
    assert text.returncode == 0 and "GAIA shared page cache" in text.stdout


@pytest.mark.slow  # subprocesses of the CLI or long model runs
def test_gaia_run_of_a_file_and_a_scenario(tmp_path):
    b = WorkloadBuilder("f")
    f = b.file("data", "4MiB", cached=0.5)
    b.maquire(f)
    b.kernel("k", [b.run(f)])
    p = tmp_path / "f.uvmw"
    write_workload(b.build(), p)
    r = uvmlab("gaia", "run", str(p), "--json")
    assert r.returncode == 0, r.stderr
    t = json.loads(r.stdout)["totals"]
    assert t["host_misses"] == 512 and t["bytes_htod"] == 4 << 20
    r = uvmlab("gaia", "run", "prodcons:size=4MiB,rounds=2", "--ops")
    assert r.returncode == 0 and "consume1" in r.stdout


@pytest.mark.slow  # subprocesses of the CLI or long model runs
def test_hmm_run_and_support():
    r = uvmlab("hmm", "run", "example:8MiB", "--gpu-memory", "4MiB", "--json")
    assert r.returncode == 0, r.stderr
    t = json.loads(r.stdout)["totals"]
    assert t["hmm_to_device"] > 0 and t["hmm_to_ram_eviction"] > 0
    r = uvmlab("hmm", "support")
    assert r.returncode == 0 and "PageableMemoryAccess" in r.stdout


@pytest.mark.slow  # subprocesses of the CLI or long model runs
def test_bad_input_is_one_line(tmp_path):
    assert_one_line_error(uvmlab("gaia", "compare", "-s", "nope"), "unknown scenario")
    assert_one_line_error(uvmlab("gaia", "run", "prodcons:rounds=x"), "not a number")
    bad = tmp_path / "bad.uvmw"
    bad.write_bytes(b"UVMLABW\0garbage")
    assert_one_line_error(uvmlab("hmm", "run", str(bad)), str(bad))
    b = WorkloadBuilder("m")
    b.kernel("k", [b.run(b.alloc("a", "2MiB", "pageable"))])
    p = tmp_path / "p.uvmw"
    write_workload(b.build(), p)
    assert_one_line_error(uvmlab("run", str(p)), "hmm run")
    assert_one_line_error(uvmlab("gaia", "run", str(p)), "GAIA model runs file allocations")
