"""Small builders shared by the driver tests."""

from __future__ import annotations

import numpy as np

from uvmlab.driver.hal import get_gpu
from uvmlab.driver.params import Params
from uvmlab.engine.core import Engine
from uvmlab.timing.cost_model import load_profile
from uvmlab.workload.builder import WorkloadBuilder

MiB = 1 << 20
PAGES_PER_BLOCK = 512


def run_engine(w, *, params=None, gpu_memory=None, concurrency=2048, events=False, hooks=None) -> Engine:
    """Run ``w`` with the invariant checker after every fault batch; return the engine."""
    eng = Engine(
        w,
        gpu=get_gpu("h200"),
        params=Params.from_overrides(params or {}),
        profile=load_profile(),
        gpu_memory_bytes=gpu_memory,
        concurrency=concurrency,
        events=events,
        check=True,
        hooks=hooks,
    )
    eng.run()
    eng.check_invariants()
    return eng


def residency_of(eng: Engine, alloc: int, pages) -> np.ndarray:
    va = eng.drv.va
    return va.residency[int(va.alloc_base[alloc]) + np.asarray(pages)]


def cpu_filled(size: str = "2MiB", name: str = "t") -> tuple[WorkloadBuilder, int]:
    """A builder with one managed allocation that the CPU has written entirely."""
    b = WorkloadBuilder(name)
    a = b.alloc("buf", size)
    b.cpu("init", [b.run(a, access="write")])
    return b, a
