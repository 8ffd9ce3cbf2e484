"""vGPU types per physical GPU: the back end's table of what an administrator may create.

A vGPU type fixes a framebuffer size and how many instances of it fit on one physical GPU
(``max_instances``); the time-sliced ("C-series", compute) types are listed, one table per GPU
the HAL knows plus one older GPU. Sources, by document title (and address):

* NVIDIA AI Enterprise documentation (release 8), *Volta Architecture vGPU Types*
  (docs.nvidia.com/ai-enterprise/release-8/latest/infra-software/vgpu/reference/volta.html):
  V100L-16C / -8C / -4C with 16 / 8 / 4 GB of framebuffer, at most 1 / 2 / 4 per GPU; "This GPU
  does not support mixed-size mode". **Confirmed** (read for this table).
* NVIDIA AI Enterprise documentation, *Hopper Architecture vGPU Types* (H100 80GB and H200
  types). **Unconfirmed**: no copy of that page could be read for this table (the documentation
  corpus searched holds the Volta page, not the Hopper one); the H100 80GB rows are the
  C-series ladder as the authors know it (80C ... 4C, 1 ... 20 instances) and the H200 rows
  follow the same divisors of its 141 GB. Every such type carries ``confirmed=False`` and is
  shown as unconfirmed by ``uvmlab vgpu types``; check the page before relying on a size.

Scheduling facts. **Confirmed** (NVIDIA AI Enterprise documentation, release 8, *Scheduling
Policies*, docs.nvidia.com/ai-enterprise/release-8/latest/infra-software/vgpu/features/
scheduling.html; NVIDIA vGPU knowledge base, *vGPU Schedulers*,
docs.nvidia.com/vgpu/knowledge-base/latest/vgpu-features.html): best effort is the default, a
time-sliced round robin that moves on when a VM has no work or has used its slice; equal share
gives each running VM an equal fraction of GPU time whatever its load; fixed share gives each
VM a fixed fraction even while the others are idle. **Unconfirmed**: the default time-slice
lengths used here, 2 ms for types of at most 8 instances per GPU and 1 ms above (NVIDIA Virtual
GPU Software User Guide, *Changing Scheduling Behavior for Time-Sliced vGPUs*, as recalled; the
page was not in the searched corpus). ``DEFAULT_TIMESLICE_CONFIRMED`` says so to the callers.
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
    confirmed: bool = False  # the row was read in the cited document

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


_HOPPER = "NVIDIA AI Enterprise docs, Hopper Architecture vGPU Types (unconfirmed: page not read)"
_VOLTA = (
    "NVIDIA AI Enterprise docs (release 8), Volta Architecture vGPU Types, "
    "docs.nvidia.com/ai-enterprise/release-8/latest/infra-software/vgpu/reference/volta.html"
)
#: the 2 ms / 1 ms default time slices are recalled, not read (see the module docstring)
DEFAULT_TIMESLICE_CONFIRMED = False


def _ladder(
    gpu: str, prefix: str, rows: list[tuple[int, int]], source: str, confirmed: bool
) -> tuple[VgpuType, ...]:
    return tuple(
        VgpuType(
            type_id=f"nvidia-{gpu}-{gb}c",
            name=f"{prefix}-{gb}C",
            framebuffer_bytes=gb * GB,
            max_instances=n,
            source=source,
            confirmed=confirmed,
        )
        for gb, n in rows
    )


#: per physical GPU (the HAL's name): the time-sliced vGPU types, largest first
VGPU_TYPES: dict[str, tuple[VgpuType, ...]] = {
    "h100": _ladder(
        "h100",
        "H100",
        [(80, 1), (40, 2), (20, 4), (16, 5), (10, 8), (8, 10), (5, 16), (4, 20)],
        _HOPPER,
        confirmed=False,
    ),
    "h200": _ladder(
        "h200",
        "H200",
        [(141, 1), (70, 2), (35, 4), (28, 5), (17, 8), (14, 10), (8, 16), (7, 20)],
        _HOPPER,
        confirmed=False,
    ),
    "v100": _ladder("v100", "V100L", [(16, 1), (8, 2), (4, 4)], _VOLTA, confirmed=True),
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
