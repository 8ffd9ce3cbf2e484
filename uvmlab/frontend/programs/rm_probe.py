"""Ask the real driver the refusal cases the RM and UVM models answer (run on the GPU machine).

Each case is one ioctl on /dev/nvidiactl, /dev/nvidia0 or /dev/nvidia-uvm with hand-built
parameters (layouts: nvos.h, uvm_ioctl.h); the output is JSON, one entry per case with the ioctl
return, errno and the NV_STATUS the driver wrote back. ``tests/test_frontend_real.py`` compares
the models' answers with these. Stdlib only.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import sys

ROOT, DEVICE, SUBDEVICE = 0x0000, 0x0080, 0x2080


def nv_ioctl(nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (ord("F") << 8) | nr


def rm_alloc(fd, h_root, h_parent, h_new, h_class, size=48):
    buf = bytearray(size)
    struct.pack_into("<IIII", buf, 0, h_root, h_parent, h_new, h_class)
    return call(fd, nv_ioctl(0x2B, size), buf, 40 if size == 48 else 28, 8)


def rm_free(fd, h_root, h_parent, h_old):
    buf = bytearray(16)
    struct.pack_into("<III", buf, 0, h_root, h_parent, h_old)
    return call(fd, nv_ioctl(0x29, 16), buf, 12, None)


def rm_control(fd, h_client, h_object, cmd):
    buf = bytearray(32)
    struct.pack_into("<III", buf, 0, h_client, h_object, cmd)
    return call(fd, nv_ioctl(0x2A, 32), buf, 28, None)


def call(fd, request, buf, status_off, handle_off):
    try:
        fcntl.ioctl(fd, request, buf, True)
        ret, err = 0, 0
    except OSError as e:
        ret, err = -1, e.errno
    st = struct.unpack_from("<I", buf, status_off)[0] if status_off is not None else None
    h = struct.unpack_from("<I", buf, handle_off)[0] if handle_off is not None else None
    return {"ret": ret, "errno": err, "status": st, "handle": h}


def uvm(fd, cmd, payload: bytes, size: int, status_off: int):
    buf = bytearray(payload.ljust(size, b"\0"))
    return call(fd, cmd, buf, status_off, None)


def main() -> int:
    out: dict[str, dict] = {}
    ctl = os.open("/dev/nvidiactl", os.O_RDWR)
    gpu = os.open("/dev/nvidia0", os.O_RDWR)
    r = out["alloc_client"] = rm_alloc(ctl, 0, 0, 0, ROOT)
    c = r["handle"]
    out["alloc_device"] = rm_alloc(ctl, c, c, 0x5C000001, DEVICE)
    out["alloc_subdevice_under_client"] = rm_alloc(ctl, c, c, 0x5C000002, SUBDEVICE)
    out["alloc_subdevice"] = rm_alloc(ctl, c, 0x5C000001, 0x5C000002, SUBDEVICE)
    out["alloc_duplicate_handle"] = rm_alloc(ctl, c, 0x5C000001, 0x5C000002, SUBDEVICE)
    out["alloc_handle_equal_client"] = rm_alloc(ctl, c, 0x5C000001, c, SUBDEVICE)
    out["alloc_unknown_parent"] = rm_alloc(ctl, c, 0x5C0000FF, 0x5C000003, SUBDEVICE)
    out["alloc_unknown_client"] = rm_alloc(ctl, 0xDEADBEEF, 0xDEADBEEF, 0x5C000004, DEVICE)
    out["alloc_unknown_class"] = rm_alloc(ctl, c, 0x5C000001, 0x5C000005, 0xBEEF)
    out["alloc_nvos21_form"] = rm_alloc(ctl, c, 0x5C000001, 0x5C000006, SUBDEVICE, size=32)
    out["alloc_wrong_size"] = rm_alloc(ctl, c, 0x5C000001, 0x5C000007, SUBDEVICE, size=40)
    out["alloc_on_gpu_file"] = rm_alloc(gpu, c, 0x5C000001, 0x5C000008, SUBDEVICE)
    out["control_nv2080_on_device"] = rm_control(ctl, c, 0x5C000001, 0x20800102)
    out["control_unknown_object"] = rm_control(ctl, c, 0x5C0000FF, 0x20800102)
    out["free_device"] = rm_free(ctl, c, c, 0x5C000001)
    out["free_child_of_freed_parent"] = rm_free(ctl, c, 0x5C000001, 0x5C000002)
    out["double_free"] = rm_free(ctl, c, c, 0x5C000001)
    out["free_client"] = rm_free(ctl, c, c, c)
    out["alloc_under_freed_client"] = rm_alloc(ctl, c, c, 0x5C000009, DEVICE)
    u = os.open("/dev/nvidia-uvm", os.O_RDWR)
    gpu_uuid = bytes(range(0x10, 0x20))
    out["uvm_register_gpu_before_initialize"] = uvm(u, 37, gpu_uuid, 40, 36)
    out["uvm_initialize"] = uvm(u, 0x30000001, b"", 16, 8)
    rng = struct.pack("<QQ", 0x7F0000000001, 4096)
    out["uvm_migrate_unaligned"] = uvm(u, 51, rng + bytes(16), 80, 72)
    rng = struct.pack("<QQ", 0x7E0000000000, 2 << 20)
    # the migrate cases below send a zero destination UUID: not the CPU's (nvCpuUuid.c), so
    # "unmapped_to_cpu" asks about an unknown destination (the name predates that reading)
    out["uvm_preferred_location_unmapped"] = uvm(u, 42, rng + gpu_uuid, 40, 36)
    out["uvm_migrate_unmapped_to_cpu"] = uvm(u, 51, rng + bytes(16), 80, 72)
    out["uvm_migrate_bad_flags"] = uvm(u, 51, rng + bytes(16) + struct.pack("<I", 0x100), 80, 72)
    out["uvm_register_unknown_gpu"] = uvm(u, 37, gpu_uuid, 40, 36)
    for fd in (u, gpu, ctl):
        os.close(fd)
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
