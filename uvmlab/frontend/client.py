"""A user-space client of the *modelled* front end that records its calls in the shim's format.

``ModelClient`` issues ioctls, mmaps and munmaps against ``dispatch.NvidiaFrontend`` (the RM
behind ``/dev/nvidiactl``) and ``uvm_dev.UvmFile`` (``/dev/nvidia-uvm``) and records each call
with the bytes before and after it, exactly as ``shim/ioctl_shim.c`` records a real program. The
result is a *modelled* trace: every status in it is the model's answer. It lets the decoder and
the replay run end to end without a GPU, and ``managed_advise_session`` shows the sequence of
driver objects and calls a managed-memory program needs (client, device, subdevice, VA space,
channel, UVM registration, managed ranges, advice, migration); the order in which ``libcuda``
really issues them is what a real capture (``uvmlab ioctl capture``) records.
"""

from __future__ import annotations

import struct

from uvmlab.frontend import nvtables as nt
from uvmlab.frontend.dispatch import NvidiaFrontend, pack, uvm_ioctl
from uvmlab.frontend.trace import KIND_IOCTL, KIND_MARK, KIND_MMAP, KIND_MUNMAP, Record
from uvmlab.frontend.uvm_dev import UvmFile

CTL, GPU0, UVM = "/dev/nvidiactl", "/dev/nvidia0", "/dev/nvidia-uvm"
FDS = {CTL: 3, GPU0: 4, UVM: 5}
STEP_NS = 2_000  # modelled time between calls: the trace is ordered, not timed
# A user-space address standing for a parameter struct: the RM checks that a pointer is there
# (alloc: RS_REQUIRED classes; control: commands with a struct), the model never reads behind it.
PARAMS_PTR, PARAMS_SIZE = 0x7FFE0000, 64


class ModelClient:
    def __init__(self, pid: int = 1000) -> None:
        self.fe = NvidiaFrontend()
        self.uvm = UvmFile(name="model-client")
        self.records: list[Record] = []
        self.pid = pid
        self.t = 0

    def _add(
        self,
        kind: int,
        path: str,
        fd: int,
        request: int,
        arg: int,
        ret: int,
        err: int,
        before: bytes,
        after: bytes,
    ) -> None:
        self.records.append(
            Record(
                len(self.records),
                kind,
                self.pid,
                self.pid,
                self.t,
                self.t + STEP_NS // 2,
                fd,
                ret,
                err,
                path,
                request,
                arg,
                before,
                after,
            )
        )
        self.t += STEP_NS

    def mark(self, label: str) -> None:
        self._add(KIND_MARK, label, -1, 0, 0, 0, 0, b"", b"")

    def ioctl(self, path: str, request: int, params: bytes) -> bytes:
        if path == UVM:
            ret, out = uvm_ioctl(self.uvm, request, params)
        else:
            ret, out = self.fe.ioctl(path, request, params)
        self._add(
            KIND_IOCTL,
            path,
            FDS[path],
            request,
            0x7FFF0000,
            -1 if ret < 0 else 0,
            -ret if ret < 0 else 0,
            params,
            out,
        )
        return out

    def mmap(self, addr: int, length: int) -> None:
        ret = self.uvm.mmap(addr, length)
        self._add(
            KIND_MMAP,
            UVM,
            FDS[UVM],
            addr,
            length,
            -1 if ret < 0 else 0,
            -ret if ret < 0 else 0,
            struct.pack("<QQQQQ", addr, length, 3, 0x11, addr),
            b"",
        )

    def munmap(self, addr: int, length: int) -> None:
        self.uvm.munmap(addr, length)
        self._add(KIND_MUNMAP, "", -1, addr, length, 0, 0, b"", b"")

    # -- RM helpers ------------------------------------------------------------------------------
    def alloc(self, h_root: int, h_parent: int, h_new: int, h_class: int) -> int:
        cl = nt.rm_classes().get(h_class)
        ptr = PARAMS_PTR if cl is not None and cl.alloc_params in ("required", "optional") else 0
        params = pack(
            nt.NVOS64,
            48,
            hRoot=h_root,
            hObjectParent=h_parent,
            hObjectNew=h_new,
            hClass=h_class,
            pAllocParms=ptr,
            paramsSize=PARAMS_SIZE if ptr else 0,
        )
        out = nt.unpack_fields(nt.NVOS64, self.ioctl(CTL, nt.nv_ioctl(0x2B, 48), params))
        return int(out["hObjectNew"]) if out["status"] == 0 else 0

    def control(self, h_client: int, h_object: int, cmd: int) -> None:
        ptr = PARAMS_PTR if nt.control_takes_params(cmd) is not False else 0
        params = pack(
            nt.NVOS54,
            32,
            hClient=h_client,
            hObject=h_object,
            cmd=cmd,
            params=ptr,
            paramsSize=PARAMS_SIZE if ptr else 0,
        )
        self.ioctl(CTL, nt.nv_ioctl(0x2A, 32), params)

    def free(self, h_root: int, h_parent: int, h_old: int) -> None:
        self.ioctl(
            CTL,
            nt.nv_ioctl(0x29, 16),
            pack(nt.NVOS00, 16, hRoot=h_root, hObjectParent=h_parent, hObjectOld=h_old),
        )

    def uvm_call(self, name: str, **fields: int | bytes) -> None:
        u = nt.UVM_BY_NAME[name]
        buf = bytearray(u.size)
        for fname, off, fmt in u.fields:
            if fname in fields:
                struct.pack_into("<" + fmt, buf, off, fields[fname])
        self.ioctl(UVM, u.cmd, bytes(buf))


