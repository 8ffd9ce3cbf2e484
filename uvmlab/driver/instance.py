"""Builds one modelled driver instance: the state (``uvm.UvmDriver``), then the parts that
work on it (access counters, the compiled fault path), which import the state's modules."""

from __future__ import annotations

from typing import Any

from uvmlab.driver.access_counters import AccessCounters
from uvmlab.driver.compiled.fast_service import FastPath
from uvmlab.driver.hal import GpuSpec
from uvmlab.driver.params import Params
from uvmlab.driver.pmm_share import PmmShare
from uvmlab.driver.uvm import UvmDriver
from uvmlab.timing.cost_model import CostProfile
from uvmlab.workload.ir import Alloc


def create_driver(
    allocs: list[Alloc],
    *,
    gpu: GpuSpec,
    params: Params,
    profile: CostProfile,
    gpu_memory_bytes: int | None = None,
    events: bool = False,
    hooks: Any = None,
    fast_path: bool = True,
    share: PmmShare | None = None,
    tenant: str = "",
    n_gpus: int = 1,
) -> UvmDriver:
    """A driver over ``allocs``; ``fast_path=False`` services every fault on the reference path.

    ``share``: the GPU memory is shared with other VA spaces (``pmm_share.py``); ``tenant``
    names this one. The compiled path is off then: its chunk owners are one VA space's blocks.
    ``n_gpus``: GPUs of the part ``gpu`` in the VA space; the compiled path models one GPU, so
    with several every fault takes the reference path (same answers, slower).
    """
    drv = UvmDriver(
        allocs,
        gpu=gpu,
        params=params,
        profile=profile,
        gpu_memory_bytes=gpu_memory_bytes,
        events=events,
        hooks=hooks,
        share=share,
        tenant=tenant,
        n_gpus=n_gpus,
    )
    drv.access_counters = AccessCounters(drv, gpu)
    drv.fast = FastPath(drv) if fast_path and share is None and n_gpus == 1 else None
    return drv
