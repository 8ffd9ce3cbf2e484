"""What differs between GPU architectures, as the driver sees it (uvm_hal.c, uvm_<arch>.c).

The UVM driver keeps one table of operations per architecture (``uvm_hal.c``: each row names a
parent and inherits every operation it leaves empty) and one ``uvm_hal_<arch>_arch_init_properties``
function per architecture that sets the parent GPU's capabilities. :class:`ArchHal` holds the
facts of those files that change what the model does or what a user compares:

* whether GPU faults are **replayable** (Pascal and later) and whether there is a separate
  **non-replayable** fault buffer (Volta and later);
* the **fault buffer**: the class of its entries and their size (32 bytes on every architecture
  here), and how many uTLBs feed it (``utlb_count`` = GPCs x uTLBs per GPC, which sets how
  faults from different SMs coalesce);
* **access counters**: whether this UVM services them on that architecture;
* hardware **prefetch faults**, **precise VA cancel**, the GPU **page sizes** and the **big page**;
* how peers copy (``peer_copy_mode``: virtual or physical addressing) and the VA width.

The fault buffer's *capacity* is not in any source: RM reads the hardware's reset value of the
fault-buffer size register at boot (``kgmmuSetAndGetDefaultFaultBufferSize`` in RM,
``uvm_gpu_replayable_faults.c`` divides it by the entry size). Every GPU spec therefore marks its
capacity *unconfirmed*; in the model it only caps the batch size (``min(256, capacity)``) and
decides when the buffer overflows.

Links (:data:`LINKS`): the raw per-direction bandwidth of one x16 PCIe link or of one NVLink
link of each generation, from the PCI-SIG base specifications and NVIDIA's architecture
whitepapers. A GPU spec multiplies the per-link figure by its link count; the cost model applies
an efficiency to turn raw link rates into copy bandwidth where no GPU was measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KiB = 1 << 10
MiB = 1 << 20

PAGE_SIZES_PASCAL = (4 * KiB, 64 * KiB, 2 * MiB)
PAGE_SIZES_AMPERE = (4 * KiB, 64 * KiB, 2 * MiB, 512 * MiB)


@dataclass(frozen=True, kw_only=True)
class ArchHal:
    """One architecture's row of the driver's HAL: the capabilities the model depends on."""

    name: str
    chips: str  # the architecture ids RM reports (NV2080_CTRL_MC_ARCH_INFO_ARCHITECTURE_*)
    replayable_faults: bool
    non_replayable_faults: bool
    access_counters: str  # "no", "yes", or how the driver decides
    prefetch_faults: bool  # hardware prefetch instructions raise (PREFETCH-type) faults
    fault_cancel_va: bool  # precise per-VA cancel of fatal faults (else a global cancel)
    fault_entry_class: str
    fault_entry_bytes: int
    utlbs_per_gpc: str  # formula over RM's per-GPC TPC count
    utlb_gpcs: str  # which GPC count RM reports that multiplies it
    page_sizes: tuple[int, ...]
    big_page_size: int
    peer_copy_mode: str
    va_bits: int
    sources: dict[str, str] = field(default_factory=dict)

    def utlb_count(self, gpcs: int, max_tpc_per_gpc: int) -> int:
        """``utlb_count`` = GPCs x uTLBs per GPC (uvm_<arch>_fault_buffer.h): one uTLB per TPC
        plus one RGG uTLB per GPC up to Volta, two per TPC (plus the RGG) from Ampere on."""
        per_tpc = 1 if self.utlbs_per_gpc.startswith("maxTpcPerGpcCount + 1") else 2
        return gpcs * (max_tpc_per_gpc * per_tpc + 1)


_COMMON_SOURCES = {
    "fault_entry_bytes": "clb069.h NVB069_FAULT_BUF_SIZE = 32 (Pascal); clc369.h NVC369_BUF_SIZE "
    "= 32 (Volta and later); uvm_hal.c fault_buffer_table: entry_size is Pascal's for every "
    "later row",
    "big_page_size": "uvm_pascal_mmu.c / uvm_volta_mmu.c / uvm_ampere_mmu.c / uvm_hopper_mmu.c / "
    "uvm_blackwell_mmu.c: the MMU mode accepts 64 KiB or 128 KiB big pages and returns no mode "
    "for 128 KiB on Pascal and later",
}

ARCHS: dict[str, ArchHal] = {
    "pascal": ArchHal(
        name="pascal",
        chips="GP100 (GP100, GP10x)",
        replayable_faults=True,
        non_replayable_faults=False,
        access_counters="no",
        prefetch_faults=False,
        fault_cancel_va=False,
        fault_entry_class="MAXWELL_FAULT_BUFFER_A (0xb069)",
        fault_entry_bytes=32,
        utlbs_per_gpc="maxTpcPerGpcCount + 1",
        utlb_gpcs="gpcCount",
        page_sizes=PAGE_SIZES_PASCAL,
        big_page_size=64 * KiB,
        peer_copy_mode="virtual",
        va_bits=49,
        sources={
            **_COMMON_SOURCES,
            "capabilities": "uvm_pascal.c uvm_hal_pascal_arch_init_properties: replayable faults "
            "yes, non-replayable no, access counters no, fault_cancel_va no, peer copy VIRTUAL; "
            "prefetch faults only with uvm_force_prefetch_fault_support",
            "utlbs_per_gpc": "uvm_pascal_fault_buffer.h uvm_pascal_get_utlbs_per_gpc (one LTP "
            "uTLB per TPC, one RGG uTLB per GPC); uvm_pascal.c multiplies by gpcCount",
            "page_sizes": "uvm_pascal_mmu.c page_sizes_pascal: 2M | 64K | 4K",
            "fault_entry_class": "uvm_pascal_fault_buffer.c parses MAXWELL_FAULT_BUFFER_A (clb069.h)",
        },
    ),
    "volta": ArchHal(
        name="volta",
        chips="GV100",
        replayable_faults=True,
        non_replayable_faults=True,
        access_counters="no (hardware has them; this UVM's access_counter_buffer_table has "
        "operations only from Turing on)",
        prefetch_faults=True,
        fault_cancel_va=True,
        fault_entry_class="MMU_FAULT_BUFFER (0xc369)",
        fault_entry_bytes=32,
        utlbs_per_gpc="maxTpcPerGpcCount + 1",
        utlb_gpcs="gpcCount",
        page_sizes=PAGE_SIZES_PASCAL,
        big_page_size=64 * KiB,
        peer_copy_mode="virtual",
        va_bits=49,
        sources={
            **_COMMON_SOURCES,
            "capabilities": "uvm_volta.c uvm_hal_volta_arch_init_properties: replayable and "
            "non-replayable faults, fault_cancel_va, prefetch faults, peer copy VIRTUAL",
            "access_counters": "uvm_hal.c access_counter_buffer_table: GV100 inherits GP100's "
            "(unsupported) row, Turing (TU100) is the first with operations; uvm_gpu.c sets "
            "access_counters_supported from RM's accessCntrBufferCount",
            "utlbs_per_gpc": "uvm_volta_fault_buffer.h uvm_volta_get_utlbs_per_gpc (up to 8 TPCs "
            "per GPC, one LTP uTLB each, plus one RGG uTLB); uvm_volta.c multiplies by gpcCount",
            "fault_entry_class": "uvm_volta_fault_buffer.c parses MMU_FAULT_BUFFER packets (clc369.h)",
        },
    ),
    "ampere": ArchHal(
        name="ampere",
        chips="GA100 (GA100, GA10x)",
        replayable_faults=True,
        non_replayable_faults=True,
        access_counters="yes (when RM reports an access counter buffer)",
        prefetch_faults=True,
        fault_cancel_va=True,
        fault_entry_class="MMU_FAULT_BUFFER (0xc369)",
        fault_entry_bytes=32,
        utlbs_per_gpc="maxTpcPerGpcCount * 2 + 1",
        utlb_gpcs="maxGpcCount",
        page_sizes=PAGE_SIZES_AMPERE,
        big_page_size=64 * KiB,
        peer_copy_mode="uvm_peer_copy (default physical)",
        va_bits=49,
        sources={
            **_COMMON_SOURCES,
            "capabilities": "uvm_ampere.c uvm_hal_ampere_arch_init_properties: replayable and "
            "non-replayable faults, access counters, fault_cancel_va, prefetch faults, SMC, "
            "peer copy mode from the uvm_peer_copy parameter (uvm_gpu.c: 'phys' by default, "
            "valid for Ampere and later)",
            "access_counters": "uvm_hal.c access_counter_buffer_table: GA100 inherits Turing's "
            "operations; uvm_gpu.c: access_counters_supported = accessCntrBufferCount != 0",
            "utlbs_per_gpc": "uvm_ampere_fault_buffer.h uvm_ampere_get_utlbs_per_gpc (two LTP "
            "uTLBs per TPC, up to 8 TPCs, plus one RGG); uvm_ampere.c multiplies by maxGpcCount",
            "page_sizes": "uvm_ampere_mmu.c page_sizes_ampere: 512M | 2M | 64K | 4K",
        },
    ),
    "hopper": ArchHal(
        name="hopper",
        chips="GH100",
        replayable_faults=True,
        non_replayable_faults=True,
        access_counters="yes (when RM reports an access counter buffer)",
        prefetch_faults=True,
        fault_cancel_va=True,
        fault_entry_class="MMU_FAULT_BUFFER (0xc369)",
        fault_entry_bytes=32,
        utlbs_per_gpc="maxTpcPerGpcCount * 2 + 1",
        utlb_gpcs="maxGpcCount",
        page_sizes=PAGE_SIZES_AMPERE,
        big_page_size=64 * KiB,
        peer_copy_mode="uvm_peer_copy (default physical); virtual on coherent (C2C) parts",
        va_bits=57,
        sources={
            **_COMMON_SOURCES,
            "capabilities": "uvm_hopper.c uvm_hal_hopper_arch_init_properties: replayable and "
            "non-replayable faults, access counters, fault_cancel_va, prefetch faults, 57-bit "
            "VAs (max_channel_va = 1 << 57), peer copy VIRTUAL when coherent, else uvm_peer_copy",
            "utlbs_per_gpc": "uvm_hopper_fault_buffer.h uvm_hopper_get_utlbs_per_gpc (2 per TPC "
            "+ 1); uvm_hopper.c multiplies by maxGpcCount",
            "fault_entry_class": "uvm_hal.c fault_buffer_table: GH100 overrides only get_ve_id "
            "and the MMU engine type; entries are Volta's MMU_FAULT_BUFFER packets",
        },
    ),
    "blackwell": ArchHal(
        name="blackwell",
        chips="GB100, GB200 (GB10x, GB20x)",
        replayable_faults=True,
        non_replayable_faults=True,
        access_counters="when RM reports an access counter buffer (accessCntrBufferCount)",
        prefetch_faults=True,
        fault_cancel_va=True,
        fault_entry_class="MMU_FAULT_BUFFER (0xc369)",
        fault_entry_bytes=32,
        utlbs_per_gpc="maxTpcPerGpcCount * 2 + 1",
        utlb_gpcs="maxGpcCount",
        page_sizes=PAGE_SIZES_AMPERE,
        big_page_size=64 * KiB,
        peer_copy_mode="uvm_peer_copy (default physical)",
        va_bits=57,
        sources={
            **_COMMON_SOURCES,
            "capabilities": "uvm_blackwell.c uvm_hal_blackwell_arch_init_properties: replayable "
            "and non-replayable faults, fault_cancel_va, prefetch faults, 57-bit VAs, a peer "
            "identity VA window, peer copy mode from uvm_peer_copy; access_counters_supported is "
            "not set there (uvm_gpu.c takes it from RM's accessCntrBufferCount)",
            "utlbs_per_gpc": "uvm_blackwell_fault_buffer.h uvm_blackwell_get_utlbs_per_gpc (up to "
            "10 TPCs per GPC, 2 LTP uTLBs each, plus one RGG); uvm_blackwell.c x maxGpcCount",
            "fault_entry_class": "uvm_hal.c fault_buffer_table: GB100 overrides get_fault_type and "
            "the MMU engine type; entries are Volta's MMU_FAULT_BUFFER packets",
        },
    ),
}


@dataclass(frozen=True, kw_only=True)
class Link:
    """One link kind: raw bandwidth per direction of one link (x16 for PCIe), in GB/s."""

    name: str
    kind: str  # "pcie" or "nvlink"
    generation: int
    gbps_per_link: float
    source: str


LINKS: dict[str, Link] = {
    "pcie3": Link(
        name="pcie3",
        kind="pcie",
        generation=3,
        gbps_per_link=15.75,
        source="PCI Express Base Specification 3.0: 8 GT/s per lane, 128b/130b "
        "encoding, x16 = 15.75 GB/s per direction",
    ),
    "pcie4": Link(
        name="pcie4",
        kind="pcie",
        generation=4,
        gbps_per_link=31.5,
        source="PCI Express Base Specification 4.0: 16 GT/s per lane, x16 = 31.5 GB/s per direction",
    ),
    "pcie5": Link(
        name="pcie5",
        kind="pcie",
        generation=5,
        gbps_per_link=63.0,
        source="PCI Express Base Specification 5.0: 32 GT/s per lane, x16 = 63 GB/s per direction",
    ),
    "nvlink1": Link(
        name="nvlink1",
        kind="nvlink",
        generation=1,
        gbps_per_link=20.0,
        source="NVIDIA Tesla P100 whitepaper: 4 NVLink links, 160 GB/s "
        "bidirectional in total = 20 GB/s per link per direction",
    ),
    "nvlink2": Link(
        name="nvlink2",
        kind="nvlink",
        generation=2,
        gbps_per_link=25.0,
        source="NVIDIA Tesla V100 GPU Architecture whitepaper: 6 NVLink links, 300 "
        "GB/s in total = 25 GB/s per link per direction",
    ),
    "nvlink3": Link(
        name="nvlink3",
        kind="nvlink",
        generation=3,
        gbps_per_link=25.0,
        source="NVIDIA A100 Tensor Core GPU Architecture whitepaper: 12 NVLink links, "
        "600 GB/s in total = 25 GB/s per link per direction",
    ),
    "nvlink4": Link(
        name="nvlink4",
        kind="nvlink",
        generation=4,
        gbps_per_link=25.0,
        source="NVIDIA H100 Tensor Core GPU Architecture whitepaper: 18 NVLink links, "
        "900 GB/s in total = 25 GB/s per link per direction",
    ),
    "nvlink5": Link(
        name="nvlink5",
        kind="nvlink",
        generation=5,
        gbps_per_link=50.0,
        source="NVIDIA Blackwell architecture technical brief: 18 NVLink links, 1.8 "
        "TB/s in total per GPU = 50 GB/s per link per direction",
    ),
}
