"""The ioctl path of nvidia.ko, byte for byte: request code and parameter bytes in, return and
parameter bytes out.

``/dev/nvidiactl`` or ``/dev/nvidiaN`` -> ``nvidia_unlocked_ioctl`` -> ``nvidia_ioctl`` (``nv.c``:
copies ``_IOC_SIZE`` bytes in, handles the OS escapes itself) -> ``rm_ioctl`` (``osapi.c``) ->
``RmIoctl`` (``escape.c``: checks the size and the file, then allocs / frees / controls through
the resource server) -> the parameter struct copied back out. ``nvidia_ioctl`` turns any status
other than ``NV_OK`` from ``rm_ioctl`` into -EINVAL; the RM object errors travel in the struct's
``status`` field with the ioctl returning 0. ``/dev/nvidia-uvm`` goes to ``uvm_ioctl`` below and
``uvm_dev.UvmFile``.

Modelled: the size and file checks of every escape, and the object escapes (ALLOC, FREE,
CONTROL, DUP_OBJECT, SHARE, MAP_MEMORY) through ``rm.ResourceManager``. Not modelled: what the
other escapes compute (their size and file checks are, and they then answer 0 with the bytes
unchanged), and ``NV_ESC_IOCTL_XFER_CMD``, whose payload lives behind a user pointer.
"""

from __future__ import annotations

import errno
import os
import struct

from uvmlab.frontend import nvtables as nt
from uvmlab.frontend.rm import ResourceManager
from uvmlab.frontend.uvm_dev import UvmFile

NV_ABSOLUTE_MAX_IOCTL_SIZE = 16384  # nv.h


def _put(buf: bytearray, fields: tuple[nt.Field, ...], name: str, value: int) -> None:
    for n, off, fmt in fields:
        if n == name and off + struct.calcsize("<" + fmt) <= len(buf):
            struct.pack_into("<" + fmt, buf, off, value)


class NvidiaFrontend:
    """nvidia.ko's ioctl entry with its resource manager."""

    def __init__(self) -> None:
        self.rm = ResourceManager()

    def ioctl(self, path: str, request: int, params: bytes) -> tuple[int, bytes]:
        """Returns (ioctl return value: 0 or -errno, the parameter bytes after the call)."""
        ioc = nt.ioc_decode(request)
        size = ioc.size
        if ioc.nr == nt.ESCAPE_BY_NAME["NV_ESC_IOCTL_XFER_CMD"].nr:
            return -errno.EINVAL, bytes(params)  # not modelled: see the module docstring
        if len(params) < size:
            return -errno.EFAULT, bytes(params)  # copy_from_user of _IOC_SIZE bytes fails
        buf = bytearray(params[:size])
        esc = nt.ESCAPES.get(ioc.nr)
        if esc is None:
            return -errno.EINVAL, bytes(buf)  # RmIoctl's default case: NV_ERR_INVALID_ARGUMENT
        is_ctl = os.path.basename(path) == "nvidiactl"
        if esc.sizes and size not in esc.sizes:
            return -errno.EINVAL, bytes(buf)
        if (esc.files == "ctl" and not is_ctl) or (esc.files == "gpu" and is_ctl):
            return -errno.EINVAL, bytes(buf)  # NV_CTL_DEVICE_ONLY / NV_ACTUAL_DEVICE_ONLY
        fields = nt.NVOS21 if esc.nr == 0x2B and size == 32 else esc.fields
        f = nt.unpack_fields(fields, bytes(buf))
        rm = self.rm
        if esc.name == "NV_ESC_RM_ALLOC":
            has_params = bool(f["pAllocParms"]) if "pAllocParms" in f else None
            st, h = rm.alloc(f["hRoot"], f["hObjectParent"], f["hObjectNew"], f["hClass"], has_params)
            if st == 0:
                _put(buf, fields, "hObjectNew", h)
        elif esc.name == "NV_ESC_RM_FREE":
            st = rm.free(f["hRoot"], f["hObjectParent"], f["hObjectOld"])
        elif esc.name == "NV_ESC_RM_CONTROL":
            st = rm.control(f["hClient"], f["hObject"], f["cmd"], f.get("paramsSize"), f.get("params"))
        elif esc.name == "NV_ESC_RM_DUP_OBJECT":
            st, h = rm.dup(f["hClient"], f["hParent"], f["hObject"], f["hClientSrc"], f["hObjectSrc"])
            if st == 0:
                _put(buf, fields, "hObject", h)
        elif esc.name == "NV_ESC_RM_SHARE":
            st = rm.share(f["hClient"], f["hObject"])
        elif esc.name == "NV_ESC_RM_MAP_MEMORY":
            st = rm.map_memory(f["hClient"], f["hDevice"], f["hMemory"])
        else:
            return 0, bytes(buf)
        _put(buf, fields, "status", st)
        return 0, bytes(buf)


def pack(fields: tuple[nt.Field, ...], size: int, **values: int) -> bytes:
    """Build a parameter struct (tests and examples)."""
    buf = bytearray(size)
    for name, value in values.items():
        _put(buf, fields, name, value)
    return bytes(buf)


def uvm_ioctl(file: UvmFile, request: int, params: bytes) -> tuple[int, bytes]:
    """``uvm_unlocked_ioctl`` (``uvm.c``): copy ``sizeof(cmd##_PARAMS)`` in, act, copy it out with
    ``rmStatus`` set. An unknown command falls through to ``uvm_test_ioctl``, which answers
    -ENOSYS while the module's built-in tests are disabled (the default)."""
    u = nt.UVM_IOCTLS.get(request)
    if u is None:
        return -errno.ENOSYS, bytes(params)
    if len(params) < u.size:
        return -errno.EFAULT, bytes(params)
    buf = bytearray(params[: u.size])
    status = file.ioctl(u.name, nt.unpack_fields(u.fields, bytes(buf)))
    _put(buf, u.fields, "rmStatus", status)
    return 0, bytes(buf)
