"""Host-side costs the GPU's cost profile does not hold: storage and the OS page cache.

``uvmlab.timing`` profiles are measured on the GPU machines (copies over PCIe, fault service,
CPU faults on managed memory). Reading a file also costs storage bandwidth and page-cache work
on the host, which ``uvmlab calibrate`` does not measure (the lab's VMs expose no local NVMe
worth measuring). The defaults below are *assumed* round figures, labelled as such in every
table that uses them; pass your own ``HostCosts`` to change them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from uvmlab.core.errors import UvmlabError


@dataclass(frozen=True)
class HostCosts:
    #: storage read bandwidth, GB/s (= bytes/ns): an NVMe SSD's sequential read (assumed)
    storage_read_gbps: float = 3.0
    #: storage write bandwidth (fsync, writeback), GB/s (assumed)
    storage_write_gbps: float = 2.0
    #: one core copying between the page cache and a user buffer in read()/write() (assumed)
    memcpy_gbps: float = 10.0
    #: one read()/write() system call, per call of up to 2 MiB (assumed)
    syscall_ns: float = 1500.0
    #: looking a page up in the page cache (radix tree) and checking its version (assumed)
    lookup_ns: float = 100.0
    #: a minor CPU fault that maps a page-cache page into the process (assumed)
    cpu_minor_fault_ns: float = 1000.0
    #: setting or clearing one page's tag (dirty, version) in maquire / mrelease (assumed)
    tag_ns: float = 20.0
    #: invalidate_cached_page: unmap one GPU page and invalidate the GPU TLB (assumed)
    gpu_invalidate_ns: float = 2000.0

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if not isinstance(v, int | float) or v < 0 or (k.endswith("gbps") and v == 0):
                raise UvmlabError(f"host cost {k} must be a positive number, got {v!r}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


DEFAULT_HOST_COSTS = HostCosts()
