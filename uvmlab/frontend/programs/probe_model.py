"""The models' answers to the cases of ``rm_probe.py``, in the same order and with the same
parameter bytes, for comparison with what the real driver answered."""

from __future__ import annotations

import json
from typing import Any

from uvmlab.frontend import nvtables as nt
from uvmlab.frontend.dispatch import NvidiaFrontend, pack
from uvmlab.frontend.uvm_dev import UvmFile

ROOT, DEVICE, SUBDEVICE = 0x0000, 0x0080, 0x2080
CTL, GPU = "/dev/nvidiactl", "/dev/nvidia0"


def model_answers(real: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    fe = NvidiaFrontend()
    out: dict[str, dict[str, Any]] = {}

    def alloc(path: str, h_root: int, h_parent: int, h_new: int, h_class: int, size: int = 48):
        fields = nt.NVOS64 if size == 48 else nt.NVOS21  # where rm_probe.py reads the status
        params = pack(fields, size, hRoot=h_root, hObjectParent=h_parent, hObjectNew=h_new, hClass=h_class)
        ret, after = fe.ioctl(path, nt.nv_ioctl(0x2B, size), params)
        f = nt.unpack_fields(fields, after)
        return _result(ret, f.get("status"), f.get("hObjectNew"))

    def free(h_root: int, h_parent: int, h_old: int):
        ret, after = fe.ioctl(
            CTL,
            nt.nv_ioctl(0x29, 16),
            pack(nt.NVOS00, 16, hRoot=h_root, hObjectParent=h_parent, hObjectOld=h_old),
        )
        return _result(ret, nt.unpack_fields(nt.NVOS00, after).get("status"), None)

    def control(h_client: int, h_object: int, cmd: int):
        ret, after = fe.ioctl(
            CTL, nt.nv_ioctl(0x2A, 32), pack(nt.NVOS54, 32, hClient=h_client, hObject=h_object, cmd=cmd)
        )
        return _result(ret, nt.unpack_fields(nt.NVOS54, after).get("status"), None)

    out["alloc_client"] = alloc(CTL, 0, 0, 0, ROOT)
    c = out["alloc_client"]["handle"]
    out["alloc_device"] = alloc(CTL, c, c, 0x5C000001, DEVICE)
    out["alloc_subdevice_under_client"] = alloc(CTL, c, c, 0x5C000002, SUBDEVICE)
    out["alloc_subdevice"] = alloc(CTL, c, 0x5C000001, 0x5C000002, SUBDEVICE)
    out["alloc_duplicate_handle"] = alloc(CTL, c, 0x5C000001, 0x5C000002, SUBDEVICE)
    out["alloc_handle_equal_client"] = alloc(CTL, c, 0x5C000001, c, SUBDEVICE)
    out["alloc_unknown_parent"] = alloc(CTL, c, 0x5C0000FF, 0x5C000003, SUBDEVICE)
    out["alloc_unknown_client"] = alloc(CTL, 0xDEADBEEF, 0xDEADBEEF, 0x5C000004, DEVICE)
    out["alloc_unknown_class"] = alloc(CTL, c, 0x5C000001, 0x5C000005, 0xBEEF)
    out["alloc_nvos21_form"] = alloc(CTL, c, 0x5C000001, 0x5C000006, SUBDEVICE, size=32)
    out["alloc_wrong_size"] = alloc(CTL, c, 0x5C000001, 0x5C000007, SUBDEVICE, size=40)
    out["alloc_on_gpu_file"] = alloc(GPU, c, 0x5C000001, 0x5C000008, SUBDEVICE)
    out["control_nv2080_on_device"] = control(c, 0x5C000001, 0x20800102)
    out["control_unknown_object"] = control(c, 0x5C0000FF, 0x20800102)
    out["free_device"] = free(c, c, 0x5C000001)
    out["free_child_of_freed_parent"] = free(c, 0x5C000001, 0x5C000002)
    out["double_free"] = free(c, c, 0x5C000001)
    out["free_client"] = free(c, c, c)
    out["alloc_under_freed_client"] = alloc(CTL, c, c, 0x5C000009, DEVICE)

    gpu_uuid = bytes(range(0x10, 0x20))  # a UUID no GPU of the machine has
    u = UvmFile(present_gpus=set())

    def uvm(name: str, **fields: Any):
        return _result(0, u.ioctl(name, fields), None)

    out["uvm_register_gpu_before_initialize"] = uvm("UVM_REGISTER_GPU", gpu_uuid=gpu_uuid)
    out["uvm_initialize"] = uvm("UVM_INITIALIZE", flags=0)
    out["uvm_migrate_unaligned"] = uvm(
        "UVM_MIGRATE", base=0x7F0000000001, length=4096, destinationUuid=bytes(16), flags=0
    )
    rng = {"base": 0x7E0000000000, "length": 2 << 20}
    out["uvm_preferred_location_unmapped"] = uvm(
        "UVM_SET_PREFERRED_LOCATION",
        requestedBase=rng["base"],
        length=rng["length"],
        preferredLocation=gpu_uuid,
    )
    # rm_probe.py sends a zero destination UUID, which is not the CPU's (nvCpuUuid.c gives the
    # CPU a fixed UUID): these cases ask about an unknown destination, and so does the model
    zero = bytes(16)
    out["uvm_migrate_unmapped_to_cpu"] = uvm("UVM_MIGRATE", **rng, destinationUuid=zero, flags=0)
    out["uvm_migrate_bad_flags"] = uvm("UVM_MIGRATE", **rng, destinationUuid=zero, flags=0x100)
    out["uvm_register_unknown_gpu"] = uvm("UVM_REGISTER_GPU", gpu_uuid=gpu_uuid)
    return out


def _result(ret: int, status: Any, handle: Any) -> dict[str, Any]:
    return {"ret": -1 if ret < 0 else 0, "errno": -ret if ret < 0 else 0, "status": status, "handle": handle}


if __name__ == "__main__":
    print(json.dumps(model_answers(), indent=1))
