"""vGPU types per physical GPU: the back end's table of what an administrator may create.

A vGPU type fixes a framebuffer size and how many instances of it fit on one physical GPU
(``max_instances``); the time-sliced ("C-series", compute) types are listed, one table per GPU
the HAL knows plus one older GPU. Sources, by document title:

* NVIDIA AI Enterprise documentation, *Volta Architecture vGPU Types* (V100L-16C / -8C / -4C:
  16 / 8 / 4 GB, at most 1 / 2 / 4 per GPU) -- read for this table.
* NVIDIA AI Enterprise documentation, *Hopper Architecture vGPU Types* (H100 80GB and H200
  types). *Unconfirmed here*: the stored copy of that page could not be read when this table
  was written; the H100 80GB rows are the published C-series ladder as the authors know it
  (80C ... 4C, 1 ... 20 instances) and the H200 rows follow the same divisors of its 141 GB.
  Check them against the page before relying on an exact size.

Scheduling facts (NVIDIA vGPU knowledge base, *vGPU Schedulers*; NVIDIA AI Enterprise
documentation, *Scheduling Policies*): best effort is the default, a time-sliced round robin
that skips a VM with no work; equal share gives every running vGPU the same fraction whatever
its load; fixed share gives each vGPU a fixed fraction (1 / max_instances of its type) even
while the others are idle. The default time-slice length is set by the type's
``max_instances``: 2 ms for types of at most 8 instances, 1 ms above (NVIDIA Virtual GPU
Software User Guide, *Changing Scheduling Behavior for Time-Sliced vGPUs*; *unconfirmed here*,
as recalled, not re-read).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from uvmlab.core.errors import UvmlabError

GB = 1 << 30  # the type tables give framebuffer sizes in GB meaning GiB (e.g. 16 GB on a 16 GiB card)


@dataclass(frozen=True)
class VgpuType:
    """One vGPU type of one physical GPU (what ``vgpu_get_name`` / ``_description`` report)."""

    type_id: str  # the mdev type id's vendor part, e.g. "nvidia-h100-80c"
    name: str  # e.g. "H100-80C"
    framebuffer_bytes: int
    max_instances: int
    series: str = "C"
    source: str = ""

    @property
    def description(self) -> str:
        """The sysfs ``description`` text: what the type gives a VM."""
        return (
            f"num_heads=1, frl_config=0, framebuffer={self.framebuffer_bytes // (1 << 20)}M, "
            f"max_instance={self.max_instances}"
        )

    @property
    def default_timeslice_ns(self) -> int:
        """Default time slice of the equal- and fixed-share schedulers for this type."""
        return 2_000_000 if self.max_instances <= 8 else 1_000_000

    @property
    def fixed_share(self) -> float:
        """The fraction of GPU time a fixed-share scheduler reserves for one instance."""
        return 1.0 / self.max_instances


_HOPPER = "NVIDIA AI Enterprise docs, Hopper Architecture vGPU Types (unconfirmed here)"
_VOLTA = "NVIDIA AI Enterprise docs, Volta Architecture vGPU Types"


def _ladder(gpu: str, prefix: str, rows: list[tuple[int, int]], source: str) -> tuple[VgpuType, ...]:
    return tuple(
        VgpuType(
            type_id=f"nvidia-{gpu}-{gb}c",
            name=f"{prefix}-{gb}C",
            framebuffer_bytes=gb * GB,
            max_instances=n,
            source=source,
        )
        for gb, n in rows
    )


#: per physical GPU (the HAL's name): the time-sliced vGPU types, largest first
VGPU_TYPES: dict[str, tuple[VgpuType, ...]] = {
    "h100": _ladder(
        "h100", "H100", [(80, 1), (40, 2), (20, 4), (16, 5), (10, 8), (8, 10), (5, 16), (4, 20)], _HOPPER
    ),
    "h200": _ladder(
        "h200", "H200", [(141, 1), (70, 2), (35, 4), (28, 5), (17, 8), (14, 10), (8, 16), (7, 20)], _HOPPER
    ),
    "v100": _ladder("v100", "V100L", [(16, 1), (8, 2), (4, 4)], _VOLTA),
}


def types_for(gpu: str) -> tuple[VgpuType, ...]:
    """The vGPU types of a physical GPU, by its HAL name (``h100``, ``h200``, ``v100``)."""
    key = gpu.strip().lower().removeprefix("nvidia").strip("-_ ")
    if key in VGPU_TYPES:
        return VGPU_TYPES[key]
    close = difflib.get_close_matches(key, list(VGPU_TYPES), n=2, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise UvmlabError(f"no vGPU types for GPU {gpu!r}{hint} (known: {', '.join(VGPU_TYPES)})")


def find_type(gpu: str, name: str) -> VgpuType:
    """A type of ``gpu`` by its name (``H100-20C``) or type id (``nvidia-h100-20c``)."""
    want = name.strip().lower()
    types = types_for(gpu)
    for t in types:
        if want in (t.name.lower(), t.type_id):
            return t
    raise UvmlabError(f"GPU {gpu} has no vGPU type {name!r} (types: {', '.join(t.name for t in types)})")
