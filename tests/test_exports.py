"""Exports people load elsewhere: result CSV, libCacheSim's page-stream CSV, suffixes checked."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from uvmlab import simulate
from uvmlab.api import load_workload
from uvmlab.core.errors import UvmlabError
from uvmlab.results.export import save_result
from uvmlab.workload.pagestream import BLOCK_PAGES, iter_touches, write_libcachesim_csv


def test_result_csv_has_one_row_per_op_and_the_totals(tmp_path):
    r = simulate("pingpong:size=4MiB,rounds=2", events=True)
    written = save_result(r, tmp_path / "r.csv")
    assert [p.name for p in written] == ["r.csv", "r.events.csv"]
    df = pd.read_csv(tmp_path / "r.csv")
    assert len(df) == len(r.ops) + 1 and df["op"].iloc[-1] == "total"
    assert int(df["bytes_htod"].iloc[-1]) == r.totals["bytes_htod"] == int(df["bytes_htod"].iloc[:-1].sum())
    assert len(pd.read_csv(tmp_path / "r.events.csv")) == len(r.events)
    assert (tmp_path / "r.csv").stat().st_mode & 0o777 == 0o644
    with pytest.raises(UvmlabError, match=r"'\.xlsx' is not a result format.*\.json, \.parquet, \.csv"):
        save_result(r, tmp_path / "r.xlsx")


def test_libcachesim_csv_is_the_touch_stream_in_order(tmp_path):
    w = load_workload("stride:size=8MiB")
    n = write_libcachesim_csv(w, tmp_path / "p.csv")
    df = pd.read_csv(tmp_path / "p.csv")
    assert list(df.columns) == ["time", "obj_id", "obj_size", "op"]
    assert (
        n == len(df) == sum(op.seg_hi > op.seg_lo and w.touch_count(op) for op in w.ops if op.op == "kernel")
    )
    assert (df["time"].diff().dropna() == 1).all() and (df["obj_size"] == 4096).all()
    pages = [p for _, chunk, _ in iter_touches(w, "gpu", chunk=1000) for p in chunk.tolist()]
    assert df["obj_id"].tolist() == pages  # chunked streaming gives the same stream
    # allocations start on 2 MiB boundaries, as the model lays them out
    assert df["obj_id"].min() % BLOCK_PAGES == 0


def test_cli_refuses_an_unknown_suffix_before_running(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "uvmlab", "run", "random:size=8MiB", "--out", str(tmp_path / "r.txt")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode != 0 and "'.txt' is not a result format" in r.stderr
    assert not (tmp_path / "r.txt").exists()


def test_gpu_memory_spellings_agree():
    w = load_workload("stream:size=48MiB")
    caps = {
        s: simulate(w, gpu_memory=s).gpu_memory_bytes
        for s in ("oversubscribe=1.5", "oversubscribe=150%", "150%")
    }
    assert len(set(caps.values())) == 1 and caps["150%"] == 32 << 20  # 48 MiB needs 1.5x of 32 MiB
    with pytest.raises(UvmlabError, match="oversubscribe=1.5"):
        simulate(w, gpu_memory="oversubscribe=lots")
