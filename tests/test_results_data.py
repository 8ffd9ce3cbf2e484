"""Results as data: JSON and Parquet round trips, the table schemas, residency samples."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from uvmlab.api import simulate, simulate_sampled
from uvmlab.core.counters import EVENT_TYPES, OP_COLUMNS, RUN_COLUMNS, SAMPLE_COLUMNS, TOTAL_KEYS
from uvmlab.core.errors import UvmlabError
from uvmlab.driver.tools import EVENT_COLUMNS
from uvmlab.engine.sampling import STATES, record_samples
from uvmlab.results.result import Result
from uvmlab.results.tables import (
    events_frame,
    ops_frame,
    runs_frame,
    samples_frame,
    write_tables,
)

SPEC = "stream:size=8MiB,passes=2"


@pytest.fixture(scope="module")
def sampled():
    """An oversubscribed run with events and samples: evictions, both directions of traffic."""
    return simulate_sampled(SPEC, gpu_memory="150%", events=True)


def test_parquet_roundtrip_gives_the_same_result(sampled, tmp_path):
    p = tmp_path / "run.parquet"
    sampled.save(p)
    back = Result.load(p)
    assert back == sampled
    assert back.fingerprint() == sampled.fingerprint()
    assert back.totals == sampled.totals and back.ops == sampled.ops
    assert list(back.events.columns) == list(EVENT_COLUMNS)
    assert back.events["time_ns"].tolist() == sampled.events["time_ns"].tolist()
    assert np.array_equal(back.samples.residency, sampled.samples.residency)
    # the Parquet table is the event stream, readable without uvmlab
    df = pd.read_parquet(p)
    assert len(df) == len(sampled.events) and list(df.columns) == list(EVENT_COLUMNS)
    schema = pq.read_schema(p)
    assert [str(schema.field(c).type) for c in EVENT_COLUMNS] == [
        {"int64": "int64", "string": "string"}[EVENT_TYPES[c]] for c in EVENT_COLUMNS
    ]


def test_json_roundtrip_keeps_events_and_samples(sampled, tmp_path):
    p = tmp_path / "run.json"
    sampled.save(p)
    back = Result.load(p)
    assert back == sampled
    assert back.events is not None and back.samples is not None


def test_result_without_events_roundtrips_and_old_files_still_load(tmp_path):
    r = simulate("random:size=4MiB,seed=2")
    for name in ("a.json", "a.parquet"):
        r.save(tmp_path / name)
        back = Result.load(tmp_path / name)
        assert back == r and back.events is None and back.samples is None
    # a file written before events/samples existed in the format
    d = r.to_dict()
    (tmp_path / "old.json").write_text(json.dumps(d))
    assert Result.load(tmp_path / "old.json") == r


def test_unequal_results_compare_unequal(sampled):
    other = simulate_sampled(SPEC, gpu_memory="100%", events=True)
    assert other != sampled
    assert other.fingerprint() != sampled.fingerprint()


def test_bad_parquet_files_give_clear_errors(tmp_path):
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(UvmlabError, match="junk.parquet"):
        Result.load(junk)
    plain = tmp_path / "plain.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(plain)
    with pytest.raises(UvmlabError, match="not a uvmlab result"):
        Result.load(plain)
    with pytest.raises(UvmlabError, match="no such file"):
        Result.load(tmp_path / "missing.parquet")


def test_tables_have_the_documented_schema(sampled, tmp_path):
    plain = simulate("random:size=4MiB,seed=2")
    results = [sampled, plain]
    runs = runs_frame(results)
    assert list(runs.columns)[: len(RUN_COLUMNS)] == list(RUN_COLUMNS)
    assert set(TOTAL_KEYS) <= set(runs.columns)
    assert runs["gpu_faults"].tolist() == [r.totals["gpu_faults"] for r in results]
    ops = ops_frame(results)
    assert list(ops.columns)[: len(OP_COLUMNS)] == list(OP_COLUMNS)
    assert len(ops) == len(sampled.ops) + len(plain.ops)
    # every counter the engine puts in an op row has a fixed column, none only "extra"
    assert list(ops.columns) == list(OP_COLUMNS)
    assert ops["gpu_fault_groups"].tolist() == [o["gpu_fault_groups"] for o in sampled.ops + plain.ops]
    ev = events_frame(results)
    assert set(ev["run"]) == {0} and len(ev) == len(sampled.events)
    smp = samples_frame(results)
    assert list(smp.columns) == list(SAMPLE_COLUMNS)
    fr = smp[["none", "cpu", "gpu", "both"]].sum(axis=1)
    assert np.allclose(fr, 1.0, atol=4 / 255)  # each page range's states add up to all of it
    paths = write_tables(results, tmp_path / "tables")
    for name, df in (("runs", runs), ("ops", ops), ("events", ev), ("samples", smp)):
        back = pd.read_parquet(paths[name])
        assert list(back.columns) == list(df.columns) and len(back) == len(df)
    # an empty table keeps its schema
    empty = events_frame([plain])
    assert list(empty.columns) == ["run", *EVENT_COLUMNS] and len(empty) == 0
    assert list(ops_frame([]).columns) == list(OP_COLUMNS)


def test_sampling_does_not_change_the_run(sampled):
    plain = simulate(SPEC, gpu_memory="150%", events=True)
    assert plain.totals == sampled.totals
    assert plain.ops == sampled.ops
    assert plain.events.equals(sampled.events)


def test_samples_agree_with_counters_and_final_residency(sampled):
    s = sampled.samples
    assert s.residency.shape[1:] == (s.n_bins, len(STATES))
    assert np.all(np.diff(s.time_ns) > 0)
    assert s.time_ns[-1] == sampled.totals["time_ns"]
    # the last sample is the end state: cumulative counters equal the run's totals
    for k, v in s.counters.items():
        assert np.all(np.diff(v) >= 0), k
        assert v[-1] == sampled.totals[k], k
    # nothing populated before the run, and at the end the GPU holds at most its memory
    assert np.all(s.residency[0, :, 0] == 255)
    f = s.fractions()[-1]
    pages = (
        np.minimum((np.arange(s.n_bins) + 1) * s.bin_pages, s.total_pages) - np.arange(s.n_bins) * s.bin_pages
    )
    on_gpu = float(((f[:, 2] + f[:, 3]) * pages).sum()) * 4096
    assert 0 < on_gpu <= sampled.gpu_memory_bytes * 1.02
    assert s.allocs and s.allocs[0]["pages"] == s.total_pages


def test_samples_stay_bounded_on_long_runs():
    with record_samples(max_samples=16, bins=8) as rec:
        r = simulate("stream:size=8MiB,passes=4", gpu_memory="150%")
    s = rec.samples
    assert s.n_samples < 2 * 16 and s.n_bins == 8
    assert s.time_ns[-1] == r.totals["time_ns"]


def test_no_recording_outside_the_block():
    with record_samples(enabled=False) as rec:
        simulate("random:size=4MiB")
    assert rec.samples is None
