"""The back end: the Resource Manager's side of vGPU (in ``nvidia.ko``), modelled.

The front end (``nvidia-vgpu-vfio``) owns no vGPU state. At init it asks the back end for an
operations table (``nvidia_vgpu_vfio_set_ops`` fills ``vgpu_vfio_ops``) and from then on only
calls through it: ``vgpu_create``, ``vgpu_delete``, ``vgpu_bar_info``, ``vgpu_get_name``,
``vgpu_get_description``, ``vgpu_get_instances`` (the names the project's founding document on
NVIDIA's vGPU driver lists; that document stops at "..."). The two calls that start and stop
an instance when a VM opens and releases it are named here for what they do
(``vgpu_start``, ``vgpu_stop``): the document does not name them.

The back end keeps, per physical GPU: its vGPU types (``uvmlab.vgpu.types``), the instances
created (UUID, type, open or not) and the framebuffer each one was given. Time-sliced vGPUs on
one physical GPU must all be of the same type unless the GPU supports mixed-size mode (NVIDIA
AI Enterprise docs, *Volta Architecture vGPU Types*: "This GPU does not support mixed-size
mode"; the model treats every GPU so), so a type has instances available only while the GPU
holds none of another type. Return values are 0 or a negative errno, as the kernel expects.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field

from uvmlab.vgpu.types import VgpuType, types_for

#: the BAR sizes a vGPU exposes to its VM (``vgpu_bar_info``): BAR0 registers 16 MiB, BAR1 the
#: framebuffer aperture and BAR3 32 MiB, as a VM sees them with ``lspci -v``. *Unconfirmed*:
#: the model's own choice; only their existence matters to the control plane.
BAR0_BYTES = 16 << 20
BAR3_BYTES = 32 << 20


@dataclass(frozen=True)
class VgpuVfioOps:
    """``vgpu_vfio_ops``: the table the back end fills and the front end calls through."""

    vgpu_create: Callable[[str, str, str], int]  # (pgpu, uuid, type_id) -> 0 / -errno
    vgpu_delete: Callable[[str, str], int]  # (pgpu, uuid)
    vgpu_bar_info: Callable[[str, str], dict[str, int]]  # (pgpu, uuid) -> {"bar0": bytes, ...}
    vgpu_get_name: Callable[[str, str], str]  # (pgpu, type_id)
    vgpu_get_description: Callable[[str, str], str]
    vgpu_get_instances: Callable[[str, str], int]  # available instances of a type
    vgpu_get_types: Callable[[str], list[str]]  # the type ids a physical GPU supports
    vgpu_start: Callable[[str, str], int]  # a VM opened the device
    vgpu_stop: Callable[[str, str], int]  # ... and released it


@dataclass
class VgpuInstance:
    uuid: str
    vgpu_type: VgpuType
    pgpu: str
    open: bool = False


@dataclass
class PhysicalGpu:
    name: str  # the PCI name the front end registers as the mdev parent
    gpu: str  # the HAL's GPU name (h100, h200, v100)
    types: dict[str, VgpuType] = field(default_factory=dict)
    instances: dict[str, VgpuInstance] = field(default_factory=dict)


class ResourceManager:
    """The RM's vGPU back end for the physical GPUs it was given."""

    def __init__(self) -> None:
        self.pgpus: dict[str, PhysicalGpu] = {}
        self.calls: list[str] = []  # every op called, in order (what the front end asked for)

    def add_gpu(self, pci_name: str, gpu: str) -> PhysicalGpu:
        p = PhysicalGpu(pci_name, gpu, {t.type_id: t for t in types_for(gpu)})
        self.pgpus[pci_name] = p
        return p

    def set_ops(self) -> VgpuVfioOps:
        """``nvidia_vgpu_vfio_set_ops``: hand the front end the table of back-end entry points."""
        return VgpuVfioOps(
            vgpu_create=self._create,
            vgpu_delete=self._delete,
            vgpu_bar_info=self._bar_info,
            vgpu_get_name=self._name,
            vgpu_get_description=self._description,
            vgpu_get_instances=self._instances,
            vgpu_get_types=self._types,
            vgpu_start=self._start,
            vgpu_stop=self._stop,
        )

    def instance(self, uuid: str) -> VgpuInstance:
        for p in self.pgpus.values():
            if uuid in p.instances:
                return p.instances[uuid]
        raise KeyError(uuid)

    # ---- the ops -----------------------------------------------------------------------------------
    def _log(self, op: str, *args: str) -> None:
        self.calls.append(f"{op}({', '.join(args)})")

    def _types(self, pgpu: str) -> list[str]:
        self._log("vgpu_get_types", pgpu)
        return list(self.pgpus[pgpu].types)

    def _name(self, pgpu: str, type_id: str) -> str:
        self._log("vgpu_get_name", pgpu, type_id)
        return self.pgpus[pgpu].types[type_id].name

    def _description(self, pgpu: str, type_id: str) -> str:
        self._log("vgpu_get_description", pgpu, type_id)
        return self.pgpus[pgpu].types[type_id].description

    def _instances(self, pgpu: str, type_id: str) -> int:
        self._log("vgpu_get_instances", pgpu, type_id)
        p = self.pgpus[pgpu]
        t = p.types[type_id]
        if any(i.vgpu_type.type_id != type_id for i in p.instances.values()):
            return 0  # equal-size mode: another type already lives on this GPU
        return t.max_instances - len(p.instances)

    def _create(self, pgpu: str, uuid: str, type_id: str) -> int:
        self._log("vgpu_create", pgpu, uuid, type_id)
        p = self.pgpus.get(pgpu)
        if p is None or type_id not in p.types:
            return -errno.EINVAL
        if self._instances(pgpu, type_id) <= 0:
            return -errno.EUSERS
        p.instances[uuid] = VgpuInstance(uuid, p.types[type_id], pgpu)
        return 0

    def _delete(self, pgpu: str, uuid: str) -> int:
        self._log("vgpu_delete", pgpu, uuid)
        inst = self.pgpus[pgpu].instances.get(uuid)
        if inst is None:
            return -errno.ENODEV
        if inst.open:
            return -errno.EBUSY  # a VM still holds it
        del self.pgpus[pgpu].instances[uuid]
        return 0

    def _bar_info(self, pgpu: str, uuid: str) -> dict[str, int]:
        self._log("vgpu_bar_info", pgpu, uuid)
        inst = self.pgpus[pgpu].instances[uuid]
        return {"bar0": BAR0_BYTES, "bar1": inst.vgpu_type.framebuffer_bytes, "bar3": BAR3_BYTES}

    def _start(self, pgpu: str, uuid: str) -> int:
        self._log("vgpu_start", pgpu, uuid)
        inst = self.pgpus[pgpu].instances.get(uuid)
        if inst is None:
            return -errno.ENODEV
        if inst.open:
            return -errno.EBUSY  # one VM per vGPU
        inst.open = True
        return 0

    def _stop(self, pgpu: str, uuid: str) -> int:
        self._log("vgpu_stop", pgpu, uuid)
        inst = self.pgpus[pgpu].instances.get(uuid)
        if inst is None:
            return -errno.ENODEV
        inst.open = False
        return 0
