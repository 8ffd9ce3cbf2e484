"""Finding the GPU and its CUDA stack, describing it, and deciding what is safe to run on it.

Every GPU entry point of ``uvmlab.cuda`` goes through :func:`load_cuda`, so that a machine without
CuPy, without the CUDA bindings or without a GPU gets one ``GpuUnavailableError`` with a one-line
reason instead of an ``ImportError`` traceback. The safety rule of docs/validation.md (managed memory
stays well below the GPU's free memory) is a pure function here so it can be tested without a GPU.
"""

from __future__ import annotations

import datetime as _dt
import glob
import os
import subprocess
from typing import Any

from uvmlab.core.errors import GpuUnavailableError, UvmlabError
from uvmlab.core.sizes import VA_BLOCK_SIZE
from uvmlab.core.units import fmt_bytes
from uvmlab.workload.ir import AllocKind

#: a workload's managed allocations may use at most this share of the GPU's free memory. Asking
#: the driver for more managed memory than the card has free can hang the GPU for everyone on
#: the host (device README), and oversubscription belongs to the model anyway.
MANAGED_FREE_FRACTION = 0.5
#: managed + device allocations together must leave this share of free memory untouched, for the
#: CUDA context, the kernel's segment tables and the driver's own page tables.
TOTAL_FREE_FRACTION = 0.9
#: cudaMallocManaged hands out whole 2 MiB VA blocks; count footprints in those units.

UVM_PARAMS_DIR = "/sys/module/nvidia_uvm/parameters"


class GpuMemoryRefusedError(UvmlabError):
    """A workload that would put more memory on the GPU than the backend's safety rule allows."""


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def load_cuda() -> tuple[Any, Any]:
    """Import CuPy and the CUDA runtime bindings and check that a GPU answers.

    Returns ``(cupy, cuda.bindings.runtime)``. Raises ``GpuUnavailableError`` with a one-line
    reason when any piece is missing.
    """
    try:
        import cupy  # optional: present only on a CUDA machine
    except Exception as e:  # ImportError, or CuPy failing to find libcuda
        raise GpuUnavailableError(f"the real-GPU backend needs CuPy ({_one_line(e)})") from None
    try:
        from cuda.bindings import runtime as rt  # optional: present only on a CUDA machine
    except Exception as e:
        raise GpuUnavailableError(f"the real-GPU backend needs cuda-bindings ({_one_line(e)})") from None
    try:
        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as e:
        raise GpuUnavailableError(f"no usable NVIDIA GPU ({_one_line(e)})") from None
    if n < 1:
        raise GpuUnavailableError("no NVIDIA GPU found (CUDA reports 0 devices)")
    return cupy, rt


def gpu_available() -> bool:
    """True when :func:`load_cuda` would succeed (used by tests to skip cleanly)."""
    try:
        load_cuda()
    except GpuUnavailableError:
        return False
    return True


# --- safety ------------------------------------------------------------------------------------


def _round_block(n: int) -> int:
    return -(-int(n) // VA_BLOCK_SIZE) * VA_BLOCK_SIZE


def footprint(allocs: list) -> tuple[int, int]:
    """(managed bytes, device bytes) of a list of IR ``Alloc``, each rounded up to 2 MiB."""
    managed = sum(_round_block(a.bytes) for a in allocs if a.kind == AllocKind.MANAGED)
    device = sum(_round_block(a.bytes) for a in allocs if a.kind == AllocKind.DEVICE)
    return managed, device


def check_fits(
    name: str,
    managed_bytes: int,
    device_bytes: int,
    free_bytes: int,
    *,
    managed_fraction: float = MANAGED_FREE_FRACTION,
    total_fraction: float = TOTAL_FREE_FRACTION,
) -> None:
    """Refuse (``GpuMemoryRefusedError``) a workload that breaks the safety rule.

    Managed allocations may use at most ``managed_fraction`` of the free GPU memory, and managed
    plus device allocations at most ``total_fraction``. Pure: ``free_bytes`` comes from
    ``cudaMemGetInfo`` on a GPU and from the caller in tests.
    """
    if free_bytes <= 0:
        raise GpuMemoryRefusedError(f"refusing to run {name!r}: the GPU reports no free memory")
    if managed_bytes > managed_fraction * free_bytes:
        raise GpuMemoryRefusedError(
            f"refusing to run {name!r}: its managed allocations ({fmt_bytes(managed_bytes)}) "
            f"exceed {managed_fraction:.0%} of the GPU's free memory ({fmt_bytes(free_bytes)}); "
            "study oversubscription in the model, not on the card"
        )
    if managed_bytes + device_bytes > total_fraction * free_bytes:
        raise GpuMemoryRefusedError(
            f"refusing to run {name!r}: managed + device allocations "
            f"({fmt_bytes(managed_bytes + device_bytes)}) exceed {total_fraction:.0%} of the "
            f"GPU's free memory ({fmt_bytes(free_bytes)})"
        )


# --- describing the machine ---------------------------------------------------------------------


def read_uvm_params(path: str = UVM_PARAMS_DIR) -> dict[str, str]:
    """Every nvidia_uvm module parameter as text (empty when the module is not loaded)."""
    out: dict[str, str] = {}
    for p in sorted(glob.glob(os.path.join(path, "*"))):
        try:
            with open(p) as f:
                out[os.path.basename(p)] = f.read().strip()
        except OSError as e:
            out[os.path.basename(p)] = f"unreadable: {e.strerror}"
    return out


def driver_version() -> str:
    """The kernel driver's version string (e.g. ``580.159.04``), or '' when it cannot be read."""
    try:
        with open("/proc/driver/nvidia/version") as f:
            for word in f.readline().split():
                if word.count(".") >= 1 and word.replace(".", "").isdigit():
                    return word
    except OSError:
        pass
    try:
        r = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return r.stdout.strip().splitlines()[0] if r.stdout.strip() else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _smi_link() -> dict[str, str]:
    try:
        q = "--query-gpu=pcie.link.gen.current,pcie.link.width.current"
        r = subprocess.run(
            ["nvidia-smi", q, "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
        gen, width = (x.strip() for x in r.stdout.strip().splitlines()[0].split(","))
        return {"pcie_gen": gen, "pcie_width": width}
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {}


def device_info(device: int = 0) -> dict[str, Any]:
    """Name, driver, memory, managed-memory attributes and UVM parameters of one GPU."""
    cp, rt = load_cuda()
    rtm = cp.cuda.runtime
    props = rtm.getDeviceProperties(device)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    with cp.cuda.Device(device):
        free, total = rtm.memGetInfo()
    attrs = {}
    for a in (
        "ConcurrentManagedAccess",
        "PageableMemoryAccess",
        "DirectManagedMemAccessFromHost",
        "HostNativeAtomicSupported",
        "MultiProcessorCount",
    ):
        try:
            attrs[a] = int(rtm.deviceGetAttribute(getattr(rtm, "cudaDevAttr" + a), device))
        except Exception as e:  # an attribute this CUDA does not know is worth a note, not a crash
            attrs[a] = f"unavailable ({_one_line(e)})"
    info = {
        "gpu": name,
        "device": device,
        "driver_version": driver_version(),
        "cuda_driver_api": int(rtm.driverGetVersion()),
        "cuda_runtime": int(rtm.runtimeGetVersion()),
        "memory_total": int(total),
        "memory_free": int(free),
        "attrs": attrs,
        "uvm_params": read_uvm_params(),
        "kernel": os.uname().release,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    info.update(_smi_link())
    return info
