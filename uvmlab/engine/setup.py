"""What every run resolves before it starts: the GPU, its module parameters, its cost profile and
the GPU memory UVM may use. ``api.simulate``, the GAIA and HMM models and the vGPU runner all
take the same spellings (a GPU name or spec, parameter overrides, a profile name, a size or an
oversubscription ratio) through these functions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from uvmlab.core.errors import UvmlabError
from uvmlab.core.units import parse_size
from uvmlab.driver.hal import GpuSpec, get_gpu
from uvmlab.driver.params import Params
from uvmlab.timing.cost_model import CostProfile, load_profile, profile_for_gpu
from uvmlab.workload.ir import Workload


def resolve_machine(
    gpu: str | GpuSpec,
    params: Params | Mapping[str, Any] | None = None,
    profile: str | CostProfile | None = None,
) -> tuple[GpuSpec, Params, CostProfile]:
    """The GPU spec, the module parameters (overrides of the driver's defaults) and the cost
    profile (default: the one measured for this GPU and link)."""
    spec = gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)
    prm = params if isinstance(params, Params) else Params.from_overrides(dict(params or {}))
    prof = (
        profile
        if isinstance(profile, CostProfile)
        else load_profile(profile or profile_for_gpu(spec.name, spec.link))
    )
    return spec, prm, prof


def resolve_gpu_memory(value: str | int | None, workload: Workload, gpu: GpuSpec) -> int:
    """GPU memory for the model: bytes, a size ("16GiB"), or an oversubscription ratio, spelled
    ``oversubscribe=1.5`` (the workload's managed memory is 1.5x the GPU's; also
    ``oversubscribe=150%``). The bare ``150%`` is the same ratio, kept for existing scripts."""
    if value is None:  # what UVM can hold: the GPU's free memory in whole root chunks
        return gpu.n_root_chunks * gpu.root_chunk_size
    if isinstance(value, str):
        text = value.strip().lower()
        pct: float | None = None
        try:
            if text.startswith("oversubscribe="):
                r = text.split("=", 1)[1].strip()
                pct = float(r[:-1]) if r.endswith("%") else float(r) * 100
            elif text.endswith("%"):
                pct = float(text[:-1])
        except ValueError:
            raise UvmlabError(
                f"cannot read oversubscription {value!r} (try oversubscribe=1.5: the workload needs "
                "1.5x the GPU's memory)"
            ) from None
        if pct is not None:
            if not 0.01 <= pct <= 1e6:  # NaN fails this too
                raise UvmlabError(f"oversubscription must be between 0.01% and 1000000%, got {value!r}")
            footprint = max(workload.managed_bytes, 1)
            cap = int(footprint * 100 / pct)
            return max(2 << 20, cap // (2 << 20) * (2 << 20))
    return parse_size(value, what="GPU memory")
