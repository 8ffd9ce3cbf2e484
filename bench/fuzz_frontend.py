"""Fuzz the ioctl decoder with many seeded random records; print what it named and any crash.

``python bench/fuzz_frontend.py [N] [SEED]`` (defaults 200000, 1).
"""

from __future__ import annotations

import random
import sys
import time

from uvmlab.frontend.decode import decode
from uvmlab.frontend.fuzz import fuzz_records


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    t0 = time.perf_counter()
    done = 0
    named = 0
    rng = random.Random(seed)
    while done < n:
        batch = min(20_000, n - done)
        dec = decode(fuzz_records(rng, batch))
        named += sum(c.named for c in dec.calls)
        done += batch
        print(f"{done}/{n} records decoded, {time.perf_counter() - t0:.1f}s", flush=True)
    print(f"seed {seed}: {n} fuzzed records, 0 crashes, {named} named by the decoder")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
