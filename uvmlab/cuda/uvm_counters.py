"""The driver's own lossless counters (UVM Tools counters through ``/dev/nvidia-uvm-tools``).

Why this exists: CUPTI's unified-memory records come from the driver's tools *event queue*, a
ring of fixed size that CUPTI creates (8192 entries on driver 580 with CUPTI 13.0) and drains
from its own thread. When migrations produce events faster than CUPTI drains them, the driver
drops the new events (``enqueue_event`` in ``uvm_tools.c``: "one free element means that the
queue is full", the drop is only counted in the queue's control page, which CUPTI does not
report). A GPU streaming through CPU-resident managed memory makes ~200 k migration events a
second while CUPTI keeps up with ~100 k, so half of the HtoD records of the probe's ``seq``
test were never delivered (measured on an H200: every run delivered 40-46 k of ~90 k records;
a 256 MiB stream delivered exactly 8191 = queue size - 1). Flushing, bigger CUPTI buffers, a
faster callback, and releasing the GIL do not help; the loss is in the kernel driver's queue.

The driver also keeps *counters* per tools file (``uvm_tools_inc_counter``): bytes host-to-device,
bytes device-to-host, CPU page faults and GPU page faults, incremented synchronously where the
migration or fault is serviced, in a page of our own memory. Counters never drop. This module
opens such a counter tracker on the process's own UVM VA space; the executor reads the page before
and after each operation, so per-operation byte and fault totals are exact, and CUPTI's
records are used for what only they carry (migration cause, fault groups, thrashing, throttling,
remote maps) with any shortfall reported, not hidden.

ioctl layouts (``uvm_ioctl.h``, driver 580; on Linux the request code is the plain number):

* ``UVM_TOOLS_INIT_EVENT_TRACKER`` (56): ``{u64 queueBuffer; u64 queueBufferSize; u64
  controlBuffer; u8 processor[16]; u32 allProcessors; u32 uvmFd; u32 rmStatus; ...}``;
  ``queueBufferSize == 0`` makes a counter tracker whose counters live at ``controlBuffer``
  (one page-aligned page holding ``u64[UVM_TOTAL_COUNTERS]``).
* ``UVM_TOOLS_ENABLE_COUNTERS`` (60): ``{u64 counterTypeFlags; u32 rmStatus;}``.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import struct

import numpy as np

from uvmlab.core.errors import GpuUnavailableError

UVM_TOOLS_INIT_EVENT_TRACKER = 56
UVM_TOOLS_ENABLE_COUNTERS = 60

#: UvmCounterName (uvm_types.h)
COUNTER_NAMES = {
    0: "bytes_htod",  # BytesXferHtD
    1: "bytes_dtoh",  # BytesXferDtH
    2: "cpu_faults",  # CpuPageFaultCount (counted once, for the CPU, with allProcessors)
    7: "prefetch_bytes_htod",  # defined by the driver, never incremented in 580
    8: "prefetch_bytes_dtoh",  # likewise
    9: "gpu_faults_notified",  # GpuPageFaultCount: one per serviced (representative) GPU fault
}
UVM_TOTAL_COUNTERS = 10
#: enable BytesXferHtD, BytesXferDtH, CpuPageFaultCount and GpuPageFaultCount
COUNTER_FLAGS = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 9)
_INIT_FMT = "<QQQ16sIII"  # followed by zero padding: newer drivers append version fields


def counter_deltas(before: np.ndarray, after: np.ndarray) -> dict[str, int]:
    """Named differences of two counter snapshots (pure)."""
    d = after.astype(np.int64) - before.astype(np.int64)
    return {name: int(d[i]) for i, name in COUNTER_NAMES.items() if i in (0, 1, 2, 9)}


def _uvm_fds() -> list[int]:
    """This process's file descriptors open on /dev/nvidia-uvm (CUDA opens its VA space there)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "/dev/nvidia-uvm":
                out.append(int(fd))
        except OSError:
            continue
    return sorted(out)


class UvmCounters:
    """A counter tracker on this process's UVM VA space; CUDA must be initialised first."""

    def __init__(self) -> None:
        self._page = mmap.mmap(-1, mmap.PAGESIZE)  # anonymous, hence page aligned
        addr = ctypes.addressof(ctypes.c_char.from_buffer(self._page))
        self.values = np.frombuffer(self._page, dtype=np.uint64, count=UVM_TOTAL_COUNTERS)
        self.fd = -1
        errors = []
        for uvm_fd in _uvm_fds():
            fd = os.open("/dev/nvidia-uvm-tools", os.O_RDWR | os.O_CLOEXEC)
            buf = bytearray(256)
            struct.pack_into(_INIT_FMT, buf, 0, 0, 0, addr, b"\0" * 16, 1, uvm_fd, 0)
            try:
                fcntl.ioctl(fd, UVM_TOOLS_INIT_EVENT_TRACKER, buf, True)
                status = struct.unpack_from("<I", buf, 48)[0]
                if status == 0:
                    en = bytearray(64)
                    struct.pack_into("<QI", en, 0, COUNTER_FLAGS, 0)
                    fcntl.ioctl(fd, UVM_TOOLS_ENABLE_COUNTERS, en, True)
                    status = struct.unpack_from("<I", en, 8)[0]
                    if status == 0:
                        self.fd = fd
                        self.uvm_fd = uvm_fd
                        return
                errors.append(f"fd {uvm_fd}: rmStatus 0x{status:x}")
            except OSError as e:
                errors.append(f"fd {uvm_fd}: {e.strerror}")
            os.close(fd)
        raise GpuUnavailableError(
            "UVM tools counters unavailable: "
            + ("; ".join(errors) or "no /dev/nvidia-uvm fd in this process")
        )

    def snapshot(self) -> np.ndarray:
        return self.values.copy()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releasing the file destroys the tracker and unpins the page
            self.fd = -1
