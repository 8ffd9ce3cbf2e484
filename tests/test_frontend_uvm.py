"""The modelled /dev/nvidia-uvm: refusals with the driver's status codes, and an ioctl stream
driving the same model as the IR (replay vs the IR twin of the traced program)."""

import errno
import struct

import pytest

from uvmlab.api import simulate
from uvmlab.frontend import nvtables as nt
from uvmlab.frontend.client import managed_advise_session
from uvmlab.frontend.decode import decode
from uvmlab.frontend.programs.twins import managed_advise_ir
from uvmlab.frontend.replay import canonical, host_calls, replay_records
from uvmlab.frontend.trace import KIND_IOCTL, KIND_MMAP, KIND_MUNMAP, Record
from uvmlab.frontend.uvm_dev import UvmFile

S = nt.STATUS
GPU = bytes(range(1, 17))
MiB = 1 << 20


def test_init_check_and_mmap_before_initialize():
    f = UvmFile()
    assert f.ioctl("UVM_REGISTER_GPU", {"gpu_uuid": GPU}) == S["NV_ERR_ILLEGAL_ACTION"]
    assert f.mmap(0x200000000, 2 * MiB) == -errno.EBADFD
    assert f.ioctl("UVM_INITIALIZE", {"flags": 0}) == S["NV_OK"]
    assert f.mmap(0x200000000, 2 * MiB) == 0
    assert f.mmap(0x200100000, 2 * MiB) == -errno.EEXIST  # overlaps the first range


def test_range_and_device_refusals():
    f = UvmFile()
    f.ioctl("UVM_INITIALIZE", {})
    assert f.ioctl("UVM_REGISTER_GPU", {"gpu_uuid": GPU}) == S["NV_OK"]
    assert f.ioctl("UVM_REGISTER_GPU", {"gpu_uuid": GPU}) == S["NV_ERR_INVALID_DEVICE"]
    f.mmap(0x200000000, 4 * MiB)
    pl = {"requestedBase": 0x200000000, "length": 2 * MiB}
    assert f.ioctl("UVM_SET_PREFERRED_LOCATION", {**pl, "preferredLocation": GPU}) == S["NV_OK"]
    assert (
        f.ioctl("UVM_SET_PREFERRED_LOCATION", {**pl, "preferredLocation": bytes(15) + b"\1"})
        == S["NV_ERR_INVALID_DEVICE"]
    )
    assert f.ioctl("UVM_SET_ACCESSED_BY", {**pl, "accessedByUuid": nt.CPU_UUID}) == S["NV_OK"]
    bad = [
        {"requestedBase": 0x200000001, "length": 4096},  # unaligned
        {"requestedBase": 0x200000000, "length": 0},  # empty
        {"requestedBase": 0x200000000, "length": 8 * MiB},
    ]  # beyond the managed range
    for p in bad:
        assert f.ioctl("UVM_ENABLE_READ_DUPLICATION", p) == S["NV_ERR_INVALID_ADDRESS"]
    mig = {"base": 0x200000000, "length": 4 * MiB, "destinationUuid": GPU}
    assert f.ioctl("UVM_MIGRATE", {**mig, "flags": 0x100}) == S["NV_ERR_INVALID_ARGUMENT"]
    assert f.ioctl("UVM_MIGRATE", mig) == S["NV_OK"]
    assert [c.op for c in f.calls] == ["advise", "advise", "prefetch"]
    assert f.calls[0].processor == 1 and f.calls[1].processor == 0


def _uvm(i, cmd, payload, status=0, fd=5):
    u = nt.UVM_IOCTLS[cmd]
    after = bytearray(payload.ljust(u.size, b"\0"))
    for name, off, _fmt in u.fields:
        if name == "rmStatus":
            struct.pack_into("<I", after, off, status)
    return Record(
        i,
        KIND_IOCTL,
        1,
        1,
        i,
        i + 1,
        fd,
        0,
        0,
        "/dev/nvidia-uvm",
        cmd,
        0x7000,
        payload.ljust(u.size, b"\0"),
        bytes(after),
    )


