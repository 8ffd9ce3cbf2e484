"""The file workloads of the three-way comparison (issue 21), as IR with file allocations.

* ``scan`` — one GPU kernel reads a whole file (GAIA's "GPU reads a file" case);
* ``prodcons`` — rounds of: the CPU writes the input half of a file, a GPU kernel reads it and
  writes the output half, the CPU reads the output;
* ``reread`` — several kernels each read the whole file, as separate jobs would.

Each acquires before the GPU reads and releases after it writes, as a GAIA program must; the
other strategies ignore those two ops. Sizes are parameters; ``SPECS`` are the sizes the
documentation's table uses.
"""

from __future__ import annotations

from collections.abc import Callable

from uvmlab.core.errors import UvmlabError
from uvmlab.core.units import parse_size
from uvmlab.workload.builder import WorkloadBuilder
from uvmlab.workload.ir import Workload


def scan(size: str | int = "1GiB", cached: float = 1.0) -> Workload:
    b = WorkloadBuilder("gaia-scan", params={"size": parse_size(size), "cached": cached})
    f = b.file("data", size, cached=cached)
    b.maquire(f, "gpu0")
    b.kernel("scan", [b.run(f)])
    return b.build()


def prodcons(size: str | int = "256MiB", rounds: int = 4, cached: float = 1.0) -> Workload:
    if rounds < 1:
        raise UvmlabError(f"prodcons needs at least one round, got {rounds}")
    b = WorkloadBuilder(
        "gaia-prodcons", params={"size": parse_size(size), "rounds": rounds, "cached": cached}
    )
    f = b.file("data", size, cached=cached)
    half = b.pages(f) // 2
    for r in range(rounds):
        b.cpu(f"produce{r}", [b.run(f, count=half, access="write")])
        b.mrelease(f, "cpu", 0, half)
        b.maquire(f, "gpu0", 0, half)
        b.kernel(
            f"consume{r}",
            [b.run(f, count=half), b.run(f, start=half, count=b.pages(f) - half, access="write")],
        )
        b.mrelease(f, "gpu0", half, b.pages(f) - half)
        b.maquire(f, "cpu", half, b.pages(f) - half)
        b.cpu(f"collect{r}", [b.run(f, start=half, count=b.pages(f) - half)])
    return b.build()


def reread(size: str | int = "512MiB", kernels: int = 4, cached: float = 1.0) -> Workload:
    if kernels < 1:
        raise UvmlabError(f"reread needs at least one kernel, got {kernels}")
    b = WorkloadBuilder(
        "gaia-reread", params={"size": parse_size(size), "kernels": kernels, "cached": cached}
    )
    f = b.file("data", size, cached=cached)
    for k in range(kernels):
        b.maquire(f, "gpu0")
        b.kernel(f"read{k}", [b.run(f)])
    return b.build()


SCENARIOS: dict[str, Callable[..., Workload]] = {"scan": scan, "prodcons": prodcons, "reread": reread}
#: the sizes of the documented comparison
SPECS: dict[str, dict[str, object]] = {
    "scan": {"size": "1GiB"},
    "prodcons": {"size": "256MiB", "rounds": 4},
    "reread": {"size": "512MiB", "kernels": 4},
}


def build(name: str, **kw: object) -> Workload:
    if name not in SCENARIOS:
        raise UvmlabError(f"unknown GAIA scenario {name!r}; one of {', '.join(SCENARIOS)}")
    return SCENARIOS[name](**{**SPECS[name], **kw})
