"""The resource manager's object model: clients and their handle trees (resserv).

What the RM does with NV_ESC_RM_ALLOC / FREE / CONTROL / DUP_OBJECT / SHARE / MAP_MEMORY, and the
NV_STATUS it answers for each refusal, as NVIDIA's sources (580 branch) have it, checked in this
order for an alloc:

- ``param_copy.c`` ``rmapiParamsCopyInit`` / ``resource_desc.c``: an unknown class ->
  ``NV_ERR_INVALID_CLASS``; a class whose alloc parameters are ``RS_REQUIRED``
  (``resource_list.h``) given a NULL parameter pointer -> ``NV_ERR_INVALID_ARGUMENT``.
- ``rs_server.c`` ``serverAllocResource``: an unknown client handle ->
  ``NV_ERR_INVALID_OBJECT_HANDLE``.
- ``alloc_free.c`` ``serverAllocResourceUnderLock``: a new handle equal to the client's for a class
  that is not a root -> ``NV_ERR_INVALID_OBJECT_PARENT``; an unknown parent ->
  ``NV_ERR_OBJECT_NOT_FOUND``; a second instance of a single-instance class under the same
  parent -> ``NV_ERR_STATE_IN_USE``; a parent whose class is not in the class's parent list ->
  ``NV_ERR_INVALID_OBJECT_PARENT``.
- ``rs_client.c`` ``clientValidateNewResourceHandle``: a handle already used in the client ->
  ``NV_ERR_INSERT_DUPLICATE_NAME``; a new handle of 0 asks the RM to generate one
  (``NVOS64_PARAMETERS.hObjectNew``, nvos.h).
- ``device.c`` ``deviceConstruct_IMPL``: a device instance no client has attached
  (``gpu_mgr.c`` ``gpumgrIsDeviceEnabled``: no GPU in its mask) -> ``NV_ERR_INVALID_ARGUMENT``;
  a GPU is attached by ``NV0000_CTRL_CMD_GPU_ATTACH_IDS`` (libcuda issues it before allocating
  its device). The model starts with no GPU attached, the state the capture machine's driver was
  in (no persistence daemon): the real driver refused the probe's device alloc that way.
- Free (``rs_server.c`` ``serverFreeResourceTree``): an unknown client ->
  ``NV_ERR_INVALID_OBJECT_HANDLE``; an unknown object of a known client -> ``NV_OK``
  (``serverFreeResourceTreeLockAndFindResource`` under ``RS_COMPATABILITY_MODE``: "we return
  NV_OK for resources that don't exist"), so a double free answers NV_OK. Freeing an object frees
  its whole subtree (children first), freeing the client handle frees the client.
- Control (``control.c`` ``_rmapiRmControl``): an unknown client -> ``NV_ERR_INVALID_CLIENT``; a
  parameter pointer / size that disagrees with the command's entry in the exported-method table
  (``g_*_nvoc.c``: a parameter struct or none) -> ``NV_ERR_INVALID_ARGUMENT``, before the object
  is looked up; then an unknown object -> ``NV_ERR_OBJECT_NOT_FOUND``.
- ``escape.c`` ``NV_CTL_DEVICE_ONLY``: the RM escapes are taken on ``/dev/nvidiactl`` only; on a
  GPU file, or with a parameter size that is not the struct's, RmIoctl answers
  ``NV_ERR_INVALID_ARGUMENT`` and the ioctl fails with -EINVAL; object errors come back in the
  struct's ``status`` field with the ioctl itself returning 0.

Only the tree and its rules are modelled; what an object does (memory, channels) is not, nor
the access rights a dup or share checks between clients of different processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from uvmlab.frontend.nvtables import STATUS, control_takes_params, rm_class_by_name, rm_classes

NV_OK = STATUS["NV_OK"]
CLIENT_INTERNAL = "RmClientResource"
# Generated handles: resserv hands out client handles from a base and object handles from a
# per-client range (serverAllocClient / clientGenResourceHandle); the exact bases are not part of
# the ABI, so the model uses recognisable ones.
CLIENT_HANDLE_BASE = 0xC1D00000
OBJECT_HANDLE_BASE = 0xCAF00000
# The control interfaces of the three objects every program talks to (ctrl0000.h, ctrl0080.h,
# ctrl2080.h: the command's top 16 bits are the class it is addressed to).
_CONTROL_INTERFACE = {CLIENT_INTERNAL: 0x0000, "Device": 0x0080, "Subdevice": 0x2080}
NV0000_CTRL_CMD_GPU_ATTACH_IDS = 0x0215  # ctrl0000gpu.h
MEMORY_INTERNAL = frozenset(
    {
        "SystemMemory",
        "VideoMemory",
        "OsDescMemory",
        "VirtualMemory",
        "PhysicalMemory",
        "RegisterMemory",
        "ExtendedGpuMemory",
        "MemoryFabric",
        "VirtualMemoryRange",
        "MemoryMulticastFabric",
        "MemoryList",
    }
)


@dataclass
class RmObject:
    handle: int
    class_number: int
    class_name: str
    internal: str
    parent: RmObject | None
    children: dict[int, RmObject] = field(default_factory=dict)
    shared: bool = False

    def walk(self) -> Iterator[RmObject]:
        """This object and its subtree, parents before children."""
        yield self
        for c in list(self.children.values()):
            yield from c.walk()


@dataclass
class RmClient:
    root: RmObject
    objects: dict[int, RmObject]
    next_handle: int = OBJECT_HANDLE_BASE


@dataclass(frozen=True)
class TreeEvent:
    """One change of the handle tree: ``alloc`` / ``free`` / ``dup``, with the object's path."""

    op: str
    client: int
    handle: int
    class_name: str
    parent: int | None
    depth: int