def cls(name: str) -> int:
    return nt.rm_class_by_name()[name].number


def managed_advise_session(gpu_uuid: bytes = bytes(range(0xA0, 0xB0))) -> ModelClient:
    """What ``managed_advise.cu`` asks of the driver, issued against the modelled front end."""
    mc = ModelClient()
    mib = 1 << 20
    a, b = 0x7F0000000000, 0x7F0004000000
    mc.mark("context creation")
    c = mc.alloc(0, 0, 0, cls("NV01_ROOT"))
    mc.control(c, c, 0x00000215)  # NV0000_CTRL_CMD_GPU_ATTACH_IDS: libcuda attaches the GPU first
    dev = mc.alloc(c, c, 0xCAF00001, cls("NV01_DEVICE_0"))
    sub = mc.alloc(c, dev, 0xCAF00002, cls("NV20_SUBDEVICE_0"))
    mc.control(c, c, 0x00000101)  # NV0000_CTRL_CMD_SYSTEM_GET_BUILD_VERSION
    mc.control(c, sub, 0x20800102)  # NV2080_CTRL_CMD_GPU_GET_INFO_V2
    vas = mc.alloc(c, dev, 0xCAF00003, cls("FERMI_VASPACE_A"))
    tsg = mc.alloc(c, dev, 0xCAF00004, cls("KEPLER_CHANNEL_GROUP_A"))
    mc.alloc(c, tsg, 0xCAF00005, cls("FERMI_CONTEXT_SHARE_A"))
    ch = mc.alloc(c, tsg, 0xCAF00006, cls("HOPPER_CHANNEL_GPFIFO_A"))
    mc.alloc(c, ch, 0xCAF00007, cls("HOPPER_COMPUTE_A"))
    mc.uvm_call("UVM_INITIALIZE", flags=0)
    mc.uvm_call("UVM_REGISTER_GPU", gpu_uuid=gpu_uuid, rmCtrlFd=FDS[CTL], hClient=c)
    mc.uvm_call("UVM_REGISTER_GPU_VASPACE", gpuUuid=gpu_uuid, rmCtrlFd=FDS[CTL], hClient=c, hVaSpace=vas)
    mc.uvm_call("UVM_REGISTER_CHANNEL", gpuUuid=gpu_uuid, rmCtrlFd=FDS[CTL], hClient=c, hChannel=ch)
    mc.mark("cudaMallocManaged a 32MiB")
    mc.mmap(a, 32 * mib)
    mc.mark("cudaMallocManaged b 16MiB")
    mc.mmap(b, 16 * mib)
    mc.mark("cudaMallocManaged sum")
    mc.mmap(b + 16 * mib, 2 * mib)
    mc.mark("advise a[0:16MiB] SetPreferredLocation gpu0")
    mc.uvm_call(
        "UVM_SET_PREFERRED_LOCATION",
        requestedBase=a,
        length=16 * mib,
        preferredLocation=gpu_uuid,
        preferredCpuNumaNode=-1,
    )
    mc.mark("advise a SetAccessedBy cpu")
    mc.uvm_call("UVM_SET_ACCESSED_BY", requestedBase=a, length=32 * mib, accessedByUuid=nt.CPU_UUID)
    mc.mark("advise b SetReadMostly")
    mc.uvm_call("UVM_ENABLE_READ_DUPLICATION", requestedBase=b, length=16 * mib)
    mc.mark("prefetch a -> gpu0")
    mc.uvm_call("UVM_MIGRATE", base=a, length=32 * mib, destinationUuid=gpu_uuid, cpuNumaNode=-1)
    mc.mark("kernel touch (no ioctl: its faults are serviced inside nvidia-uvm)")
    mc.mark("prefetch a[16MiB:32MiB] -> cpu")
    mc.uvm_call(
        "UVM_MIGRATE", base=a + 16 * mib, length=16 * mib, destinationUuid=nt.CPU_UUID, cpuNumaNode=-1
    )
    mc.mark("advise a[0:16MiB] UnsetPreferredLocation")
    mc.uvm_call("UVM_UNSET_PREFERRED_LOCATION", requestedBase=a, length=16 * mib)
    mc.mark("cudaFree a, b, sum")
    mc.munmap(a, 32 * mib)
    mc.munmap(b, 16 * mib)
    mc.munmap(b + 16 * mib, 2 * mib)
    mc.mark("exit")
    mc.uvm_call("UVM_UNREGISTER_CHANNEL", gpuUuid=gpu_uuid, hClient=c, hChannel=ch)
    mc.free(c, c, dev)  # the device and everything under it
    mc.free(c, c, c)
    return mc
