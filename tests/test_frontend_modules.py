"""Module stack: load / unload order and every refusal the kernel makes (uvmlab.frontend.modules)."""

import errno

import pytest

from uvmlab.frontend.modules import LOAD_ORDER, MODULES, ModuleError, ModuleStack


def full_stack() -> ModuleStack:
    s = ModuleStack()
    for m in LOAD_ORDER:
        s.insmod(m)
    return s


def test_load_order_respects_every_dependency():
    for i, m in enumerate(LOAD_ORDER):
        assert set(MODULES[m].depends) <= set(LOAD_ORDER[:i])
    s = full_stack()
    assert s.loaded == list(LOAD_ORDER)
    assert s.users("nvidia") == ["nvidia-modeset", "nvidia-drm", "nvidia-uvm"]
    assert s.refcount("nvidia") == 3 and s.refcount("nvidia-modeset") == 1


@pytest.mark.parametrize(
    "module,missing", [("nvidia-uvm", "nvidia"), ("nvidia-modeset", "nvidia"), ("nvidia-drm", "nvidia")]
)
def test_insmod_before_its_dependency_is_refused(module, missing):
    s = ModuleStack()
    with pytest.raises(ModuleError, match="unknown symbol") as e:
        s.insmod(module)
    assert e.value.errno == errno.ENOENT and missing in str(e.value)
    assert s.loaded == []


def test_drm_needs_modeset_too():
    s = ModuleStack()
    s.insmod("nvidia")
    with pytest.raises(ModuleError) as e:
        s.insmod("nvidia-drm")
    assert e.value.errno == errno.ENOENT and "nvidia-modeset" in str(e.value)


def test_modprobe_loads_dependencies_first_and_twice_insmod_is_eexist():
    s = ModuleStack()
    assert s.modprobe("nvidia-drm") == ["nvidia", "nvidia-modeset", "nvidia-drm"]
    assert s.modprobe("nvidia-uvm") == ["nvidia-uvm"]
    with pytest.raises(ModuleError) as e:
        s.insmod("nvidia")
    assert e.value.errno == errno.EEXIST


def test_unloading_nvidia_while_dependents_are_loaded_is_ebusy():
    s = full_stack()
    with pytest.raises(ModuleError, match="in use by: nvidia-modeset nvidia-drm nvidia-uvm") as e:
        s.rmmod("nvidia")
    assert e.value.errno == errno.EBUSY
    with pytest.raises(ModuleError):
        s.rmmod("nvidia-modeset")  # nvidia-drm uses it
    for m in reversed(LOAD_ORDER):  # the reverse order works
        s.rmmod(m)
    assert s.loaded == []


def test_open_device_file_pins_its_module():
    s = full_stack()
    assert s.open("/dev/nvidia-uvm") == "nvidia-uvm"
    with pytest.raises(ModuleError, match="open device file") as e:
        s.rmmod("nvidia-uvm")
    assert e.value.errno == errno.EBUSY
    s.close("nvidia-uvm")
    s.rmmod("nvidia-uvm")
    for m in ("nvidia-drm", "nvidia-modeset"):
        s.rmmod(m)
    s.open("/dev/nvidiactl")
    with pytest.raises(ModuleError) as e:
        s.rmmod("nvidia")
    assert e.value.errno == errno.EBUSY


def test_device_files_exist_only_while_their_module_is_loaded():
    s = ModuleStack()
    s.insmod("nvidia")
    assert "/dev/nvidiactl" in s.device_files() and "/dev/nvidia-uvm" not in s.device_files()
    with pytest.raises(ModuleError) as e:
        s.open("/dev/nvidia-uvm")
    assert e.value.errno == errno.ENODEV
    s.insmod("nvidia-uvm")
    assert {"/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"} <= set(s.device_files())
    assert s.open("/dev/nvidia-caps/nvidia-cap1") == "nvidia"


def test_unload_of_a_module_not_loaded_and_close_without_open():
    s = ModuleStack()
    with pytest.raises(ModuleError) as e:
        s.rmmod("nvidia")
    assert e.value.errno == errno.ENOENT
    with pytest.raises(ModuleError) as e:
        s.close("nvidia")
    assert e.value.errno == errno.EBADF
