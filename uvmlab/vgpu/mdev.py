"""The kernel's mediated-device core (drivers/vfio/mdev) and its sysfs tree, modelled.

What a vendor driver registers and what an administrator sees, after the kernel's
*sysfs-bus-vfio-mdev* ABI document (Documentation/ABI/testing/sysfs-bus-vfio-mdev) and
*VFIO Mediated devices* (Documentation/driver-api/vfio-mediated-device.rst):

* a parent device registers its supported types; each appears as
  ``<parent>/mdev_supported_types/<driver>-<type>/`` with ``name``, ``description``,
  ``device_api`` and ``available_instances`` (read-only; ``device_api`` and
  ``available_instances`` are mandatory), ``create`` (write-only) and ``devices/`` (links to the
  instances of that type);
* writing a UUID to ``create`` makes an instance: ``/sys/bus/mdev/devices/<uuid>/`` with
  ``mdev_type`` (a link back to the type) and ``remove``; writing ``1`` to ``remove`` destroys it.
  "The vendor driver can fail the remove() callback if that device is active" (the ABI
  document), which NVIDIA's does for an instance a VM holds open: ``EBUSY``.

Errors are the kernel's, as negative errno values on the write (``MdevError.errno``):
``create`` with a string that is not 36 (or 37, with a newline) characters long or not a UUID:
``EINVAL`` (create_store in mdev_sysfs.c, guid_parse); a UUID that already exists: ``EEXIST``
(mdev_device_create in mdev_core.c); a type with no instance left: ``EUSERS`` (mdev_core.c since
"vfio/mdev: add mdev available instance checking to the core", Linux 6.1; drivers that count
for themselves return what their create op returns); ``remove`` with a value other than 1
changes nothing; a file that does not exist: ``ENOENT``; a read-only file written or a
write-only file read: ``EACCES`` / ``EIO`` as sysfs gives them.
"""

from __future__ import annotations

import errno as _errno
import os
import re
from dataclasses import dataclass, field
from typing import Protocol

from uvmlab.core.errors import UvmlabError

UUID_STRING_LEN = 36  # include/linux/uuid.h
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

MDEV_BUS = "/sys/bus/mdev/devices"
MDEV_CLASS = "/sys/class/mdev_bus"


class MdevError(UvmlabError):
    """A sysfs write or read that the kernel refuses; ``errno`` is the positive errno value."""

    def __init__(self, err: int, what: str) -> None:
        super().__init__(f"{what}: {_errno.errorcode.get(err, str(err))} ({_errno_text(err)})")
        self.errno = err
        self.name = _errno.errorcode.get(err, str(err))


def _errno_text(err: int) -> str:
    return os.strerror(err)


class ParentOps(Protocol):
    """What a vendor driver hands ``mdev_register_device``: its types and their callbacks.

    Every callback returns 0 or a negative errno, like the kernel's."""

    driver_name: str

    def type_ids(self) -> list[str]: ...
    def type_name(self, type_id: str) -> str: ...
    def type_description(self, type_id: str) -> str: ...
    def type_device_api(self, type_id: str) -> str: ...
    def available_instances(self, type_id: str) -> int: ...
    def create(self, type_id: str, uuid: str) -> int: ...
    def remove(self, uuid: str) -> int: ...
    def open_device(self, uuid: str) -> int: ...
    def close_device(self, uuid: str) -> None: ...


@dataclass
class MdevDevice:
    uuid: str
    parent: str
    type_dir: str  # "<driver>-<type>"
    opened: int = 0