class ResourceManager:
    """Clients keyed by handle; each holds its objects keyed by handle."""

    def __init__(self, gpus_attached: bool = False) -> None:
        self.clients: dict[int, RmClient] = {}
        self.gpus_attached = gpus_attached  # NV0000_CTRL_CMD_GPU_ATTACH_IDS seen (or attached before)
        self._next_client = CLIENT_HANDLE_BASE
        self.events: list[TreeEvent] = []

    # -- helpers ---------------------------------------------------------------------------
    def _event(self, op: str, client: int, obj: RmObject) -> None:
        depth, p = 0, obj.parent
        while p is not None:
            depth, p = depth + 1, p.parent
        self.events.append(
            TreeEvent(
                op, client, obj.handle, obj.class_name, obj.parent.handle if obj.parent else None, depth
            )
        )

    def object(self, h_client: int, handle: int) -> RmObject | None:
        c = self.clients.get(h_client)
        return None if c is None else c.objects.get(handle)

    def count(self) -> int:
        return sum(len(c.objects) for c in self.clients.values())

    # -- NV_ESC_RM_ALLOC ---------------------------------------------------------------------
    def alloc(
        self, h_root: int, h_parent: int, h_new: int, h_class: int, has_params: bool | None = None
    ) -> tuple[int, int]:
        """Allocate an object; returns (NV_STATUS, handle of the new object or 0). ``has_params``:
        whether the caller passed an alloc parameter struct (None: not known, not checked)."""
        cls = rm_classes().get(h_class)
        if cls is None or not cls.internal:
            return STATUS["NV_ERR_INVALID_CLASS"], 0
        if cls.alloc_params == "required" and has_params is False:
            return STATUS["NV_ERR_INVALID_ARGUMENT"], 0
        if cls.internal == CLIENT_INTERNAL:  # NV01_ROOT*: a new client, its own root object
            handle = h_new
            if handle == 0:
                while self._next_client in self.clients:
                    self._next_client += 1
                handle = self._next_client
            if handle in self.clients:
                return STATUS["NV_ERR_INSERT_DUPLICATE_NAME"], 0
            root = RmObject(handle, cls.number, cls.name, cls.internal, None)
            self.clients[handle] = RmClient(root, {handle: root})
            self._event("alloc", handle, root)
            return NV_OK, handle
        client = self.clients.get(h_root)
        if client is None:
            return STATUS["NV_ERR_INVALID_OBJECT_HANDLE"], 0
        if h_new == h_root:  # only a root class may take the client's handle
            return STATUS["NV_ERR_INVALID_OBJECT_PARENT"], 0
        parent = client.objects.get(h_parent if h_parent else h_root)
        if parent is None:
            return STATUS["NV_ERR_OBJECT_NOT_FOUND"], 0
        if not cls.multi_instance and any(c.internal == cls.internal for c in parent.children.values()):
            return STATUS["NV_ERR_STATE_IN_USE"], 0
        if cls.parents != ("*",) and parent.internal not in cls.parents:
            return STATUS["NV_ERR_INVALID_OBJECT_PARENT"], 0
        handle = h_new
        if handle == 0:
            while client.next_handle in client.objects:
                client.next_handle += 1
            handle = client.next_handle
        elif handle in client.objects:
            return STATUS["NV_ERR_INSERT_DUPLICATE_NAME"], 0
        if cls.internal == "Device" and not self.gpus_attached:
            return STATUS["NV_ERR_INVALID_ARGUMENT"], 0
        obj = RmObject(handle, cls.number, cls.name, cls.internal, parent)
        parent.children[handle] = obj
        client.objects[handle] = obj
        self._event("alloc", h_root, obj)
        return NV_OK, handle

    def adopt(self, h_root: int, h_parent: int, handle: int, h_class: int) -> None:
        """Insert an object the real driver created where the model refused it (a class or parent
        rule the model lacks), so that a decoded trace's tree keeps following the driver."""
        cls = rm_classes().get(h_class)
        name, internal = (cls.name, cls.internal) if cls else (f"class 0x{h_class:04x}", "")
        if internal == CLIENT_INTERNAL or h_root not in self.clients:
            if handle not in self.clients:
                root = RmObject(handle, h_class, name, CLIENT_INTERNAL, None)
                self.clients[handle] = RmClient(root, {handle: root})
                self._event("alloc", handle, root)
            return
        client = self.clients[h_root]
        if handle in client.objects:
            return
        parent = client.objects.get(h_parent) or client.root
        obj = RmObject(handle, h_class, name, internal, parent)
        parent.children[handle] = obj
        client.objects[handle] = obj
        self._event("alloc", h_root, obj)

    # -- NV_ESC_RM_FREE ----------------------------------------------------------------------
    def free(self, h_root: int, h_parent: int, h_old: int) -> int:
        """Free an object and its subtree (the client itself when ``h_old`` is its handle)."""
        client = self.clients.get(h_root)
        if client is None:
            return STATUS["NV_ERR_INVALID_OBJECT_HANDLE"]
        obj = client.objects.get(h_old)
        if obj is None:
            return NV_OK  # RS_COMPATABILITY_MODE: freeing what does not exist succeeds
        for o in reversed(list(obj.walk())):  # children go first
            self._event("free", h_root, o)
            client.objects.pop(o.handle, None)
            if o.parent is not None:
                o.parent.children.pop(o.handle, None)
        if obj is client.root:
            del self.clients[h_root]
        return NV_OK

    # -- NV_ESC_RM_CONTROL -------------------------------------------------------------------
    def control(
        self,
        h_client: int,
        h_object: int,
        cmd: int,
        params_size: int | None = None,
        params_ptr: int | None = None,
    ) -> int:
        """Dispatch check only: the client, the parameter struct the command takes, the object,
        and the command's class (its top 16 bits) against the object's; the command itself is not
        executed, but for attaching the GPUs (``NV0000_CTRL_CMD_GPU_ATTACH_IDS``).
        ``params_size`` / ``params_ptr``: the NVOS54 fields (None: not known, not checked)."""
        client = self.clients.get(h_client)
        if client is None:
            return STATUS["NV_ERR_INVALID_CLIENT"]
        takes = control_takes_params(cmd)
        if (
            params_size is not None
            and params_ptr is not None
            and (
                (params_size != 0) != (params_ptr != 0) or (takes is not None and takes != (params_size != 0))
            )
        ):
            return STATUS["NV_ERR_INVALID_ARGUMENT"]
        obj = client.objects.get(h_object)
        if obj is None:
            return STATUS["NV_ERR_OBJECT_NOT_FOUND"]
        interface = cmd >> 16
        want = _CONTROL_INTERFACE.get(obj.internal)
        if interface in _CONTROL_INTERFACE.values() and want != interface:
            return STATUS["NV_ERR_NOT_SUPPORTED"]  # an NV0000/NV0080/NV2080 command elsewhere
        if want is not None and interface != want:
            return STATUS["NV_ERR_NOT_SUPPORTED"]  # a client/device/subdevice given another's
        if cmd == NV0000_CTRL_CMD_GPU_ATTACH_IDS:
            # detaching is not modelled: the RM keeps a GPU attached while any client uses it
            self.gpus_attached = True
        return NV_OK

    # -- NV_ESC_RM_DUP_OBJECT ----------------------------------------------------------------
    def dup(
        self, h_client: int, h_parent: int, h_object: int, h_client_src: int, h_object_src: int
    ) -> tuple[int, int]:
        """Duplicate ``h_object_src`` of ``h_client_src`` under ``h_parent`` of ``h_client``."""
        src_client = self.clients.get(h_client_src)
        dst_client = self.clients.get(h_client)
        if src_client is None or dst_client is None:
            return STATUS["NV_ERR_INVALID_OBJECT_HANDLE"], 0
        src = src_client.objects.get(h_object_src)
        parent = dst_client.objects.get(h_parent)
        if src is None or parent is None:
            return STATUS["NV_ERR_OBJECT_NOT_FOUND"], 0
        if src.internal == CLIENT_INTERNAL:
            return STATUS["NV_ERR_INVALID_OBJECT_HANDLE"], 0
        cls = rm_class_by_name().get(src.class_name)
        if cls is not None and cls.parents != ("*",) and parent.internal not in cls.parents:
            return STATUS["NV_ERR_INVALID_OBJECT_PARENT"], 0
        handle = h_object
        if handle == 0:
            while dst_client.next_handle in dst_client.objects:
                dst_client.next_handle += 1
            handle = dst_client.next_handle
        elif handle in dst_client.objects or handle == h_client:
            return STATUS["NV_ERR_INSERT_DUPLICATE_NAME"], 0
        obj = RmObject(handle, src.class_number, src.class_name, src.internal, parent)
        parent.children[handle] = obj
        dst_client.objects[handle] = obj
        self._event("dup", h_client, obj)
        return NV_OK, handle

    # -- NV_ESC_RM_SHARE ---------------------------------------------------------------------
    def share(self, h_client: int, h_object: int) -> int:
        client = self.clients.get(h_client)
        if client is None:
            return STATUS["NV_ERR_INVALID_OBJECT_HANDLE"]
        obj = client.objects.get(h_object)
        if obj is None:
            return STATUS["NV_ERR_OBJECT_NOT_FOUND"]
        obj.shared = True
        return NV_OK

    # -- NV_ESC_RM_MAP_MEMORY ----------------------------------------------------------------
    def map_memory(self, h_client: int, h_device: int, h_memory: int) -> int:
        """CPU mapping of a memory object through a device or subdevice."""
        client = self.clients.get(h_client)
        if client is None:
            return STATUS["NV_ERR_INVALID_OBJECT_HANDLE"]
        dev, mem = client.objects.get(h_device), client.objects.get(h_memory)
        if dev is None or mem is None:
            return STATUS["NV_ERR_OBJECT_NOT_FOUND"]
        if dev.internal not in ("Device", "Subdevice") or mem.internal not in MEMORY_INTERNAL:
            return STATUS["NV_ERR_INVALID_OBJECT_HANDLE"]
        return NV_OK

    # -- views -------------------------------------------------------------------------------
    def tree_lines(self) -> list[str]:
        """The handle forest, one indented line per object."""
        lines: list[str] = []
        for _h, c in sorted(self.clients.items()):
            for o in c.root.walk():
                depth, p = 0, o.parent
                while p is not None:
                    depth, p = depth + 1, p.parent
                lines.append(f"{'  ' * depth}0x{o.handle:08x} {o.class_name}")
        return lines
