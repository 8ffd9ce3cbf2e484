"""The modelled mdev / vGPU control plane against the documented interface
(Documentation/ABI/testing/sysfs-bus-vfio-mdev; mdev_core.c / mdev_sysfs.c errno values)."""

from __future__ import annotations

import errno

import pytest

from uvmlab.vgpu.backend import ResourceManager, VgpuVfioOps
from uvmlab.vgpu.frontend import NvidiaVgpuVfio
from uvmlab.vgpu.host import PCI_NAME, VgpuHost
from uvmlab.vgpu.mdev import MDEV_BUS, MDEV_CLASS, MdevCore, MdevError
from uvmlab.vgpu.types import find_type, types_for

U1 = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"  # the ABI document's example UUID
U2 = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1002"


def _errno(fn) -> int:
    with pytest.raises(MdevError) as ei:
        fn()
    return ei.value.errno


def test_type_directory_has_the_documented_attributes():
    h = VgpuHost("h100")
    types_dir = f"{MDEV_CLASS}/{PCI_NAME}/mdev_supported_types"
    dirs = h.mdev.listdir(types_dir)
    assert sorted(dirs) == sorted(t.type_id for t in types_for("h100"))
    td = h.type_dir("H100-20C")
    assert set(h.mdev.listdir(td)) >= {
        "name",
        "description",
        "device_api",
        "available_instances",
        "create",
        "devices",
    }
    assert h.mdev.read(td + "/name").strip() == "H100-20C"
    assert h.mdev.read(td + "/device_api").strip() == "vfio-pci"
    assert int(h.mdev.read(td + "/available_instances")) == find_type("h100", "H100-20C").max_instances


def test_create_by_uuid_makes_a_device_and_uses_an_instance():
    h = VgpuHost("h100")
    td = h.type_dir("H100-40C")
    assert h.mdev.write(td + "/create", U1 + "\n") == 37  # bytes consumed, newline included
    assert U1 in h.mdev.listdir(MDEV_BUS)
    assert h.mdev.listdir(td + "/devices") == [U1]
    assert h.mdev.read(f"{MDEV_BUS}/{U1}/mdev_type").strip() == td
    assert int(h.mdev.read(td + "/available_instances")) == 1
    assert h.instance(U1).vgpu_type.framebuffer_bytes == 40 << 30


def test_creating_past_available_instances_is_eusers():
    h = VgpuHost("h100")
    for i in range(2):
        h.create("H100-40C", f"00000000-0000-0000-0000-00000000000{i}")
    assert int(h.mdev.read(h.type_dir("H100-40C") + "/available_instances")) == 0
    assert _errno(lambda: h.create("H100-40C", U1)) == errno.EUSERS
    assert U1 not in h.mdev.devices


def test_equal_size_mode_leaves_no_instance_of_another_type():
    h = VgpuHost("h100")
    h.create("H100-20C", U1)
    assert int(h.mdev.read(h.type_dir("H100-10C") + "/available_instances")) == 0
    assert _errno(lambda: h.create("H100-10C", U2)) == errno.EUSERS


@pytest.mark.parametrize(
    "text",
    [
        "not-a-uuid",
        "83b8f4f2-509f-382f-3c1e-e6bfe0fa100",
        "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001-x",
        "83b8f4f2x509f-382f-3c1e-e6bfe0fa1001",
        "g3b8f4f2-509f-382f-3c1e-e6bfe0fa1001",
        "",
    ],
)
def test_a_bad_uuid_is_einval(text):
    h = VgpuHost("h100")
    assert _errno(lambda: h.mdev.write(h.type_dir("H100-20C") + "/create", text)) == errno.EINVAL
    assert not h.mdev.devices


def test_a_uuid_twice_is_eexist():
    h = VgpuHost("h100")
    h.create("H100-20C", U1)
    assert _errno(lambda: h.create("H100-20C", U1.upper())) == errno.EEXIST


