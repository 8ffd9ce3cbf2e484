"""RM handle tree and the ioctl dispatch: each refusal case with the driver's NV_STATUS."""

import errno

import pytest

from uvmlab.frontend import nvtables as nt
from uvmlab.frontend.dispatch import NvidiaFrontend, pack
from uvmlab.frontend.rm import ResourceManager

S = nt.STATUS
ROOT, DEVICE, SUBDEVICE = 0x0000, 0x0080, 0x2080
SYSMEM = nt.rm_class_by_name()["NV01_MEMORY_SYSTEM"].number
TIMER = nt.rm_class_by_name()["NV01_TIMER"].number  # single instance under a subdevice
ATTACH_IDS = 0x0215  # NV0000_CTRL_CMD_GPU_ATTACH_IDS
OS_EVENT = 0x0079  # NV01_EVENT_OS_EVENT: its alloc parameters are RS_REQUIRED


@pytest.fixture
def tree():
    rm = ResourceManager()
    st, c = rm.alloc(0, 0, 0, ROOT)
    assert st == S["NV_OK"]
    # no GPU attached yet: the device constructor refuses (device.c, as the real driver did)
    assert rm.alloc(c, c, 0x10, DEVICE) == (S["NV_ERR_INVALID_ARGUMENT"], 0)
    assert rm.control(c, c, ATTACH_IDS) == S["NV_OK"] and rm.gpus_attached
    assert rm.alloc(c, c, 0x10, DEVICE) == (S["NV_OK"], 0x10)
    assert rm.alloc(c, 0x10, 0x20, SUBDEVICE) == (S["NV_OK"], 0x20)
    assert rm.alloc(c, 0x10, 0x30, SYSMEM) == (S["NV_OK"], 0x30)
    return rm, c


def test_tables_are_consistent():
    assert nt.class_name(DEVICE) == "NV01_DEVICE_0" and nt.class_name(SUBDEVICE) == "NV20_SUBDEVICE_0"
    assert nt.rm_classes()[SUBDEVICE].parents == ("Device",)
    assert nt.status_name(0x57) == "NV_ERR_OBJECT_NOT_FOUND"
    assert nt.ESCAPE_BY_NAME["NV_ESC_RM_ALLOC"].nr == 0x2B
    assert nt.nv_ioctl(0x2B, 48) == 0xC030462B
    assert nt.ioc_decode(0xC030462B) == nt.Ioc(3, ord("F"), 0x2B, 48)
    assert nt.UVM_BY_NAME["UVM_MIGRATE"].cmd == 51 and nt.UVM_BY_NAME["UVM_INITIALIZE"].cmd == 0x30000001
    for u in nt.UVM_IOCTLS.values():  # every decoded field lies inside the struct
        for _name, off, fmt in u.fields:
            assert off + {"Q": 8, "I": 4, "i": 4, "B": 1, "16s": 16}[fmt] <= u.size, u.name


def test_unknown_client_and_unknown_parent(tree):
    rm, c = tree
    assert rm.alloc(0xDEAD, 0xDEAD, 0x40, DEVICE)[0] == S["NV_ERR_INVALID_OBJECT_HANDLE"]
    assert rm.alloc(c, 0x999, 0x40, SUBDEVICE)[0] == S["NV_ERR_OBJECT_NOT_FOUND"]


def test_wrong_parent_class(tree):
    rm, c = tree
    assert rm.alloc(c, c, 0x40, SUBDEVICE)[0] == S["NV_ERR_INVALID_OBJECT_PARENT"]  # needs a Device
    assert rm.alloc(c, 0x20, 0x41, DEVICE)[0] == S["NV_ERR_INVALID_OBJECT_PARENT"]  # needs a client
    assert rm.object(c, 0x40) is None and rm.object(c, 0x41) is None


