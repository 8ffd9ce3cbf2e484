"""Seeded random ioctl records for fuzzing the decoder (the test suite and ``bench/fuzz_frontend.py``).

Request codes mix every known escape (at its accepted sizes), every UVM ioctl and random words;
parameter bytes are random with sizes around and beyond the structs'; paths, kinds, returns and
times are random too. The decoder must name what it can and never raise.
"""

from __future__ import annotations

import random

from uvmlab.frontend import nvtables as nt
from uvmlab.frontend.trace import Record

PATHS = (
    "/dev/nvidiactl",
    "/dev/nvidia0",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
    "/dev/nvidia-modeset",
    "",
)


def fuzz_records(rng: random.Random, n: int) -> list[Record]:
    requests = [nt.nv_ioctl(e.nr, s) for e in nt.ESCAPES.values() for s in (e.sizes or (8,))]
    requests += list(nt.UVM_IOCTLS) + [rng.getrandbits(32) for _ in range(20)]
    out = []
    for i in range(n):
        size = rng.choice([0, 1, 7, 16, 24, 28, 32, 40, 48, 56, 80, 300, rng.randrange(0, 600)])
        before = rng.randbytes(size)
        after = rng.randbytes(rng.choice([0, size, rng.randrange(0, 600)]))
        out.append(
            Record(
                i,
                rng.choice([1, 1, 1, 2, 3, 4, 9]),
                1,
                1,
                rng.getrandbits(40),
                rng.getrandbits(40),
                rng.randrange(-1, 50),
                rng.choice([0, -1]),
                rng.randrange(0, 40),
                rng.choice(PATHS),
                rng.choice(requests),
                rng.getrandbits(64),
                before,
                after,
            )
        )
    return out
