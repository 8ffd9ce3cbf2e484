"""The trace reader and decoder: naming, the tree, exports, and fuzzed bytes that never crash it."""

import gzip
import json
import random
import struct

import pytest

from uvmlab.core.errors import TraceFileError
from uvmlab.frontend import nvtables as nt
from uvmlab.frontend.decode import decode, write_parquet, write_timeline
from uvmlab.frontend.dispatch import pack
from uvmlab.frontend.fuzz import fuzz_records
from uvmlab.frontend.trace import (
    KIND_IOCTL,
    KIND_MARK,
    KIND_MMAP,
    Record,
    parse_trace,
    read_trace,
    write_trace,
)

CTL, UVM = "/dev/nvidiactl", "/dev/nvidia-uvm"


def rec(i, path, request, before, after=None, kind=KIND_IOCTL, ret=0, arg=0x7000):
    return Record(
        i,
        kind,
        1,
        1,
        1000 * i,
        1000 * i + 500,
        3,
        ret,
        0,
        path,
        request,
        arg,
        before,
        before if after is None else after,
    )


def alloc(i, h_root, h_parent, h_new, h_class, status=0, h_out=None):
    p = {"pAllocParms": 0x7000, "paramsSize": 16}  # a parameter struct, as libcuda passes
    before = pack(nt.NVOS64, 48, hRoot=h_root, hObjectParent=h_parent, hObjectNew=h_new, hClass=h_class, **p)
    after = pack(
        nt.NVOS64,
        48,
        hRoot=h_root,
        hObjectParent=h_parent,
        hObjectNew=h_new if h_out is None else h_out,
        hClass=h_class,
        status=status,
        **p,
    )
    return rec(i, CTL, nt.nv_ioctl(0x2B, 48), before, after)


def control(h_client, h_object, cmd):
    return pack(nt.NVOS54, 32, hClient=h_client, hObject=h_object, cmd=cmd, params=0x7000, paramsSize=16)


def small_trace():
    c = 0xC1D00001
    recs = [
        rec(0, "", 0, b"", kind=KIND_MARK),
        alloc(1, 0, 0, 0, 0x0000, h_out=c),
        alloc(2, c, c, 0x10, 0x0080),
        alloc(3, c, 0x10, 0x20, 0x2080),
        alloc(4, c, c, 0x21, 0x2080, status=nt.STATUS["NV_ERR_INVALID_OBJECT_PARENT"]),
        rec(5, CTL, nt.nv_ioctl(0x2A, 32), control(c, 0x20, 0x20800102)),
        rec(6, CTL, nt.nv_ioctl(0x2A, 32), control(c, 0x20, 0x2080FFFF)),
        rec(7, CTL, nt.nv_ioctl(0x29, 16), pack(nt.NVOS00, 16, hRoot=c, hObjectParent=c, hObjectOld=0x10)),
        rec(8, UVM, 0x30000001, struct.pack("<QI4x", 0, 0)),
        rec(9, CTL, nt.nv_ioctl(0x7E, 8), b"\0" * 8),
        rec(10, UVM, 999, b"\0" * 16),
        Record(11, KIND_MMAP, 1, 1, 11000, 11100, 4, 0, 0, UVM, 0x200000000, 2 << 20, b"", b""),
    ]
    return recs


def test_roundtrip_and_gzip(tmp_path):
    recs = small_trace()
    for name in ("t.ioctl", "t.ioctl.gz"):
        p = tmp_path / name
        write_trace(recs, p)
        assert read_trace(p) == recs
    with gzip.open(tmp_path / "t.ioctl.gz") as f:
        assert f.read(8) == b"UVMLIOC1"