def _rng(base, length, uuid=None, extra=b""):
    return struct.pack("<QQ", base, length) + (uuid or b"") + extra


def managed_advise_like_trace(base_a=0x7F0000000000, base_b=0x7F0002000000):
    """The ioctls managed_advise.cu makes, as the driver sees them (synthetic until real ones)."""
    a, b, half = base_a, base_b, 16 * MiB
    recs = [
        _uvm(0, 0x30000001, struct.pack("<Q", 0)),
        _uvm(1, 37, GPU),
        Record(2, KIND_MMAP, 1, 1, 2, 3, 5, 0, 0, "/dev/nvidia-uvm", a, 32 * MiB, b"", b""),
        Record(3, KIND_MMAP, 1, 1, 3, 4, 5, 0, 0, "/dev/nvidia-uvm", b, 16 * MiB, b"", b""),
        Record(4, KIND_MMAP, 1, 1, 4, 5, 5, 0, 0, "/dev/nvidia-uvm", b + 16 * MiB, 2 * MiB, b"", b""),
        _uvm(5, 42, _rng(a, half, GPU, struct.pack("<i", -1))),
        _uvm(6, 46, _rng(a, 32 * MiB, nt.CPU_UUID)),
        _uvm(7, 44, _rng(b, 16 * MiB)),
        _uvm(8, 51, _rng(a, 32 * MiB, GPU, struct.pack("<I", 1))),
        _uvm(9, 51, _rng(a + half, half, nt.CPU_UUID, struct.pack("<I", 1))),
        _uvm(10, 43, _rng(a, half)),
        Record(11, KIND_MUNMAP, 1, 1, 11, 12, -1, 0, 0, "", a, 32 * MiB, b"", b""),
    ]
    return recs


def test_replay_matches_the_ir_twin():
    rep = replay_records(managed_advise_like_trace())
    assert rep.checked == 8 and rep.agreed == 8, rep.disagreements
    w = rep.workload()
    twin = managed_advise_ir()
    assert canonical(host_calls(w)) == canonical(host_calls(twin))


def test_replay_reports_disagreement_with_the_driver():
    recs = managed_advise_like_trace()
    recs[6] = _uvm(6, 46, _rng(0x7F0000000000, 32 * MiB, nt.CPU_UUID), status=S["NV_ERR_INVALID_ADDRESS"])
    rep = replay_records(recs)
    assert rep.agreed == rep.checked - 1
    assert "UVM_SET_ACCESSED_BY" in rep.disagreements[0]


@pytest.mark.slow
def test_replayed_prefetches_move_what_the_twin_moves():
    w = replay_records(managed_advise_like_trace()).workload()
    rows = [r for r in simulate(w).ops if r["op"] == "prefetch"]
    twin_rows = [r for r in simulate(managed_advise_ir()).ops if r["op"] == "prefetch"]
    assert [r["bytes_dtoh"] for r in rows] == [r["bytes_dtoh"] for r in twin_rows]


def test_modelled_session_decodes_fully_and_replays_as_the_twin():
    mc = managed_advise_session()
    dec = decode(mc.records)
    assert dec.named_fraction() == 1.0 and dec.rm.count() == 0  # everything freed at exit
    kinds = [e.class_name for _, e in dec.tree if e.op == "alloc"]
    assert kinds[:3] == ["NV01_ROOT", "NV01_DEVICE_0", "NV20_SUBDEVICE_0"]
    assert "HOPPER_CHANNEL_GPFIFO_A" in kinds  # under its channel group (resource_list.h)
    rep = replay_records(mc.records)
    assert canonical(host_calls(rep.workload())) == canonical(host_calls(managed_advise_ir()))


def test_unknown_gpu_uuid_is_not_found():
    f = UvmFile(present_gpus={GPU})
    f.ioctl("UVM_INITIALIZE", {})
    assert f.ioctl("UVM_REGISTER_GPU", {"gpu_uuid": bytes(16 * [7])}) == S["NV_ERR_GPU_UUID_NOT_FOUND"]
    assert f.ioctl("UVM_REGISTER_GPU", {"gpu_uuid": GPU}) == S["NV_OK"]