def test_duplicate_handle_client_handle_and_unknown_class(tree):
    rm, c = tree
    assert rm.alloc(c, 0x10, 0x20, SUBDEVICE)[0] == S["NV_ERR_INSERT_DUPLICATE_NAME"]
    # the client's own handle for a non-root class: refused as a parent error (alloc_free.c),
    # before the parent is even looked up (the real driver's answer to the probe)
    assert rm.alloc(c, 0x10, c, SUBDEVICE)[0] == S["NV_ERR_INVALID_OBJECT_PARENT"]
    assert rm.alloc(c, 0x999, c, SUBDEVICE)[0] == S["NV_ERR_INVALID_OBJECT_PARENT"]
    assert rm.alloc(c, 0x10, 0x50, 0xBEEF)[0] == S["NV_ERR_INVALID_CLASS"]


def test_single_instance_class(tree):
    rm, c = tree
    assert rm.alloc(c, 0x20, 0x60, TIMER)[0] == S["NV_OK"]
    assert rm.alloc(c, 0x20, 0x61, TIMER)[0] == S["NV_ERR_STATE_IN_USE"]


def test_generated_handles_are_unique(tree):
    rm, c = tree
    st1, h1 = rm.alloc(c, 0x10, 0, SYSMEM)
    st2, h2 = rm.alloc(c, 0x10, 0, SYSMEM)
    assert st1 == st2 == S["NV_OK"] and h1 != h2 and 0 not in (h1, h2)


def test_double_free_and_freeing_a_parent_takes_its_children(tree):
    rm, c = tree
    n = rm.count()
    assert rm.free(c, 0x10, 0x30) == S["NV_OK"]
    # double free: NV_OK, RS_COMPATABILITY_MODE in rs_server.c (and the real driver's answer)
    assert rm.free(c, 0x10, 0x30) == S["NV_OK"] and rm.count() == n - 1
    assert rm.free(c, c, 0x10) == S["NV_OK"]  # the device: its subdevice goes with it
    assert rm.count() == n - 3
    assert rm.control(c, 0x20, 0x20800102) == S["NV_ERR_OBJECT_NOT_FOUND"]
    freed = [e.handle for e in rm.events if e.op == "free"]
    assert freed.index(0x20) < freed.index(0x10)  # children first


def test_freeing_the_client_frees_everything(tree):
    rm, c = tree
    assert rm.free(c, c, c) == S["NV_OK"]
    assert rm.clients == {}
    assert rm.free(c, c, 0x10) == S["NV_ERR_INVALID_OBJECT_HANDLE"]


def test_control_dispatch_by_interface(tree):
    rm, c = tree
    assert rm.control(c, 0x20, 0x20800102) == S["NV_OK"]  # NV2080 command on a subdevice
    assert rm.control(c, 0x10, 0x20800102) == S["NV_ERR_NOT_SUPPORTED"]  # ... on a device
    assert rm.control(c, c, 0x00000101) == S["NV_OK"]  # NV0000 on the client
    assert rm.control(c, 0x20, 0x00800101) == S["NV_ERR_NOT_SUPPORTED"]
    assert rm.control(0xBAD, 0x20, 0x20800102) == S["NV_ERR_INVALID_CLIENT"]


def test_parameter_structs_checked_before_the_object(tree):
    rm, c = tree
    # control.c: a command with a parameter struct given none, before the object is looked up
    assert rm.control(c, 0x999, 0x20800102, 0, 0) == S["NV_ERR_INVALID_ARGUMENT"]
    assert rm.control(c, 0x20, 0x20800102, 64, 0) == S["NV_ERR_INVALID_ARGUMENT"]  # size, no pointer
    assert rm.control(c, 0x20, 0x20800102, 64, 0x1000) == S["NV_OK"]
    assert rm.control(c, 0x999, 0x20800102, 64, 0x1000) == S["NV_ERR_OBJECT_NOT_FOUND"]
    assert nt.control_takes_params(0x20800145) is False  # a command without one
    assert rm.control(c, 0x20, 0x20800145, 0, 0) == S["NV_OK"]
    assert rm.control(c, 0x20, 0x20800145, 64, 0x1000) == S["NV_ERR_INVALID_ARGUMENT"]
    # param_copy.c: an RS_REQUIRED alloc parameter struct missing
    assert rm.alloc(c, 0x20, 0x70, OS_EVENT, has_params=False)[0] == S["NV_ERR_INVALID_ARGUMENT"]
    assert rm.alloc(c, 0x20, 0x70, OS_EVENT, has_params=True)[0] == S["NV_OK"]
    assert rm.alloc(c, 0x20, 0x71, DEVICE, has_params=False)[0] == S["NV_ERR_INVALID_OBJECT_PARENT"]


