"""The synthetic workload library: specs, determinism, bounds and compactness."""

from __future__ import annotations

import numpy as np
import pytest

from uvmlab.core.errors import WorkloadError
from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.workload.builder import WorkloadBuilder
from uvmlab.workload.ir import SEG_INDEX, SEG_RUN, Access, CpuOp, KernelOp
from uvmlab.workload.synthetic import WORKLOADS, describe, make_workload, parse_spec

NAMES = sorted(WORKLOADS)
RANDOM = {"random", "graph", "vecsearch", "sparse"}  # generators whose touches depend on the seed


def _touched_pages(w, op) -> np.ndarray:
    """Every (alloc, page) an op touches, expanded; only for small test workloads."""
    out = []
    for s in w.segments[op.seg_lo : op.seg_hi]:
        if s["kind"] == SEG_RUN:
            pages = s["start"] + np.arange(s["count"]) * s["stride"]
        else:
            pages = w.pool[s["start"] : s["start"] + s["count"]].astype(np.int64)
        out.append(np.stack([np.full_like(pages, s["alloc"]), pages], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


@pytest.mark.parametrize("name", NAMES)
def test_defaults_build_valid_small_workloads(name: str) -> None:
    w = make_workload(name)
    w.validate()  # every touch inside its allocation, every op well formed
    assert w.name == name and w.seed == 0
    assert sum(a.bytes for a in w.allocs) <= 512 << 20
    assert any(isinstance(op, KernelOp) for op in w.ops)
    assert all(op.compute_ns > 0 for op in w.ops if isinstance(op, KernelOp | CpuOp))


@pytest.mark.parametrize("name", NAMES)
def test_size_is_the_total_footprint(name: str) -> None:
    w = make_workload(f"{name}:size=64MiB")
    total = sum(a.bytes for a in w.allocs)
    assert 0.75 * (64 << 20) <= total <= 64 << 20, total
    assert w.params["size"] == total


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_a_seed(name: str) -> None:
    assert make_workload(f"{name}:size=8MiB,seed=5") == make_workload(f"{name}:size=8MiB,seed=5")


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_seed_changes_random_choices(name: str) -> None:
    a, b = make_workload(f"{name}:size=8MiB,seed=1"), make_workload(f"{name}:size=8MiB,seed=2")
    assert a != b
    assert a.allocs == b.allocs  # the seed picks touches, never the footprint


@pytest.mark.parametrize("name", NAMES)
def test_generators_take_size_and_seed_and_say_what_they_do(name: str) -> None:
    g = WORKLOADS[name]
    assert {"size", "seed"} <= set(g.params)
    assert g.summary and g.fn.__doc__


def test_describe_lists_every_generator() -> None:
    d = describe()
    assert [e["name"] for e in d] == list(WORKLOADS)
    stream = next(e for e in d if e["name"] == "stream")
    assert stream["params"] == {"size": "256MiB", "seed": 0, "passes": 4}
    assert "``" not in "".join(e["description"] for e in d)


def test_billion_touch_stream_is_compact() -> None:
    w = make_workload("stream:size=64GiB,passes=30")
    assert w.touch_count() >= 10**9
    assert w.segments.nbytes + w.pool.nbytes < 1 << 20
    assert len(w.pool) == 0


def test_stream_passes_read_then_write_every_page() -> None:
    w = make_workload("stream:size=1MiB,passes=2")
    kernels = [op for op in w.ops if isinstance(op, KernelOp)]
    assert len(kernels) == 2
    segs = w.segments[kernels[0].seg_lo : kernels[0].seg_hi]
    assert list(segs["access"]) == [Access.READ, Access.WRITE]
    assert list(segs["count"]) == [256, 256]
    assert w.ops[0].op == "cpu"  # the CPU initialises the buffer first


def test_random_touch_count_and_spread() -> None:
    w = make_workload("random:size=4MiB,touches=5000")
    assert w.touch_count(next(op for op in w.ops if isinstance(op, KernelOp))) == 5000
    assert np.all(w.segments["kind"][1:] == SEG_INDEX)
    assert len(np.unique(w.pool)) > 800  # 1024 pages: uniform draws cover most of them
    assert make_workload("random:size=4MiB").params["touches"] == 1024


def test_stride_touches_every_nth_page() -> None:
    w = make_workload("stride:size=1MiB,stride=64KiB,passes=2")
    k0, k1 = [op for op in w.ops if isinstance(op, KernelOp)]
    assert list(_touched_pages(w, k0)[:, 1]) == list(range(0, 256, 16))
    assert list(_touched_pages(w, k1)[:, 1]) == list(range(1, 256, 16))


def test_stencil_reads_halo_rows_and_swaps() -> None:
    w = make_workload("stencil:size=8MiB,row=64KiB,iters=2")
    k0, k1 = [op for op in w.ops if isinstance(op, KernelOp)]
    t0 = _touched_pages(w, k0)
    rows = (4 << 20) // (64 << 10)
    is_read = (
        w.segments["access"][k0.seg_lo : k0.seg_hi].repeat(w.segments["count"][k0.seg_lo : k0.seg_hi])
        == Access.READ
    )
    reads, writes = t0[is_read], t0[~is_read]
    assert len(reads) == (3 * rows - 2) * 16  # edge rows have one neighbour
    assert set(reads[:, 0]) == {0} and set(writes[:, 0]) == {1}
    assert len(writes) == len(np.unique(writes[:, 1])) == rows * 16
    assert w.segments["alloc"][k1.seg_lo] == 1  # iteration 2 reads what iteration 1 wrote


def test_gemm_reads_panels_and_writes_each_c_tile_once() -> None:
    w = make_workload("gemm:size=24MiB,tile=1MiB")
    k = next(op for op in w.ops if isinstance(op, KernelOp))
    t = _touched_pages(w, k)
    c_pages = t[t[:, 0] == 2][:, 1]
    assert len(c_pages) == len(np.unique(c_pages)) == w.allocs[2].pages


def test_graph_reads_each_edge_page_once_and_skews_values() -> None:
    w = make_workload("graph:size=32MiB,levels=4,seed=3")
    touched = np.concatenate([_touched_pages(w, op) for op in w.ops if isinstance(op, KernelOp)])
    edges = touched[touched[:, 0] == 1][:, 1]
    assert np.array_equal(np.sort(edges), np.arange(w.allocs[1].pages))
    values = touched[touched[:, 0] == 2][:, 1]
    counts = np.sort(np.bincount(values, minlength=w.allocs[2].pages))[::-1]
    assert counts[: len(counts) // 10].sum() > 0.3 * counts.sum()  # hot 10% get >30%


def test_pingpong_alternates_gpu_and_cpu_writes() -> None:
    w = make_workload("pingpong:size=1MiB,rounds=3")
    kinds = [op.op for op in w.ops]
    assert kinds == ["kernel", "sync", "cpu"] * 3


def test_llm_kv_cache_grows_each_token() -> None:
    w = make_workload("llm:size=16MiB,layers=2,tokens=4")
    kv = w.alloc_index("kv_cache")
    reads = []
    for op in w.ops:
        if isinstance(op, KernelOp) and op.name.endswith("layer0"):
            s = w.segments[op.seg_lo : op.seg_hi]
            reads.append(int(s["count"][(s["alloc"] == kv) & (s["access"] == Access.READ)].sum()))
    step = reads[1]
    assert step > 0 and reads == [0, step, 2 * step, 3 * step]


def test_vecsearch_probes_distinct_partitions() -> None:
    w = make_workload("vecsearch:size=16MiB,queries=5,nprobe=4,partitions=16")
    for op in w.ops:
        if isinstance(op, KernelOp):
            s = w.segments[op.seg_lo : op.seg_hi]
            assert s["alloc"][0] == 0 and len(s) == 5
            assert len(np.unique(s["start"][1:])) == 4


def test_train_backward_runs_in_reverse() -> None:
    w = make_workload("train:size=8MiB,layers=3,steps=1")
    names = [op.name for op in w.ops if isinstance(op, KernelOp)]
    assert names == [
        "step0.fwd0",
        "step0.fwd1",
        "step0.fwd2",
        "step0.bwd2",
        "step0.bwd1",
        "step0.bwd0",
        "step0.optimizer",
    ]


def _kernels(w) -> list[KernelOp]:
    return [op for op in w.ops if isinstance(op, KernelOp)]


def test_sparse_touches_one_whole_block_per_group_in_every_pass() -> None:
    w = make_workload("sparse:size=64MiB,every=4,passes=3,seed=7")  # 32 blocks, 8 groups
    ks = _kernels(w)
    assert len(ks) == 3 and w.ops[-1].op == "sync"
    assert not any(isinstance(op, CpuOp) for op in w.ops)  # the GPU first-touches the blocks
    first = _touched_pages(w, ks[0])[:, 1]
    blocks = np.unique(first // 512)
    assert list(blocks // 4) == list(range(8))  # one block in each group of 4
    assert np.array_equal(first, (blocks[:, None] * 512 + np.arange(512)).ravel())  # in order
    for k in ks[1:]:
        assert np.array_equal(_touched_pages(w, k)[:, 1], first)  # the same blocks every pass
    accesses = [set(w.segments["access"][k.seg_lo : k.seg_hi]) for k in ks]
    assert accesses == [{Access.WRITE}, {Access.READ}, {Access.READ}]
    assert all(w.segments["kind"] == SEG_RUN) and len(w.pool) == 0
    assert w.params == {"size": 64 << 20, "every": 4, "passes": 3}


def test_sparse_touches_target_rounds_up_to_whole_passes() -> None:
    w = make_workload("sparse:size=32MiB,every=4,touches=5000")  # 4 blocks, 2048 pages a pass
    assert w.params["passes"] == 3 and w.touch_count() == 3 * 2048
    assert make_workload("sparse:size=32MiB,every=4").params["passes"] == 4


def test_sparse_partial_last_group_and_block() -> None:
    # 5 full blocks and 100 pages: groups {0..3} and {4, 5}; block 5 has 100 pages
    for seed in range(8):
        w = make_workload(f"sparse:size={(5 * 512 + 100) * PAGE_SIZE},every=4,passes=1,seed={seed}")
        pages = _touched_pages(w, _kernels(w)[0])[:, 1]
        last = np.unique(pages // 512)[-1]
        assert last in (4, 5)
        assert np.count_nonzero(pages // 512 == last) == (512 if last == 4 else 100)
        assert pages.max() < w.allocs[0].pages


def test_sparse_every_one_is_a_single_run_per_pass() -> None:
    w = make_workload("sparse:size=16MiB,every=1,passes=2")
    assert list(w.segments["count"]) == [4096, 4096]


def test_sparse_terabyte_is_compact() -> None:
    w = make_workload("sparse:size=1TiB,every=16,passes=1")
    assert w.allocs[0].bytes == 1 << 40
    assert w.touch_count() == (1 << 40) // 16 // PAGE_SIZE  # 64 GiB touched
    assert len(w.segments) <= (1 << 40) // 16 // (2 << 20)  # at most one run per block
    assert len(w.pool) == 0


def test_builder_runs_match_single_runs() -> None:
    def build(batch: bool):
        b = WorkloadBuilder("t")
        buf = b.alloc("buf", "8MiB")
        many = (
            b.runs(buf, np.array([0, 600, 900]), np.array([3, 0, 7]), stride=2)
            if batch
            else [b.run(buf, 0, 3, stride=2), b.run(buf, 900, 7, stride=2)]
        )
        b.kernel("k", [b.run(buf, 5, 1), *([many] if batch else many), b.run(buf, 1, 2)])
        b.kernel(
            "k2", [b.runs(buf, [10], 4, access="write")] if batch else [b.run(buf, 10, 4, access="write")]
        )
        return b.build()

    assert build(True) == build(False)


# --- spec parsing ------------------------------------------------------------------------------


def test_parse_spec() -> None:
    assert parse_spec("random:size=2GiB,seed=1") == ("random", {"size": "2GiB", "seed": "1"})
    assert parse_spec(" Stream ") == ("stream", {})
    assert parse_spec("stream: passes = 3 ,") == ("stream", {"passes": "3"})


def test_spec_values_are_parsed() -> None:
    w = make_workload("random:size=2MiB,seed=1_0,touches=1e3")
    assert w.seed == 10 and w.params == {"size": 2 << 20, "touches": 1000}
    assert WORKLOADS["random"](size=2 << 20, seed=10, touches=1000) == w


@pytest.mark.parametrize(
    "spec, words",
    [
        ("", ["empty"]),
        ("strem", ["unknown workload 'strem'", "'stream'"]),
        ("randon:size=1MiB", ["'random'"]),
        ("stream:pases=2", ["no parameter 'pases'", "'passes'", "valid keys: size, seed, passes"]),
        ("stream:passes", ["key=value"]),
        ("stream:passes=1,passes=2", ["twice"]),
        ("stream:size=lots", ["size", "'lots'"]),
        ("stream:passes=two", ["passes", "'two'"]),
        ("stream:passes=1.5", ["integer"]),
        ("stream:passes=0", ["at least 1"]),
        ("stream:seed=-1", ["seed"]),
        ("vecsearch:nprobe=9,partitions=8", ["nprobe"]),
        ("llm:layers=1000,tokens=10000", ["kernels"]),
        ("sparse:passes=2,touches=100", ["passes or touches"]),
        ("sparse:every=0", ["every", "at least 1"]),
        ("sparse:touches=0", ["touches", "at least 1"]),
        ("sparse:size=1TiB,every=2,passes=100", ["page-runs", "limit"]),
    ],
)
def test_spec_errors_are_clear(spec: str, words: list[str]) -> None:
    with pytest.raises(WorkloadError) as ei:
        make_workload(spec)
    msg = str(ei.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_page_size_rounding() -> None:
    w = make_workload("stream:size=5000")
    assert w.allocs[0].bytes == 2 * PAGE_SIZE


def test_sparse_span_keeps_the_touches_in_the_first_bytes() -> None:
    w = make_workload("sparse:size=64MiB,every=2,span=16MiB,passes=2,seed=3")  # 8 of 32 blocks
    assert w.allocs[0].bytes == 64 << 20 and w.params["span"] == 16 << 20
    for k in _kernels(w):
        pages = _touched_pages(w, k)[:, 1]
        assert pages.max() < (16 << 20) // PAGE_SIZE  # nothing beyond the span
        assert len(np.unique(pages // 512)) == 4  # one block in each group of 2
    # every=1 over a span is one run a pass, however large the buffer
    big = make_workload("sparse:size=16TiB,every=1,span=64GiB,touches=1e10")
    assert len(big.segments) == big.params["passes"] and big.touch_count() >= 10**10
    for bad in ("span=2GiB", "span=0"):
        with pytest.raises(WorkloadError, match="span"):
            make_workload(f"sparse:size=1GiB,{bad}")