def test_removing_an_open_instance_is_ebusy_and_keeps_it():
    h = VgpuHost("h100")
    h.create("H100-20C", U1)
    h.mdev.open(U1)
    assert _errno(lambda: h.remove(U1)) == errno.EBUSY
    assert U1 in h.mdev.devices and h.instance(U1).open
    h.mdev.close(U1)
    h.remove(U1)
    assert U1 not in h.mdev.devices
    assert int(h.mdev.read(h.type_dir("H100-20C") + "/available_instances")) == 4


def test_remove_zero_changes_nothing_and_garbage_is_einval():
    h = VgpuHost("h100")
    h.create("H100-20C", U1)
    h.mdev.write(f"{MDEV_BUS}/{U1}/remove", "0")
    assert U1 in h.mdev.devices
    assert _errno(lambda: h.mdev.write(f"{MDEV_BUS}/{U1}/remove", "yes")) == errno.EINVAL


def test_files_that_do_not_exist_and_wrong_directions():
    h = VgpuHost("h100")
    td = h.type_dir("H100-20C")
    assert _errno(lambda: h.mdev.read(td + "/create")) == errno.EIO  # write-only
    assert _errno(lambda: h.mdev.write(td + "/name", "x")) == errno.EACCES  # read-only
    assert _errno(lambda: h.mdev.read(f"{MDEV_BUS}/{U1}/mdev_type")) == errno.ENOENT
    assert _errno(lambda: h.mdev.open(U1)) == errno.ENODEV
    assert _errno(lambda: h.mdev.read(f"{MDEV_CLASS}/{PCI_NAME}/mdev_supported_types/x/name")) == errno.ENOENT


def test_one_vm_per_instance():
    h = VgpuHost("h100")
    h.create("H100-20C", U1)
    h.mdev.open(U1)
    assert _errno(lambda: h.mdev.open(U1)) == errno.EBUSY


def test_front_end_only_calls_the_ops_table():
    """Swap in a recording table: every sysfs action reaches the back end through it, and the
    front end holds no reference to the back end itself."""
    rm = ResourceManager()
    rm.add_gpu(PCI_NAME, "h100")
    real = rm.set_ops()
    seen: list[str] = []

    def wrap(name):
        fn = getattr(real, name)

        def call(*a):
            seen.append(name)
            return fn(*a)

        return call

    recording = VgpuVfioOps(**{f: wrap(f) for f in VgpuVfioOps.__dataclass_fields__})
    core = MdevCore()
    fe = NvidiaVgpuVfio(core, lambda: recording)
    fe.probe(PCI_NAME)
    assert all(v is not rm for v in vars(core.parents[PCI_NAME]).values())
    td = f"{MDEV_CLASS}/{PCI_NAME}/mdev_supported_types/nvidia-h100-20c"
    core.read(td + "/name")
    core.read(td + "/description")
    core.write(td + "/create", U1)
    core.open(U1)
    core.close(U1)
    core.write(f"{MDEV_BUS}/{U1}/remove", "1")
    for op in (
        "vgpu_get_types",
        "vgpu_get_name",
        "vgpu_get_description",
        "vgpu_get_instances",
        "vgpu_create",
        "vgpu_bar_info",
        "vgpu_start",
        "vgpu_stop",
        "vgpu_delete",
    ):
        assert op in seen, op
    assert not rm.pgpus[PCI_NAME].instances


def test_bar1_is_the_framebuffer():
    h = VgpuHost("h200")
    u = h.create("H200-35C", U1)
    bars = h.rm.set_ops().vgpu_bar_info(PCI_NAME, u)
    assert bars["bar1"] == 35 << 30 and bars["bar0"] > 0


def test_types_ladders_are_consistent():
    for gpu in ("h100", "h200", "v100"):
        ts = types_for(gpu)
        top = ts[0]
        assert top.max_instances == 1
        for t in ts:  # instances never need more framebuffer than the largest type has
            assert t.framebuffer_bytes * t.max_instances <= top.framebuffer_bytes
            assert t.default_timeslice_ns == (2_000_000 if t.max_instances <= 8 else 1_000_000)
