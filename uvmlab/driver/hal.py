"""Per-GPU facts the model needs (design.md §2; the driver's uvm_hal.c and uvm_<arch>*.c).

A :class:`GpuSpec` holds what the driver learns from the hardware and from RM at GPU
registration: memory size, page sizes, fault-buffer capacity, uTLB count, which links exist and
who can map whose memory. The built-in specs describe the two GPUs the project has measured:

* ``h200``: NVIDIA H200, 143 771 MiB total, 143 156 MiB free at idle
  (``shared/measurements/h200-uvm-probe.json``, ``smi``), PCIe Gen5 x16, NVLink disabled;
* ``h100``: NVIDIA H100 80GB HBM3, 81 559 MiB total, 81 079 MiB free at idle
  (``shared/measurements/h100-uvm-probe.json``, ``smi``), PCIe Gen5 x16.

Both machines are x86-64 with 4 KiB pages and no ATS (``PageableMemoryAccess=0`` in the probe's
device attributes), so the CPU cannot map GPU memory, the GPU can map system memory, and
access-counter migrations are off by default even though Hopper has access counters
(uvm-driver-behavior.md §0, §8).

Values the UVM source does not fix are marked *unconfirmed* where they are set.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from uvmlab.errors import UvmlabError

KiB = 1 << 10
MiB = 1 << 20

#: UVM takes GPU memory from PMA in 2 MiB root chunks (UVM_CHUNK_SIZE_MAX, uvm_pmm_gpu.h).
ROOT_CHUNK_SIZE = 2 * MiB

# Hopper's replayable fault buffer capacity is set by hardware/RM at run time
# (kgmmuSetAndGetDefaultFaultBufferSize reads the reset value of the MMU_FAULT_BUFFER_SIZE
# register; UVM derives max_faults = bufferSize / entry size in uvm_gpu_replayable_faults.c), so
# it is not in the source. *Unconfirmed* placeholder: 8192 entries of 32 bytes (NVC369_BUF_SIZE)
# = 256 KiB. Its only effect in the driver model is max_batch_size = min(uvm_perf_fault_batch_count,
# capacity) and when the buffer can overflow; any capacity >= 256 leaves the default batch size
# at 256, which is what the probe's batches are consistent with.
_HOPPER_FAULT_BUFFER_ENTRIES_UNCONFIRMED = 8192

# uvm_hopper.c: utlb_count = maxGpcCount * utlbs_per_gpc, where uvm_hopper_fault_buffer.h gives
# utlbs_per_gpc = maxTpcPerGpcCount * 2 + 1. With GH100's full-die 8 GPCs x 9 TPCs that is
# 8 * 19 = 152. *Unconfirmed*: RM reports the counts at run time.
_GH100_UTLB_COUNT = 8 * (9 * 2 + 1)


@dataclass(frozen=True, kw_only=True)
class GpuSpec:
    """Facts about one GPU model, as the driver sees them.

    ``memory_bytes`` is the total framebuffer (``nvidia-smi memory.total``); ``free_bytes`` what
    was free with no process running (``memory.free``): RM and the driver's own allocations
    take the difference, so UVM can never use all of ``memory_bytes``.
    """

    name: str
    marketing_name: str
    arch: str = "hopper"
    memory_bytes: int
    free_bytes: int
    big_page_size: int = 64 * KiB
    root_chunk_size: int = ROOT_CHUNK_SIZE
    fault_buffer_entries: int = _HOPPER_FAULT_BUFFER_ENTRIES_UNCONFIRMED
    utlb_count: int = _GH100_UTLB_COUNT
    sm_count: int
    has_access_counters: bool = True
    link: str = "pcie5"
    can_map_sysmem: bool = True
    cpu_can_map_vidmem: bool = False
    ats: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        if self.memory_bytes <= 0 or not 0 < self.free_bytes <= self.memory_bytes:
            raise UvmlabError(
                f"GPU {self.name!r}: need 0 < free_bytes <= memory_bytes, got "
                f"{self.free_bytes} and {self.memory_bytes}"
            )
        for field_name in ("big_page_size", "root_chunk_size"):
            v = getattr(self, field_name)
            if v <= 0 or v & (v - 1):
                raise UvmlabError(
                    f"GPU {self.name!r}: {field_name} must be a power of two, got {v}"
                )
        if self.fault_buffer_entries < 1 or self.utlb_count < 1 or self.sm_count < 1:
            raise UvmlabError(f"GPU {self.name!r}: fault buffer, uTLB and SM counts must be >= 1")

    @property
    def n_root_chunks(self) -> int:
        """Whole 2 MiB root chunks in the free memory: the most UVM could ever hold."""
        return self.free_bytes // self.root_chunk_size

    def fault_batch_size(self, uvm_perf_fault_batch_count: int) -> int:
        """The batch size the driver actually uses on this GPU.

        uvm_gpu_replayable_faults.c (fault_buffer_init_replayable_faults): the parameter is
        raised to at least 1, then capped at the fault buffer's capacity.
        """
        return min(max(uvm_perf_fault_batch_count, 1), self.fault_buffer_entries)


GPUS: dict[str, GpuSpec] = {
    "h200": GpuSpec(
        name="h200",
        marketing_name="NVIDIA H200",
        memory_bytes=143771 * MiB,
        free_bytes=143156 * MiB,
        sm_count=132,
        source="shared/measurements/h200-uvm-probe.json (smi: 143771 MiB total, 143156 MiB free, "
        "PCIe gen 5 x16, driver 580.159.04)",
    ),
    "h100": GpuSpec(
        name="h100",
        marketing_name="NVIDIA H100 80GB HBM3",
        memory_bytes=81559 * MiB,
        free_bytes=81079 * MiB,
        sm_count=132,
        source="shared/measurements/h100-uvm-probe.json (smi: 81559 MiB total, 81079 MiB free, "
        "PCIe gen 5 x16, driver 580.159.04)",
    ),
}


def _normalize(name: str) -> str:
    key = name.strip().lower().replace(" ", "").replace("_", "").replace("-", "")
    return key.removeprefix("nvidia")


def get_gpu(name: str) -> GpuSpec:
    """The built-in spec for ``name`` (case-insensitive; "H200", "nvidia-h200" work too)."""
    key = _normalize(name)
    if key in GPUS:
        return GPUS[key]
    close = difflib.get_close_matches(key, list(GPUS), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise UvmlabError(f"unknown GPU {name!r}{hint} (known: {', '.join(sorted(GPUS))})")
