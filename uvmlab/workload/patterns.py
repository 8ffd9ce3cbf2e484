"""The classic GPU memory patterns, one seeded generator each: streaming, random, strided,
stencil, tiled GEMM, graph traversal, CPU/GPU ping-pong, LLM decode, vector search, training
steps and sparse streaming.

Each takes ``size`` (the total footprint) and ``seed`` plus its own parameters and returns a
``Workload``; ``synthetic.py`` registers them (``GENERATORS``, in this order) and parses spec
strings. The conventions every generator keeps are in ``synthetic.py``'s docstring.
"""

from __future__ import annotations

import math

import numpy as np

from uvmlab.core.errors import WorkloadError
from uvmlab.core.sizes import PAGE_SIZE, PAGES_PER_BLOCK
from uvmlab.core.units import parse_size
from uvmlab.workload.genutil import _builder, _bytes, _cap, _indexable, _pages, _positive
from uvmlab.workload.ir import Workload


def stream(size: str | int = "256MiB", seed: int = 0, passes: int = 4) -> Workload:
    """Sequential sweeps: CPU init, then GPU passes that each read and then write the buffer.

    The best case for the prefetcher; with ``size`` above GPU memory, the classic LRU-thrash.
    """
    pages = _pages(size)
    _positive(passes=passes)
    _cap(passes)
    b = _builder("stream", seed, size=_bytes(pages), passes=passes)
    buf = b.alloc("buf", _bytes(pages))
    b.cpu("init", [b.run(buf, access="write")])
    for k in range(passes):
        b.kernel(f"pass{k}", [b.run(buf), b.run(buf, access="write")])
    b.sync()
    return b.build()


def random(size: str | int = "256MiB", seed: int = 0, touches: int | None = None) -> Workload:
    """Uniformly random 4 KiB page reads over a CPU-initialised buffer.

    ``touches`` defaults to one per page (so about 63% of pages get touched). Defeats the
    prefetcher; the worst case for fault batching.
    """
    pages = _indexable(_pages(size))
    n = pages if touches is None else touches
    _positive(touches=n)
    b = _builder("random", seed, size=_bytes(pages), touches=n)
    buf = b.alloc("buf", _bytes(pages))
    b.cpu("init", [b.run(buf, access="write")])
    rng = np.random.default_rng(seed)
    b.kernel("random", [b.index(buf, rng.integers(0, pages, n, dtype=np.uint32))])
    b.sync()
    return b.build()


