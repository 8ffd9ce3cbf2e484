"""Whether a machine lets the GPU touch pageable (malloc'd) memory, and why not.

CUDA reports it as the device attribute ``cudaDevAttrPageableMemoryAccess``; UVM answers the
``UVM_PAGEABLE_MEM_ACCESS`` ioctl with ``uvm_va_space_pageable_mem_access_supported``: true when
ATS or HMM serves the VA space (uvm.c, uvm_va_space.h). On x86-64 with PCIe there is no ATS, so
it is HMM, which ``uvm_hmm_is_enabled_system_wide`` (uvm_hmm.c) turns on only when

* the driver was built with HMM (``UVM_IS_CONFIG_HMM()``: the kernel has ``CONFIG_HMM_MIRROR``
  and ``CONFIG_DEVICE_PRIVATE``, and the open kernel modules' conftest found the migrate_vma /
  mmu-interval-notifier APIs),
* the ``uvm_disable_hmm`` module parameter is off,
* ATS is not in use and Confidential Computing is off,
* ``uvm_va_space_mm_enabled_system()`` (module parameter ``uvm_enable_va_space_mm``),

and the GPU is Turing or newer: NVIDIA's "Simplifying GPU Application Development with
Heterogeneous Memory Management" lists open kernel modules r535 or newer and Linux 6.1.24+, and
the open kernel modules support Turing and later GPUs only.

The model runs HMM on any HAL that supports it (``hal_supports_hmm``): the question "what would
HMM do on this GPU" needs no real machine. ``machine_report`` says what the lab's measured
machines reported, from the device attributes the real-GPU backend stores with its captures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from uvmlab.driver.hal import GpuSpec

#: GPU architectures in order; HMM needs Turing or newer
ARCHS = ("pascal", "volta", "turing", "ampere", "ada", "hopper", "blackwell")
HMM_MIN_ARCH = "turing"


def hal_supports_hmm(gpu: GpuSpec) -> bool:
    """Whether UVM can serve HMM faults on this architecture (Turing and newer)."""
    return gpu.arch in ARCHS and ARCHS.index(gpu.arch) >= ARCHS.index(HMM_MIN_ARCH)


@dataclass(frozen=True)
class MachineReport:
    gpu: str
    pageable_memory_access: int | None  #: the recorded attribute; None when nothing is recorded
    source: str  #: the file in the package it was read from
    details: dict[str, Any]  #: driver version, kernel, date, the relevant module parameters

    @property
    def validation_possible(self) -> bool:
        return self.pageable_memory_access == 1

    def explain(self) -> str:
        if self.pageable_memory_access is None:
            return "no device attributes recorded; run the real-GPU backend first"
        if self.validation_possible:
            return "PageableMemoryAccess=1: HMM runs on the real GPU"
        d = self.details
        params = d.get("uvm_params", {})
        known = []
        if params.get("uvm_disable_hmm") in ("N", "0"):
            known.append("uvm_disable_hmm=N (not disabled by the parameter)")
        if params.get("uvm_enable_va_space_mm") == "1":
            known.append("uvm_enable_va_space_mm=1")
        why = ("; ".join(known) + "; ") if known else ""
        return (
            f"PageableMemoryAccess=0 (driver {d.get('driver_version', '?')}, "
            f"kernel {d.get('kernel', '?')}, recorded {d.get('date', '?')}): {why}so HMM is "
            "off for a reason the module parameters do not show: a driver built without HMM "
            "(a guest kernel without CONFIG_DEVICE_PRIVATE / CONFIG_HMM_MIRROR), ATS or "
            "Confidential Computing. A GPU touch of malloc'd memory is a fatal fault there, "
            "so the HMM model cannot be validated on this machine."
        )


def _candidates(gpu: str) -> list[tuple[str, str]]:
    """(package, resource path) of files that may hold the device attributes of ``gpu``: the
    attributes file the real-GPU session records, then the metadata of a stored capture."""
    out = [
        (pkg, f"data/device_attributes_{gpu}.json")
        for pkg in ("uvmlab.cuda", "uvmlab.validation", "uvmlab.frontend")
    ]
    folder = "captures" if gpu == "h100" else f"captures-{gpu}"
    out += [(pkg, f"data/{folder}/gemm.json") for pkg in ("uvmlab.validation", "uvmlab.cuda")]
    return out


def machine_report(gpu: str, files: list[tuple[str, Any]] | None = None) -> MachineReport:
    """What the lab's ``gpu`` (``h100``, ``h200``) reported for pageable memory access.

    ``files``: (label, path) pairs to read instead of the package's own data (tests)."""
    if files is None:
        files = []
        for pkg, rel in _candidates(gpu):
            try:
                files.append((f"{pkg.replace('.', '/')}/{rel}", resources.files(pkg).joinpath(rel)))
            except ModuleNotFoundError:
                continue
    found: list[MachineReport] = []
    for label, path in files:
        try:
            if not path.is_file():
                continue
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        report = _report(gpu, label, data)
        if report is not None:
            found.append(report)
    if not found:
        return MachineReport(gpu, None, "", {})
    # the first file gives the attribute; the others fill in what it did not record (the
    # attributes file has no kernel or module parameters, a capture's metadata has them)
    first = found[0]
    details = dict(first.details)
    for other in found[1:]:
        if other.details.get("driver_version") == details.get("driver_version"):
            for k, v in other.details.items():
                if v and not details.get(k):
                    details[k] = v
    return MachineReport(gpu, first.pageable_memory_access, first.source, details)


def _report(gpu: str, label: str, data: Any) -> MachineReport | None:
    meta = data.get("meta", data) if isinstance(data, dict) else {}
    attrs = meta.get("attrs", meta)  # a capture nests them, the attributes file does not
    value = attrs.get("PageableMemoryAccess") if isinstance(attrs, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    details = {k: meta.get(k) for k in ("gpu", "name", "driver_version", "kernel") if meta.get(k) is not None}
    details["date"] = meta.get("date", meta.get("date_utc", "?"))
    params = meta.get("uvm_params") or {}
    keep = ("uvm_disable_hmm", "uvm_enable_va_space_mm", "uvm_ats_mode")
    details["uvm_params"] = {k: v for k, v in params.items() if k in keep}
    return MachineReport(gpu, int(value), label, details)
