"""Generators shaped like the GPU benchmarks that published UVM results are measured on.

UVMSmart (Ganguly et al., "Interplay between hardware prefetcher and page eviction policy in
CPU-GPU unified virtual memory", ISCA 2019, and its artifact's nvprof logs on a GTX 1080 Ti)
reports kernel slowdowns under oversubscription for Rodinia's ``bfs`` and ``backprop`` and for a
random-access kernel (``ra``), and prefetcher speed-ups on those and on Polybench's ``fdtd`` and
Rodinia's ``hotspot``. These generators reproduce each program's memory behaviour at 4 KiB page
granularity, not its arithmetic:

* ``bfs``: Rodinia's two-kernel BFS over a random graph of average degree 6 (its ``graph1MW_6``
  inputs): kernel 1 scans the frontier mask; frontier nodes read their adjacency lists and touch
  their neighbours' visited / cost / updating-mask entries, which are random over the node
  arrays; kernel 2 scans the updating mask and sets mask / visited for the next level;
* ``backprop``: Rodinia's back-propagation with 16 hidden units: a forward kernel sweeps the
  input units and the input-to-hidden weight matrix, the CPU finishes the small layers, and
  the weight-adjust kernel sweeps the weights and the previous weights (read-modify-write);
* ``ra``: GUPS-style random read-modify-write updates over a table, four updates per entry;
* ``fdtd``: Polybench's fdtd-2d: per time step three kernels sweep ex, ey and hz;
* ``hotspot``: Rodinia's hotspot: per iteration read the temperature and power grids (a
  5-point stencil), write the output grid, swap.

A GPU runs many threads at once, so the pages one *wave* of resident threads touches fault
together and in no program order: irregular kernels are emitted wave by wave (``wave`` threads,
28 SMs x 2048 threads on the GTX 1080 Ti), each wave's pages once, in random order. Compute time
is one page's worth of bytes at the GTX 1080 Ti's 484 GB/s per page touch of a sweep, and
``ns_per_update`` per update of the irregular kernels.
"""

from __future__ import annotations

import numpy as np

from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.workload.builder import WorkloadBuilder
from uvmlab.workload.genutil import _builder, _bytes, _cap, _indexable, _pages, _positive
from uvmlab.workload.ir import Workload

WAVE = 28 * 2048  # threads resident at once on a GTX 1080 Ti (28 SMs x 2048 threads)
SWEEP_NS_PER_PAGE = PAGE_SIZE / 484.0  # a page of bytes at the GTX 1080 Ti's 484 GB/s


def _wave_pages(
    b: WorkloadBuilder, alloc: int, byte_offsets: np.ndarray, rng: np.random.Generator, access: str
) -> list:
    """One touch per access of ``byte_offsets``, in thread order (consecutive accesses to one
    page merged, as a warp's coalesced access is one)."""
    pages = byte_offsets // PAGE_SIZE
    if len(pages) == 0:
        return []
    keep = np.r_[True, pages[1:] != pages[:-1]]
    return [b.index(alloc, pages[keep], access=access)]


def _random_graph(n: int, degree: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """CSR of a random graph with ``degree * n`` edges, each from and to a uniformly random
    node (so degrees vary around ``degree``, as in Rodinia's generated graphs)."""
    deg = np.bincount(rng.integers(0, n, degree * n), minlength=n).astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(deg)))
    edges = rng.integers(0, n, degree * n, dtype=np.int64)
    return starts, edges


def _bfs_levels(starts: np.ndarray, edges: np.ndarray, source: int) -> list[np.ndarray]:
    """The frontier (sorted node ids) of every BFS level from ``source``."""
    n = len(starts) - 1
    visited = np.zeros(n, dtype=bool)
    visited[source] = True
    frontier = np.array([source], dtype=np.int64)
    levels = []
    while len(frontier):
        levels.append(frontier)
        deg = starts[frontier + 1] - starts[frontier]
        idx = np.repeat(starts[frontier] - np.cumsum(deg) + deg, deg) + np.arange(int(deg.sum()))
        nxt = np.unique(edges[idx])
        nxt = nxt[~visited[nxt]]
        visited[nxt] = True
        frontier = nxt
    return levels


