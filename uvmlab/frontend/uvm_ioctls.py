"""The nvidia-uvm ioctls: numbers and parameter layouts (``uvm_ioctl.h``, ``uvm_linux_ioctl.h``).

On Linux ``UVM_IOCTL_BASE(i)`` is plain ``i`` (no ``_IOC`` encoding), so the request code carries
no size: ``size`` is ``sizeof(cmd##_PARAMS)``, what ``uvm_ioctl()`` (``uvm.c``) copies in and
out. Sizes and offsets are x86-64, checked by compiling against the 580 headers.
"""

from __future__ import annotations

from dataclasses import dataclass

Field = tuple[str, int, str]

# --- nvidia-uvm ioctls -------------------------------------------------------------------------
UUID = "16s"


@dataclass(frozen=True)
class UvmIoctl:
    cmd: int
    name: str
    size: int  # sizeof(cmd##_PARAMS): what uvm_ioctl() copies in and out
    fields: tuple[Field, ...]


def _u(cmd: int, name: str, size: int, *fields: Field) -> UvmIoctl:
    return UvmIoctl(cmd, name, size, tuple(fields))


_RANGE = (("requestedBase", 0, "Q"), ("length", 8, "Q"))
UVM_IOCTLS: dict[int, UvmIoctl] = {
    u.cmd: u
    for u in (
        _u(0x30000001, "UVM_INITIALIZE", 16, ("flags", 0, "Q"), ("rmStatus", 8, "I")),
        _u(0x30000002, "UVM_DEINITIALIZE", 0),
        _u(1, "UVM_RESERVE_VA", 24, ("requestedBase", 0, "Q"), ("length", 8, "Q"), ("rmStatus", 16, "I")),
        _u(2, "UVM_RELEASE_VA", 24, ("requestedBase", 0, "Q"), ("length", 8, "Q"), ("rmStatus", 16, "I")),
        _u(3, "UVM_REGION_COMMIT", 48),
        _u(4, "UVM_REGION_DECOMMIT", 24),
        _u(5, "UVM_REGION_SET_STREAM", 48),
        _u(6, "UVM_SET_STREAM_RUNNING", 16),
        _u(7, "UVM_SET_STREAM_STOPPED", 272),
        _u(9, "UVM_RUN_TEST", 44),
        _u(10, "UVM_ADD_SESSION", 24),
        _u(11, "UVM_REMOVE_SESSION", 8),
        _u(12, "UVM_ENABLE_COUNTERS", 908),
        _u(13, "UVM_MAP_COUNTER", 48),
        _u(14, "UVM_CREATE_EVENT_QUEUE", 32),
        _u(15, "UVM_REMOVE_EVENT_QUEUE", 12),
        _u(16, "UVM_MAP_EVENT_QUEUE", 56),
        _u(17, "UVM_EVENT_CTRL", 20),
        _u(18, "UVM_REGISTER_MPS_SERVER", 536),
        _u(19, "UVM_REGISTER_MPS_CLIENT", 16),
        _u(20, "UVM_GET_GPU_UUID_TABLE", 520),
        _u(23, "UVM_CREATE_RANGE_GROUP", 16, ("rangeGroupId", 0, "Q"), ("rmStatus", 8, "I")),
        _u(24, "UVM_DESTROY_RANGE_GROUP", 16, ("rangeGroupId", 0, "Q"), ("rmStatus", 8, "I")),
        _u(
            25,
            "UVM_REGISTER_GPU_VASPACE",
            32,
            ("gpuUuid", 0, UUID),
            ("rmCtrlFd", 16, "i"),
            ("hClient", 20, "I"),
            ("hVaSpace", 24, "I"),
            ("rmStatus", 28, "I"),
        ),
        _u(26, "UVM_UNREGISTER_GPU_VASPACE", 20, ("gpuUuid", 0, UUID), ("rmStatus", 16, "I")),
        _u(
            27,
            "UVM_REGISTER_CHANNEL",
            56,
            ("gpuUuid", 0, UUID),
            ("rmCtrlFd", 16, "i"),
            ("hClient", 20, "I"),
            ("hChannel", 24, "I"),
            ("base", 32, "Q"),
            ("length", 40, "Q"),
            ("rmStatus", 48, "I"),
        ),
        _u(
            28,
            "UVM_UNREGISTER_CHANNEL",
            28,
            ("gpuUuid", 0, UUID),
            ("hClient", 16, "I"),
            ("hChannel", 20, "I"),
            ("rmStatus", 24, "I"),
        ),
        _u(
            29,
            "UVM_ENABLE_PEER_ACCESS",
            36,
            ("gpuUuidA", 0, UUID),
            ("gpuUuidB", 16, UUID),
            ("rmStatus", 32, "I"),
        ),
        _u(
            30,
            "UVM_DISABLE_PEER_ACCESS",
            36,
            ("gpuUuidA", 0, UUID),
            ("gpuUuidB", 16, UUID),
            ("rmStatus", 32, "I"),
        ),
        _u(
            31,
            "UVM_SET_RANGE_GROUP",
            32,
            ("rangeGroupId", 0, "Q"),
            ("requestedBase", 8, "Q"),
            ("length", 16, "Q"),
            ("rmStatus", 24, "I"),
        ),
        _u(
            33,
            "UVM_MAP_EXTERNAL_ALLOCATION",
            9264,
            ("base", 0, "Q"),
            ("length", 8, "Q"),
            ("offset", 16, "Q"),
            ("gpuAttributesCount", 9240, "Q"),
            ("rmCtrlFd", 9248, "i"),
            ("hClient", 9252, "I"),
            ("hMemory", 9256, "I"),
            ("rmStatus", 9260, "I"),
        ),
        _u(34, "UVM_FREE", 24, ("base", 0, "Q"), ("length", 8, "Q"), ("rmStatus", 16, "I")),
        _u(35, "UVM_MEM_MAP", 24, ("regionBase", 0, "Q"), ("regionLength", 8, "Q"), ("rmStatus", 16, "I")),
        _u(
            37,
            "UVM_REGISTER_GPU",
            40,
            ("gpu_uuid", 0, UUID),
            ("numaEnabled", 16, "B"),
            ("numaNodeId", 20, "i"),
            ("rmCtrlFd", 24, "i"),
            ("hClient", 28, "I"),
            ("hSmcPartRef", 32, "I"),
            ("rmStatus", 36, "I"),
        ),
        _u(38, "UVM_UNREGISTER_GPU", 20, ("gpu_uuid", 0, UUID), ("rmStatus", 16, "I")),
        _u(39, "UVM_PAGEABLE_MEM_ACCESS", 8, ("pageableMemAccess", 0, "B"), ("rmStatus", 4, "I")),
        _u(40, "UVM_PREVENT_MIGRATION_RANGE_GROUPS", 272, ("numGroupIds", 256, "Q"), ("rmStatus", 264, "I")),
        _u(41, "UVM_ALLOW_MIGRATION_RANGE_GROUPS", 272, ("numGroupIds", 256, "Q"), ("rmStatus", 264, "I")),
        _u(
            42,
            "UVM_SET_PREFERRED_LOCATION",
            40,
            *_RANGE,
            ("preferredLocation", 16, UUID),
            ("preferredCpuNumaNode", 32, "i"),
            ("rmStatus", 36, "I"),
        ),
        _u(43, "UVM_UNSET_PREFERRED_LOCATION", 24, *_RANGE, ("rmStatus", 16, "I")),
        _u(44, "UVM_ENABLE_READ_DUPLICATION", 24, *_RANGE, ("rmStatus", 16, "I")),
        _u(45, "UVM_DISABLE_READ_DUPLICATION", 24, *_RANGE, ("rmStatus", 16, "I")),
        _u(46, "UVM_SET_ACCESSED_BY", 40, *_RANGE, ("accessedByUuid", 16, UUID), ("rmStatus", 32, "I")),
        _u(47, "UVM_UNSET_ACCESSED_BY", 40, *_RANGE, ("accessedByUuid", 16, UUID), ("rmStatus", 32, "I")),
        _u(
            51,
            "UVM_MIGRATE",
            80,
            ("base", 0, "Q"),
            ("length", 8, "Q"),
            ("destinationUuid", 16, UUID),
            ("flags", 32, "I"),
            ("semaphoreAddress", 40, "Q"),
            ("semaphorePayload", 48, "I"),
            ("cpuNumaNode", 52, "i"),
            ("userSpaceStart", 56, "Q"),
            ("userSpaceLength", 64, "Q"),
            ("rmStatus", 72, "I"),
        ),
        _u(
            53,
            "UVM_MIGRATE_RANGE_GROUP",
            32,
            ("rangeGroupId", 0, "Q"),
            ("destinationUuid", 8, UUID),
            ("rmStatus", 24, "I"),
        ),
        _u(54, "UVM_ENABLE_SYSTEM_WIDE_ATOMICS", 20, ("gpu_uuid", 0, UUID), ("rmStatus", 16, "I")),
        _u(55, "UVM_DISABLE_SYSTEM_WIDE_ATOMICS", 20, ("gpu_uuid", 0, UUID), ("rmStatus", 16, "I")),
        _u(56, "UVM_TOOLS_INIT_EVENT_TRACKER", 56, ("rmStatus", 48, "I")),
        _u(57, "UVM_TOOLS_SET_NOTIFICATION_THRESHOLD", 8),
        _u(58, "UVM_TOOLS_EVENT_QUEUE_ENABLE_EVENTS", 16),
        _u(59, "UVM_TOOLS_EVENT_QUEUE_DISABLE_EVENTS", 16),
        _u(60, "UVM_TOOLS_ENABLE_COUNTERS", 16),
        _u(61, "UVM_TOOLS_DISABLE_COUNTERS", 16),
        _u(62, "UVM_TOOLS_READ_PROCESS_MEMORY", 40),
        _u(63, "UVM_TOOLS_WRITE_PROCESS_MEMORY", 40),
        _u(64, "UVM_TOOLS_GET_PROCESSOR_UUID_TABLE", 16, ("rmStatus", 8, "I")),
        _u(
            65,
            "UVM_MAP_DYNAMIC_PARALLELISM_REGION",
            40,
            ("base", 0, "Q"),
            ("length", 8, "Q"),
            ("gpuUuid", 16, UUID),
            ("rmStatus", 32, "I"),
        ),
        _u(
            66,
            "UVM_UNMAP_EXTERNAL",
            40,
            ("base", 0, "Q"),
            ("length", 8, "Q"),
            ("gpuUuid", 16, UUID),
            ("rmStatus", 32, "I"),
        ),
        _u(67, "UVM_TOOLS_FLUSH_EVENTS", 4, ("rmStatus", 0, "I")),
        _u(
            68,
            "UVM_ALLOC_SEMAPHORE_POOL",
            9248,
            ("base", 0, "Q"),
            ("length", 8, "Q"),
            ("rmStatus", 9240, "I"),
        ),
        _u(69, "UVM_CLEAN_UP_ZOMBIE_RESOURCES", 4, ("rmStatus", 0, "I")),
        _u(
            70,
            "UVM_PAGEABLE_MEM_ACCESS_ON_GPU",
            24,
            ("gpu_uuid", 0, UUID),
            ("pageableMemAccess", 16, "B"),
            ("rmStatus", 20, "I"),
        ),
        _u(
            71,
            "UVM_POPULATE_PAGEABLE",
            24,
            ("base", 0, "Q"),
            ("length", 8, "Q"),
            ("flags", 16, "I"),
            ("rmStatus", 20, "I"),
        ),
        _u(72, "UVM_VALIDATE_VA_RANGE", 24, ("base", 0, "Q"), ("length", 8, "Q"), ("rmStatus", 16, "I")),
        _u(73, "UVM_CREATE_EXTERNAL_RANGE", 24, ("base", 0, "Q"), ("length", 8, "Q"), ("rmStatus", 16, "I")),
        _u(
            74,
            "UVM_MAP_EXTERNAL_SPARSE",
            40,
            ("base", 0, "Q"),
            ("length", 8, "Q"),
            ("gpuUuid", 16, UUID),
            ("rmStatus", 32, "I"),
        ),
        _u(75, "UVM_MM_INITIALIZE", 8, ("uvmFd", 0, "i"), ("rmStatus", 4, "I")),
        _u(76, "UVM_TOOLS_INIT_EVENT_TRACKER_V2", 56),
        _u(77, "UVM_TOOLS_GET_PROCESSOR_UUID_TABLE_V2", 16),
        _u(78, "UVM_ALLOC_DEVICE_P2P", 56),
        _u(79, "UVM_CLEAR_ALL_ACCESS_COUNTERS", 4, ("rmStatus", 0, "I")),
        _u(
            80,
            "UVM_DISCARD",
            32,
            ("base", 0, "Q"),
            ("length", 8, "Q"),
            ("flags", 16, "Q"),
            ("rmStatus", 24, "I"),
        ),
        _u(2047, "UVM_IS_8_SUPPORTED", 8),
    )
}
UVM_BY_NAME = {u.name: u for u in UVM_IOCTLS.values()}
UVM_MIGRATE_FLAG_ASYNC = 0x1  # uvm_ioctl.h
# The CPU's processor UUID: NV_PROCESSOR_UUID_CPU_DEFAULT (nvCpuUuid.c, "produced via uuidgen(1)"),
# the bytes libcuda passes for cudaCpuDeviceId (seen in the stored real managed_advise trace). A
# zero UUID is no processor: UVM_MIGRATE to it answers NV_ERR_INVALID_DEVICE.
CPU_UUID = bytes.fromhex("a65e0f4ed7d47ba25047412c142a7773")
