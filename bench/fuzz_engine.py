"""Fuzz the engine with hostile workload files that the reader may accept.

Each case is a ``.uvmw`` file built from a seed: a small valid workload with one to four
mutations drawn from what a hostile or careless producer can write — extreme integers in every
field the engine uses (processors, GPUs, compute times, pages, counts, strides, sizes), device
allocations larger than the GPU, 1 PiB allocations, lone surrogates and control characters in
names, stride-0 runs of 2^62 touches, frees and advice in odd orders, many operations. The file
is read with ``read_workload`` and, when accepted, run with ``uvmlab.simulate`` (invariants
checked on some cases), its result serialised and saved.

Every case must end as a result or a clean ``UvmlabError`` within the time and memory limits:
a crash, hang or memory blow-up is a failure (see bench/fuzzlib.py).

    python bench/fuzz_engine.py --cases 100000 --time-limit 1500 --json
"""

from __future__ import annotations

import inspect
import json
import os
import struct
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzzlib import arg_parser, run_parsed  # noqa: E402

from uvmlab.workload.fileformat import FORMAT_VERSION, MAGIC, read_workload  # noqa: E402

try:
    from uvmlab.core.errors import UvmlabError
except ImportError:  # the layout before the one-way layers
    from uvmlab.errors import UvmlabError  # type: ignore[no-redef]

SEG = [
    ("alloc", "<i4"),
    ("kind", "|u1"),
    ("access", "|u1"),
    ("start", "<i8"),
    ("count", "<i8"),
    ("stride", "<i8"),
]
SEG_DTYPE = np.dtype(SEG)
MAX_TOUCHES = 1 << 22  # per case: the engine's work bound keeps every case short
HOSTILE_INTS = (
    0,
    1,
    2,
    3,
    -1,
    -2,
    255,
    256,
    511,
    512,
    513,
    4095,
    4096,
    1 << 20,
    (1 << 31) - 1,
    1 << 31,
    1 << 32,
    1 << 40,
    1 << 50,
    (1 << 50) + 1,
    1 << 52,
    1 << 53,
    1 << 62,
    (1 << 63) - 1,
    -(1 << 63),
    -(1 << 31),
)
HOSTILE_NAMES = (
    "",
    "\ud800",
    "a\udfffb",
    "x" * 300,
    "A/w",
    "/",
    "a/b/c",
    "\x00",
    "\n\r\t",
    "$\\frac{1}{0}$",
    "$x^{" * 20,
    "%s%n%x",
    "../../../etc/passwd",
    "\u202e",
    "名前",
    "😀" * 10,
    "<script>",
    "{0}",
    "a" * 70000,
)
ADVICE = (
    "set_preferred_location",
    "unset_preferred_location",
    "set_accessed_by",
    "unset_accessed_by",
    "set_read_mostly",
    "unset_read_mostly",
)
KINDS = ("managed", "device", "pinned")
MiB = 1 << 20


def encode(header: dict[str, Any], segments: np.ndarray, pool: np.ndarray) -> bytes:
    """A ``.uvmw`` file (docs/trace-format.md) around any header: the reader's checks, not the
    writer's, decide what is accepted."""
    seg = np.ascontiguousarray(segments, dtype=SEG_DTYPE).tobytes()
    pl = np.ascontiguousarray(pool, dtype="<u4").tobytes()
    seg_off = 0
    pool_off = len(seg) + (-len(seg)) % 8
    header = dict(header)
    header.setdefault(
        "arrays",
        {
            "segments": {
                "dtype": [list(f) for f in SEG],
                "shape": [len(segments)],
                "offset": seg_off,
                "nbytes": len(seg),
            },
            "pool": {"dtype": "<u4", "shape": [len(pool)], "offset": pool_off, "nbytes": len(pl)},
        },
    )
    text = json.dumps(header, separators=(",", ":")).encode()  # ensure_ascii: lone surrogates ok
    text += b" " * ((-(20 + len(text))) % 8)
    body = (
        struct.pack("<8sIQ", MAGIC, FORMAT_VERSION, len(text))
        + text
        + seg
        + b"\0" * (pool_off - len(seg))
        + pl
    )
    return body + struct.pack("<I", zlib.crc32(body))


