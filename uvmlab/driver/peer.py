"""Who can map and copy whose memory when one VA space spans several GPUs (uvm_va_space.c).

When GPUs are registered in a VA space, the driver enables peer access between every pair that
RM reports as peers (``enable_peers`` in uvm_va_space.c):

* ``can_access`` and ``accessible_from`` are set both ways, so either GPU may map the other's
  memory (a *peer mapping*, served over the link on every access);
* ``can_copy_from`` is set both ways when the GPUs have a peer copy mode, so a migration copies
  GPU to GPU directly (``block_copy_resident_pages``); otherwise the pages are staged through
  CPU memory: copied down to sysmem, then up to the destination;
* over NVLink (``uvm_parent_gpu_peer_link_type`` >= NVLINK_1) the pair also gets
  ``has_fast_link`` and ``has_native_atomics``: an NVLink peer is "closest" before the CPU and
  keeps atomics on a peer mapping; a PCIe peer maps read / write only.

The CPU never maps GPU memory on the x86 platforms modelled (no ATS, no C2C); every GPU maps
sysmem. The closest-copy order (``uvm_processor_mask_find_closest_id``) is: the processor
itself, then fast-link peers, then other accessible GPUs, then the CPU.

Every GPU of a model run is the same part (one ``GpuSpec``); its peer link comes from the HAL
(``GpuSpec.peer_link``, ``peer_links``, ``pcie_p2p``). Copy bandwidth over a peer link is the
link's raw rate times :data:`PEER_COPY_EFFICIENCY`, an *estimate*: no multi-GPU machine was
measured for the project.
"""

from __future__ import annotations

import numpy as np

from uvmlab.driver.hal import GpuSpec

CPU = 0

#: Share of a link's raw rate that copies reach: the measured H100's pinned host-to-device copy
#: (54.8 GB/s, timing profile h100-pcie5) over its PCIe Gen5 x16 link's 63 GB/s. *Estimate* for
#: peer links, which were not measured.
PEER_COPY_EFFICIENCY = 54.78 / 63.0


class Topology:
    """Processor relationships of one VA space: ``n_gpus`` GPUs of the part ``spec`` plus the CPU.

    Processor ids: 0 is the CPU, 1..n_gpus are the GPUs. ``can_access[p, q]``: p can map memory
    resident on q; ``can_copy_from[p, q]``: a copy engine of p can copy from q directly;
    ``native_atomics[p, q]``; ``fast_link[p, q]``.
    """

    def __init__(self, n_gpus: int, spec: GpuSpec) -> None:
        n = 1 + n_gpus
        self.n_gpus = n_gpus
        self.spec = spec
        eye = np.eye(n, dtype=bool)
        self.can_access = eye.copy()
        self.can_copy_from = eye.copy()
        self.native_atomics = eye.copy()
        self.fast_link = np.zeros((n, n), dtype=bool)
        gpus = np.arange(1, n)
        if spec.can_map_sysmem:
            self.can_access[gpus, CPU] = True
        self.can_copy_from[gpus, CPU] = True  # a GPU's copy engines reach sysmem
        self.can_copy_from[CPU, gpus] = True  # ... and copy back down (CPU destinations)
        if spec.cpu_can_map_vidmem:
            self.can_access[CPU, gpus] = True
        self.peer_gbps = spec.peer_gbps * PEER_COPY_EFFICIENCY
        # a touch of a peer's memory costs a sysmem touch times this (raw host / peer link rate)
        self.peer_touch_factor = spec.host_link_gbps / spec.peer_gbps if spec.peer_gbps else 1.0
        if n_gpus > 1 and spec.peer_gbps > 0:
            peers = ~eye
            peers[CPU, :] = peers[:, CPU] = False
            self.can_access |= peers
            self.can_copy_from |= peers
            if spec.peer_link:  # NVLink: fast link and native atomics
                self.fast_link |= peers
                self.native_atomics |= peers
        # closest-copy order per processor (uvm_processor_mask_find_closest_id)
        self.closest_order: list[list[int]] = [self._closest(p) for p in range(n)]
        # read on every block copy and thrashing decision: plain lists, computed once
        self._copy_sources = [
            [q for q in self.closest_order[d] if q != d and self.can_copy_from[d, q]] for d in range(n)
        ]
        self._fast = ((self.fast_link & self.native_atomics) | eye).tolist()

    def _closest(self, p: int) -> list[int]:
        others = [q for q in range(1, self.n_gpus + 1) if q != p]
        fast = [q for q in others if self.fast_link[p, q]]
        reach = [q for q in others if not self.fast_link[p, q] and self.can_access[p, q]]
        rest = [q for q in others if q not in fast and q not in reach]
        cpu = [] if p == CPU else [CPU]
        return [p, *fast, *reach, *cpu, *rest]

    def fast_access(self, p: int, q: int) -> bool:
        """``p`` is in ``q``'s fast set (``thrashing_processors_have_fast_access_to``: a fast link
        and native atomics, or ``q`` itself)."""
        return self._fast[p][q]

    def copy_sources(self, dest: int) -> list[int]:
        """The processors a copy to ``dest`` reads from directly, closest first
        (``block_copy_resident_pages``: the CPU and, with a peer copy mode, peers)."""
        return self._copy_sources[dest]


def peer_counter_names(n_gpus: int) -> list[str]:
    """Counters a run with several GPUs adds: GPU-to-GPU bytes in total, by cause, and per
    ordered pair (``bytes_gpu0_to_gpu1``)."""
    names = ["bytes_dtod", *(f"bytes_dtod_{c}" for c in DTOD_CAUSES)]
    for s in range(n_gpus):
        for d in range(n_gpus):
            if s != d:
                names.append(f"bytes_gpu{s}_to_gpu{d}")
    return names


#: causes of peer copies (evictions always go to sysmem)
DTOD_CAUSES = ("fault", "prefetch", "user", "access_counter")