def bfs(size: str | int = "64MiB", seed: int = 0, degree: int = 6, ns_per_update: int = 2) -> Workload:
    """Rodinia BFS: per level a frontier kernel (adjacency lists, random neighbour updates) and
    a mask-update kernel, over a random graph of average ``degree``.

    Node arrays as Rodinia lays them out: nodes (start, degree: 8 B), edges (4 B each), mask,
    updating mask, visited (1 B each), cost (4 B).
    """
    _positive(degree=degree, ns_per_update=ns_per_update)
    per_node = 8 + 4 * degree + 3 + 4
    n = max(2, _indexable(_pages(size)) * PAGE_SIZE // per_node)
    b = _builder("bfs", seed, size=n * per_node, degree=degree, ns_per_update=ns_per_update)
    rng = np.random.default_rng(seed)
    starts, edges = _random_graph(n, degree, rng)
    a_nodes = b.alloc("nodes", 8 * n)
    a_edges = b.alloc("edges", max(4, 4 * len(edges)))
    a_mask, a_upd, a_vis = (b.alloc(x, n) for x in ("mask", "updating_mask", "visited"))
    a_cost = b.alloc("cost", 4 * n)
    b.cpu("load", [b.run(x, access="write") for x in (a_nodes, a_edges, a_mask, a_upd, a_vis, a_cost)])
    levels = _bfs_levels(starts, edges, source=0)
    _cap(2 * len(levels))
    sweep = int(SWEEP_NS_PER_PAGE)
    for lvl, frontier in enumerate(levels):
        t1: list = []
        t2: list = []
        updates = 0
        nxt = levels[lvl + 1] if lvl + 1 < len(levels) else np.zeros(0, dtype=np.int64)
        for w0 in range(0, n, WAVE):
            w1 = min(n, w0 + WAVE)
            t1.append(b.run(a_mask, w0 // PAGE_SIZE, (w1 - 1) // PAGE_SIZE - w0 // PAGE_SIZE + 1))
            f = frontier[(frontier >= w0) & (frontier < w1)]
            if len(f):
                deg = starts[f + 1] - starts[f]
                idx = np.repeat(starts[f] - np.cumsum(deg) + deg, deg) + np.arange(int(deg.sum()))
                nb = edges[idx]
                updates += len(f) + len(nb)
                t1 += _wave_pages(b, a_nodes, 8 * f, rng, "read")
                t1 += _wave_pages(b, a_edges, 4 * idx, rng, "read")
                t1 += _wave_pages(b, a_vis, nb, rng, "read")
                t1 += _wave_pages(b, a_cost, 4 * nb, rng, "write")
                t1 += _wave_pages(b, a_upd, nb, rng, "write")
            t2.append(b.run(a_upd, w0 // PAGE_SIZE, (w1 - 1) // PAGE_SIZE - w0 // PAGE_SIZE + 1))
            g = nxt[(nxt >= w0) & (nxt < w1)]
            for arr in (a_mask, a_vis, a_upd):
                t2 += _wave_pages(b, arr, g, rng, "write")
        n_sweep = 2 * (-(-n // PAGE_SIZE))
        b.kernel(f"kernel1_{lvl}", t1, compute_ns=n_sweep * sweep // 2 + updates * ns_per_update)
        b.kernel(f"kernel2_{lvl}", t2, compute_ns=n_sweep * sweep // 2 + len(nxt) * ns_per_update)
    b.sync()
    b.cpu("result", [b.run(a_cost)])
    return b.build()


def backprop(size: str | int = "64MiB", seed: int = 0, hidden: int = 16) -> Workload:
    """Rodinia back-propagation, one training step: forward kernel over the input units and the
    input-to-hidden weights, the small layers on the CPU, then the weight-adjust kernel over the
    weights and the previous weights (read-modify-write)."""
    _positive(hidden=hidden)
    row = 4 * (hidden + 1)  # one input unit's weights, floats
    per_input = 4 + 2 * row  # input unit + weights + previous weights
    # the +1 bias row of each array and the partial sums (hidden floats per 16 inputs) included
    n_in = max(1, (_pages(size) * PAGE_SIZE - per_input) // (per_input + hidden // 4))
    b = _builder("backprop", seed, size=0, hidden=hidden)
    units = b.alloc("input_units", 4 * (n_in + 1))
    weights = b.alloc("input_weights", row * (n_in + 1))
    prev = b.alloc("input_prev_weights", row * (n_in + 1))
    partial = b.alloc("partial_sum", 4 * hidden * max(1, n_in // 16))
    b.params["size"] = sum(a.bytes for a in b.allocs)
    b.cpu("init", [b.run(x, access="write") for x in (units, weights, prev)])
    # Each thread block handles 16 input rows: blocks run in order, so the matrix is swept
    # front to back with the units alongside.
    sweep = SWEEP_NS_PER_PAGE
    wp, up = b.pages(weights), b.pages(units)
    chunk = 512  # pages of the weight matrix per step of the sweep (one 2 MiB block)
    fwd, adj = [], []
    for s in range(0, wp, chunk):
        u0 = s * up // wp
        u1 = max(u0 + 1, min(up, (s + chunk) * up // wp))
        fwd += [b.run(units, u0, u1 - u0), b.run(weights, s, min(chunk, wp - s))]
        adj += [
            b.run(units, u0, u1 - u0),
            b.run(weights, s, min(chunk, wp - s), access="write"),
            b.run(prev, s, min(chunk, wp - s), access="write"),
        ]
    fwd.append(b.run(partial, access="write"))
    b.kernel("layerforward", fwd, compute_ns=int((up + wp) * sweep))
    b.sync()
    b.cpu("hidden_output", [b.run(partial)])
    b.kernel("adjust_weights", adj, compute_ns=int((up + 2 * wp) * sweep))
    b.sync()
    return b.build()


def ra(
    size: str | int = "64MiB", seed: int = 0, updates_per_entry: int = 4, ns_per_update: int = 2
) -> Workload:
    """Random access (GUPS): ``updates_per_entry`` random read-modify-write updates per 8-byte
    table entry, issued by waves of concurrent threads."""
    _positive(updates_per_entry=updates_per_entry, ns_per_update=ns_per_update)
    pages = _indexable(_pages(size))
    entries = pages * PAGE_SIZE // 8
    b = _builder(
        "ra", seed, size=_bytes(pages), updates_per_entry=updates_per_entry, ns_per_update=ns_per_update
    )
    table = b.alloc("table", _bytes(pages))
    b.cpu("init", [b.run(table, access="write")])
    rng = np.random.default_rng(seed)
    total = entries * updates_per_entry
    touches = []
    for w0 in range(0, total, WAVE):
        k = min(WAVE, total - w0)
        touches += _wave_pages(b, table, 8 * rng.integers(0, entries, k), rng, "atomic")
    b.kernel("update", touches, compute_ns=total * ns_per_update)
    b.sync()
    b.cpu("verify", [b.run(table)])
    return b.build()


def fdtd(size: str | int = "64MiB", seed: int = 0, steps: int = 4) -> Workload:
    """Polybench fdtd-2d: per time step, ey -= f(hz) (rows i, i-1), ex -= f(hz) (columns j,
    j-1), hz -= f(ex, ey): three row-major sweeps over three equal grids."""
    _positive(steps=steps)
    _cap(3 * steps)
    grid = max(1, _pages(size) // 3)
    b = _builder("fdtd", seed, size=3 * _bytes(grid), steps=steps)
    ex, ey, hz = (b.alloc(x, _bytes(grid)) for x in ("ex", "ey", "hz"))
    b.cpu("init", [b.run(x, access="write") for x in (ex, ey, hz)])
    ns = int(2 * grid * SWEEP_NS_PER_PAGE)
    for t in range(steps):
        b.kernel(f"ey_{t}", [b.run(hz), b.run(ey, access="write")], compute_ns=ns)
        b.kernel(f"ex_{t}", [b.run(hz), b.run(ex, access="write")], compute_ns=ns)
        b.kernel(f"hz_{t}", [b.run(ex), b.run(ey), b.run(hz, access="write")], compute_ns=ns * 3 // 2)
    b.sync()
    b.cpu("result", [b.run(hz)])
    return b.build()


def hotspot(size: str | int = "64MiB", seed: int = 0, iters: int = 4) -> Workload:
    """Rodinia hotspot: per iteration read the temperature grid (5-point stencil) and the power
    grid, write the output grid, then swap input and output."""
    _positive(iters=iters)
    _cap(iters)
    grid = max(1, _pages(size) // 3)
    b = _builder("hotspot", seed, size=3 * _bytes(grid), iters=iters)
    t_in, power, t_out = (b.alloc(x, _bytes(grid)) for x in ("temp", "power", "temp_out"))
    b.cpu("init", [b.run(t_in, access="write"), b.run(power, access="write")])
    chunk = 512
    for it in range(iters):
        touches = []
        for s in range(0, grid, chunk):
            c = min(chunk, grid - s)
            touches += [b.run(t_in, s, c), b.run(power, s, c), b.run(t_out, s, c, access="write")]
        b.kernel(f"iter{it}", touches, compute_ns=int(3 * grid * SWEEP_NS_PER_PAGE))
        t_in, t_out = t_out, t_in
    b.sync()
    b.cpu("result", [b.run(t_in)])
    return b.build()


#: registered by ``synthetic`` with the other built-in generators
GENERATORS = (bfs, backprop, ra, fdtd, hotspot)