def _int(rng: np.random.Generator, lo: int = -(1 << 63), hi: int = (1 << 63) - 1) -> int:
    if rng.random() < 0.7:
        return int(HOSTILE_INTS[rng.integers(len(HOSTILE_INTS))])
    return int(rng.integers(-1000, 5000))


def base_workload(rng: np.random.Generator) -> tuple[dict[str, Any], list[tuple], list[int]]:
    """A small valid workload as (header, segments, pool)."""
    n_alloc = int(rng.integers(1, 4))
    allocs = [
        [f"a{i}", int(rng.integers(1, 9)) * MiB // int(rng.choice([1, 2, 3])), "managed"]
        for i in range(n_alloc)
    ]
    segs: list[tuple] = []
    pool: list[int] = []
    ops: list[dict[str, Any]] = []
    for k in range(int(rng.integers(1, 6))):
        lo = len(segs)
        for _ in range(int(rng.integers(1, 4))):
            a = int(rng.integers(n_alloc))
            pages = -(-allocs[a][1] // 4096)
            if rng.random() < 0.7:
                start = int(rng.integers(pages))
                stride = int(rng.choice([1, 1, 2, 16, -1]))
                room = start if stride < 0 else pages - 1 - start
                count = 1 + int(rng.integers(0, room // abs(stride) + 1))
                segs.append((a, 0, int(rng.integers(1, 4)), start, count, stride))
            else:
                n = int(rng.integers(1, 200))
                segs.append((a, 1, int(rng.integers(1, 4)), len(pool), n, 0))
                pool.extend(int(x) for x in rng.integers(0, pages, n))
        r = rng.random()
        if r < 0.6:
            ops.append(
                {
                    "op": "kernel",
                    "name": f"k{k}",
                    "gpu": 1,
                    "seg_lo": lo,
                    "seg_hi": len(segs),
                    "compute_ns": int(rng.integers(0, 10**6)),
                }
            )
        else:
            ops.append(
                {
                    "op": "cpu",
                    "name": f"c{k}",
                    "seg_lo": lo,
                    "seg_hi": len(segs),
                    "compute_ns": int(rng.integers(0, 10**6)),
                }
            )
        if rng.random() < 0.3:
            a = int(rng.integers(n_alloc))
            ops.append(
                {
                    "op": "prefetch",
                    "alloc": a,
                    "processor": int(rng.integers(2)),
                    "start_page": 0,
                    "num_pages": -(-allocs[a][1] // 4096),
                }
            )
        if rng.random() < 0.3:
            a = int(rng.integers(n_alloc))
            ops.append(
                {
                    "op": "advise",
                    "alloc": a,
                    "advice": str(rng.choice(ADVICE)),
                    "processor": int(rng.integers(2)),
                    "start_page": 0,
                    "num_pages": 1,
                }
            )
        if rng.random() < 0.2:
            ops.append({"op": "sync"})
    header = {
        "format": "uvmlab-workload",
        "name": "fuzz",
        "seed": 0,
        "version": 1,
        "params": {},
        "allocs": allocs,
        "ops": ops,
    }
    return header, segs, pool


def mutate(rng: np.random.Generator, header: dict[str, Any], segs: list[tuple], pool: list[int]) -> str:
    """One hostile change; returns its name (the case's kind)."""
    allocs, ops = header["allocs"], header["ops"]
    m = int(rng.integers(16))
    if m == 0:  # an allocation size
        a = allocs[int(rng.integers(len(allocs)))]
        a[1] = int(
            rng.choice(
                [
                    1,
                    4095,
                    4097,
                    1 << 40,
                    16 << 40,
                    1 << 50,
                    (1 << 50) - 4096,
                    1 << 47,
                    1 << 48,
                    200 << 30,
                    141 << 30,
                    80 << 30,
                    _int(rng),
                ]
            )
        )
        return "alloc-size"
    if m == 1:  # an allocation kind (device / pinned allocations of any size)
        a = allocs[int(rng.integers(len(allocs)))]
        a[2] = str(rng.choice(KINDS))
        if rng.random() < 0.5:
            a[1] = int(rng.choice([160 << 30, 1 << 40, 1 << 50, 2 * MiB, 1]))
        return "alloc-kind"
    if m == 2:  # names
        name = str(rng.choice(HOSTILE_NAMES))
        if rng.random() < 0.5:
            allocs[int(rng.integers(len(allocs)))][0] = name
        else:
            header["name"] = name
        if ops and rng.random() < 0.5:
            op = ops[int(rng.integers(len(ops)))]
            if "name" in op:
                op["name"] = str(rng.choice(HOSTILE_NAMES))
        return "names"
    if m in (3, 4):  # an integer field of an op
        if not ops:
            return "none"
        op = ops[int(rng.integers(len(ops)))]
        fields = [k for k, v in op.items() if isinstance(v, int) and k != "op"]
        if not fields:
            return "none"
        op[str(rng.choice(fields))] = _int(rng)
        return f"op-{op['op']}-int"
    if m == 5:  # processor / gpu fields specifically
        procs = [op for op in ops if op["op"] in ("kernel", "advise", "prefetch")]
        if not procs:
            return "none"
        op = procs[int(rng.integers(len(procs)))]
        key = "gpu" if op["op"] == "kernel" else "processor"
        op[key] = int(rng.choice([-1, 0, 1, 2, 3, 7, 255, 256, 1 << 31, 1 << 62]))
        return "processor"
    if m == 6:  # compute time near 2^63
        ct = [op for op in ops if "compute_ns" in op]
        if not ct:
            return "none"
        for op in ct:
            op["compute_ns"] = int(rng.choice([(1 << 63) - 1, 1 << 62, 1 << 53, 10**18]))
        return "compute-ns"
    if m in (7, 8):  # a segment field
        if not segs:
            return "none"
        i = int(rng.integers(len(segs)))
        s = list(segs[i])
        f = int(rng.integers(6))
        if f == 0:
            s[0] = int(rng.choice([-1, len(allocs), 1 << 31 - 1, 0]))
        elif f in (1, 2):
            s[f] = int(rng.integers(0, 256))
        else:
            s[f] = _int(rng)
        segs[i] = tuple(s)
        return "segment-field"
    if m == 9:  # a stride-0 run with an enormous count (runs forever without a work bound)
        a = int(rng.integers(len(allocs)))
        segs.append((a, 0, 1, 0, int(rng.choice([1 << 62, 1 << 40, 1 << 32, 10**9])), 0))
        ops.append(
            {
                "op": "kernel",
                "name": "spin",
                "gpu": 1,
                "seg_lo": len(segs) - 1,
                "seg_hi": len(segs),
                "compute_ns": 0,
            }
        )
        return "stride0-huge"
    if m == 10:  # pool values
        if pool:
            i = int(rng.integers(len(pool)))
            pool[i] = int(rng.choice([0, 1 << 31, (1 << 32) - 1, 512, 4096]))
        return "pool"
    if m == 11:  # many operations; the reader parses ~7 us per op, so the big ones are rare
        r = rng.random()
        n = 200000 if r < 0.003 else 20000 if r < 0.03 else 1000
        ops.extend({"op": "sync"} for _ in range(n))
        return "many-ops"
    if m == 12:  # frees: double free, use after free, free then prefetch
        a = int(rng.integers(len(allocs)))
        pos = int(rng.integers(len(ops) + 1))
        ops.insert(pos, {"op": "free", "alloc": a})
        if rng.random() < 0.3:
            ops.append({"op": "free", "alloc": a})
        return "free"
    if m == 13:  # advice with odd processors and ranges
        a = int(rng.integers(len(allocs)))
        ops.append(
            {
                "op": "advise",
                "alloc": a,
                "advice": str(rng.choice(ADVICE)),
                "processor": int(rng.choice([0, 1, 2, -1, 255])),
                "start_page": int(rng.choice([0, 1, 511, _int(rng)])),
                "num_pages": int(rng.choice([1, 512, 1 << 20, _int(rng)])),
            }
        )
        return "advise"
    if m == 14:  # params and seed
        header["seed"] = _int(rng)
        header["params"] = {
            "x": [[[[[]]]]] * 3,
            "n": 1e308,
            "big": 1 << 200,
            "s": str(rng.choice(HOSTILE_NAMES)),
        }
        return "params"
    # m == 15: many allocations
    r = rng.random()  # 5000 allocations cost ~0.2 s to read and check: rare
    n = 5000 if r < 0.03 else 1000 if r < 0.3 else 10
    allocs.extend([f"m{i}", int(rng.choice([4096, 2 * MiB, 1 << 40])), "managed"] for i in range(n))
    return "many-allocs"


def make_case(seed: int) -> tuple[bytes, str]:
    rng = np.random.default_rng(seed)
    header, segs, pool = base_workload(rng)
    kinds = [mutate(rng, header, segs, pool) for _ in range(int(rng.integers(1, 5)))]
    kinds = [k for k in kinds if k != "none"] or ["valid"]
    seg = np.array(segs, dtype=SEG_DTYPE) if segs else np.zeros(0, SEG_DTYPE)
    return encode(header, seg, np.array(pool, dtype=np.int64).astype("<u4")), "+".join(sorted(set(kinds)))


def _simulate_kwargs() -> dict[str, Any]:
    from uvmlab.api import simulate

    params = inspect.signature(simulate).parameters
    kw: dict[str, Any] = {"gpu_memory": "64MiB"}
    if "max_touches" in params:
        kw["max_touches"] = MAX_TOUCHES
    return kw


def run_case(case: dict[str, Any]) -> tuple[str, str, str]:
    from uvmlab.api import simulate

    data, kind = make_case(case["seed"])
    d = Path(tempfile.gettempdir()) / f"uvmlab-fuzz-engine-{os.getpid()}"
    d.mkdir(exist_ok=True)
    path = d / "case.uvmw"
    path.write_bytes(data)
    try:
        w = read_workload(path)
    except UvmlabError as e:
        return "clean", f"reader: {type(e).__name__}", kind
    try:
        # the invariant checker walks every page of the VA: only on small address spaces
        small = sum(a.bytes for a in w.allocs) <= 256 * MiB
        res = simulate(w, check_invariants=small and case["seed"] % 4 == 0, **_simulate_kwargs())
        json.dumps(res.canonical())
        if case["seed"] % 8 == 0:  # the writer too, on a sample (it fsyncs: slow on shared disks)
            res.save(d / "result.json")
    except UvmlabError as e:
        return "clean", f"engine: {type(e).__name__}", kind
    return ("fatal" if res.fatal else "ok"), "", kind


def cases(seed: int, n: int):
    for i in range(n):
        yield {"seed": seed * 1_000_003 + i}


def warm() -> None:
    """Compile and load everything once in the parent, so forked workers start warm."""
    from uvmlab.api import simulate

    simulate("stream:size=4MiB,passes=1", gpu_memory="64MiB", check_invariants=True)


def main(argv: list[str] | None = None) -> int:
    ap = arg_parser(__doc__.splitlines()[0], cases=100_000, time_limit=1500)
    a = ap.parse_args(argv)
    warm()
    rep = run_parsed("fuzz_engine", a, cases(a.seed, a.cases), run_case)
    rep.print(a.json)
    return 1 if rep.failures else 0


if __name__ == "__main__":
    sys.exit(main())
