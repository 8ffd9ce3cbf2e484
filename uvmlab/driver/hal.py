"""Per-GPU facts the model needs (docs/architecture.md; the driver's uvm_hal.c and uvm_<arch>*.c).

A :class:`GpuSpec` holds what the driver learns from the hardware and from RM at GPU
registration: memory size, page sizes, fault-buffer capacity, uTLB count, which links exist and
who can map whose memory; :mod:`uvmlab.driver.hal_arch` holds what its architecture fixes.

Two GPUs were measured by the project (H100 80GB HBM3 and H200, both PCIe Gen5 x16 with NVLink
disabled, driver 580.159.04): their memory sizes and SM counts come from nvidia-smi and CUDA on
those machines and their timing profiles are calibrated. The others (GTX 1080 Ti, P100, V100,
A100, B200, RTX 5090) are described from NVIDIA's datasheets and whitepapers, cited per field in
``sources``; their timing profiles are estimates (``docs/hal.md`` lists every source).

All machines modelled are x86-64 with 4 KiB pages and no ATS, so the CPU cannot map GPU memory,
the GPU can map system memory, and access-counter migrations are off by default even where the
architecture has access counters (uvm_gpu_access_counters.c; docs/model.md).

Values the UVM source does not fix are marked *unconfirmed* where they are set.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from uvmlab.core.errors import UvmlabError
from uvmlab.driver.hal_arch import ARCHS, LINKS, ArchHal

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
    #: misses one SM's uTLB writes to the fault buffer back to back before the next SM's: the
    #: buffer receives ``fault_report_burst`` misses of every SM in turn (engine/arrival.py). Not
    #: documented by NVIDIA; 8 minimised the error of the fault-group count against CUPTI's
    #: over the H200's measured training kernels (1, 4, 8, 16, 32 tried; docs/validation.md)
    fault_report_burst: int = 8
    #: time between two rounds of fault reports after a replay (each SM's uTLB writes
    #: ``fault_report_burst`` entries per round), in ns (engine/arrival.py, driver/fault_buffer.py).
    #: Not documented by NVIDIA. The driver reads PUT ``replay_ns`` (~10 µs) after pushing a
    #: replay; rounds written after that survive a CACHED_PUT flush as stale entries, which at
    #: 6 µs and 3 rounds already double the stream kernels' faults against the measured counts.
    #: With ``utlb_fault_slots`` = 2 rounds the calibration figures are the same for 0-5 µs.
    fault_report_interval_ns: int = 4000
    #: misses one SM's uTLB reports per replay; its other stalled warps wait in the uTLB and
    #: retry at the next replay, so a kernel on few SMs fills small batches (8 SMs: 128 entries).
    #: Not documented by NVIDIA; 16 minimised the fault-group error on both GPUs' ``calib``
    #: kernels (8, 16, 24, 32, 48 tried with bursts of 4, 8 and 16; docs/validation.md).
    utlb_fault_slots: int = 16
    has_access_counters: bool = True
    link: str = "pcie5"
    can_map_sysmem: bool = True
    cpu_can_map_vidmem: bool = False
    ats: bool = False
    source: str = ""
    # Added with the per-architecture HAL (hal_arch.py): raw link and memory rates, the peer
    # link, and where each fact comes from. ``link`` is the host (CPU-GPU) link.
    memory_gbps: float = 0.0
    peer_link: str = ""  # NVLink generation for GPU peers ("nvlink4"); "" = peers over PCIe
    peer_links: int = 0
    pcie_p2p: bool = True  # can peers map each other's memory over PCIe (RM's P2P support)
    calibrated: bool = False  # its timing profile was measured on this GPU
    sources: dict[str, str] = field(default_factory=dict)
    # GPU idle time when the runlist scheduler switches between two contexts (TSGs) of
    # different processes or vGPUs, used by uvmlab.vgpu's time slicer. *Unconfirmed* model
    # constant: no public figure for a TSG switch; gpu_ext reports 312 µs for a preempt
    # requested through an ioctl, which includes far more than the switch itself.
    context_switch_ns: int = 25_000

    def __post_init__(self) -> None:
        if self.memory_bytes <= 0 or not 0 < self.free_bytes <= self.memory_bytes:
            raise UvmlabError(
                f"GPU {self.name!r}: need 0 < free_bytes <= memory_bytes, got "
                f"{self.free_bytes} and {self.memory_bytes}"
            )
        for field_name in ("big_page_size", "root_chunk_size"):
            v = getattr(self, field_name)
            if v <= 0 or v & (v - 1):
                raise UvmlabError(f"GPU {self.name!r}: {field_name} must be a power of two, got {v}")
        if min(self.fault_buffer_entries, self.utlb_count, self.sm_count, self.fault_report_burst) < 1:
            raise UvmlabError(f"GPU {self.name!r}: fault buffer, uTLB, SM and burst counts must be >= 1")
        if self.utlb_fault_slots < 1 or self.fault_report_interval_ns < 0:
            raise UvmlabError(
                f"GPU {self.name!r}: utlb_fault_slots must be >= 1 and fault_report_interval_ns >= 0"
            )
        if (
            self.arch not in ARCHS
            or self.link not in LINKS
            or (self.peer_link and self.peer_link not in LINKS)
            or self.peer_links < 0
        ):
            raise UvmlabError(
                f"GPU {self.name!r}: unknown architecture or link "
                f"({self.arch!r}, {self.link!r}, {self.peer_link!r})"
            )

    @property
    def arch_hal(self) -> ArchHal:
        """The architecture's HAL row (uvm_hal.c, uvm_<arch>.c)."""
        return ARCHS[self.arch]

    @property
    def host_link_gbps(self) -> float:
        """Raw CPU-GPU link bandwidth per direction (GB/s)."""
        return LINKS[self.link].gbps_per_link

    @property
    def peer_gbps(self) -> float:
        """Raw GPU-GPU bandwidth per direction (GB/s): all NVLink links, else the PCIe link
        (0 when the GPUs cannot reach each other)."""
        if self.peer_link:
            return LINKS[self.peer_link].gbps_per_link * self.peer_links
        return self.host_link_gbps if self.pcie_p2p else 0.0

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


