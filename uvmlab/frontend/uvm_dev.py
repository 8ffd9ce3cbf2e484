"""The modelled ``/dev/nvidia-uvm``: UVM ioctls and mmaps in, IR operations out.

An ioctl stream is another way to write a workload: each call the real driver would act on
becomes the IR operation that drives the same model (``uvmlab.driver``) through the engine:

- ``mmap`` of the UVM file -> ``uvm_mmap`` makes a managed VA range -> alloc (managed);
- ``UVM_SET_PREFERRED_LOCATION`` / ``UVM_UNSET_PREFERRED_LOCATION``, ``UVM_SET_ACCESSED_BY`` /
  ``UVM_UNSET_ACCESSED_BY``, ``UVM_ENABLE_READ_DUPLICATION`` / ``UVM_DISABLE_READ_DUPLICATION``
  -> the range's policy (``uvm_policy.c``) -> advise;
- ``UVM_MIGRATE`` -> ``uvm_migrate`` (``uvm_migrate.c``) -> prefetch;
- ``munmap``, ``UVM_FREE`` -> the range is destroyed -> free.

The checks the driver makes before acting are made here with its status codes:
``UVM_ROUTE_CMD_STACK_INIT_CHECK`` (``uvm_api.h``) answers ``NV_ERR_ILLEGAL_ACTION`` before
``UVM_INITIALIZE``; ``uvm_mmap`` refuses an uninitialised file with -EBADFD; a range not page
aligned or of length 0 (``uvm_api_range_invalid``) or not covered by managed ranges
(``uvm_api_range_type_check``) is ``NV_ERR_INVALID_ADDRESS``; a GPU UUID not registered in the VA
space is ``NV_ERR_INVALID_DEVICE``; registering a GPU twice is ``NV_ERR_INVALID_DEVICE``
(``uvm_va_space_register_gpu``); unknown ``UVM_MIGRATE`` flags are ``NV_ERR_INVALID_ARGUMENT``.
The processor UUID of the CPU is all zeros (``NV_PROCESSOR_UUID_CPU_DEFAULT``).

Kernels do not pass through this boundary (their page faults are serviced inside the driver), so
a workload made from an ioctl stream holds the host-side operations only; ``kernel_hints`` lets
a caller add the kernels it knows about.
"""

from __future__ import annotations

import bisect
import errno
from dataclasses import dataclass, field

from uvmlab.frontend import nvtables as nt
from uvmlab.workload.builder import WorkloadBuilder
from uvmlab.workload.ir import Advice, Workload

PAGE = 4096
S = nt.STATUS
_ADVICE = {
    "UVM_SET_PREFERRED_LOCATION": Advice.SET_PREFERRED_LOCATION,
    "UVM_UNSET_PREFERRED_LOCATION": Advice.UNSET_PREFERRED_LOCATION,
    "UVM_SET_ACCESSED_BY": Advice.SET_ACCESSED_BY,
    "UVM_UNSET_ACCESSED_BY": Advice.UNSET_ACCESSED_BY,
    "UVM_ENABLE_READ_DUPLICATION": Advice.SET_READ_MOSTLY,
    "UVM_DISABLE_READ_DUPLICATION": Advice.UNSET_READ_MOSTLY,
}
_UUID_FIELD = {
    "UVM_SET_PREFERRED_LOCATION": "preferredLocation",
    "UVM_SET_ACCESSED_BY": "accessedByUuid",
    "UVM_UNSET_ACCESSED_BY": "accessedByUuid",
    "UVM_MIGRATE": "destinationUuid",
}


@dataclass
class ManagedRange:
    base: int
    length: int
    alloc: int  # IR allocation index
    live: bool = True


@dataclass
class HostCall:
    """One advice or migration as the model receives it (what the replay test compares)."""

    op: str  # advise / prefetch / free
    alloc: int
    advice: str
    processor: int
    start_page: int
    num_pages: int


