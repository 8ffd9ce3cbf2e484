"""Estimated cost profiles for GPUs no one here has measured.

A profile is *calibrated* when ``uvmlab calibrate`` measured it on the GPU (the H100 and H200
profiles); every other built-in profile is derived here from a calibrated one and is marked as an
estimate in each constant's ``sources`` entry, with the rule that produced it:

* copy bandwidths (fault path, prefetch, pinned) and remote (zero-copy) touches scale with the
  raw bandwidth of the host link (PCIe generation), because on the measured GPUs every one of
  them is bound by PCIe;
* a resident GPU touch (``gpu_touch_ns``) scales with the inverse of the memory bandwidth;
* the driver's own costs (fault batches, per-fault and per-block service, replays, CPU faults,
  advice, chunk zeroing) are kept: they are CPU work in the driver and copy-engine latencies,
  which the measured GPUs cannot separate from the host they ran on.

``docs/make_hal.py`` writes the estimated profiles with this function and the table of their
sources in ``docs/hal.md``.
"""

from __future__ import annotations

from dataclasses import asdict

from uvmlab.timing.cost_model import CostProfile

_LINK_BOUND = (
    "htod_gbps",
    "dtoh_gbps",
    "prefetch_htod_gbps",
    "prefetch_dtoh_gbps",
    "pinned_htod_gbps",
    "pinned_dtoh_gbps",
)


def estimate_profile(
    base: CostProfile, *, name: str, gpu: str, host_link_ratio: float, memory_ratio: float, why: str
) -> CostProfile:
    """``base`` carried over to another GPU.

    ``host_link_ratio`` = raw host-link bandwidth of the GPU / that of ``base``'s GPU;
    ``memory_ratio`` = its memory bandwidth / that of ``base``'s GPU. ``why`` names both GPUs
    and where the ratios come from; it goes into every constant's source.
    """
    if host_link_ratio <= 0 or memory_ratio <= 0:
        raise ValueError("bandwidth ratios must be positive")
    d = asdict(base)
    sources: dict[str, str] = {}
    for key in d:
        if key in ("name", "gpu", "sources"):
            continue
        if key in _LINK_BOUND:
            d[key] = round(base.__getattribute__(key) * host_link_ratio, 4)
            rule = f"x {host_link_ratio:.4g} (host link bandwidth ratio)"
        elif key == "remote_touch_ns":
            d[key] = round(base.remote_touch_ns / host_link_ratio, 4)
            rule = f"/ {host_link_ratio:.4g} (host link bandwidth ratio)"
        elif key == "gpu_touch_ns":
            d[key] = round(base.gpu_touch_ns / memory_ratio, 6)
            rule = f"/ {memory_ratio:.4g} (memory bandwidth ratio)"
        else:
            rule = "kept (driver and host cost)"
        sources[key] = f"estimate: {base.name} value {rule}"
    sources["_estimate"] = f"not measured on this GPU; derived from {base.name}: {why}"
    d.update(name=name, gpu=gpu, sources=sources)
    return CostProfile(**d)