_RESERVE_ESTIMATE = 81559 * MiB - 81079 * MiB  # what RM kept on the measured H100 (480 MiB)

_UNCONFIRMED_BUFFER = (
    "unconfirmed: the capacity is the hardware's reset value of the fault "
    "buffer size register, read by RM at boot (not in any source); "
    "placeholder 8192 entries, only caps the batch at 256"
)


def _datasheet_gpu(
    *,
    name: str,
    marketing_name: str,
    arch: str,
    memory_mib: int,
    sm_count: int,
    gpcs: int,
    max_tpc_per_gpc: int,
    link: str,
    memory_gbps: float,
    peer_link: str = "",
    peer_links: int = 0,
    pcie_p2p: bool = True,
    sources: dict[str, str],
) -> GpuSpec:
    """A GPU no one here has measured: capacity and counts from its datasheet / whitepaper, the
    free memory estimated with the H100's measured RM reserve, the uTLB count from its
    architecture's formula (hal_arch.ArchHal.utlb_count)."""
    return GpuSpec(
        name=name,
        marketing_name=marketing_name,
        arch=arch,
        memory_bytes=memory_mib * MiB,
        free_bytes=memory_mib * MiB - _RESERVE_ESTIMATE,
        sm_count=sm_count,
        utlb_count=ARCHS[arch].utlb_count(gpcs, max_tpc_per_gpc),
        has_access_counters=ARCHS[arch].access_counters.startswith(("yes", "when")),
        link=link,
        memory_gbps=memory_gbps,
        peer_link=peer_link,
        peer_links=peer_links,
        pcie_p2p=pcie_p2p,
        calibrated=False,
        source=sources["memory_bytes"],
        sources={
            "free_bytes": "estimate: memory_bytes minus the 480 MiB RM kept on the measured "
            "H100 (nvidia-smi total - free)",
            "fault_buffer_entries": _UNCONFIRMED_BUFFER,
            "utlb_count": f"{ARCHS[arch].utlbs_per_gpc} uTLBs per GPC x {gpcs} GPCs "
            f"({ARCHS[arch].sources['utlbs_per_gpc']})",
            **sources,
        },
    )