@dataclass
class MdevCore:
    """The mdev bus: registered parents, created devices, and their sysfs files."""

    parents: dict[str, ParentOps] = field(default_factory=dict)
    devices: dict[str, MdevDevice] = field(default_factory=dict)

    # ---- the vendor side ---------------------------------------------------------------------
    def register_device(self, parent: str, ops: ParentOps) -> None:
        """``mdev_register_device`` (``mdev_register_parent`` in newer kernels)."""
        if parent in self.parents:
            raise MdevError(_errno.EEXIST, f"mdev_register_device({parent})")
        self.parents[parent] = ops

    def unregister_device(self, parent: str) -> None:
        """Removes the parent; its devices are removed first (forced, as the core does)."""
        for uuid in [u for u, d in self.devices.items() if d.parent == parent]:
            self.parents[parent].remove(uuid)
            del self.devices[uuid]
        self.parents.pop(parent, None)

    # ---- the administrator's side: sysfs -------------------------------------------------------
    def _types_dir(self, parent: str) -> str:
        return f"{MDEV_CLASS}/{parent}/mdev_supported_types"

    def _type_dirs(self, parent: str) -> dict[str, str]:
        ops = self.parents[parent]
        return {f"{ops.driver_name}-{t}": t for t in ops.type_ids()}

    def listdir(self, path: str) -> list[str]:
        path = path.rstrip("/")
        if path == MDEV_CLASS:
            return sorted(self.parents)
        if path == MDEV_BUS:
            return sorted(self.devices)
        for parent in self.parents:
            tdir = self._types_dir(parent)
            if path == f"{MDEV_CLASS}/{parent}":
                return ["mdev_supported_types"]
            if path == tdir:
                return sorted(self._type_dirs(parent))
            for td in self._type_dirs(parent):
                if path == f"{tdir}/{td}":
                    return ["available_instances", "create", "description", "device_api", "devices", "name"]
                if path == f"{tdir}/{td}/devices":
                    return sorted(
                        u for u, d in self.devices.items() if d.parent == parent and d.type_dir == td
                    )
        for uuid in self.devices:
            if path == f"{MDEV_BUS}/{uuid}":
                return ["mdev_type", "remove"]
        raise MdevError(_errno.ENOENT, f"ls {path}")

    def read(self, path: str) -> str:
        parent, td, attr = self._type_attr(path)
        if parent is not None:
            ops, type_id = self.parents[parent], self._type_dirs(parent)[td]
            if attr == "name":
                return ops.type_name(type_id) + "\n"
            if attr == "description":
                return ops.type_description(type_id) + "\n"
            if attr == "device_api":
                return ops.type_device_api(type_id) + "\n"
            if attr == "available_instances":
                return f"{ops.available_instances(type_id)}\n"
            raise MdevError(_errno.EIO, f"read {path}")  # create is write-only
        dev, attr = self._device_attr(path)
        if attr == "mdev_type":  # the link, resolved
            return f"{self._types_dir(dev.parent)}/{dev.type_dir}\n"
        raise MdevError(_errno.EIO, f"read {path}")  # remove is write-only

    def write(self, path: str, text: str) -> int:
        """Write ``text`` to a sysfs file; returns the bytes consumed, raises MdevError."""
        parent, td, attr = self._type_attr(path)
        if parent is not None:
            if attr != "create":
                raise MdevError(_errno.EACCES, f"write {path}")
            return self._create_store(parent, td, text)
        dev, attr = self._device_attr(path)
        if attr != "remove":
            raise MdevError(_errno.EACCES, f"write {path}")
        return self._remove_store(dev, text)

    def _create_store(self, parent: str, td: str, text: str) -> int:
        what = f"echo {text.strip()!r} > {self._types_dir(parent)}/{td}/create"
        if not UUID_STRING_LEN <= len(text) <= UUID_STRING_LEN + 1:
            raise MdevError(_errno.EINVAL, what)
        uuid = text.strip()
        if len(uuid) != UUID_STRING_LEN or not _UUID.match(uuid):
            raise MdevError(_errno.EINVAL, what)
        uuid = uuid.lower()
        if uuid in self.devices:
            raise MdevError(_errno.EEXIST, what)
        ops, type_id = self.parents[parent], self._type_dirs(parent)[td]
        if ops.available_instances(type_id) <= 0:
            raise MdevError(_errno.EUSERS, what)
        rc = ops.create(type_id, uuid)
        if rc < 0:
            raise MdevError(-rc, what)
        self.devices[uuid] = MdevDevice(uuid, parent, td)
        return len(text)

    def _remove_store(self, dev: MdevDevice, text: str) -> int:
        what = f"echo {text.strip()!r} > {MDEV_BUS}/{dev.uuid}/remove"
        try:
            val = int(text.strip(), 0)
        except ValueError:
            raise MdevError(_errno.EINVAL, what) from None
        if val:
            rc = self.parents[dev.parent].remove(dev.uuid)
            if rc < 0:
                raise MdevError(-rc, what)
            del self.devices[dev.uuid]
        return len(text)

    # ---- VFIO: a VM opening the device -----------------------------------------------------------
    def open(self, uuid: str) -> None:
        """A user (QEMU, through VFIO) opens the device: the parent's open callback runs."""
        dev = self._device(uuid, "open")
        rc = self.parents[dev.parent].open_device(dev.uuid)
        if rc < 0:
            raise MdevError(-rc, f"open {uuid}")
        dev.opened += 1

    def close(self, uuid: str) -> None:
        dev = self._device(uuid, "close")
        if dev.opened == 0:
            raise MdevError(_errno.EINVAL, f"close {uuid}: not open")
        self.parents[dev.parent].close_device(dev.uuid)
        dev.opened -= 1

    # ---- paths ------------------------------------------------------------------------------------
    def _device(self, uuid: str, what: str) -> MdevDevice:
        dev = self.devices.get(uuid.strip().lower())
        if dev is None:
            raise MdevError(_errno.ENODEV, f"{what} {uuid}")
        return dev

    def _type_attr(self, path: str) -> tuple[str | None, str, str]:
        for parent in self.parents:
            prefix = self._types_dir(parent) + "/"
            if path.startswith(prefix):
                td, _, attr = path[len(prefix) :].partition("/")
                if td in self._type_dirs(parent) and attr in (
                    "name",
                    "description",
                    "device_api",
                    "available_instances",
                    "create",
                ):
                    return parent, td, attr
                raise MdevError(_errno.ENOENT, path)
        return None, "", ""

    def _device_attr(self, path: str) -> tuple[MdevDevice, str]:
        prefix = MDEV_BUS + "/"
        if path.startswith(prefix):
            uuid, _, attr = path[len(prefix) :].partition("/")
            dev = self.devices.get(uuid.lower())
            if dev is not None and attr in ("mdev_type", "remove"):
                return dev, attr
        raise MdevError(_errno.ENOENT, path)
