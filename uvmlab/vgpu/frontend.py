"""The front end: ``nvidia-vgpu-vfio``, a thin adapter between the mdev core and the back end.

As the project's founding document on NVIDIA's vGPU driver describes it: ``nv_vgpu_vfio_init``
first obtains the back end's operations (``nvidia_vgpu_vfio_set_ops`` fills ``vgpu_vfio_ops``),
then ``nv_vgpu_probe`` registers every physical GPU as an mdev parent with ``vgpu_fops``
(``mdev_register_device``). Every callback in ``vgpu_fops`` is answered by calling the ops table
and nothing else: this class holds the table, never the back end itself, which is what keeps
the split real (a test replaces the table with a recording one).
"""

from __future__ import annotations

from uvmlab.vgpu.backend import VgpuVfioOps
from uvmlab.vgpu.mdev import MdevCore

DRIVER_NAME = "nvidia"  # the type directories read nvidia-<n> on a real host
DEVICE_API = "vfio-pci"


class VgpuFops:
    """``vgpu_fops``: the mdev parent callbacks for one physical GPU, through the ops table."""

    driver_name = DRIVER_NAME

    def __init__(self, ops: VgpuVfioOps, pgpu: str) -> None:
        self._ops = ops
        self._pgpu = pgpu

    def type_ids(self) -> list[str]:
        # the type directory is <driver>-<id>; the back end's ids already read nvidia-...
        return [t.removeprefix(DRIVER_NAME + "-") for t in self._ops.vgpu_get_types(self._pgpu)]

    def _full(self, type_id: str) -> str:
        return f"{DRIVER_NAME}-{type_id}"

    def type_name(self, type_id: str) -> str:
        return self._ops.vgpu_get_name(self._pgpu, self._full(type_id))

    def type_description(self, type_id: str) -> str:
        return self._ops.vgpu_get_description(self._pgpu, self._full(type_id))

    def type_device_api(self, type_id: str) -> str:
        return DEVICE_API

    def available_instances(self, type_id: str) -> int:
        return self._ops.vgpu_get_instances(self._pgpu, self._full(type_id))

    def create(self, type_id: str, uuid: str) -> int:
        return self._ops.vgpu_create(self._pgpu, uuid, self._full(type_id))

    def remove(self, uuid: str) -> int:
        return self._ops.vgpu_delete(self._pgpu, uuid)

    def open_device(self, uuid: str) -> int:
        # a VM maps the BARs it is told about, then the back end starts the vGPU
        self._ops.vgpu_bar_info(self._pgpu, uuid)
        return self._ops.vgpu_start(self._pgpu, uuid)

    def close_device(self, uuid: str) -> None:
        self._ops.vgpu_stop(self._pgpu, uuid)


class NvidiaVgpuVfio:
    """The module: init takes the ops table, probe registers one physical GPU."""

    def __init__(self, mdev: MdevCore, set_ops) -> None:
        """``nv_vgpu_vfio_init``: ``set_ops`` is the back end's ``nvidia_vgpu_vfio_set_ops``."""
        self.mdev = mdev
        self.ops: VgpuVfioOps = set_ops()

    def probe(self, pgpu: str) -> None:
        """``nv_vgpu_probe``: register the physical GPU as an mdev parent with ``vgpu_fops``."""
        self.mdev.register_device(pgpu, VgpuFops(self.ops, pgpu))

    def remove(self, pgpu: str) -> None:
        self.mdev.unregister_device(pgpu)