def test_dup_share_and_map(tree):
    rm, c = tree
    st, c2 = rm.alloc(0, 0, 0, ROOT)
    assert rm.alloc(c2, c2, 0x10, DEVICE)[0] == S["NV_OK"]
    assert rm.dup(c2, 0x10, 0x70, c, 0x30) == (S["NV_OK"], 0x70)
    assert rm.object(c2, 0x70).class_name == "NV01_MEMORY_SYSTEM"
    assert rm.dup(c2, 0x10, 0x70, c, 0x30)[0] == S["NV_ERR_INSERT_DUPLICATE_NAME"]
    assert rm.dup(c2, 0x10, 0x71, c, 0x999)[0] == S["NV_ERR_OBJECT_NOT_FOUND"]
    assert rm.dup(c2, c2, 0x72, c, 0x30)[0] == S["NV_ERR_INVALID_OBJECT_PARENT"]
    assert rm.share(c, 0x30) == S["NV_OK"] and rm.share(c, 0x31) == S["NV_ERR_OBJECT_NOT_FOUND"]
    assert rm.map_memory(c, 0x10, 0x30) == S["NV_OK"]
    assert rm.map_memory(c, 0x10, 0x20) == S["NV_ERR_INVALID_OBJECT_HANDLE"]  # not memory
    assert rm.map_memory(c, 0x10, 0x99) == S["NV_ERR_OBJECT_NOT_FOUND"]


def _alloc(fe, path, h_root, h_parent, h_new, h_class, size=48):
    params = pack(nt.NVOS64, size, hRoot=h_root, hObjectParent=h_parent, hObjectNew=h_new, hClass=h_class)
    ret, out = fe.ioctl(path, nt.nv_ioctl(0x2B, size), params)
    return ret, nt.unpack_fields(nt.NVOS64 if size == 48 else nt.NVOS21, out)


def test_dispatch_byte_level_alloc_and_refusals():
    fe = NvidiaFrontend()
    ret, f = _alloc(fe, "/dev/nvidiactl", 0, 0, 0, ROOT)
    assert ret == 0 and f["status"] == 0 and f["hObjectNew"] != 0
    c = f["hObjectNew"]
    fe.rm.gpus_attached = True  # as after NV0000_CTRL_CMD_GPU_ATTACH_IDS
    ret, f = _alloc(fe, "/dev/nvidiactl", c, c, 0x10, DEVICE, size=32)  # the NVOS21 form
    assert ret == 0 and f["status"] == 0
    ret, f = _alloc(fe, "/dev/nvidiactl", c, c, 0x11, SUBDEVICE)  # object error: in the struct
    assert ret == 0 and f["status"] == S["NV_ERR_INVALID_OBJECT_PARENT"]
    assert _alloc(fe, "/dev/nvidia0", c, 0x10, 0x20, SUBDEVICE)[0] == -errno.EINVAL  # ctl only
    assert _alloc(fe, "/dev/nvidiactl", c, 0x10, 0x20, SUBDEVICE, size=40)[0] == -errno.EINVAL
    assert fe.ioctl("/dev/nvidiactl", nt.nv_ioctl(0x2B, 48), b"\0" * 8)[0] == -errno.EFAULT
    assert fe.ioctl("/dev/nvidiactl", nt.nv_ioctl(0x7F, 8), b"\0" * 8)[0] == -errno.EINVAL
    free = pack(nt.NVOS00, 16, hRoot=c, hObjectParent=c, hObjectOld=0x10)
    for expect in (S["NV_OK"], S["NV_OK"]):  # a double free answers NV_OK (rs_server.c)
        ret, out = fe.ioctl("/dev/nvidiactl", nt.nv_ioctl(0x29, 16), free)
        assert ret == 0 and nt.unpack_fields(nt.NVOS00, out)["status"] == expect
