"""The LD_PRELOAD shim, built with the machine's C compiler and run on files standing in for the
NVIDIA device files (a temporary directory given as UVMLAB_IOCTL_PREFIX): what it records."""

import shutil
import sys
import textwrap

import pytest

from uvmlab.frontend import nvtables as nt
from uvmlab.frontend.capture import CaptureError, build_shim, capture
from uvmlab.frontend.decode import decode
from uvmlab.frontend.dispatch import pack
from uvmlab.frontend.trace import read_trace

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler")


def test_shim_records_ioctls_mmaps_and_marks_on_matching_files_only(tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    params = pack(nt.NVOS64, 48, hRoot=0xC1D00001, hObjectParent=0xC1D00001, hObjectNew=0x10, hClass=0x80)
    prog = tmp_path / "prog.py"
    prog.write_text(
        textwrap.dedent(f"""
        import ctypes, fcntl, mmap, os
        mark = ctypes.CDLL(None).uvmlab_mark
        mark.argtypes = [ctypes.c_char_p]
        fd = os.open({str(dev / "nvidiactl")!r}, os.O_RDWR | os.O_CREAT)
        other = os.open({str(tmp_path / "other")!r}, os.O_RDWR | os.O_CREAT)
        mark(b"alloc")
        for f in (fd, other):
            try:
                fcntl.ioctl(f, {nt.nv_ioctl(0x2B, 48)}, bytearray({params!r}), True)
            except OSError:
                pass
        uvm = os.open({str(dev / "nvidia-uvm")!r}, os.O_RDWR | os.O_CREAT)
        os.ftruncate(uvm, 8192)
        try:
            fcntl.ioctl(uvm, 42, bytearray(40), True)
        except OSError:
            pass
        m = mmap.mmap(uvm, 8192)
        m.close()
    """)
    )
    trace = tmp_path / "t.ioctl.gz"
    s = capture([sys.executable, str(prog)], trace, prefix=str(dev))
    assert s.returncode == 0 and s.bytes_raw > 0
    dec = decode(read_trace(trace))
    kinds = [(c.kind, c.name) for c in dec.calls]
    assert kinds == [
        ("mark", "alloc"),
        ("ioctl", "NV_ESC_RM_ALLOC"),
        ("ioctl", "UVM_SET_PREFERRED_LOCATION"),
        ("mmap", "mmap"),
        ("munmap", "munmap"),
    ]  # the ioctl on "other" is not recorded
    alloc = dec.calls[1]
    assert alloc.ret == -1 and alloc.err == 25  # ENOTTY from a regular file
    assert alloc.fields["hClass"] == 0x80 and alloc.detail == "NV01_DEVICE_0"
    assert dec.calls[2].family == "uvm" and dec.calls[3].fields["length"] == 8192


def test_missing_compiler_is_a_clear_error(tmp_path):
    with pytest.raises(CaptureError, match="no C compiler"):
        build_shim(tmp_path, cc="no-such-cc")