@dataclass
class UvmFile:
    """One open ``/dev/nvidia-uvm``: its VA space, registered GPUs and managed ranges."""

    name: str = "ioctl-replay"
    initialized: bool = False
    init_flags: int = 0
    gpus: dict[bytes, int] = field(default_factory=dict)  # UUID -> IR processor id (gpu0 = 1)
    ranges: list[ManagedRange] = field(default_factory=list)  # sorted by base
    builder: WorkloadBuilder = field(init=False)
    calls: list[HostCall] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)  # ioctls with no IR counterpart
    # UUIDs of the machine's GPUs; None accepts any (a replay takes the GPUs the driver accepted).
    # An unknown one is NV_ERR_GPU_UUID_NOT_FOUND (nvGpuOpsGetGpuInfo, nv_gpu_ops.c).
    present_gpus: set[bytes] | None = None

    def __post_init__(self) -> None:
        self.builder = WorkloadBuilder(self.name, params={"source": "ioctl trace"})

    # -- file operations ---------------------------------------------------------------------
    def mmap(self, addr: int, length: int) -> int:
        """``uvm_mmap``: a managed range at ``addr``; returns 0 or -errno."""
        if not self.initialized:
            return -errno.EBADFD
        if length <= 0 or addr % PAGE or length % PAGE:
            return -errno.EINVAL
        if self._overlaps(addr, length):
            return -errno.EEXIST
        idx = self.builder.alloc(f"m{len(self.builder.allocs)}@{addr:#x}", length, "managed")
        bisect.insort(self.ranges, ManagedRange(addr, length, idx), key=lambda r: r.base)
        return 0

    def munmap(self, addr: int, length: int) -> int:
        for r in self.ranges:
            if r.live and r.base == addr:
                r.live = False
                self.builder.free(r.alloc)
                self.calls.append(HostCall("free", r.alloc, "", 0, 0, r.length // PAGE))
                return 0
        return 0  # munmap of memory that is not a UVM range: not the driver's business

    def _overlaps(self, base: int, length: int) -> bool:
        return any(r.live and r.base < base + length and base < r.base + r.length for r in self.ranges)

    def _cover(self, base: int, length: int) -> list[tuple[ManagedRange, int, int]] | None:
        """(range, first page, pages) pieces covering [base, base+length), or None if a hole."""
        pieces, pos, end = [], base, base + length
        for r in self.ranges:
            if not r.live or r.base + r.length <= pos:
                continue
            if r.base > pos:
                return None
            stop = min(end, r.base + r.length)
            pieces.append((r, (pos - r.base) // PAGE, (stop - pos) // PAGE))
            pos = stop
            if pos >= end:
                return pieces
        return None

    def _processor(self, uuid: object) -> int | None:
        if not isinstance(uuid, bytes):
            return None
        if uuid == nt.CPU_UUID:
            return 0
        return self.gpus.get(uuid)

    # -- ioctl ---------------------------------------------------------------------------------
    def ioctl(self, name: str, f: dict) -> int:
        """Apply one UVM ioctl (by name, with its decoded fields); returns the NV_STATUS."""
        if name in ("UVM_INITIALIZE", "UVM_MM_INITIALIZE"):
            if name == "UVM_INITIALIZE":
                self.initialized, self.init_flags = True, int(f.get("flags", 0))
            return S["NV_OK"]
        if name == "UVM_DEINITIALIZE":
            return S["NV_OK"]
        if not self.initialized:
            return S["NV_ERR_ILLEGAL_ACTION"]
        if name == "UVM_REGISTER_GPU":
            uuid = f.get("gpu_uuid")
            if not isinstance(uuid, bytes) or uuid == nt.CPU_UUID:
                return S["NV_ERR_INVALID_DEVICE"]
            if self.present_gpus is not None and uuid not in self.present_gpus:
                return S["NV_ERR_GPU_UUID_NOT_FOUND"]
            if uuid in self.gpus:
                return S["NV_ERR_INVALID_DEVICE"]
            self.gpus[uuid] = len(self.gpus) + 1
            return S["NV_OK"]
        if name == "UVM_UNREGISTER_GPU":
            return S["NV_OK"] if self.gpus.pop(f.get("gpu_uuid"), None) else S["NV_ERR_INVALID_DEVICE"]
        if name in _ADVICE or name == "UVM_MIGRATE":
            return self._range_op(name, f)
        if name == "UVM_FREE":
            base = int(f.get("base", 0))
            for r in self.ranges:
                if r.live and r.base == base:
                    return S["NV_OK"] if self.munmap(base, r.length) == 0 else S["NV_ERR_INVALID_ADDRESS"]
            return S["NV_OK"]  # external / semaphore ranges are not modelled
        self.ignored[name] = self.ignored.get(name, 0) + 1
        return S["NV_OK"]

    def _range_op(self, name: str, f: dict) -> int:
        base = int(f.get("requestedBase", f.get("base", 0)))
        length = int(f.get("length", 0))
        if length == 0 or base % PAGE or length % PAGE or base + length > 1 << 64:
            return S["NV_ERR_INVALID_ADDRESS"]
        if name == "UVM_MIGRATE" and int(f.get("flags", 0)) & ~0x7:
            return S["NV_ERR_INVALID_ARGUMENT"]
        # uvm_api_migrate (uvm_migrate.c) resolves the destination before it looks at the range's
        # VMAs; the policy ioctls (uvm_policy.c) find the range first
        proc = 0
        if name == "UVM_MIGRATE":
            p = self._processor(f.get(_UUID_FIELD[name]))
            if p is None:
                return S["NV_ERR_INVALID_DEVICE"]
            proc = p
        pieces = self._cover(base, length)
        if pieces is None:
            return S["NV_ERR_INVALID_ADDRESS"]
        if name in _UUID_FIELD and name != "UVM_MIGRATE":
            p = self._processor(f.get(_UUID_FIELD[name]))
            if p is None:
                return S["NV_ERR_INVALID_DEVICE"]
            proc = p
        b = self.builder
        for r, first, n in pieces:
            if name == "UVM_MIGRATE":
                b.prefetch(r.alloc, proc, first, n)
                self.calls.append(HostCall("prefetch", r.alloc, "", proc, first, n))
            else:
                adv = _ADVICE[name]
                b.advise(r.alloc, adv, proc, first, n)
                self.calls.append(HostCall("advise", r.alloc, adv.name.lower(), proc, first, n))
        return S["NV_OK"]

    def workload(self) -> Workload:
        self.builder.sync()
        return self.builder.build()