GPUS: dict[str, GpuSpec] = {
    "h200": GpuSpec(
        name="h200",
        marketing_name="NVIDIA H200",
        memory_bytes=143771 * MiB,
        free_bytes=143156 * MiB,
        sm_count=132,
        memory_gbps=4800.0,
        peer_link="nvlink4",
        peer_links=18,
        calibrated=True,
        source="uvmlab/validation/data/probes/h200-uvm-probe.json (smi: 143771 MiB total, 143156 MiB free, "
        "PCIe gen 5 x16, driver 580.159.04)",
        sources={
            "memory_bytes": "nvidia-smi on the measured H200: 143771 MiB total, 143156 MiB free",
            "link": "measured H200: PCIe gen 5 x16 (nvidia-smi), NVLink disabled on that machine",
            "memory_gbps": "NVIDIA H200 Tensor Core GPU datasheet: 4.8 TB/s HBM3e",
            "peer_link": "NVIDIA H200 datasheet: NVLink 900 GB/s (18 fourth-generation links) on "
            "HGX H200; the model uses it between H200 peers",
            "sm_count": "CUDA device attribute MultiProcessorCount on the measured H200: 132",
            "utlb_count": "unconfirmed: GH100 full die 8 GPCs x 9 TPCs (NVIDIA H100 Tensor Core "
            "GPU Architecture whitepaper), 2 uTLBs per TPC + 1 (uvm_hopper_fault_buffer.h)",
            "fault_buffer_entries": _UNCONFIRMED_BUFFER,
        },
    ),
    "h100": GpuSpec(
        name="h100",
        marketing_name="NVIDIA H100 80GB HBM3",
        memory_bytes=81559 * MiB,
        free_bytes=81079 * MiB,
        sm_count=132,
        memory_gbps=3350.0,
        peer_link="nvlink4",
        peer_links=18,
        calibrated=True,
        source="uvmlab/validation/data/probes/h100-uvm-probe.json (smi: 81559 MiB total, 81079 MiB free, "
        "PCIe gen 5 x16, driver 580.159.04)",
        sources={
            "memory_bytes": "nvidia-smi on the measured H100: 81559 MiB total, 81079 MiB free",
            "link": "measured H100: PCIe gen 5 x16 (nvidia-smi)",
            "memory_gbps": "NVIDIA H100 Tensor Core GPU datasheet (SXM): 3.35 TB/s HBM3",
            "peer_link": "NVIDIA H100 Tensor Core GPU Architecture whitepaper: 18 fourth-"
            "generation NVLink links, 900 GB/s",
            "sm_count": "CUDA device attribute MultiProcessorCount on the measured H100: 132",
            "utlb_count": "unconfirmed: GH100 full die 8 GPCs x 9 TPCs (H100 whitepaper), "
            "2 uTLBs per TPC + 1 (uvm_hopper_fault_buffer.h)",
            "fault_buffer_entries": _UNCONFIRMED_BUFFER,
        },
    ),
    "gtx1080ti": _datasheet_gpu(
        name="gtx1080ti",
        marketing_name="NVIDIA GeForce GTX 1080 Ti",
        arch="pascal",
        memory_mib=11 * 1024,
        sm_count=28,
        gpcs=6,
        max_tpc_per_gpc=5,
        link="pcie3",
        memory_gbps=484.0,
        sources={
            "memory_bytes": "NVIDIA GeForce GTX 1080 Ti specifications: 11 GB GDDR5X",
            "memory_gbps": "GeForce GTX 1080 Ti specifications: 484 GB/s (11 Gbps, 352-bit)",
            "sm_count": "GeForce GTX 1080 Ti specifications: 3584 CUDA cores = 28 SMs x 128",
            "link": "GeForce GTX 1080 Ti specifications: PCI Express 3.0 x16; no NVLink",
            "gpcs": "unconfirmed: GP102 as 6 GPCs of 5 single-SM TPCs (the GeForce GTX 1080 "
            "whitepaper's GP104 layout, 4 GPCs, scaled to GP102's 30 SMs); RM reports it",
        },
    ),
    "p100": _datasheet_gpu(
        name="p100",
        marketing_name="NVIDIA Tesla P100 SXM2 16GB",
        arch="pascal",
        memory_mib=16 * 1024,
        sm_count=56,
        gpcs=6,
        max_tpc_per_gpc=5,
        link="pcie3",
        memory_gbps=732.0,
        peer_link="nvlink1",
        peer_links=4,
        sources={
            "memory_bytes": "NVIDIA Tesla P100 whitepaper: 16 GB HBM2",
            "memory_gbps": "Tesla P100 whitepaper: 732 GB/s",
            "sm_count": "Tesla P100 whitepaper: 56 SMs enabled of GP100's 60",
            "gpcs": "Tesla P100 whitepaper: GP100 has 6 GPCs of 5 TPCs (2 SMs each)",
            "link": "Tesla P100 whitepaper: PCIe Gen3 x16 to the host",
            "peer_link": "Tesla P100 whitepaper: 4 NVLink links, 160 GB/s bidirectional",
        },
    ),
    "v100": _datasheet_gpu(
        name="v100",
        marketing_name="NVIDIA Tesla V100 SXM2 16GB",
        arch="volta",
        memory_mib=16 * 1024,
        sm_count=80,
        gpcs=6,
        max_tpc_per_gpc=7,
        link="pcie3",
        memory_gbps=900.0,
        peer_link="nvlink2",
        peer_links=6,
        sources={
            "memory_bytes": "NVIDIA Tesla V100 GPU Architecture whitepaper: 16 GB HBM2",
            "memory_gbps": "Tesla V100 whitepaper: 900 GB/s",
            "sm_count": "Tesla V100 whitepaper: 80 SMs enabled of GV100's 84",
            "gpcs": "Tesla V100 whitepaper: GV100 has 6 GPCs of 7 TPCs (2 SMs each)",
            "link": "Tesla V100 whitepaper: PCIe Gen3 to the host",
            "peer_link": "Tesla V100 whitepaper: 6 NVLink 2.0 links, 300 GB/s in total",
        },
    ),
    "a100": _datasheet_gpu(
        name="a100",
        marketing_name="NVIDIA A100-SXM4-40GB",
        arch="ampere",
        memory_mib=40 * 1024,
        sm_count=108,
        gpcs=8,
        max_tpc_per_gpc=8,
        link="pcie4",
        memory_gbps=1555.0,
        peer_link="nvlink3",
        peer_links=12,
        sources={
            "memory_bytes": "NVIDIA A100 Tensor Core GPU Architecture whitepaper: 40 GB HBM2",
            "memory_gbps": "A100 whitepaper: 1555 GB/s",
            "sm_count": "A100 whitepaper: 108 SMs enabled of GA100's 128",
            "gpcs": "A100 whitepaper: GA100 full die has 8 GPCs of 8 TPCs (maxGpcCount = 8)",
            "link": "A100 whitepaper: PCIe Gen 4 to the host",
            "peer_link": "A100 whitepaper: 12 third-generation NVLink links, 600 GB/s in total",
        },
    ),
    "b200": _datasheet_gpu(
        name="b200",
        marketing_name="NVIDIA B200",
        arch="blackwell",
        memory_mib=180 * 1024,
        sm_count=148,
        gpcs=8,
        max_tpc_per_gpc=9,
        link="pcie5",
        memory_gbps=8000.0,
        peer_link="nvlink5",
        peer_links=18,
        sources={
            "memory_bytes": "NVIDIA DGX B200 user guide: 8 B200 GPUs with 1,440 GB in total",
            "memory_gbps": "NVIDIA DGX B200 datasheet: 64 TB/s of HBM3e bandwidth over 8 GPUs",
            "sm_count": "unconfirmed: 148 SMs as reported by third parties; NVIDIA's datasheet "
            "does not give it",
            "gpcs": "unconfirmed: GH100's 8 GPCs x 9 TPCs carried over (not published)",
            "link": "NVIDIA DGX B200 user guide: the host CPUs (Xeon 8570) are PCIe Gen5, so the "
            "GPU-host link runs at Gen5 there",
            "peer_link": "NVIDIA DGX B200 user guide / Blackwell technical brief: fifth-"
            "generation NVLink, 1.8 TB/s per GPU (18 links)",
        },
    ),
    "rtx5090": _datasheet_gpu(
        name="rtx5090",
        marketing_name="NVIDIA GeForce RTX 5090",
        arch="blackwell",
        memory_mib=32 * 1024,
        sm_count=170,
        gpcs=12,
        max_tpc_per_gpc=8,
        link="pcie5",
        memory_gbps=1792.0,
        pcie_p2p=False,
        sources={
            "memory_bytes": "NVIDIA GeForce RTX 5090 specifications: 32 GB GDDR7",
            "memory_gbps": "NVIDIA RTX Blackwell GPU Architecture whitepaper: 1792 GB/s",
            "sm_count": "GeForce RTX 5090 specifications: 21760 CUDA cores = 170 SMs x 128",
            "gpcs": "RTX Blackwell GPU Architecture whitepaper: GB202 full die has 12 GPCs of 8 TPCs",
            "link": "GeForce RTX 5090 specifications: PCI Express Gen 5; no NVLink",
            "pcie_p2p": "unconfirmed: peer-to-peer over PCIe is not offered on GeForce boards "
            "of this generation; the model gives RTX 5090 peers no peer mappings",
        },
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
