"""A virtualization host in one object: the back end, the mdev core, the front end, one GPU.

``VgpuHost("h100")`` loads the back end for one physical GPU at PCI address ``0000:41:00.0``,
initialises ``nvidia-vgpu-vfio`` on it and probes the GPU, so that its types appear under
``/sys/class/mdev_bus/0000:41:00.0/mdev_supported_types``. :meth:`create` and :meth:`remove`
do what an administrator does (write a UUID to ``create``, ``1`` to ``remove``).
"""

from __future__ import annotations

import uuid as _uuid

from uvmlab.vgpu.backend import ResourceManager, VgpuInstance
from uvmlab.vgpu.frontend import DRIVER_NAME, NvidiaVgpuVfio
from uvmlab.vgpu.mdev import MDEV_BUS, MDEV_CLASS, MdevCore
from uvmlab.vgpu.types import find_type

PCI_NAME = "0000:41:00.0"


class VgpuHost:
    def __init__(self, gpu: str = "h100", pci_name: str = PCI_NAME) -> None:
        self.gpu = gpu
        self.pci_name = pci_name
        self.rm = ResourceManager()
        self.rm.add_gpu(pci_name, gpu)
        self.mdev = MdevCore()
        self.vfio = NvidiaVgpuVfio(self.mdev, self.rm.set_ops)
        self.vfio.probe(pci_name)

    def type_dir(self, type_name: str) -> str:
        t = find_type(self.gpu, type_name)
        return f"{MDEV_CLASS}/{self.pci_name}/mdev_supported_types/{t.type_id}"

    def create(self, type_name: str, uuid: str | None = None) -> str:
        """``echo UUID > .../mdev_supported_types/<type>/create``; returns the UUID."""
        u = uuid or str(_uuid.uuid4())
        self.mdev.write(self.type_dir(type_name) + "/create", u + "\n")
        return u.lower()

    def remove(self, uuid: str) -> None:
        self.mdev.write(f"{MDEV_BUS}/{uuid}/remove", "1\n")

    def instance(self, uuid: str) -> VgpuInstance:
        return self.rm.instance(uuid)


assert DRIVER_NAME  # the type ids in uvmlab.vgpu.types start with it