def stride(
    size: str | int = "256MiB", seed: int = 0, stride: str | int = "64KiB", passes: int = 4
) -> Workload:
    """Strided reads: each pass touches one page every ``stride`` bytes, shifted a page per pass.

    Strides below 4 KiB touch every page. Shows how the prefetcher's density threshold reacts to
    sparse-but-regular access inside a 2 MiB VA block.
    """
    pages = _pages(size)
    step = max(1, parse_size(stride, what="stride") // PAGE_SIZE)
    _positive(passes=passes)
    _cap(passes)
    b = _builder("stride", seed, size=_bytes(pages), stride=step * PAGE_SIZE, passes=passes)
    buf = b.alloc("buf", _bytes(pages))
    b.cpu("init", [b.run(buf, access="write")])
    for k in range(passes):
        b.kernel(f"pass{k}", [b.run(buf, start=k % min(step, pages), stride=step)])
    b.sync()
    return b.build()


def stencil(size: str | int = "256MiB", seed: int = 0, iters: int = 4, row: str | int = "1MiB") -> Workload:
    """2-D stencil with a halo: two grids of ``row``-byte rows, swapped every iteration.

    Each iteration writes output row r after reading input rows r-1, r, r+1, so every input page
    is read three times per iteration, nearly back to back.
    """
    pages = _pages(size)
    row_pages = max(1, parse_size(row, what="row") // PAGE_SIZE)
    rows = max(1, pages // 2 // row_pages)
    _positive(iters=iters)
    _cap(iters)
    grid = _bytes(rows * row_pages)
    b = _builder("stencil", seed, size=2 * grid, iters=iters, row=_bytes(row_pages))
    src, dst = b.alloc("grid0", grid), b.alloc("grid1", grid)
    b.cpu("init", [b.run(src, access="write")])
    for it in range(iters):
        touches = []
        for r in range(rows):
            lo, hi = max(r - 1, 0), min(r + 2, rows)
            touches.append(b.run(src, lo * row_pages, (hi - lo) * row_pages))
            touches.append(b.run(dst, r * row_pages, row_pages, access="write"))
        b.kernel(f"iter{it}", touches)
        src, dst = dst, src
    b.sync()
    b.cpu("readback", [b.run(src)])  # after the swap, src holds the last output
    return b.build()


def gemm(size: str | int = "256MiB", seed: int = 0, tile: str | int = "2MiB") -> Workload:
    """Tiled GEMM C = A*B: for each C tile, read A's row panel and B's column panel, write C.

    A, B and C are square matrices of T x T tiles (``size``/3 each). A is stored tile-row-major
    and B tile-column-major, so each panel is one page-run. A panel is re-read T times, which
    is what makes GEMM sensitive to eviction order under oversubscription.
    """
    mat_pages = max(1, _pages(size) // 3)
    tile_pages = min(max(1, parse_size(tile, what="tile") // PAGE_SIZE), mat_pages)
    t = max(1, math.isqrt(mat_pages // tile_pages))
    mat = _bytes(t * t * tile_pages)
    b = _builder("gemm", seed, ns_per_touch=10.0, size=3 * mat, tile=_bytes(tile_pages))
    a, bm, c = b.alloc("A", mat), b.alloc("B", mat), b.alloc("C", mat)
    b.cpu("init", [b.run(a, access="write"), b.run(bm, access="write")])
    panel = t * tile_pages
    touches = []
    for i in range(t):
        for j in range(t):
            touches += [
                b.run(a, i * panel, panel),
                b.run(bm, j * panel, panel),
                b.run(c, (i * t + j) * tile_pages, tile_pages, access="write"),
            ]
    b.kernel("gemm", touches)
    b.sync()
    b.cpu("readback", [b.run(c)])
    return b.build()


def graph(size: str | int = "256MiB", seed: int = 0, levels: int = 6) -> Workload:
    """BFS-like traversal of a CSR graph: offsets streamed, neighbours irregular and skewed.

    Per level: the offsets array is scanned, the frontier's adjacency lists are read (each edge
    page once over the whole traversal, in vertex order within a level), and neighbour values
    get atomic updates with a power-law skew (hub vertices are hit far more often, and are
    scattered over the array, not clustered). Frontier sizes rise and fall across levels.
    """
    pages = _indexable(max(3, _pages(size)))
    _positive(levels=levels)
    _cap(levels)
    off_pages, edge_pages = max(1, pages // 8), max(1, pages // 2)
    val_pages = max(1, pages - off_pages - edge_pages)
    b = _builder("graph", seed, size=_bytes(off_pages + edge_pages + val_pages), levels=levels)
    offsets = b.alloc("offsets", _bytes(off_pages))
    edges = b.alloc("edges", _bytes(edge_pages))
    values = b.alloc("values", _bytes(val_pages))
    b.cpu("load", [b.run(x, access="write") for x in (offsets, edges, values)])

    rng = np.random.default_rng(seed)
    weight = np.sin(np.pi * (np.arange(levels) + 0.5) / levels)
    weight /= weight.sum()
    cuts = np.round(np.cumsum(weight)[:-1] * edge_pages).astype(np.int64)
    edge_chunks = np.split(rng.permutation(edge_pages), cuts)
    hot = rng.permutation(val_pages)  # rank -> page, so hubs are not all at low addresses
    for lvl in range(levels):
        touches = [b.run(offsets)]
        if len(edge_chunks[lvl]):
            touches.append(b.index(edges, np.sort(edge_chunks[lvl])))
        n_nb = max(1, round(2 * val_pages * weight[lvl]))
        rank = (val_pages * rng.random(n_nb) ** 3).astype(np.int64)  # density ~ x^(-2/3)
        touches.append(b.index(values, hot[np.minimum(rank, val_pages - 1)], access="atomic"))
        b.kernel(f"level{lvl}", touches)
    b.sync()
    return b.build()


def pingpong(size: str | int = "256MiB", seed: int = 0, rounds: int = 4) -> Workload:
    """GPU writes every page, then the CPU writes every page, ``rounds`` times.

    Every round migrates the whole buffer both ways: the thrashing detector's target case.
    """
    pages = _pages(size)
    _positive(rounds=rounds)
    _cap(rounds)
    b = _builder("pingpong", seed, size=_bytes(pages), rounds=rounds)
    buf = b.alloc("buf", _bytes(pages))
    for r in range(rounds):
        b.kernel(f"gpu_write{r}", [b.run(buf, access="write")])
        b.sync()
        b.cpu(f"cpu_write{r}", [b.run(buf, access="write")])
    return b.build()


def llm(size: str | int = "256MiB", seed: int = 0, layers: int = 8, tokens: int = 16) -> Workload:
    """LLM decode: every token reads the weights layer by layer and a KV cache that grows.

    Weights take about 3/4 of ``size``, the KV cache the rest, split per layer. For token t and
    layer l one kernel reads the layer's weights, reads the layer's KV entries for tokens < t,
    and appends token t's KV page-run (first touched by the GPU).
    """
    pages = _pages(size)
    _positive(layers=layers, tokens=tokens)
    _cap(layers * tokens)
    w_pages = max(1, pages * 3 // 4 // layers)
    step = max(1, (pages - w_pages * layers) // layers // tokens)
    kv_layer = tokens * step
    b = _builder("llm", seed, size=_bytes(layers * (w_pages + kv_layer)), layers=layers, tokens=tokens)
    weights = b.alloc("weights", _bytes(layers * w_pages))
    kv = b.alloc("kv_cache", _bytes(layers * kv_layer))
    b.cpu("load_weights", [b.run(weights, access="write")])
    for t in range(tokens):
        for layer in range(layers):
            base = layer * kv_layer
            b.kernel(
                f"tok{t}.layer{layer}",
                [
                    b.run(weights, layer * w_pages, w_pages),
                    b.run(kv, base, t * step),  # empty for the first token; the builder drops it
                    b.run(kv, base + t * step, step, access="write"),
                ],
            )
    b.sync()
    return b.build()


def vecsearch(
    size: str | int = "256MiB", seed: int = 0, queries: int = 64, nprobe: int = 8, partitions: int = 256
) -> Workload:
    """IVF vector search: each query reads all centroids, then ``nprobe`` random partitions.

    The centroid table (1/64 of ``size``) stays hot; partition lists are read whole, chosen
    uniformly without repeats per query, so reuse across queries is by chance.
    """
    pages = _pages(size)
    _positive(queries=queries, nprobe=nprobe, partitions=partitions)
    if nprobe > partitions:
        raise WorkloadError(f"nprobe ({nprobe}) cannot exceed partitions ({partitions})")
    _cap(queries)
    cent_pages = max(1, pages // 64)
    part_pages = max(1, (pages - cent_pages) // partitions)
    b = _builder(
        "vecsearch",
        seed,
        size=_bytes(cent_pages + partitions * part_pages),
        queries=queries,
        nprobe=nprobe,
        partitions=partitions,
    )
    cent = b.alloc("centroids", _bytes(cent_pages))
    lists = b.alloc("lists", _bytes(partitions * part_pages))
    b.cpu("load_index", [b.run(cent, access="write"), b.run(lists, access="write")])
    rng = np.random.default_rng(seed)
    for q in range(queries):
        probes = rng.choice(partitions, nprobe, replace=False)
        b.kernel(f"query{q}", [b.run(cent)] + [b.run(lists, int(p) * part_pages, part_pages) for p in probes])
    b.sync()
    return b.build()


def train(size: str | int = "256MiB", seed: int = 0, layers: int = 8, steps: int = 2) -> Workload:
    """Training steps: forward layer by layer, backward in reverse, then an optimizer step.

    Weights and gradients take 1/4 of ``size`` each, activations 1/2. Forward reads a layer's
    weights and the previous activations and writes its own; backward reads activations and
    weights and writes gradients; the optimizer reads all gradients and rewrites all weights.
    Activations written early are reused last: the long reuse distance that hurts LRU.
    """
    pages = _pages(size)
    _positive(layers=layers, steps=steps)
    _cap(steps * (2 * layers + 1))
    wl, al = max(1, pages // 4 // layers), max(1, pages // 2 // layers)
    b = _builder("train", seed, size=_bytes(layers * (2 * wl + al)), layers=layers, steps=steps)
    weights = b.alloc("weights", _bytes(layers * wl))
    grads = b.alloc("grads", _bytes(layers * wl))
    acts = b.alloc("activations", _bytes(layers * al))
    b.cpu("init", [b.run(weights, access="write")])
    for s in range(steps):
        for lyr in range(layers):
            inputs = [b.run(acts, (lyr - 1) * al, al)] if lyr else []
            b.kernel(
                f"step{s}.fwd{lyr}",
                [b.run(weights, lyr * wl, wl), *inputs, b.run(acts, lyr * al, al, access="write")],
            )
        for lyr in reversed(range(layers)):
            b.kernel(
                f"step{s}.bwd{lyr}",
                [
                    b.run(acts, lyr * al, al),
                    b.run(weights, lyr * wl, wl),
                    b.run(grads, lyr * wl, wl, access="write"),
                ],
            )
        b.kernel(f"step{s}.optimizer", [b.run(grads), b.run(weights, access="write")])
    b.sync()
    return b.build()


MAX_SPARSE_RUNS = 1 << 23  # page-runs in one sparse workload: 8 Mi segments are 240 MiB of IR
BLOCK_PAGES = PAGES_PER_BLOCK  # a 2 MiB VA block


def sparse(
    size: str | int = "256MiB",
    seed: int = 0,
    every: int = 16,
    passes: int | None = None,
    touches: int | None = None,
    span: str | int = "",
) -> Workload:
    """Sparse streaming: GPU passes over one whole 2 MiB block in every ``every`` of a huge buffer.

    The buffer (``size``) is cut into groups of ``every`` 2 MiB blocks; the seed picks one block
    per group, the same ones in every pass. A pass touches all 512 pages of each chosen block, in
    address order, one page-run per block. The first pass writes (the GPU first-touches the
    blocks: nothing is copied from the CPU), later passes read. ``passes`` defaults to 4; or give
    ``touches``, the total wanted, and the passes are derived (rounded up to whole passes).
    ``size=1TiB,every=16,touches=1e9`` touches 64 GiB of a 1 TiB allocation in 60 passes.
    ``span`` (empty by default: all of ``size``) keeps the chosen blocks in the buffer's first
    ``span`` bytes and leaves the rest of the VA untouched: ``size=16TiB,every=1,span=64GiB``
    touches 64 GiB of a 16 TiB allocation, one page-run a pass.
    """
    pages = _pages(size)
    _positive(every=every)
    if passes is not None and touches is not None:
        raise WorkloadError("give passes or touches, not both")
    touched = pages
    if span != "":
        touched = _pages(span, what="span")
        _positive(span=touched)
        if touched > pages:
            raise WorkloadError(f"span {span!r} is larger than the buffer (size {size!r})")
    blocks = -(-touched // BLOCK_PAGES)
    groups = -(-blocks // every)
    rng = np.random.default_rng(seed)
    first = np.arange(groups, dtype=np.int64) * every
    group_len = np.minimum(every, blocks - first)
    chosen = first + (rng.random(groups) * group_len).astype(np.int64)
    starts = chosen * BLOCK_PAGES
    counts = np.minimum(BLOCK_PAGES, touched - starts)  # the last block may be partial
    # chosen blocks that are next to each other make one run (every=1: one run per pass)
    new_run = np.r_[True, starts[1:] != starts[:-1] + counts[:-1]]
    run_id = np.cumsum(new_run) - 1
    starts, counts = starts[new_run], np.bincount(run_id, weights=counts).astype(np.int64)
    per_pass = int(counts.sum())
    if touches is not None:
        _positive(touches=touches)
        passes = -(-touches // per_pass)
    elif passes is None:
        passes = 4
    _positive(passes=passes)
    _cap(passes)
    if passes * len(starts) > MAX_SPARSE_RUNS:
        raise WorkloadError(
            f"parameters ask for {passes * len(starts)} page-runs; the limit is "
            f"{MAX_SPARSE_RUNS} (raise every or lower passes)"
        )
    shape = {} if span == "" else {"span": _bytes(touched)}
    b = _builder("sparse", seed, size=_bytes(pages), every=every, passes=passes, **shape)
    buf = b.alloc("buf", _bytes(pages))
    for k in range(passes):
        b.kernel(f"pass{k}", [b.runs(buf, starts, counts, access="read" if k else "write")])
    b.sync()
    return b.build()


GENERATORS = (stream, random, stride, stencil, gemm, graph, pingpong, llm, vecsearch, train, sparse)
