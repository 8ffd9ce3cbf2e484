"""Small builders shared by the driver tests."""

from __future__ import annotations

import numpy as np

from uvmlab.api import load_workload
from uvmlab.driver.hal import get_gpu
from uvmlab.driver.params import Params
from uvmlab.engine.core import Engine
from uvmlab.engine.setup import resolve_gpu_memory
from uvmlab.policy.loader import build_hooks
from uvmlab.timing.cost_model import load_profile, profile_for_gpu
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


def run_with_policies(
    workload, fast: bool, policies, gpu_memory: str | None = None, params: dict | None = None
):
    """Run ``workload`` on the H200 with ``policies`` loaded, on the compiled (``fast``) or the
    reference path; returns (engine, hooks). A generous per-call budget: a loaded machine must
    not eject a policy in one run only."""
    w = load_workload(workload)
    gpu = get_gpu("h200")
    hooks = build_hooks(policies, budget_ms=60_000)
    prm = Params.from_overrides({**(params or {}), **hooks.module_params})
    eng = Engine(
        w,
        gpu=gpu,
        params=prm,
        profile=load_profile(profile_for_gpu(gpu.name)),
        gpu_memory_bytes=resolve_gpu_memory(gpu_memory, w, gpu),
        concurrency=4096,
        hooks=hooks,
        fast_path=fast,
    )
    with hooks.session():
        eng.run()
    return eng, hooks


def random_moves(rng: np.random.Generator, ctx) -> None:
    """A random policy's list requests: up to two chunks of the GPU's eviction lists moved to
    the head or the tail (the fuzz and batch-hook tests' random policies)."""
    lists = np.concatenate((ctx.used, ctx.unused))
    for _ in range(int(rng.integers(0, 3))):
        if len(lists):
            c = int(lists[rng.integers(len(lists))])
            (ctx.move_head if rng.random() < 0.5 else ctx.move_tail)(c)