def test_names_tree_and_model_agreement():
    dec = decode(small_trace(), gpus_attached=True)  # a machine whose GPU is already attached
    names = [c.name for c in dec.calls]
    assert names[1:4] == ["NV_ESC_RM_ALLOC"] * 3
    assert dec.calls[3].detail == "NV20_SUBDEVICE_0"
    assert dec.calls[4].status == "NV_ERR_INVALID_OBJECT_PARENT"
    assert dec.calls[5].detail == "NV2080_CTRL_CMD_GPU_GET_INFO_V2" and dec.calls[5].named
    assert not dec.calls[6].named and "ctrl 0x2080ffff" in dec.calls[6].detail  # unknown control
    assert dec.calls[8].name == "UVM_INITIALIZE" and dec.calls[8].family == "uvm"
    assert not dec.calls[9].named and not dec.calls[10].named  # unknown escape / UVM ioctl: raw
    assert dec.calls[11].name == "mmap"
    # the model reproduced the driver's answer for the 3 allocs, the refused one, 2 controls and
    # the free
    assert (dec.model_checked, dec.model_agreed) == (7, 7)
    # decoded as from a machine without an attached GPU, the device alloc is where it disagrees
    cold = decode(small_trace())
    assert cold.disagreements[0].startswith("call 2 NV_ESC_RM_ALLOC NV01_DEVICE_0: driver NV_OK")
    ops = [(e.op, e.class_name) for _, e in dec.tree]
    assert ops[:3] == [("alloc", "NV01_ROOT"), ("alloc", "NV01_DEVICE_0"), ("alloc", "NV20_SUBDEVICE_0")]
    assert ops[3:] == [("free", "NV20_SUBDEVICE_0"), ("free", "NV01_DEVICE_0")]
    assert dec.named_fraction() == pytest.approx(8 / 11)
    assert sum(dec.unnamed().values()) == 3


def test_exports(tmp_path):
    pd = pytest.importorskip("pandas")
    dec = decode(small_trace())
    write_parquet(dec, tmp_path / "c.parquet")
    df = pd.read_parquet(tmp_path / "c.parquet")
    assert len(df) == 12 and df["named"].sum() == 9 and set(df["family"]) >= {"rm", "uvm", "mmap"}
    write_timeline(dec, tmp_path / "t.json")
    tl = json.loads((tmp_path / "t.json").read_text())
    slices = [e for e in tl["traceEvents"] if e["ph"] == "X"]
    assert len(slices) == 11 and all(e["dur"] > 0 for e in slices)


@pytest.mark.parametrize(
    "data,msg",
    [
        (b"", "too short"),
        (b"NOTATRACE" + b"\0" * 8, "bad magic"),
        (b"UVMLIOC1" + struct.pack("<II", 9, 512), "version 9"),
    ],
)
def test_bad_headers(data, msg):
    with pytest.raises(TraceFileError, match=msg):
        parse_trace(data)


def test_missing_and_directory(tmp_path):
    with pytest.raises(TraceFileError, match="no such file"):
        read_trace(tmp_path / "nope")
    with pytest.raises(TraceFileError, match="directory"):
        read_trace(tmp_path)


def test_fuzzed_parameter_bytes_never_crash_the_decoder():
    rng = random.Random(19)
    dec = decode(fuzz_records(rng, 3000))
    assert len(dec.calls) == 3000
    assert dec.summary()


def test_fuzzed_files_fail_cleanly(tmp_path):
    rng = random.Random(7)
    write_trace(small_trace(), tmp_path / "t")
    good = (tmp_path / "t").read_bytes()
    refused = 0
    for _ in range(400):
        data = bytearray(good)
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(16, len(data))] = rng.getrandbits(8)
        data = bytes(data[: rng.randrange(16, len(data) + 1)])
        try:
            decode(parse_trace(data))
        except TraceFileError:
            refused += 1
    assert 0 < refused < 400  # corrupt lengths are refused, corrupt payloads still decode


def test_tree_follows_the_driver_where_the_model_disagrees():
    c = 0xC1D00001
    recs = [
        alloc(0, 0, 0, 0, 0x0000, h_out=c),
        alloc(1, c, c, 0x10, 0x0080),
        alloc(2, c, 0x10, 0x20, 0xBEEF),  # a class the model does not know, accepted by the driver
        alloc(3, c, 0x20, 0x30, 0x003E),
    ]  # a child of it (the model's parent rule says no)
    dec = decode(recs, gpus_attached=True)
    assert dec.model_checked == 4 and dec.model_agreed == 2 and len(dec.disagreements) == 2
    assert dec.rm.object(c, 0x20) is not None and dec.rm.object(c, 0x30).parent.handle == 0x20
