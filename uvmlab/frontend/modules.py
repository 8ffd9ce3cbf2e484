"""The driver's module stack: nvidia, nvidia-modeset, nvidia-drm, nvidia-uvm.

Facts (NVIDIA open-gpu-kernel-modules, ``kernel-open/``; Linux's module loader):

- ``nvidia.ko`` exports what the others link against: ``nvUvmInterface*`` (``nv_uvm_interface.c``)
  for nvidia-uvm, ``nvidia_get_rm_ops`` (``nv-modeset-interface.c``) for nvidia-modeset, and the
  ``nvidia_p2p_*`` peer-memory API (``nv-p2p.c``). It creates ``/dev/nvidiactl`` (minor 255,
  ``NV_MINOR_DEVICE_NUMBER_CONTROL_DEVICE``, registered in ``nv.c``) and ``/dev/nvidiaN``
  (minor N, up to 247) on the NVIDIA major (195), plus ``/dev/nvidia-caps/`` (``nv-caps.c``).
- ``nvidia-modeset.ko`` needs nvidia's symbols, registers ``/dev/nvidia-modeset`` (minor 254,
  ``NV_MINOR_DEVICE_NUMBER_MODESET_DEVICE``, ``nvidia-modeset-linux.c``) and exports
  ``nvKmsKapiGetFunctionsTable``, which ``nvidia-drm.ko`` imports; nvidia-drm therefore needs
  both and creates the DRM nodes ``/dev/dri/cardN`` and ``/dev/dri/renderDN``.
- ``nvidia-uvm.ko`` needs only nvidia and registers its own character device with two minors:
  ``/dev/nvidia-uvm`` and ``/dev/nvidia-uvm-tools`` (``uvm.c``).
- Linux (``kernel/module/main.c``): ``init_module`` of a module whose imported symbols are not
  exported by a loaded module fails with -ENOENT ("Unknown symbol in module"); ``delete_module``
  of a module that other modules use, or whose reference count is held by an open file (each open
  of a device file takes a reference through the file operations' owner), fails with -EBUSY.
  ``modprobe`` loads the dependencies first; ``insmod`` does not.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from uvmlab.core.errors import UvmlabError


class ModuleError(UvmlabError):
    """A load or unload the kernel refuses; ``errno`` is what init_module / delete_module return."""

    def __init__(self, message: str, err: int) -> None:
        super().__init__(message)
        self.errno = err


@dataclass(frozen=True)
class ModuleSpec:
    name: str
    depends: tuple[str, ...]  # modules whose exported symbols this one imports
    exports: tuple[str, ...]  # the interface other modules (or user space) use
    device_files: tuple[str, ...]
    role: str


MODULES: dict[str, ModuleSpec] = {
    m.name: m
    for m in (
        ModuleSpec(
            "nvidia",
            (),
            ("nvUvmInterface*", "nvidia_get_rm_ops", "nvidia_p2p_*", "nvidia_register_error_cb"),
            ("/dev/nvidiactl", "/dev/nvidia0", "/dev/nvidia-caps/"),
            "core: PCI probe, the resource manager (RM), GPU memory, the RM ioctls",
        ),
        ModuleSpec(
            "nvidia-modeset",
            ("nvidia",),
            ("nvKmsKapiGetFunctionsTable",),
            ("/dev/nvidia-modeset",),
            "display mode setting (NVKMS) over the RM",
        ),
        ModuleSpec(
            "nvidia-drm",
            ("nvidia", "nvidia-modeset"),
            ("DRM/KMS driver",),
            ("/dev/dri/card0", "/dev/dri/renderD128"),
            "Linux DRM/KMS integration",
        ),
        ModuleSpec(
            "nvidia-uvm",
            ("nvidia",),
            ("UVM ioctls", "UVM Tools API"),
            ("/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"),
            "unified virtual memory: managed memory, page faults, migration",
        ),
    )
}
LOAD_ORDER = ("nvidia", "nvidia-modeset", "nvidia-drm", "nvidia-uvm")  # the order modprobe uses


@dataclass
class ModuleStack:
    """Loaded modules with their reference counts, and the device files open on each."""

    loaded: list[str] = field(default_factory=list)
    open_files: dict[str, int] = field(default_factory=dict)  # module -> open device files

    def users(self, name: str) -> list[str]:
        """Loaded modules that import from ``name`` (``lsmod``'s "Used by")."""
        return [m for m in self.loaded if name in MODULES[m].depends]

    def refcount(self, name: str) -> int:
        return len(self.users(name)) + self.open_files.get(name, 0)

    def device_files(self) -> list[str]:
        return [f for m in self.loaded for f in MODULES[m].device_files]

    def insmod(self, name: str) -> None:
        """Load one module, dependencies not included (``insmod``)."""
        spec = MODULES.get(name)
        if spec is None:
            raise ModuleError(f"insmod {name}: no such module", errno.ENOENT)
        if name in self.loaded:
            raise ModuleError(f"insmod {name}: module already loaded", errno.EEXIST)
        missing = [d for d in spec.depends if d not in self.loaded]
        if missing:
            raise ModuleError(
                f"insmod {name}: unknown symbol in module (needs {', '.join(missing)} loaded first)",
                errno.ENOENT,
            )
        self.loaded.append(name)

    def modprobe(self, name: str) -> list[str]:
        """Load ``name`` and its dependencies first; returns what was loaded, in order."""
        spec = MODULES.get(name)
        if spec is None:
            raise ModuleError(f"modprobe {name}: no such module", errno.ENOENT)
        done: list[str] = []
        for dep in spec.depends:
            if dep not in self.loaded:
                done += self.modprobe(dep)
        if name not in self.loaded:
            self.insmod(name)
            done.append(name)
        return done

    def rmmod(self, name: str) -> None:
        """Unload one module; refused while other modules use it or a device file is open."""
        if name not in self.loaded:
            raise ModuleError(f"rmmod {name}: module is not loaded", errno.ENOENT)
        users = self.users(name)
        if users:
            raise ModuleError(f"rmmod {name}: module is in use by: {' '.join(users)}", errno.EBUSY)
        if self.open_files.get(name, 0):
            raise ModuleError(
                f"rmmod {name}: module is in use ({self.open_files[name]} open device file(s))", errno.EBUSY
            )
        self.loaded.remove(name)

    def open(self, path: str) -> str:
        """Open a device file: the owning module must be loaded; takes a reference on it."""
        for m in self.loaded:
            if any(path == f or (f.endswith("/") and path.startswith(f)) for f in MODULES[m].device_files):
                self.open_files[m] = self.open_files.get(m, 0) + 1
                return m
        raise ModuleError(f"open {path}: no such device (its module is not loaded)", errno.ENODEV)

    def close(self, module: str) -> None:
        if self.open_files.get(module, 0) <= 0:
            raise ModuleError(f"close: no open device file of {module}", errno.EBADF)
        self.open_files[module] -= 1
